"""Speed settings against the bare diffusers pipelines: ms per step, end-to-end seconds,
peak memory and, for the step caches, what they change in the decoded video.

    python benchmarks/speed.py --preset cpu                      # tiny/mid models, ~2-4 min on 2 cores
    python benchmarks/speed.py --preset cpu --models wan-1.3b --quick
    python benchmarks/speed.py --preset gpu --out OUT [--profile] # full-size architectures, bf16, one GPU
    benchmarks/gpu_speed.sh                                       # the GPU run, as the GPU machine does it

Per model, in one process, on one warm model, these arms run round by round in
alternating order (drift on a shared machine cancels out):

  diffusers              the bare diffusers pipeline at its defaults on the same modules
                         (WanPipeline, LTXConditionPipeline; none exists for LongLive and
                         DreamDojo: the arm is skipped and says so)
  engine                 our engine at its defaults (a checkpoint every step)
  engine-fast-exact      attention=auto, compile=true (GPU only: CPU compilation needs a C++
                         toolchain and minutes), batch_guidance=on
  engine-cached-<name>   the fast-exact settings plus a step cache (fbc, magcache, taylorseer;
                         loose settings on the CPU preset's tiny models, so that they skip)

Figures per arm: ``ms_per_step`` (the mean interval between step ends, steps 2..N, as a
listener or diffusers' step callback sees them: encode, decode and the first step's
start-up stay outside), ``e2e_s`` (the whole call: create + encode + denoise + decode
for the engine, checkpoints included; the pipeline call for diffusers), ``decode_s``,
``peak_gib`` (``torch.cuda.max_memory_allocated``, reset per arm; null on the CPU, where
the process's max RSS is given per model instead) and, for cached arms, PSNR, SSIM and
LPIPS of the decoded frames against the uncached fast-exact arm of the same seed. The
weights are random (a step costs the same whatever they hold): the quality figures say
how far a cache moves the output, not how good it looks.

Writes ``speed.json`` and ``speed.png`` into ``--out`` (after every model, so that a
run cut short keeps what it measured) and prints a table with the issue's targets.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (
    ROOT,
    ROOT / "benchmarks",
    *(ROOT / "plugins" / p for p in ("arc_wan21", "arc_ltx", "arc_longlive", "arc_dreamdojo")),
):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402

PLUGIN_MODULES = {
    "wan21": "arc_wan21.plugin",
    "ltx": "arc_ltx.plugin",
    "longlive": "arc_longlive.plugin",
    "dreamdojo": "arc_dreamdojo.plugin",
}
ALL_MODELS = ("wan-1.3b", "ltx-2b", "longlive", "dreamdojo", "ltx-13b", "wan-14b")
PROMPT = "a lighthouse in a storm, waves breaking on the rocks"
NEGATIVE = "blurry, low quality"

# ---------------------------------------------------------------------------- arms

GPU_FAST = {"attention": "auto", "compile": True, "batch_guidance": "on"}
CPU_FAST = {"attention": "auto", "compile": False, "batch_guidance": "on"}
GPU_CACHES: dict[str, dict[str, Any]] = {
    "fbc": {"name": "fbc", "threshold": 0.05},
    "magcache": {"name": "magcache"},
    "taylorseer": {"name": "taylorseer"},
}
# The tiny models' residuals move a lot from step to step: loose settings, so that the caches skip.
CPU_CACHES: dict[str, dict[str, Any]] = {
    "fbc": {"name": "fbc", "threshold": 0.5},
    "magcache": {"name": "magcache", "threshold": 0.5, "retention": 0.0},
    "taylorseer": {"name": "taylorseer", "interval": 2, "warmup": 1, "cooldown": 0},
}
FAST = "engine-fast-exact"

TARGETS = {
    "wan-1.3b": [
        ("engine-fast-exact s/step", "<=", 0.70),
        ("best cached s/step at >= 25 dB", "<=", 0.35),
        ("engine-fast-exact / diffusers (ms/step)", "<=", 0.6),
    ],
    "ltx-2b": [("engine-fast-exact end to end s", "<=", 2.0)],
    "longlive": [("engine-fast-exact FPS", ">=", 24.0)],
}

# ---------------------------------------------------------------------------- presets
# Per model: what is built (see the builders below), the run's parameters, the steps of
# the setting those stand for, the rounds, which arms, and an estimate of its wall time
# (the GPU run skips a model whose estimate no longer fits its budget).

CPU_MODELS: dict[str, dict[str, Any]] = {
    "wan-1.3b": dict(
        build="wan_adopted",
        transformer="CPU_MID",
        text_dim=64,
        params=dict(num_frames=17, height=128, width=128, guidance=5.0),
        steps=8,
        setting_steps=50,
        # --quick: the kit's tiny Wan (2 heads x 12, 2 layers), 9 frames at 64x64
        quick=dict(transformer=None, text_dim=32, params=dict(num_frames=9, height=64, width=64)),
        note="stand-in: the mid-size Wan of benchmarks/sessions.py (4 heads x 32, 6 layers), tiny VAE",
        est_s=40,
    ),
    "wan-14b": dict(
        build="wan_adopted",
        transformer="CPU_LARGE",
        text_dim=64,
        params=dict(num_frames=9, height=64, width=64, guidance=5.0),
        steps=4,
        setting_steps=3,
        arms=("diffusers", "engine", FAST),
        note="stand-in: the large CPU Wan of benchmarks/hybrid.py (8 heads x 32, 16 layers), tiny VAE",
        est_s=30,
    ),
    "ltx-2b": dict(
        build="tiny",
        model="ltx",
        variant="tiny",
        params=dict(num_frames=17, height=64, width=96),
        setting_steps=8,
        caches=(),  # its tiny transformer has one block: nothing for a step cache to skip
        note="the plugin's tiny variant (distilled schedule, 8 steps, no CFG; one block: no cached arms)",
        est_s=25,
    ),
    "ltx-13b": dict(
        build="tiny",
        model="ltx",
        variant="tiny-13b",
        params=dict(num_frames=17, height=64, width=96),
        setting_steps=8,
        note="the plugin's tiny-13b variant (more layers, same tiny VAE)",
        est_s=25,
    ),
    "longlive": dict(
        build="tiny",
        model="longlive",
        variant="tiny",
        params=dict(num_frames=117, height=64, width=64),  # 10 blocks
        setting_steps=40,
        stream_arms=True,
        warm_params={"num_frames": 21},
        caches=(),  # step caches refuse an autoregressive model (each step writes its KV cache)
        note="the plugin's tiny variant, 10 blocks of 3 latent frames, 4 steps each",
        est_s=40,
    ),
    "dreamdojo": dict(
        build="tiny",
        model="dreamdojo",
        variant="tiny",
        params=dict(num_frames=13, height=32, width=48),  # one chunk
        steps=6,
        setting_steps=35,
        chunked=True,
        note="the plugin's tiny variant, one chunk of 12 frames",
        est_s=25,
    ),
}

GPU_MODELS: dict[str, dict[str, Any]] = {
    "wan-1.3b": dict(
        build="wan_adopted",
        transformer="WAN_1_3B",
        variant="1.3b",
        text_dim=4096,
        params=dict(num_frames=81, height=480, width=832, guidance=5.0),
        steps=10,
        setting_steps=50,
        rounds=1,
        note="Wan2.1-T2V-1.3B's transformer, random bf16 weights; small text encoder; the tiny VAE decodes "
        "(a real VAE decode of 81x480x832 adds seconds to e2e_s, not to ms_per_step)",
        est_s=110,
    ),
    "ltx-2b": dict(
        build="ltx_adopted",
        transformer="LTX_2B",
        variant="2b-distilled",
        params=dict(num_frames=121, height=512, width=768),
        setting_steps=8,
        rounds=2,
        note="LTX-Video 2B transformer, random bf16 weights, the published VAE layout (fp32); distilled "
        "schedule, 8 steps, no CFG; small text encoder",
        est_s=60,
    ),
    "longlive": dict(
        build="longlive_adopted",
        variant="1.3b",
        params=dict(num_frames=117, height=480, width=832),  # 10 blocks
        setting_steps=40,
        rounds=1,
        stream_arms=True,
        warm_params={"num_frames": 21},  # 2 blocks
        caches=(),  # step caches refuse an autoregressive model (each step writes its KV cache)
        note="LongLive 1.3B (Wan 1.3B causal), random bf16 weights, the published Wan VAE (streaming decode)",
        est_s=60,
    ),
    "dreamdojo": dict(
        build="dreamdojo_folder",
        variant="2b-gr1",
        params=dict(num_frames=13, height=480, width=640),  # one chunk
        steps=12,
        setting_steps=35,
        rounds=1,
        chunked=True,
        note="DreamDojo 2B (Cosmos 2048 ch, 28 blocks), random bf16 weights saved in the authors' layout and "
        "loaded through 2b-gr1; one chunk of 12 frames",
        est_s=60,
    ),
    "ltx-13b": dict(
        build="ltx_adopted",
        transformer="LTX_13B",
        variant="13b-distilled",
        params=dict(num_frames=121, height=512, width=768),
        setting_steps=8,
        rounds=1,
        caches=("fbc",),
        note="LTX-Video 13B transformer (4096 wide, 48 layers), random bf16 weights; distilled, 8 steps",
        est_s=60,
    ),
    "wan-14b": dict(
        build="wan_adopted",
        transformer="WAN_14B",
        variant="14b",
        text_dim=4096,
        params=dict(num_frames=81, height=720, width=1280, guidance=5.0),
        steps=2,
        setting_steps=3,
        rounds=1,
        warmup=False,  # one step is ~30 s: the first is outside ms_per_step anyway
        arms=("engine", FAST),
        note="Wan2.1-T2V-14B's transformer, random bf16 weights, 2 of the setting's 3 steps; no diffusers arm "
        "(a 14B CFG step at 720p is ~30 s: engine/diffusers is measured at 1.3B)",
        est_s=130,
    ),
}

LTX_2B = dict(num_attention_heads=32, attention_head_dim=64, cross_attention_dim=2048, num_layers=28)
LTX_13B = dict(num_attention_heads=32, attention_head_dim=128, cross_attention_dim=4096, num_layers=48)


def shrunk(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The GPU preset's builders at full width but two layers, at tiny sizes, on the CPU: a
    check that every path of the GPU run works, in a minute (``--shrink``)."""
    small = {
        "wan-1.3b": dict(num_frames=9, height=64, width=64),
        "wan-14b": dict(num_frames=5, height=32, width=32),
        "ltx-2b": dict(num_frames=9, height=64, width=96),
        "ltx-13b": dict(num_frames=9, height=64, width=64),
        "longlive": dict(num_frames=9, height=32, width=32),
        "dreamdojo": dict(num_frames=13, height=32, width=48),
    }
    out = {}
    for name, spec in models.items():
        # Two layers: a step cache needs a list of two blocks or more.
        out[name] = {**spec, "params": {**spec["params"], **small[name]}, "layers": 2, "rounds": 1, "est_s": 20}
        if "steps" in spec:
            out[name]["steps"] = min(spec["steps"], 4)
        if "warm_params" in spec:
            out[name]["warm_params"] = {}
    return out


# ---------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def max_rss_gib() -> float | None:
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2)
    except ImportError:
        return None


def bench_plugins() -> Any:
    """The installed plugins when they hold every model, else the plugin modules on the
    path registered by hand (a bare GPU image without entry points)."""
    import importlib

    from arc_fabric_core.dispatch.plugins import Plugins, get_plugins

    plugins = get_plugins()
    if all(name in plugins.model_names() for name in PLUGIN_MODULES):
        return plugins
    plugins = Plugins(load_entrypoints=False)
    for name, module in PLUGIN_MODULES.items():
        plugins.register(importlib.import_module(module), name=name)
    plugins.register_builtin_caches()  # the core's step caches, as loading entry points does
    return plugins


def fake_ref(engine: Any, model: str, variant: str, folder: Path) -> Any:
    """A real variant's reference to components built here (adopted into the engine's
    cache, so nothing loads from ``folder``): its parameter defaults, bounds and memory
    estimates are the real model's."""
    from arc_fabric_core.contract.models import ModelRef

    folder.mkdir(parents=True, exist_ok=True)
    spec = engine.plugins.model(model)
    return ModelRef(spec=spec, variant=spec.variant(variant), weights=folder.resolve())


@dataclass
class Case:
    """One model, warm, ready to time."""

    engine: Any
    ref: Any
    params: dict[str, Any]
    inputs: dict[str, Any] | None = None
    # Runs the bare pipeline, calling mark() after each step; returns the decoded frames.
    diffusers: Callable[[Callable[[], None]], torch.Tensor] | None = None
    diffusers_skip: str | None = None
    notes: list[str] = field(default_factory=list)
    keep: list[Any] = field(default_factory=list)  # what must live as long as the case


# ---------------------------------------------------------------------------- builders


def wan_params(spec: dict[str, Any], steps: int) -> dict[str, Any]:
    return dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=steps, seed=0, **spec["params"])


def wan_diffusers(engine: Any, ref: Any, components: Any, params: dict[str, Any]) -> Callable:
    from arc_wan21.reference import reference_call_kwargs, reference_pipeline

    shift = ref.params(params).shift

    def run(mark: Callable[[], None]) -> torch.Tensor:
        pipe = reference_pipeline(components, shift=shift)

        def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            mark()
            return {}

        out = pipe(**reference_call_kwargs(params), callback_on_step_end=on_step)  # output_type "np": decoded
        return torch.from_numpy(out.frames[0]).float()

    return run


def build_wan_adopted(engine: Any, spec: dict[str, Any], steps: int, tmp: Path) -> Case:
    import wan_random

    device = engine.device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = dict(getattr(wan_random, spec["transformer"])) if spec["transformer"] else {}  # {}: the kit's tiny
    if spec.get("layers"):
        config["num_layers"] = spec["layers"]
    preset = dict(transformer=config, text_dim=spec["text_dim"], device=device, dtype=dtype)
    components = wan_random.build_components(preset)
    variant = spec.get("variant")
    ref = fake_ref(engine, "wan21", variant, tmp / "weights") if variant else engine.resolve("wan21", "tiny")
    engine.cache.adopt(ref, device, engine.dtype, components)
    params = wan_params(spec, steps)
    return Case(engine, ref, params, diffusers=wan_diffusers(engine, ref, components, params), keep=[components])


def build_ltx_adopted(engine: Any, spec: dict[str, Any], steps: int, tmp: Path) -> Case:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from arc_fabric_core.kit.tiny_text import t5_tokenizer
    from arc_ltx.plugin import LTXComponents
    from arc_ltx.tiny import MAX_SEQUENCE_LENGTH, SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG

    device = engine.device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = dict(globals()[spec["transformer"]])
    if spec.get("layers"):
        config["num_layers"] = spec["layers"]
    torch.manual_seed(0)
    tokenizer = t5_tokenizer(model_max_length=MAX_SEQUENCE_LENGTH)
    # Full width (the transformer's caption channels), two layers: encoding runs once.
    text_cfg = {**TEXT_ENCODER_CONFIG, "d_model": 4096}
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **text_cfg)).eval().to(device, dtype)
    with torch.device(device):
        transformer = LTXVideoTransformer3DModel(**config).eval().to(dtype)
        # diffusers' default LTX VAE (128 latent channels, 32x spatial, 8x temporal); fp32 as published.
        vae = AutoencoderKLLTXVideo().eval()
    pipe = LTXConditionPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.transformer, pipe.text_encoder, pipe.vae):
        module.requires_grad_(False)
    components = LTXComponents(pipe=pipe, device=device)
    ref = fake_ref(engine, "ltx", spec["variant"], tmp / "weights")
    engine.cache.adopt(ref, device, engine.dtype, components)
    params = dict(prompt=PROMPT, seed=0, **spec["params"])
    return Case(engine, ref, params, diffusers=ltx_diffusers(ref, components, params), keep=[components])


def ltx_diffusers(ref: Any, components: Any, params: dict[str, Any]) -> Callable:
    from arc_ltx.reference import reference_call_kwargs, reference_pipeline

    checked = ref.params(params)

    def run(mark: Callable[[], None]) -> torch.Tensor:
        pipe = reference_pipeline(components)

        def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            mark()
            return {}

        # Its defaults, but frames as numbers (the default output is PIL images).
        out = pipe(**reference_call_kwargs(checked), output_type="np", callback_on_step_end=on_step)
        return torch.from_numpy(out.frames[0]).float()

    return run


def build_longlive_adopted(engine: Any, spec: dict[str, Any], steps: int, tmp: Path) -> Case:
    import wan_random

    from arc_longlive.causal import CausalWan
    from arc_longlive.plugin import LongLiveComponents

    device = engine.device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = {**wan_random.WAN_1_3B, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads"}
    if spec.get("layers"):
        config["num_layers"] = spec["layers"]
    preset = dict(transformer=config, text_dim=4096, device=device, dtype=dtype, vae={})  # the published VAE
    pipe = wan_random.build_components(preset).pipe
    components = LongLiveComponents(pipe=pipe, causal=CausalWan(pipe.transformer), device=device)
    ref = fake_ref(engine, "longlive", spec["variant"], tmp / "weights")
    engine.cache.adopt(ref, device, engine.dtype, components)
    params = dict(prompt=PROMPT, seed=0, **spec["params"])
    skip = "LongLive has no diffusers pipeline (its block loop is its own)"
    return Case(engine, ref, params, diffusers_skip=skip, keep=[components])


def build_dreamdojo_folder(engine: Any, spec: dict[str, Any], steps: int, tmp: Path) -> Case:
    import dreamdojo

    preset = dict(dreamdojo.PRESETS["2b"])
    if spec.get("layers"):
        preset["layers"] = spec["layers"]
        preset["text"] = (16, preset["text"][1])
    folder = dreamdojo.build_folder(tmp / "weights", preset)
    ref = engine.resolve("dreamdojo", spec["variant"], str(folder))
    p = spec["params"]
    case = Case(engine, ref, dict(steps=steps, seed=0, **p), diffusers_skip=DREAMDOJO_SKIP)
    case.inputs = dreamdojo.inputs((p["num_frames"] - 1) // 12, p["height"], p["width"])
    engine.load(ref, params=ref.params(case.params))  # loading stays outside the timed arms
    return case


DREAMDOJO_SKIP = "DreamDojo has no diffusers pipeline (Cosmos-Predict2 action-conditioned rollouts are its own)"


def build_tiny(engine: Any, spec: dict[str, Any], steps: int | None, tmp: Path) -> Case:
    """A plugin's own tiny variant, loaded through the plugin (built offline once)."""
    model = spec["model"]
    ref = engine.resolve(model, spec["variant"])
    params = dict(prompt=PROMPT, seed=0, **spec["params"])
    if steps is not None:
        params["steps"] = steps
    case = Case(engine, ref, params)
    components = engine.load(ref, params=ref.params(params))
    if model == "ltx":
        case.diffusers = ltx_diffusers(ref, components, params)
    elif model == "longlive":
        case.diffusers_skip = "LongLive has no diffusers pipeline (its block loop is its own)"
    elif model == "dreamdojo":
        import dreamdojo

        p = spec["params"]
        case.inputs = dreamdojo.inputs((p["num_frames"] - 1) // 12, p["height"], p["width"])
        case.diffusers_skip = DREAMDOJO_SKIP
    return case


BUILDERS = {
    "wan_adopted": build_wan_adopted,
    "ltx_adopted": build_ltx_adopted,
    "longlive_adopted": build_longlive_adopted,
    "dreamdojo_folder": build_dreamdojo_folder,
    "tiny": build_tiny,
}

# ---------------------------------------------------------------------------- timing


@dataclass
class Sample:
    e2e_s: float
    marks: list[float]
    decode_s: float
    steps: int
    frames: torch.Tensor | None
    peak_bytes: int | None

    @property
    def step_s(self) -> float | None:
        if len(self.marks) < 2:
            return None
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


def run_engine(case: Case, overrides: dict[str, Any], extra: dict[str, Any] | None = None) -> Sample:
    engine, device = case.engine, case.engine.device
    marks: list[float] = []

    def on_step(_event: Any) -> None:
        sync(device)
        marks.append(time.perf_counter())

    params = {**case.params, **overrides, **(extra or {})}
    sync(device)
    t0 = time.perf_counter()
    session = engine.create(case.ref, params, inputs=case.inputs)
    engine.run(session, listeners=[on_step])
    sync(device)
    t_run = time.perf_counter()
    frames = engine.decode(session)
    sync(device)
    t1 = time.perf_counter()
    with contextlib.suppress(Exception):
        engine.delete(session.id)
    return Sample(t1 - t0, marks, t1 - t_run, len(marks), frames.detach().float().cpu(), None)


def run_diffusers(case: Case) -> Sample:
    device = case.engine.device
    marks: list[float] = []

    def mark() -> None:
        sync(device)
        marks.append(time.perf_counter())

    assert case.diffusers is not None
    sync(device)
    t0 = time.perf_counter()
    frames = case.diffusers(mark)
    sync(device)
    t1 = time.perf_counter()
    decode = t1 - marks[-1] if marks else math.nan  # the pipeline's decode and post-processing
    return Sample(t1 - t0, marks, decode, len(marks), frames, None)


def measured(fn: Callable[[], Sample], device: torch.device) -> Sample:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sample = fn()
    if device.type == "cuda":
        sample.peak_bytes = torch.cuda.max_memory_allocated(device)
    return sample


def arms_of(spec: dict[str, Any], preset: str) -> dict[str, dict[str, Any] | None]:
    """Arm name -> the speed settings it adds to the run (None: the diffusers pipeline)."""
    fast = GPU_FAST if preset == "gpu" else CPU_FAST
    caches = GPU_CACHES if preset == "gpu" else CPU_CACHES
    arms: dict[str, dict[str, Any] | None] = {"diffusers": None, "engine": {}}
    if spec.get("stream_arms"):
        arms["engine-no-stream"] = {"stream": False}
    arms[FAST] = dict(fast)
    for name in spec.get("caches", tuple(caches)):
        arms[f"engine-cached-{name}"] = {**fast, "cache": caches[name]}
    wanted = spec.get("arms")
    if wanted is not None:
        arms = {k: v for k, v in arms.items() if k in wanted}
    return arms


def quality(frames: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    """PSNR over every frame; SSIM and LPIPS over at most 9 frames, evenly spaced."""
    from arc_fabric_core.metrics.registry import compute

    out: dict[str, Any] = {}
    if frames.shape != reference.shape:
        return {"error": f"shapes differ: {tuple(frames.shape)} vs {tuple(reference.shape)}"}
    n = frames.shape[0]
    idx = torch.linspace(0, n - 1, min(n, 9)).round().long().unique()
    sub, sub_ref = frames[idx], reference[idx]
    out["psnr_db"] = _num(compute(["psnr"], frames, reference=reference)["psnr"].value)
    out["ssim"] = _num(compute(["ssim"], sub, reference=sub_ref)["ssim"].value)
    out["frames_compared"] = {"psnr": n, "ssim_lpips": len(idx)}
    try:
        backbone = os.environ.get("ARC_LPIPS_BACKBONE")
        result = compute(["lpips"], sub, reference=sub_ref, allow_random=True)["lpips"]
        out["lpips"] = _num(result.value)
        out["lpips_backbone"] = "random AlexNet (no local weights)" if backbone is None else backbone
    except Exception as exc:  # lpips not installed: null, with the reason
        out["lpips"] = None
        out["lpips_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _num(value: float) -> float | str:
    return "inf" if math.isinf(value) else round(float(value), 4)


def bench_model(name: str, spec: dict[str, Any], args: Any, deadline: float, tmp: Path) -> dict[str, Any]:
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore

    device = torch.device("cuda" if args.preset == "gpu" and not args.shrink else "cpu")
    steps = spec.get("steps")
    if args.quick:  # the fewest steps, a smaller video, no warm-up
        steps = 3 if steps is not None else None
        quick = spec.get("quick", {})
        spec = {**spec, **quick, "params": {**spec["params"], **quick.get("params", {})}, "warmup": False}
    rounds = 1 if args.quick else args.rounds or spec.get("rounds", 2)
    result: dict[str, Any] = {"note": spec.get("note"), "arms": {}, "ratios": {}}
    t_build = time.perf_counter()
    engine = Engine(SessionStore(tmp / "store"), plugins=args.plugins, device=device)
    case = BUILDERS[spec["build"]](engine, spec, steps, tmp)
    result["build_s"] = round(time.perf_counter() - t_build, 1)
    checked = case.ref.params(case.params)
    result["setting"] = {k: v for k, v in case.params.items() if k not in ("prompt", "negative_prompt")}
    result["variant"] = case.ref.variant.name
    result["steps_run"] = getattr(checked, "steps", None)
    result["steps_of_setting"] = spec.get("setting_steps")
    result["rounds"] = rounds
    result["notes"] = list(case.notes)
    arms = arms_of(spec, args.preset)
    if case.diffusers is None:
        arms.pop("diffusers", None)
        result["arms"]["diffusers"] = {"skipped": case.diffusers_skip}

    def runner(case: Case, overrides: dict[str, Any] | None) -> Callable[[], Sample]:
        if overrides is None:
            return lambda: run_diffusers(case)
        return lambda: run_engine(case, overrides)

    failed: dict[str, str] = {}
    # Warm-up (kernels, allocator, compilation): every arm once, a few steps.
    if spec.get("warmup", True):
        short = spec.get("warm_params", {"steps": 2} if steps is not None else {})
        for arm, overrides in arms.items():
            try:
                if overrides is None:
                    run_diffusers(case)
                else:
                    run_engine(case, overrides, short)
            except Exception as exc:
                failed[arm] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
    samples: dict[str, list[Sample]] = {arm: [] for arm in arms if arm not in failed}
    order = list(samples)
    for r in range(rounds):
        if r > 0 and time.time() > deadline:
            result["notes"].append(f"rounds cut to {r} of {rounds}: out of time")
            break
        for arm in order if r % 2 == 0 else order[::-1]:
            if arm in failed:
                continue
            try:
                sample = measured(runner(case, arms[arm]), device)
            except Exception as exc:
                failed[arm] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                continue
            if samples[arm]:
                samples[arm][-1].frames = None  # only the last round's frames are kept
            samples[arm].append(sample)
    frames_out = case.params.get("num_frames")
    for arm, overrides in arms.items():
        entry: dict[str, Any] = {"settings": overrides if overrides is not None else "diffusers defaults"}
        if arm in failed:
            entry["error"] = failed[arm]
        got = samples.get(arm) or []
        if got:
            step = [s.step_s for s in got if s.step_s is not None]
            entry["ms_per_step"] = round(statistics.median(step) * 1000, 2) if step else None
            entry["e2e_s"] = round(statistics.median(s.e2e_s for s in got), 3)
            entry["decode_s"] = round(statistics.median(s.decode_s for s in got), 3)
            entry["steps"] = got[-1].steps
            peaks = [s.peak_bytes for s in got if s.peak_bytes is not None]
            entry["peak_gib"] = round(max(peaks) / 2**30, 2) if peaks else None
            entry["e2e_s_rounds"] = [round(s.e2e_s, 3) for s in got]
            if spec.get("stream_arms") and entry["ms_per_step"] and frames_out:
                # Pixel frames over the block loop's time: a streamed decode is inside the steps;
                # without streaming, fps_with_decode adds the one decode at the end.
                denoise = entry["ms_per_step"] / 1000 * got[-1].steps
                entry["fps"] = round(frames_out / denoise, 2)
                if (overrides or {}).get("stream") is False:
                    entry["fps_with_decode"] = round(frames_out / (denoise + entry["decode_s"]), 2)
        result["arms"][arm] = entry
    # Quality of every cached arm against the uncached fast-exact arm (same seed).
    reference = samples.get(FAST, [None])[-1] if samples.get(FAST) else None
    for arm in arms:
        if arm.startswith("engine-cached-") and samples.get(arm):
            if reference is None or reference.frames is None:
                result["arms"][arm]["quality"] = {"error": f"no {FAST} frames to compare against"}
            else:
                result["arms"][arm]["quality"] = quality(samples[arm][-1].frames, reference.frames)
                result["arms"][arm]["quality"]["against"] = FAST
    if samples.get("engine") and samples.get("diffusers"):
        a, b = samples["engine"][-1].frames, samples["diffusers"][-1].frames
        if a is not None and b is not None and a.shape == b.shape:
            result["engine_vs_diffusers_frames_max_abs"] = round(float((a - b).abs().max()), 6)
    result["ratios"] = ratios(result["arms"])
    result["process_max_rss_gib"] = max_rss_gib()
    if args.profile and name == "wan-1.3b" and device.type == "cuda":
        try:
            result["profile"] = profile(case, arms.get(FAST) or GPU_FAST, args.out)
        except Exception as exc:
            traceback.print_exc()
            result["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
    del case, engine
    free_memory()
    return result


def ratios(arms: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    def ms(arm: str) -> float | None:
        return arms.get(arm, {}).get("ms_per_step")

    def e2e(arm: str) -> float | None:
        return arms.get(arm, {}).get("e2e_s")

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    out = {
        "engine/diffusers ms_per_step": div(ms("engine"), ms("diffusers")),
        "engine/diffusers e2e": div(e2e("engine"), e2e("diffusers")),
        "fast-exact/diffusers ms_per_step": div(ms(FAST), ms("diffusers")),
        "fast-exact/diffusers e2e": div(e2e(FAST), e2e("diffusers")),
        "fast-exact/engine ms_per_step": div(ms(FAST), ms("engine")),
    }
    for arm in arms:
        if arm.startswith("engine-cached-"):
            out[f"{arm.removeprefix('engine-')}/uncached ms_per_step"] = div(ms(arm), ms(FAST))
    return out


def profile(case: Case, overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    """A torch.profiler trace of 2 steps of the fast-exact arm; the top 15 ops by CUDA time."""
    import gzip

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run_engine(case, overrides, {"steps": 2})
    averages = prof.key_averages()
    table = None
    for key in ("self_device_time_total", "self_cuda_time_total"):
        with contextlib.suppress(Exception):
            table = averages.table(sort_by=key, row_limit=15)
            break
    print("\nwan-1.3b engine-fast-exact, 2 steps: top 15 ops by CUDA time")
    print(table)
    (out / "profile_wan-1.3b.txt").write_text(str(table) + "\n")
    trace = out / "profile_wan-1.3b.trace.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(str(trace) + ".gz", "wb") as dst:
        dst.write(src.read())
    trace.unlink()
    return {"table": "profile_wan-1.3b.txt", "trace": "profile_wan-1.3b.trace.json.gz"}


# ---------------------------------------------------------------------------- report


def check_targets(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    arms = res.get("arms", {})
    out = []
    for label, op, goal in TARGETS.get(name, []):
        value: float | None = None
        if label.startswith("engine-fast-exact s/step"):
            ms = arms.get(FAST, {}).get("ms_per_step")
            value = ms / 1000 if ms else None
        elif label.startswith("best cached"):
            good = [
                a["ms_per_step"] / 1000
                for k, a in arms.items()
                if k.startswith("engine-cached-")
                and a.get("ms_per_step")
                and _db(a.get("quality", {}).get("psnr_db")) >= 25.0
            ]
            value = min(good) if good else None
        elif label.startswith("engine-fast-exact / diffusers"):
            value = res.get("ratios", {}).get("fast-exact/diffusers ms_per_step")
        elif label.endswith("end to end s"):
            value = arms.get(FAST, {}).get("e2e_s")
        elif label.endswith("FPS"):
            value = arms.get(FAST, {}).get("fps")
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        out.append({"target": f"{label} {op} {goal}", "measured": value, "met": met})
    return out


def _db(value: Any) -> float:
    if value == "inf":
        return math.inf
    return float(value) if isinstance(value, (int, float)) else -math.inf


def machine() -> dict[str, Any]:
    import diffusers

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    with contextlib.suppress(Exception):
        import transformers

        info["transformers"] = transformers.__version__
    return info


def print_table(report: dict[str, Any]) -> None:
    gpu = report["preset"] == "gpu" and not report.get("shrink")
    print(f"\nspeed, preset {report['preset']} on {report['machine']['device']} ({report['wall_s']:.0f} s)")
    head = f"{'model':<10} {'arm':<24} {'ms/step':>9} {'e2e s':>8} {'peak GiB':>8} {'PSNR':>7} {'SSIM':>6} {'LPIPS':>6}"
    for name, res in report["models"].items():
        print("\n" + head)
        if "error" in res or "skipped" in res:
            print(f"{name:<10} {res.get('error') or res.get('skipped')}")
            continue
        steps = f"{res.get('steps_run')} of the setting's {res.get('steps_of_setting')} steps"
        print(f"{name:<10} ({res['variant']}; {steps}; {res['rounds']} round(s))")
        for arm, a in res["arms"].items():
            if "skipped" in a:
                print(f"{'':<10} {arm:<24} skipped: {a['skipped']}")
                continue
            if "ms_per_step" not in a:
                print(f"{'':<10} {arm:<24} failed: {a.get('error')}")
                continue
            q = a.get("quality", {})
            cols = [_fmt(a.get("ms_per_step"), 9, 1), _fmt(a.get("e2e_s"), 8, 3), _fmt(a.get("peak_gib"), 8, 2)]
            cols += [_fmt(q.get("psnr_db"), 7, 2), _fmt(q.get("ssim"), 6, 3), _fmt(q.get("lpips"), 6, 3)]
            extra = f"  FPS {a['fps']}" if "fps" in a else ""
            extra += f" ({a['fps_with_decode']} with the decode after)" if "fps_with_decode" in a else ""
            print(f"{'':<10} {arm:<24} {' '.join(cols)}{extra}")
        shown = {k: v for k, v in res["ratios"].items() if v is not None}
        if shown:
            print(f"{'':<10} ratios: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        for t in res.get("targets", []):
            mark = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
            where = "" if gpu else " (a GPU target; this is not the GPU preset)"
            print(f"{'':<10} target {t['target']}: measured {t['measured']} -> {mark}{where}")


def _fmt(value: Any, width: int, digits: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width}.{digits}f}"


def plot(report: dict[str, Any], path: Path) -> str:
    """Bars of ms/step per arm for every model, PSNR over the cached arms."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    models = {k: v for k, v in report["models"].items() if v.get("arms")}
    if not models:
        return "nothing measured: no plot"
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.0, 4.2 * len(models)), 4.8), squeeze=False)
    random_lpips = False
    for ax, (name, res) in zip(axes[0], models.items(), strict=True):
        arms = [(k, a) for k, a in res["arms"].items() if a.get("ms_per_step")]
        labels = [k.removeprefix("engine-").replace("cached-", "c-") for k, _ in arms]
        values = [a["ms_per_step"] for _, a in arms]
        colors = ["#888" if k == "diffusers" else "#3a7" if k.startswith("engine-cached") else "#37a" for k, _ in arms]
        bars = ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{name} ({res.get('steps_run')} steps)", fontsize=10)
        ax.set_ylabel("ms / step")
        for bar, (_, a) in zip(bars, arms, strict=True):
            q = a.get("quality") or {}
            if "psnr_db" in q:
                db = q["psnr_db"] if isinstance(q["psnr_db"], str) else f"{q['psnr_db']:.1f}"
                ax.annotate(f"{db} dB", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7)  # fmt: skip
            random_lpips |= "random" in str(q.get("lpips_backbone", ""))
    title = f"arc fabric speed, preset {report['preset']}, {report['machine']['device']}\nrandom weights; labels: PSNR"
    title += " against fast-exact" + ("; LPIPS with a random AlexNet backbone" if random_lpips else "")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--models", default=None, help=f"comma-separated, of {','.join(ALL_MODELS)} (default: all)")
    ap.add_argument("--out", type=Path, default=Path("speed-out"))
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every arm (default: the model's)")
    ap.add_argument("--quick", action="store_true", help="one round, fewest steps (the test's run)")
    ap.add_argument("--budget-s", type=float, default=None, help="skip models whose estimate no longer fits")
    ap.add_argument("--profile", action="store_true", help="GPU: a torch.profiler trace of wan-1.3b fast-exact")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: CPU 1, GPU torch's)")
    ap.add_argument("--shrink", action="store_true", help="the GPU preset at two layers and tiny sizes, on the CPU")
    args = ap.parse_args(argv)
    models = CPU_MODELS if args.preset == "cpu" else GPU_MODELS
    if args.shrink:
        models = shrunk(GPU_MODELS)
    names = [m.strip() for m in args.models.split(",")] if args.models else list(ALL_MODELS)
    unknown = [m for m in names if m not in models]
    if unknown:
        ap.error(f"unknown models {unknown}; known: {', '.join(ALL_MODELS)}")
    if args.preset == "gpu" and not args.shrink and not torch.cuda.is_available():
        ap.error("--preset gpu needs CUDA (--shrink runs its paths on the CPU)")
    budget = args.budget_s or (500.0 if args.preset == "gpu" and not args.shrink else 600.0)
    # The CPU preset on one thread unless told otherwise: on a small shared machine one
    # thread holds steady where two fight other processes for the cores.
    threads = args.threads or (1 if args.preset == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.plugins = bench_plugins()
    start = time.time()
    deadline = start + budget
    report: dict[str, Any] = {
        "preset": args.preset,
        "shrink": args.shrink,
        "quick": args.quick,
        "machine": machine(),
        "budget_s": budget,
        "measures": {
            "ms_per_step": "mean interval between step ends, steps 2..N (encode, decode and step 1 outside)",
            "e2e_s": "engine: create + encode + denoise (checkpoint every step, as by default) + decode; "
            "diffusers: the pipeline call (encode + denoise + decode to numpy)",
            "decode_s": "engine: engine.decode; diffusers: from the last step's end to the call's return",
            "peak_gib": "torch.cuda.max_memory_allocated, reset per arm (null on the CPU: see process_max_rss_gib)",
            "quality": "PSNR (all frames), SSIM and LPIPS (<= 9 frames, evenly spaced) of the decoded frames "
            f"against {FAST} of the same seed",
            "weights": "random: figures of cost; the quality figures are distances, not looks",
        },
        "models": {},
    }
    for name in names:
        spec = models[name]
        left = deadline - time.time()
        if left < spec["est_s"]:
            report["models"][name] = {"skipped": f"time budget: {left:.0f} s left, ~{spec['est_s']} s needed"}
            continue
        print(f"--- {name}", flush=True)
        t0 = time.time()
        try:
            with tempfile.TemporaryDirectory(prefix=f"speed-{name}-") as tmp:
                res = bench_model(name, spec, args, deadline, Path(tmp))
        except Exception as exc:
            traceback.print_exc()
            res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        free_memory()
        res["wall_s"] = round(time.time() - t0, 1)
        if "arms" in res:
            res["targets"] = check_targets(name, res)
        report["models"][name] = res
        report["wall_s"] = round(time.time() - start, 1)
        (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    report["wall_s"] = round(time.time() - start, 1)
    report["plot"] = plot(report, args.out / "speed.png")
    (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {args.out / 'speed.json'} and {report['plot']}")
    return report


if __name__ == "__main__":
    main()
