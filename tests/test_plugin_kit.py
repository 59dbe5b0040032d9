"""The kit for diffusers-based plugins, through its public functions: guidance, the VAE's
latent statistics and frames, loading a pipeline folder, memory estimates, the tiny Wan."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from arc_fabric_core.contract.models import LatentSpace, ModelRef, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.kit.activations import (
    kv_cache_bytes,
    latent_tokens,
    transformer_call_bytes,
    video_bytes,
    wan_vae_decode_bytes,
)
from arc_fabric_core.kit.guidance import guided, rescale_noise_cfg
from arc_fabric_core.kit.kv_cache import KVCache, WindowPolicy
from arc_fabric_core.kit.loading import build_once
from arc_fabric_core.kit.pipeline_folder import PipelineComponents, frozen, load_pipeline
from arc_fabric_core.kit.tiny_wan import ROPE_POSITIONS, TRANSFORMER_CONFIG, tiny_wan_pipeline
from arc_fabric_core.kit.vae import decode_frames, normalize, unnormalize, video_frames


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------ guidance


def test_guidance_pushes_away_from_the_unconditional_prediction() -> None:
    cond, uncond = _randn(2, 4, 3, 5), _randn(2, 4, 3, 5, seed=1)
    assert torch.equal(guided(cond, uncond, 5.0), uncond + 5.0 * (cond - uncond))
    assert torch.equal(guided(cond, uncond, 1.0, rescale=0.0), uncond + 1.0 * (cond - uncond))


@pytest.mark.parametrize("rescale", [0.3, 0.7, 1.0])
def test_guidance_rescale_is_the_formula_of_diffusers(rescale: float) -> None:
    from diffusers.pipelines.ltx.pipeline_ltx_condition import rescale_noise_cfg as theirs

    cond, uncond = _randn(2, 6, 4), _randn(2, 6, 4, seed=1) * 3
    plain = uncond + 4.0 * (cond - uncond)
    dims = [1, 2]  # every axis but the batch
    ratio = cond.std(dim=dims, keepdim=True) / plain.std(dim=dims, keepdim=True)
    formula = rescale * (plain * ratio) + (1 - rescale) * plain
    out = guided(cond, uncond, 4.0, rescale=rescale)
    assert torch.equal(out, formula)
    assert torch.equal(out, theirs(plain, cond, guidance_rescale=rescale))  # bit for bit: LTX's parity
    assert torch.equal(rescale_noise_cfg(plain, cond, rescale), out)
    if rescale == 1.0:  # fully rescaled: each sample has the conditional prediction's spread
        assert torch.allclose(out.std(dim=dims), cond.std(dim=dims))


# ------------------------------------------------------------ the VAE


def _wan_like_vae(channels: int = 4, dtype: torch.dtype = torch.float32) -> SimpleNamespace:
    """What the kit reads of a Wan VAE: its config's statistics, its device and dtype."""
    mean = [0.1 * c - 0.2 for c in range(channels)]
    std = [0.5 + 0.75 * c for c in range(channels)]
    config = SimpleNamespace(latents_mean=mean, latents_std=std, z_dim=channels)
    return SimpleNamespace(config=config, device=torch.device("cpu"), dtype=dtype)


def test_unnormalize_is_wan_pipelines_arithmetic_and_normalize_undoes_it() -> None:
    vae = _wan_like_vae()
    z = _randn(1, 4, 3, 2, 2)
    mean = torch.tensor(vae.config.latents_mean).view(1, 4, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 4, 1, 1, 1)
    assert torch.equal(unnormalize(z, vae), z / inv_std + mean)  # WanPipeline's, bit for bit
    assert torch.allclose(unnormalize(z, vae), z * torch.tensor(vae.config.latents_std).view(1, 4, 1, 1, 1) + mean)
    assert torch.allclose(normalize(unnormalize(z, vae), vae), z, atol=1e-6)
    assert torch.allclose(unnormalize(normalize(z, vae), vae), z, atol=1e-6)


def test_unnormalize_gives_the_vaes_dtype() -> None:
    z = _randn(1, 4, 1, 2, 2, seed=3).double()
    assert unnormalize(z, _wan_like_vae(dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_video_frames_are_the_first_video_in_unit_range_channels_last() -> None:
    from diffusers.video_processor import VideoProcessor

    processor = VideoProcessor(vae_scale_factor=8)
    video = (_randn(2, 3, 5, 8, 12) * 1.5).clamp(-1.2, 1.2)  # (B, C, F, H, W), a little past [-1, 1]
    frames = video_frames(processor, video)
    assert frames.shape == (5, 8, 12, 3) and frames.dtype == torch.float32
    assert torch.equal(frames, (video[0].permute(1, 2, 3, 0) * 0.5 + 0.5).clamp(0, 1))
    assert torch.equal(video_frames(processor, video, size=(8, 12)), frames)  # already that size
    resized = video_frames(processor, video, size=(16, 6))
    assert resized.shape == (5, 16, 6, 3) and resized.min() >= 0 and resized.max() <= 1


def test_decode_frames_decodes_the_unnormalised_latents() -> None:
    from diffusers import AutoencoderKLWan
    from diffusers.video_processor import VideoProcessor

    from arc_fabric_core.kit.tiny_wan import VAE_CONFIG

    torch.manual_seed(0)
    vae = frozen(AutoencoderKLWan(**VAE_CONFIG))
    processor = VideoProcessor(vae_scale_factor=8)
    z = _randn(1, 16, 2, 2, 2)
    with torch.no_grad():
        frames = decode_frames(vae, processor, z)
        video = vae.decode(unnormalize(z, vae), return_dict=False)[0]
    assert frames.shape == (5, 16, 16, 3)  # 4x in time (the first frame alone), 8x in space
    assert torch.equal(frames, video_frames(processor, video))


# ------------------------------------------------------------ loading a pipeline folder

SPEC = ModelSpec(
    name="kitwan",
    description="the tiny Wan",
    params=GenerationParams,
    latent_space=LatentSpace(family="wan-vae", channels=16, temporal_compression=4, spatial_compression=8),
    variants=(
        VariantSpec(name="real", description="a folder", weights_env="ARC_KITWAN_WEIGHTS"),
        VariantSpec(name="tiny", description="built here", tiny=True),
    ),
)


@pytest.fixture(scope="module")
def tiny_wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kit") / "tiny-wan"
    return build_once(folder, lambda tmp: tiny_wan_pipeline().save_pretrained(tmp))


def _inference_ready(pipe: object) -> None:
    for name in ("transformer", "text_encoder", "vae"):
        module = getattr(pipe, name)
        assert not module.training and not any(p.requires_grad for p in module.parameters()), name
        assert all(not m.training for m in module.modules()), name


def test_a_tiny_variant_loads_its_built_folder_frozen(tiny_wan_folder: Path) -> None:
    from diffusers import WanPipeline

    built = []

    def tiny() -> Path:
        built.append(True)
        return tiny_wan_folder

    model = ModelRef(SPEC, SPEC.variants[1], None)
    pipe = load_pipeline(WanPipeline, model, torch.device("cpu"), "auto", tiny_folder=tiny)
    assert built == [True]
    _inference_ready(pipe)
    assert pipe.transformer.dtype == torch.float32  # "auto" on a CPU
    components = PipelineComponents(pipe=pipe, device=torch.device("cpu"))
    assert components.transformer is pipe.transformer


def test_real_weights_load_from_their_folder_prepared_before_they_freeze(tiny_wan_folder: Path) -> None:
    from diffusers import WanPipeline

    seen = []

    def prepare(pipe: object) -> None:  # a plugin's own weights change here (LongLive's LoRA merge)
        seen.append(any(p.requires_grad for p in pipe.transformer.parameters()))
        with torch.no_grad():
            pipe.transformer.proj_out.bias.add_(1.0)

    model = ModelRef(SPEC, SPEC.variants[0], tiny_wan_folder)
    pipe = load_pipeline(
        WanPipeline,
        model,
        torch.device("cpu"),
        "float64",
        tiny_folder=lambda: pytest.fail("no tiny build"),
        prepare=prepare,
    )
    assert seen == [True]
    _inference_ready(pipe)
    assert pipe.transformer.dtype == torch.float64 and pipe.vae.dtype == torch.float64
    again = load_pipeline(WanPipeline, model, torch.device("cpu"), "float64", tiny_folder=lambda: tiny_wan_folder)
    assert torch.equal(pipe.transformer.proj_out.bias, again.transformer.proj_out.bias + 1.0)


# ------------------------------------------------------------ memory estimates


def test_latent_tokens_of_wan_and_ltx_at_their_published_sizes() -> None:
    # Wan: 81 frames -> 21 latent frames; 480x832 -> 30x52 tokens (8x VAE, 2x2 patches).
    assert latent_tokens(81, 480, 832, frames_per_token=4, pixels_per_token=16) == 21 * 30 * 52
    # LTX: 97 frames -> 13 latent frames; 480x704 -> 15x22 (32x VAE, 1x1 patches).
    assert latent_tokens(97, 480, 704, frames_per_token=8, pixels_per_token=32) == 13 * 15 * 22
    assert latent_tokens(1, 16, 16, 4, 16) == 1


def test_transformer_call_bytes_grow_with_tokens_width_and_batch() -> None:
    one = transformer_call_bytes(1000, dim=64, ffn=256, item_bytes=2)
    assert one == 1000 * (256 + 4 * 64) * 2
    assert transformer_call_bytes(1000, 64, 256, 2, batch=2) == 2 * one
    assert transformer_call_bytes(2000, 64, 256, 4) == 4 * one


def test_kv_cache_bytes_are_what_a_full_cache_holds() -> None:
    layers, tokens, heads, head_dim = 2, 4, 2, 3
    cache = KVCache(layers, WindowPolicy(3, -1, 0), tokens_per_frame=tokens)
    k = _randn(1, 6 * tokens, heads, head_dim)
    for layer in range(layers):
        cache.write(layer, 0, k, k)
    assert cache.nbytes == kv_cache_bytes(layers, 6, tokens, heads * head_dim, item_bytes=4)


def test_the_wan_vae_decode_estimate_covers_its_calibration() -> None:
    assert video_bytes(9, 32, 48) == torch.zeros(9, 32, 48, 3).nbytes
    published = wan_vae_decode_bytes(81, 480, 832, base_dim=96)
    assert published > 8.76 * 2**30  # the measured peak on an H200
    assert published < 1.25 * 8.76 * 2**30
    assert wan_vae_decode_bytes(81, 480, 832, base_dim=3) < published / 10  # the tiny VAE: mostly the video


# ------------------------------------------------------------ the tiny Wan


def test_the_tiny_wan_is_drawn_from_its_seeds() -> None:
    a, b = tiny_wan_pipeline(seed=0), tiny_wan_pipeline(seed=0)
    assert a.transformer.config.rope_max_seq_len == ROPE_POSITIONS
    for name in ("text_encoder", "vae", "transformer"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    # A stand-in transformer of its own seed, over the very same text encoder and VAE.
    big = {**TRANSFORMER_CONFIG, "num_layers": 3}
    c = tiny_wan_pipeline(seed=0, transformer_config=big, transformer_seed=3)
    assert c.transformer.config.num_layers == 3
    assert torch.equal(c.vae.decoder.conv_in.weight, a.vae.decoder.conv_in.weight)
    assert torch.equal(c.text_encoder.shared.weight, a.text_encoder.shared.weight)
    assert not torch.equal(c.transformer.proj_out.weight, a.transformer.proj_out.weight)


# ------------------------------------------------------------ a plugin only on the path


def test_plugins_with_registers_a_plugin_the_installed_ones_lack(monkeypatch: pytest.MonkeyPatch) -> None:
    from arc_fabric_core.dispatch import plugins as dispatch
    from arc_toy import plugin as toy

    monkeypatch.setattr(dispatch, "_plugins", dispatch.Plugins(load_entrypoints=False))
    alone = dispatch.plugins_with(toy, "toy")
    assert alone is not dispatch.get_plugins() and alone.model_names() == ["toy"]
    dispatch.get_plugins().register(toy, name="toy")
    assert dispatch.plugins_with(toy, "toy") is dispatch.get_plugins()


@pytest.mark.slow  # a fresh interpreter importing torch
def test_the_kit_imports_no_heavy_library() -> None:
    import subprocess

    code = (
        "import sys\n"
        "import arc_fabric_core.kit.pipeline_folder, arc_fabric_core.kit.vae, arc_fabric_core.kit.guidance\n"
        "import arc_fabric_core.kit.activations, arc_fabric_core.kit.tiny_wan, arc_fabric_core.kit.tiny_text\n"
        "print(sorted(m for m in ('diffusers', 'transformers', 'tokenizers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
