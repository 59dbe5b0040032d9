"""How a stage's steps run fast: the attention kernel and regional compilation.

Both act on the warm model the cache holds, around each denoising call, so sessions
that share one warm model may each choose their own:

- **Attention**: diffusers' dispatcher (``attention_dispatch``) answers every attention
  call of a processor that names no backend of its own with the active backend; a step
  runs inside ``attention_backend(name)``. ``auto`` probes the installed backends once
  per model shape, device and dtype — each on a query shaped like the model's, checked
  against ``native`` (:data:`PROBE_TOLERANCE`) and timed — and keeps the fastest that
  works, in memory and in ``$ARC_FABRIC_CACHE_DIR/attention.json`` (default
  ``~/.cache/arc_fabric``). The backend a session ran with is recorded in its document, so
  a resume runs the same kernel.
- **Compilation**: ``compile=true`` compiles the transformer's repeated blocks in place
  (``compile_repeated_blocks``; the block list where a model declares none), once per
  warm model: the compiled model stays in the model cache for every later job and
  session. A session without ``compile`` on a compiled model runs it eagerly
  (``torch.compiler.set_stance("force_eager")``). The first step of each new latent
  shape pays the compilation; its cost (the first step's time less the next one's) goes
  to the log. ``$ARC_FABRIC_COMPILE_BACKEND`` picks torch.compile's backend (default
  ``inductor``; tests use ``aot_eager``, which needs no C++ toolchain).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.speed import ATTENTION_BACKENDS
from arc_fabric_core.runtime.components import _walk
from arc_fabric_core.runtime.step_caches.blocks import BLOCK_LIST_NAMES

# Its information lines go to the job log (jobs.log.NARRATING).
log = logging.getLogger("arc_fabric.speed")

# Backends ``auto`` tries, per device type, fastest first where they work (published
# figures: FlashAttention-3 ~1.6x FA2 on Hopper; sage's int8 QK beats FA2). All that work
# are timed; the order only breaks ties.
AUTO_CANDIDATES = {
    "cuda": ("_flash_3", "flash", "sage", "_native_cudnn", "_native_flash", "_native_efficient", "native"),
    "cpu": ("native", "_native_flash"),
}
# A backend is accepted when its output on the probe is within this relative error
# (||out - native|| / ||native||) of native SDPA. bf16 flash kernels sit near 1e-3;
# sage's int8 QK near 1e-2; a broken kernel is far above.
PROBE_TOLERANCE = 0.03
PROBE_TOKENS = 4096
COMPILED = "_arc_compiled"

_remembered: dict[str, str] = {}
_lock = threading.Lock()


# ---------------------------------------------------------------- attention


def diffusers_models(components: Any) -> list[torch.nn.Module]:
    """The diffusers models (``ModelMixin``) inside ``components`` that hold attention."""
    try:
        from diffusers.models.modeling_utils import ModelMixin
    except ImportError:  # pragma: no cover - diffusers is a core dependency
        return []
    found = [obj for obj in _walk(components) if isinstance(obj, ModelMixin) and _attention_shape(obj) is not None]
    # The largest first: the transformer, not a VAE's mid-block attention.
    return sorted(found, key=lambda m: -sum(p.numel() for p in m.parameters()))


def _attention_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """(heads, head_dim) of the first attention of ``module``, or None without one."""
    for sub in module.modules():
        heads = getattr(sub, "heads", None)
        to_q = getattr(sub, "to_q", None)
        if isinstance(heads, int) and heads > 0 and isinstance(to_q, torch.nn.Linear):
            return heads, to_q.out_features // heads
    return None


def backend_usable(name: str) -> str | None:
    """None when diffusers can run backend ``name`` here, else why not."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except Exception as exc:  # its own RuntimeError naming the missing package
        return str(exc).split(". ")[0]
    return None


def _probe(name: str, heads: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> float | None:
    """Seconds per call of backend ``name`` on a model-shaped query, or None when it
    fails or strays from native SDPA by more than :data:`PROBE_TOLERANCE`."""
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    generator = torch.Generator("cpu").manual_seed(0)
    shape = (1, PROBE_TOKENS if device.type == "cuda" else 256, heads, head_dim)
    q, k, v = (torch.randn(shape, generator=generator).to(device, dtype) for _ in range(3))
    try:
        reference = dispatch_attention_fn(q, k, v, backend=AttentionBackendName.NATIVE).float()
        out = dispatch_attention_fn(q, k, v, backend=AttentionBackendName(name))
        error = float((out.float() - reference).norm() / reference.norm().clamp_min(1e-12))
        if not error <= PROBE_TOLERANCE:
            log.info("attention: %s strays from native by %.3g on this device; not used", name, error)
            return None
        repeats = 5 if device.type == "cuda" else 2
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            dispatch_attention_fn(q, k, v, backend=AttentionBackendName(name))
        _sync(device)
        return (time.perf_counter() - start) / repeats
    except Exception as exc:
        log.info("attention: %s does not run here (%s)", name, str(exc).split("\n")[0][:200])
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_file() -> Path:
    root = os.environ.get("ARC_FABRIC_CACHE_DIR") or Path.home() / ".cache" / "arc_fabric"
    return Path(root) / "attention.json"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def probe_key(heads: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> str:
    """What ``auto``'s choice depends on: the attention's shape, the device, the dtype
    and the versions of the kernels' hosts."""
    import diffusers

    return (
        f"{heads}x{head_dim} {str(dtype).removeprefix('torch.')} on {_device_name(device)} "
        f"(torch {torch.__version__}, diffusers {diffusers.__version__})"
    )


def fastest_backend(heads: int, head_dim: int, device: torch.device, dtype: torch.dtype) -> str:
    """``auto``'s answer: remembered, else probed now (and remembered)."""
    key = probe_key(heads, head_dim, device, dtype)
    with _lock:
        if key in _remembered:
            return _remembered[key]
        path = _cache_file()
        stored = _read_json(path)
        choice = stored.get(key)
        if choice is None or backend_usable(choice) is not None:
            timings = {}
            for name in AUTO_CANDIDATES.get(device.type, ("native",)):
                if backend_usable(name) is None:
                    seconds = _probe(name, heads, head_dim, device, dtype)
                    if seconds is not None:
                        timings[name] = seconds
            choice = min(timings, key=timings.__getitem__) if timings else "native"
            log.info(
                "attention: auto chose %s for %s (%s)",
                choice,
                key,
                ", ".join(f"{n} {1e3 * s:.2f} ms" for n, s in timings.items()) or "nothing else runs",
            )
            stored[key] = choice
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp-{os.getpid()}")
                tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
                tmp.replace(path)
        _remembered[key] = choice
        return choice


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def resolve_attention(
    choice: str, models: list[torch.nn.Module], device: torch.device, recorded: str | None = None
) -> str:
    """The backend a stage runs with: ``choice``; for ``auto``, ``recorded`` (what the
    session's ``auto`` ran with before) when it still runs here, else the fastest for
    ``models`` (:func:`diffusers_models`, the largest first). A named backend that cannot
    run here is an error naming ``attention`` and why."""
    if choice == "auto" and recorded in ATTENTION_BACKENDS and backend_usable(recorded) is None:
        return recorded
    if choice != "auto":
        problem = backend_usable(choice)
        if problem is not None:
            raise InputError("attention", f"{choice} cannot run here: {problem}; 'auto' picks one that can")
        return choice
    if not models:
        return "native"
    shape = _attention_shape(models[0])
    assert shape is not None
    dtype = next((p.dtype for p in models[0].parameters()), torch.float32)
    return fastest_backend(shape[0], shape[1], device, dtype)


def check_attention(params: Any) -> None:
    """Before anything runs: a backend named by ``params.attention`` is installed here
    (``auto`` and ``native`` always are)."""
    choice = str(getattr(params, "attention", "native"))
    if choice not in ("auto", "native"):
        problem = backend_usable(choice)
        if problem is not None:
            raise InputError("attention", f"{choice} cannot run here: {problem}; 'auto' picks one that can")


# Backends that take an arbitrary attention mask. The others (the flash kernels, sage,
# flex without a block mask) either refuse one or, where diffusers filters the arguments a
# backend does not name, would drop it silently and attend everywhere.
MASK_CAPABLE = frozenset({"native", "_native_math", "_native_efficient"})


@contextlib.contextmanager
def attention(name: str) -> Iterator[None]:
    """Attention calls inside run on backend ``name`` (native: nothing is changed).

    A call with an attention mask (LTX's text mask) runs on native SDPA unless ``name``
    takes masks (:data:`MASK_CAPABLE`): the choice is made per call, from its arguments
    alone, so it is the same at every step and on every resume. It works by answering
    diffusers' native entry for the block: every processor that names no backend of its
    own dispatches to the active backend, made native here."""
    if name == "native":
        yield
        return
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    registry = _AttentionBackendRegistry
    native, chosen = AttentionBackendName.NATIVE, AttentionBackendName(name)
    native_fn, chosen_fn = registry._backends[native], registry._backends[chosen]
    chosen_args = registry._supported_arg_names[chosen]
    takes_masks = name in MASK_CAPABLE

    def routed(**kwargs: Any) -> Any:
        if kwargs.get("attn_mask") is not None and not takes_masks:
            return native_fn(**kwargs)
        return chosen_fn(**{k: v for k, v in kwargs.items() if k in chosen_args})

    old_active, registry._backends[native] = registry._active_backend, routed
    registry._active_backend = native
    try:
        yield
    finally:
        registry._backends[native] = native_fn
        registry._active_backend = old_active


# ---------------------------------------------------------------- compilation


def compile_backend() -> str:
    return os.environ.get("ARC_FABRIC_COMPILE_BACKEND", "inductor")


def compile_blocks(models: list[torch.nn.Module]) -> list[str]:
    """Compile the repeated blocks of each of ``models`` in place, once per model; the
    descriptions of what was compiled now (empty when everything already was)."""
    done = []
    for model in models:
        if getattr(model, COMPILED, False):
            continue
        backend = compile_backend()
        if getattr(model, "_repeated_blocks", None):
            model.compile_repeated_blocks(fullgraph=True, backend=backend)
            what = ", ".join(model._repeated_blocks)
        else:
            blocks = block_list(model)
            if blocks is None:
                continue
            for block in blocks:
                block.compile(fullgraph=True, backend=backend)
            what = type(blocks[0]).__name__
        setattr(model, COMPILED, True)
        done.append(f"{type(model).__name__} ({what}, backend {backend})")
    return done


def block_list(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The transformer's repeated blocks (``blocks`` or ``transformer_blocks``)."""
    for name in BLOCK_LIST_NAMES:
        blocks = getattr(model, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
            return blocks
    return None


class StageSpeed:
    """The speed settings of one bound stage: the backend it runs with, whether it
    compiles, and the compile cost once it is known."""

    def __init__(self, label: str, components: Any, params: Any, device: torch.device, recorded: str | None) -> None:
        self.label, self.components, self.device = label, components, device
        models = diffusers_models(components)  # walked once per bound stage
        self.backend = resolve_attention(str(getattr(params, "attention", "native")), models, device, recorded)
        self.compile = bool(getattr(params, "compile", False))
        self._eager = False
        if self.compile:
            for what in compile_blocks(models):
                log.info("compile: %s compiles %s on its first step of each new shape", label, what)
        else:
            self._eager = any(getattr(m, COMPILED, False) for m in models)
        self._shapes: set[tuple[Any, ...]] = _shapes_of(models)
        self._first: tuple[tuple[Any, ...], float] | None = None

    def run(self, call: Callable[[], Any], latents: torch.Tensor) -> Any:
        """``call()`` with the stage's backend, compiled or eager as the session asks."""
        stance = torch.compiler.set_stance("force_eager") if self._eager else contextlib.nullcontext()
        shape = (tuple(latents.shape), latents.dtype)
        new_shape = self.compile and shape not in self._shapes
        timed = new_shape or (self._first is not None)
        if timed:
            _sync(self.device)
            start = time.perf_counter()
        with stance, attention(self.backend):
            output = call()
        if timed:
            _sync(self.device)
            seconds = time.perf_counter() - start
            if new_shape:
                self._shapes.add(shape)
                self._first = (shape, seconds)
            elif self._first is not None:
                first_shape, first_seconds = self._first
                self._first = None
                log.info(
                    "compile: %s compiled for latents %s in about %.1f s (first step %.2f s, the next %.2f s)",
                    self.label,
                    "x".join(map(str, first_shape[0])),
                    max(first_seconds - seconds, 0.0),
                    first_seconds,
                    seconds,
                )
        return output


def _shapes_of(models: list[torch.nn.Module]) -> set[tuple[Any, ...]]:
    """The latent shapes the warm model has compiled for (kept on the model itself, so
    they outlive a stage and a session)."""
    if not models:
        return set()
    shapes = getattr(models[0], "_arc_compiled_shapes", None)
    if shapes is None:
        shapes = set()
        models[0]._arc_compiled_shapes = shapes
    return shapes
