"""DreamDojo's published weights load from a local folder in the authors' layout: tiny
checkpoints written under the authors' key names, as .pt and as a DCP folder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from arc_dreamdojo.author_layout import author_state, save_author_checkpoint, save_original_wan_vae
from arc_dreamdojo.network import DreamDojoNet
from arc_dreamdojo.weights import (
    NET_FILES,
    STATS_FILE,
    TEXT_FILE,
    VAE_FILE,
    apply_net_state,
    author_to_ours,
    check_folder,
    load_net_state,
    load_text_embedding,
    load_vae,
)
from diffusers import AutoencoderKLWan
from diffusers.models.transformers.transformer_cosmos import CosmosTransformer3DModel

from arc_fabric_core.contract.errors import InputError

TINY_TRANSFORMER = {
    "in_channels": 17,
    "out_channels": 16,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "num_layers": 2,
    "mlp_ratio": 2,
    "text_embed_dim": 32,
    "adaln_lora_dim": 4,
    "max_size": (4, 32, 32),
    "patch_size": (1, 2, 2),
    "rope_scale": (1.0, 3.0, 3.0),
    "concat_padding_mask": True,
    "extra_pos_embed_type": None,
    "use_crossattn_projection": True,
    "crossattn_proj_in_channels": 64,
    "encoder_hidden_states_channels": 32,
}
# diffusers' converter is written for Wan 2.1's own layout (num_res_blocks=2, dim_mult
# [1, 2, 4, 4]: one decoder shortcut, in the second stage), so the tiny VAE keeps that shape.
TINY_VAE = {
    "base_dim": 3,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
}


# Every tensor of the tiny net, by hand: the authors' name -> ours.
EXPECTED = {
    "net.x_embedder.proj.1.weight": "transformer.patch_embed.proj.weight",
    "net.t_embedder.1.linear_1.weight": "transformer.time_embed.t_embedder.linear_1.weight",
    "net.t_embedder.1.linear_2.weight": "transformer.time_embed.t_embedder.linear_2.weight",
    "net.t_embedding_norm.weight": "transformer.time_embed.norm.weight",
    "net.blocks.0.adaln_modulation_self_attn.1.weight": "transformer.transformer_blocks.0.norm1.linear_1.weight",
    "net.blocks.0.adaln_modulation_self_attn.2.weight": "transformer.transformer_blocks.0.norm1.linear_2.weight",
    "net.blocks.0.self_attn.q_norm.weight": "transformer.transformer_blocks.0.attn1.norm_q.weight",
    "net.blocks.0.self_attn.k_norm.weight": "transformer.transformer_blocks.0.attn1.norm_k.weight",
    "net.blocks.0.self_attn.q_proj.weight": "transformer.transformer_blocks.0.attn1.to_q.weight",
    "net.blocks.0.self_attn.k_proj.weight": "transformer.transformer_blocks.0.attn1.to_k.weight",
    "net.blocks.0.self_attn.v_proj.weight": "transformer.transformer_blocks.0.attn1.to_v.weight",
    "net.blocks.0.self_attn.output_proj.weight": "transformer.transformer_blocks.0.attn1.to_out.0.weight",
    "net.blocks.0.adaln_modulation_cross_attn.1.weight": "transformer.transformer_blocks.0.norm2.linear_1.weight",
    "net.blocks.0.adaln_modulation_cross_attn.2.weight": "transformer.transformer_blocks.0.norm2.linear_2.weight",
    "net.blocks.0.cross_attn.q_norm.weight": "transformer.transformer_blocks.0.attn2.norm_q.weight",
    "net.blocks.0.cross_attn.k_norm.weight": "transformer.transformer_blocks.0.attn2.norm_k.weight",
    "net.blocks.0.cross_attn.q_proj.weight": "transformer.transformer_blocks.0.attn2.to_q.weight",
    "net.blocks.0.cross_attn.k_proj.weight": "transformer.transformer_blocks.0.attn2.to_k.weight",
    "net.blocks.0.cross_attn.v_proj.weight": "transformer.transformer_blocks.0.attn2.to_v.weight",
    "net.blocks.0.cross_attn.output_proj.weight": "transformer.transformer_blocks.0.attn2.to_out.0.weight",
    "net.blocks.0.adaln_modulation_mlp.1.weight": "transformer.transformer_blocks.0.norm3.linear_1.weight",
    "net.blocks.0.adaln_modulation_mlp.2.weight": "transformer.transformer_blocks.0.norm3.linear_2.weight",
    "net.blocks.0.mlp.layer1.weight": "transformer.transformer_blocks.0.ff.net.0.proj.weight",
    "net.blocks.0.mlp.layer2.weight": "transformer.transformer_blocks.0.ff.net.2.weight",
    "net.blocks.1.adaln_modulation_self_attn.1.weight": "transformer.transformer_blocks.1.norm1.linear_1.weight",
    "net.blocks.1.adaln_modulation_self_attn.2.weight": "transformer.transformer_blocks.1.norm1.linear_2.weight",
    "net.blocks.1.self_attn.q_norm.weight": "transformer.transformer_blocks.1.attn1.norm_q.weight",
    "net.blocks.1.self_attn.k_norm.weight": "transformer.transformer_blocks.1.attn1.norm_k.weight",
    "net.blocks.1.self_attn.q_proj.weight": "transformer.transformer_blocks.1.attn1.to_q.weight",
    "net.blocks.1.self_attn.k_proj.weight": "transformer.transformer_blocks.1.attn1.to_k.weight",
    "net.blocks.1.self_attn.v_proj.weight": "transformer.transformer_blocks.1.attn1.to_v.weight",
    "net.blocks.1.self_attn.output_proj.weight": "transformer.transformer_blocks.1.attn1.to_out.0.weight",
    "net.blocks.1.adaln_modulation_cross_attn.1.weight": "transformer.transformer_blocks.1.norm2.linear_1.weight",
    "net.blocks.1.adaln_modulation_cross_attn.2.weight": "transformer.transformer_blocks.1.norm2.linear_2.weight",
    "net.blocks.1.cross_attn.q_norm.weight": "transformer.transformer_blocks.1.attn2.norm_q.weight",
    "net.blocks.1.cross_attn.k_norm.weight": "transformer.transformer_blocks.1.attn2.norm_k.weight",
    "net.blocks.1.cross_attn.q_proj.weight": "transformer.transformer_blocks.1.attn2.to_q.weight",
    "net.blocks.1.cross_attn.k_proj.weight": "transformer.transformer_blocks.1.attn2.to_k.weight",
    "net.blocks.1.cross_attn.v_proj.weight": "transformer.transformer_blocks.1.attn2.to_v.weight",
    "net.blocks.1.cross_attn.output_proj.weight": "transformer.transformer_blocks.1.attn2.to_out.0.weight",
    "net.blocks.1.adaln_modulation_mlp.1.weight": "transformer.transformer_blocks.1.norm3.linear_1.weight",
    "net.blocks.1.adaln_modulation_mlp.2.weight": "transformer.transformer_blocks.1.norm3.linear_2.weight",
    "net.blocks.1.mlp.layer1.weight": "transformer.transformer_blocks.1.ff.net.0.proj.weight",
    "net.blocks.1.mlp.layer2.weight": "transformer.transformer_blocks.1.ff.net.2.weight",
    "net.final_layer.adaln_modulation.1.weight": "transformer.norm_out.linear_1.weight",
    "net.final_layer.adaln_modulation.2.weight": "transformer.norm_out.linear_2.weight",
    "net.final_layer.linear.weight": "transformer.proj_out.weight",
    "net.crossattn_proj.0.weight": "transformer.crossattn_proj.0.weight",
    "net.crossattn_proj.0.bias": "transformer.crossattn_proj.0.bias",
    "net.action_embedder_B_D.fc1.weight": "action_embedder_B_D.fc1.weight",
    "net.action_embedder_B_D.fc1.bias": "action_embedder_B_D.fc1.bias",
    "net.action_embedder_B_D.fc2.weight": "action_embedder_B_D.fc2.weight",
    "net.action_embedder_B_D.fc2.bias": "action_embedder_B_D.fc2.bias",
    "net.action_embedder_B_3D.fc1.weight": "action_embedder_B_3D.fc1.weight",
    "net.action_embedder_B_3D.fc1.bias": "action_embedder_B_3D.fc1.bias",
    "net.action_embedder_B_3D.fc2.weight": "action_embedder_B_3D.fc2.weight",
    "net.action_embedder_B_3D.fc2.bias": "action_embedder_B_3D.fc2.bias",
}
DROPPED = [
    "net.accum_video_sample_counter",
    "net.accum_image_sample_counter",
    "net.accum_iteration",
    "net.accum_train_in_hours",
    "net.pos_embedder.seq",
    "net.pos_embedder.dim_spatial_range",
    "net.pos_embedder.dim_temporal_range",
    "net.t_embedding_norm._extra_state",
    "net.blocks.0.self_attn.q_norm._extra_state",
    "net.blocks.1.cross_attn.k_norm._extra_state",
]


def tiny_net(seed: int) -> DreamDojoNet:
    torch.manual_seed(seed)
    net = DreamDojoNet(CosmosTransformer3DModel(**TINY_TRANSFORMER), action_dim=384)
    with torch.no_grad():  # every tensor seed-dependent (the norms start at ones)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def forward(net: DreamDojoNet) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 8, generator=g)
    condition = torch.zeros(1, 1, 2, 8, 8)
    condition[:, :, 0] = 1.0
    with torch.no_grad():
        return net(
            latents,
            torch.full((1, 1, 2, 1, 1), 0.5),
            torch.randn(1, 8, 64, generator=g),
            condition,
            torch.zeros(1, 1, 8, 8),
            actions=torch.randn(1, 4, 384, generator=g),
        )


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    unequal = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not unequal, unequal


def error(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    assert isinstance(excinfo.value, InputError) and excinfo.value.field == "weights"
    return str(excinfo.value)


# (a) the key map


def test_key_map_matches_the_hand_written_map() -> None:
    assert set(EXPECTED.values()) == set(tiny_net(0).state_dict())
    for theirs, ours in EXPECTED.items():
        assert author_to_ours(theirs) == ours, theirs
        assert author_to_ours("net_ema." + theirs.removeprefix("net.")) == ours, theirs
    for theirs in DROPPED:
        assert author_to_ours(theirs) is None, theirs


def test_the_writer_uses_the_same_names() -> None:
    state = author_state(tiny_net(0))
    assert set(EXPECTED) | set(DROPPED) <= set(state)
    assert set(state) - set(EXPECTED) - {k for k in state if author_to_ours(k) is None} == set()


@pytest.mark.parametrize(
    "key",
    ["net.logvar.1.weight", "net.blocks.0.self_attn.q.weight", "transformer.patch_embed.proj.weight", "blocks.0.x"],
)
def test_names_outside_the_authors_dit_are_unknown(key: str) -> None:
    with pytest.raises(KeyError):
        author_to_ours(key)


# (b) (c) round trips


def test_round_trip_through_pt(tmp_path: Path) -> None:
    source, fresh = tiny_net(1), tiny_net(2)
    assert not torch.equal(forward(source), forward(fresh))
    save_author_checkpoint(source, tmp_path / "model_ema_fp32.pt")
    state = load_net_state(tmp_path)
    assert {"net.accum_iteration", "net.pos_embedder.seq", "net.blocks.0.self_attn.q_norm._extra_state"} <= set(state)
    apply_net_state(fresh, state)
    assert_same(fresh, source)
    assert torch.equal(forward(fresh), forward(source))


def test_round_trip_through_bf16_pt(tmp_path: Path) -> None:
    source, fresh = tiny_net(1), tiny_net(2)
    state = author_state(source)
    state = {k: v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, tmp_path / NET_FILES[0])
    apply_net_state(fresh, load_net_state(tmp_path))
    assert fresh.transformer.proj_out.weight.dtype == torch.float32  # copied into the model's dtype
    assert torch.equal(fresh.transformer.proj_out.weight, source.transformer.proj_out.weight.bfloat16().float())


def test_a_wrapped_state_dict_is_unwrapped(tmp_path: Path) -> None:
    source, fresh = tiny_net(1), tiny_net(2)
    torch.save({"model": author_state(source)}, tmp_path / "model.pt")
    apply_net_state(fresh, load_net_state(tmp_path))
    assert_same(fresh, source)


@pytest.mark.parametrize("where", ["iteration folder", "model folder"])
def test_round_trip_through_dcp(tmp_path: Path, where: str) -> None:
    source, fresh = tiny_net(1), tiny_net(2)
    save_author_checkpoint(source, tmp_path / "model", dcp=True)
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"__0_0.distcp", ".metadata"}
    state = load_net_state(tmp_path if where == "iteration folder" else tmp_path / "model")
    assert "net.accum_iteration" in state and "net.t_embedding_norm._extra_state" not in state  # bytes: not read
    apply_net_state(fresh, state)
    assert_same(fresh, source)
    assert torch.equal(forward(fresh), forward(source))


def test_pt_is_preferred_to_dcp(tmp_path: Path) -> None:
    save_author_checkpoint(tiny_net(1), tmp_path / "model", dcp=True)
    save_author_checkpoint(tiny_net(3), tmp_path / "model_ema_bf16.pt")
    fresh = tiny_net(2)
    apply_net_state(fresh, load_net_state(tmp_path))
    assert_same(fresh, tiny_net(3))


# (d) the EMA


@pytest.mark.parametrize("dcp", [False, True])
def test_the_ema_is_preferred(tmp_path: Path, dcp: bool) -> None:
    raw, ema, fresh = tiny_net(1), tiny_net(3), tiny_net(2)
    save_author_checkpoint(raw, tmp_path / ("model" if dcp else "model.pt"), dcp=dcp, ema=ema)
    state = load_net_state(tmp_path)
    if dcp:  # the DCP reader reads only the EMA
        assert all(k.startswith("net_ema.") for k in state)
    else:
        assert any(k.startswith("net.") for k in state) and any(k.startswith("net_ema.") for k in state)
    apply_net_state(fresh, state)
    assert_same(fresh, ema)


# (e) refusals


def test_a_leftover_key_is_named() -> None:
    state = author_state(tiny_net(1))
    state["net.blocks.2.mlp.layer1.weight"] = torch.zeros(64, 32)  # a third block the net lacks
    state["net.logvar.1.weight"] = torch.zeros(1)
    with pytest.raises(InputError) as excinfo:
        apply_net_state(tiny_net(2), state)
    message = error(excinfo)
    assert "2 checkpoint keys" in message
    assert "net.blocks.2.mlp.layer1.weight" in message and "net.logvar.1.weight" in message


def test_a_key_beside_the_prefixes_is_named() -> None:
    state = author_state(tiny_net(1))
    state["optimizer.step"] = torch.zeros(1)
    with pytest.raises(InputError) as excinfo:
        apply_net_state(tiny_net(2), state)
    assert "optimizer.step" in error(excinfo)


def test_a_missing_key_is_named() -> None:
    state = author_state(tiny_net(1))
    del state["net.final_layer.linear.weight"]
    with pytest.raises(InputError) as excinfo:
        apply_net_state(tiny_net(2), state)
    message = error(excinfo)
    assert "lacks 1" in message and "transformer.proj_out.weight" in message


def test_many_missing_keys_are_counted() -> None:
    state = {k: v for k, v in author_state(tiny_net(1)).items() if ".blocks." not in k}
    with pytest.raises(InputError) as excinfo:
        apply_net_state(tiny_net(2), state)
    message = error(excinfo)
    assert "lacks 40" in message and "(+35 more)" in message


def test_a_shape_mismatch_names_the_key_and_both_shapes() -> None:
    state = author_state(tiny_net(1))
    state["net.x_embedder.proj.1.weight"] = torch.zeros(32, 68)  # 17 channels: no padding mask
    with pytest.raises(InputError) as excinfo:
        apply_net_state(tiny_net(2), state)
    message = error(excinfo)
    assert "net.x_embedder.proj.1.weight" in message and "(32, 68)" in message and "(32, 72)" in message


def test_a_non_tensor_that_is_not_dropped_is_refused(tmp_path: Path) -> None:
    state = author_state(tiny_net(1))
    state["net.final_layer.linear.weight"] = io.BytesIO(b"x")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(InputError) as excinfo:
        load_net_state(tmp_path)
    assert "net.final_layer.linear.weight" in error(excinfo)


def test_no_network_in_the_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        load_net_state(tmp_path)
    assert "model_ema_bf16.pt" in error(excinfo)


# (f) the VAE


def tiny_vae(seed: int, config: dict | None = None) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**(config or TINY_VAE))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae.eval()


def test_tokenizer_pth_converts_with_diffusers_converter(tmp_path: Path) -> None:
    source = tiny_vae(1)
    written = save_original_wan_vae(source, tmp_path / VAE_FILE)
    # Wan 2.1's own names (WanVAE_): flat down/upsamples, middle, head, conv1/conv2 around the latent.
    for key in (
        "conv1.weight",
        "conv2.bias",
        "encoder.conv1.weight",
        "encoder.downsamples.0.residual.0.gamma",
        "encoder.downsamples.3.shortcut.weight",
        "encoder.downsamples.2.resample.1.weight",
        "encoder.middle.1.to_qkv.weight",
        "encoder.middle.2.residual.6.bias",
        "encoder.head.2.weight",
        "decoder.upsamples.3.resample.1.weight",
        "decoder.upsamples.3.time_conv.weight",
        "decoder.upsamples.4.shortcut.weight",
        "decoder.upsamples.14.residual.3.gamma",
        "decoder.head.0.gamma",
    ):
        assert key in written, key
    vae = load_vae(tmp_path, torch.float32, config=TINY_VAE)
    assert_same(vae, source)
    video = torch.randn(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(vae.encode(video).latent_dist.mean, source.encode(video).latent_dist.mean)


def test_a_diffusers_vae_folder_is_preferred(tmp_path: Path) -> None:
    source = tiny_vae(1)
    source.save_pretrained(tmp_path / "vae")
    save_original_wan_vae(tiny_vae(2), tmp_path / VAE_FILE)
    vae = load_vae(tmp_path, torch.bfloat16)
    assert vae.dtype == torch.bfloat16
    assert_same(vae, source.to(torch.bfloat16))


def test_a_vae_of_another_layout_is_refused(tmp_path: Path) -> None:
    # One resnet per stage: diffusers' converter (Wan 2.1's fixed indices) cannot place it.
    other = {**TINY_VAE, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    save_original_wan_vae(tiny_vae(1, other), tmp_path / VAE_FILE)
    with pytest.raises(InputError) as excinfo:
        load_vae(tmp_path, torch.float32, config=other)
    assert "match nothing in the Wan VAE" in error(excinfo)


def test_a_vae_checkpoint_for_another_size_names_the_shapes(tmp_path: Path) -> None:
    save_original_wan_vae(tiny_vae(1), tmp_path / VAE_FILE)
    with pytest.raises(InputError) as excinfo:
        load_vae(tmp_path, torch.float32, config={**TINY_VAE, "base_dim": 4})
    assert "encoder.conv_in.weight" in error(excinfo)


# the text embedding


@pytest.mark.parametrize("stored", ["2d", "3d", "list"])
def test_text_embedding_is_batched(tmp_path: Path, stored: str) -> None:
    embedding = torch.randn(1, 8, 64)
    value = {"2d": embedding[0], "3d": embedding, "list": [embedding[0]]}[stored]
    torch.save(value, tmp_path / TEXT_FILE)
    assert torch.equal(load_text_embedding(tmp_path / TEXT_FILE), embedding)


def test_text_embedding_of_another_shape_is_refused(tmp_path: Path) -> None:
    torch.save(torch.zeros(2, 8, 64), tmp_path / TEXT_FILE)
    with pytest.raises(InputError) as excinfo:
        load_text_embedding(tmp_path / TEXT_FILE)
    assert "(2, 8, 64)" in error(excinfo)


# (g) the folder


def test_check_folder_names_what_is_missing(tmp_path: Path) -> None:
    problems = check_folder(tmp_path)
    assert len(problems) == 4 and all("\n" not in p for p in problems)
    net, vae, text, stats = problems
    assert all(name in net for name in (*NET_FILES, "model/", ".metadata", ".distcp"))
    assert VAE_FILE in vae and "vae/" in vae and "config.json" in vae
    assert TEXT_FILE in text
    assert STATS_FILE in stats and "shared_meta/" in stats


def test_check_folder_accepts_a_complete_folder(tmp_path: Path) -> None:
    save_author_checkpoint(tiny_net(1), tmp_path / "model", dcp=True)
    save_original_wan_vae(tiny_vae(1), tmp_path / VAE_FILE)
    torch.save(torch.zeros(1, 8, 64), tmp_path / TEXT_FILE)
    (tmp_path / "shared_meta").mkdir()
    (tmp_path / "shared_meta" / STATS_FILE).write_text("{}")
    assert check_folder(tmp_path) == []


def test_check_folder_finds_dcp_without_shards(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".metadata").write_bytes(b"")
    problems = check_folder(tmp_path)
    assert any("no __*_0.distcp shards" in p for p in problems)


def test_check_folder_on_a_missing_folder(tmp_path: Path) -> None:
    assert check_folder(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'} is not a folder"]
