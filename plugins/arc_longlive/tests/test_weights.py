"""LongLive's published checkpoint layout, on tiny weights: a Wan2.1 Diffusers folder with
longlive_base.pt (Wan's original names, under `generator`, prefixed `model.`) and
lora.pt (PEFT names under `generator_lora`) loads as the 1.3b variant: every base tensor
lands on its diffusers name and each LoRA pair is merged into its layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import ArcFabricError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore
from arc_longlive.tiny import TRANSFORMER_CONFIG, ensure_tiny_checkpoint
from arc_longlive.weights import to_diffusers_name

# diffusers name -> Wan's original, written out by hand (the converter's inverse, not derived from it).
BLOCK_NAMES = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "scale_shift_table": "modulation",
}
TOP_NAMES = {
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "scale_shift_table": "head.modulation",
    "proj_out": "head.head",
    "patch_embedding": "patch_embedding",
}


def wan_original(name: str) -> str:
    if name.startswith("blocks."):
        _, index, rest = name.split(".", 2)
        for new, old in BLOCK_NAMES.items():
            if rest == new or rest.startswith(new + "."):
                return f"blocks.{index}.{old}{rest[len(new) :]}"
        raise AssertionError(name)
    for new, old in TOP_NAMES.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new) :]
    raise AssertionError(name)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny folder in the real layout; returns it with the weights it should load to."""
    from diffusers import WanTransformer3DModel

    target = tmp_path / "longlive-1.3b"
    shutil.copytree(ensure_tiny_checkpoint(), target)
    torch.manual_seed(9)
    trained = WanTransformer3DModel(**TRANSFORMER_CONFIG).state_dict()
    base = {f"model.{wan_original(k)}": v.clone() for k, v in trained.items()}
    torch.save({"generator": base}, target / "longlive_base.pt")
    expected = {k: v.clone() for k, v in trained.items()}
    lora = {}
    g = torch.Generator().manual_seed(4)
    for block in range(TRANSFORMER_CONFIG["num_layers"]):
        for module in ("self_attn.q", "self_attn.o", "cross_attn.v", "ffn.0", "ffn.2"):
            key = f"blocks.{block}.{to_diffusers_name(module)}.weight"
            out_dim, in_dim = expected[key].shape
            a, b = torch.randn(4, in_dim, generator=g), torch.randn(out_dim, 4, generator=g)
            lora[f"base_model.model.blocks.{block}.{module}.lora_A.weight"] = a
            lora[f"base_model.model.blocks.{block}.{module}.lora_B.weight"] = b
            expected[key] = expected[key] + b @ a
    torch.save({"generator_lora": lora, "critic_lora": {}}, target / "lora.pt")
    return target, expected


def test_the_published_layout_loads_with_its_lora_merged(folder, tmp_path: Path) -> None:
    path, expected = folder
    engine = Engine(SessionStore(tmp_path / "store"), device="cpu")
    ref = engine.resolve("longlive", "1.3b", str(path))
    components = engine.load(ref, "cpu")
    got = components.pipe.transformer.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, atol=1e-6), name
    # And it runs (a short session on the converted weights).
    session = engine.create(ref, {"num_frames": 9, "height": 32, "width": 32})
    engine.run(session)
    assert engine.final_latents(session).shape == (1, 16, 3, 4, 4)


def test_a_lora_for_a_layer_the_model_lacks_is_refused(folder) -> None:
    from diffusers import WanTransformer3DModel

    from arc_longlive.weights import apply_longlive_weights

    path, _ = folder
    lora = torch.load(path / "lora.pt", weights_only=True)
    lora["generator_lora"]["base_model.model.blocks.7.self_attn.q.lora_A.weight"] = torch.zeros(4, 24)
    lora["generator_lora"]["base_model.model.blocks.7.self_attn.q.lora_B.weight"] = torch.zeros(24, 4)
    torch.save(lora, path / "lora.pt")
    with pytest.raises(ArcFabricError, match=r"blocks\.7\.attn1\.to_q, which the transformer does not have"):
        apply_longlive_weights(WanTransformer3DModel(**TRANSFORMER_CONFIG), path)
