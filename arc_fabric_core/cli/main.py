"""The command line.

    python -m arc_fabric_core +model=wan21 [prompt=...] [steps=...] [-m seed=0,1,2]
    python -m arc_fabric_core plugins        # installed plugins and their models, as JSON
    python -m arc_fabric_core metrics        # quality metrics (built in and the plugins'), as JSON
    python -m arc_fabric_core sessions ...   # list, show, resume, fork, edit, decode, delete, gc
    python -m arc_fabric_core devices        # GPUs (NVML) or the CPU, with memory, as JSON
    python -m arc_fabric_core jobs ...       # the persisted job queue: submit, list, cancel, work
    python -m arc_fabric_core serve          # the API and event stream on http://127.0.0.1:8188
    python -m arc_fabric_core env ...        # one venv per plugin, on a shared torch base: create, list, path, remove

Generation runs through Hydra: the primary config is configs/config.yaml, and each
installed plugin puts its own model/<name>.yaml on the search path.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from arc_fabric_core.cli.common import check_folder, fail, os_error_line, run_with_progress
from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.contract.params import INT64_MAX, GenerationParams
from arc_fabric_core.dispatch.plugins import get_plugins

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# One engine per process and configuration, over the process's one model cache: Hydra
# multirun jobs share them, so loaded models stay warm.
_engines: dict[tuple[Any, ...], Any] = {}


def _requested_models(argv: list[str]) -> list[str] | None:
    """The model(s) named by a ``+model=`` override, before Hydra composes anything."""
    for arg in argv:
        for prefix in ("+model=", "++model=", "model="):
            if arg.startswith(prefix):
                return [v.strip() for v in arg[len(prefix) :].split(",") if v.strip()]
    return None


def _precheck(argv: list[str]) -> None:
    """Fail on an unknown or missing model in one line, instead of Hydra's search-path dump."""
    if any(
        a in ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion")
        or a.startswith(("--info", "--cfg", "-c="))
        for a in argv
    ):
        return
    plugins = get_plugins()
    installed = plugins.model_names()
    names = _requested_models(argv)
    if names is None:
        listing = ", ".join(installed) or "none — install a plugin, e.g. pip install -e plugins/arc_wan21"
        fail(f"model: no model selected; add +model=<name> (installed: {listing})")
    for name in names or []:
        if name not in installed:
            plugins.model(name)  # raises UnknownModelError with the installed list
    _check_keys(argv, [plugins.model(n) for n in names or []], plugins)
    _check_folders(argv)


# Keys naming folders a run writes to; Hydra makes output_dir (its run dir) before the
# task starts, so a file there must be refused before Hydra runs.
FOLDER_KEYS = ("output_dir", "store_dir")


def _check_folders(argv: list[str]) -> None:
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key in FOLDER_KEYS and "(" not in value:  # not a sweep function
            for each in value.split(","):  # a sweep's values
                if each.strip() and each.strip() != "null":
                    check_folder(each.strip(), key)


@functools.cache
def primary_keys() -> frozenset[str]:
    """The top-level keys of the primary config (read once: the pre-check and the derived
    model configs both need them)."""
    from omegaconf import OmegaConf

    return frozenset(OmegaConf.load(CONF_DIR / "config.yaml"))


def _check_keys(argv: list[str], specs: list[Any], plugins: Any = None) -> None:
    """Refuse an override of a key that neither the core nor the model has, naming what
    is allowed, instead of Hydra's "not in struct" (a ``+key`` adds one on purpose)."""

    from arc_fabric_core.cli.model_configs import own_fields, shipped_keys

    core = primary_keys() - {"defaults", "hydra"}
    own = {f for spec in specs for f in own_fields(spec.params)}
    if plugins is not None:
        own |= {key for spec in specs for key in shipped_keys(plugins, spec.name)} - core
    for arg in argv:
        if arg.startswith(("+", "~", "-")) or "=" not in arg:
            continue
        key = arg.split("=", 1)[0]
        if (
            "/" in key or key.startswith("hydra.") or key in ("model", "schedule", "cache")
        ):  # config groups, Hydra's own
            continue
        if key.startswith("model.params."):
            field = key[len("model.params.") :]
            if field not in own:
                allowed = ", ".join(sorted(own)) or "none"
                raise InputError(key, f"unknown parameter of {', '.join(s.name for s in specs)}; allowed: {allowed}")
        elif key.startswith("model."):
            if key[len("model.") :] not in ("name", "variant", "weights"):
                raise InputError(key, "unknown; allowed: model.variant, model.weights, model.params.<field>")
        elif "." not in key and key not in core | own:
            models = ", ".join(s.name for s in specs)
            raise InputError(
                key,
                f"unknown parameter; {models} takes: {', '.join(sorted(own)) or 'no parameters of its own'}; "
                f"and every run: {', '.join(sorted(core))}",
            )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "plugins":
            print(json.dumps(get_plugins().describe(), indent=2))
            return
        if argv and argv[0] == "metrics":
            from arc_fabric_core.metrics import available

            listing = [
                {
                    "name": m.name,
                    "description": m.description,
                    "needs_prompt": m.needs_prompt,
                    "needs_reference": m.needs_reference,
                }
                for m in available(get_plugins()).values()
            ]
            print(json.dumps(sorted(listing, key=lambda m: m["name"]), indent=2))
            return
        if argv and argv[0] == "devices":
            from arc_fabric_core.runtime.devices import detect

            provider = detect()
            print(
                json.dumps({"provider": provider.name, "devices": [d.as_dict() for d in provider.devices()]}, indent=2)
            )
            return
        if argv and argv[0] == "jobs":
            from arc_fabric_core.cli.jobs import main as jobs_main

            jobs_main(argv[1:])
            return
        if argv and argv[0] == "serve":
            from arc_fabric_core.cli.serve import main as serve_main

            serve_main(argv[1:])
            return
        if argv and argv[0] == "sessions":
            from arc_fabric_core.cli.sessions import main as sessions_main

            sessions_main(argv[1:])
            return
        if argv and argv[0] == "env":
            from arc_fabric_core.cli.envs import main as env_main

            env_main(argv[1:])
            return
        _precheck(argv)
    except ArcFabricError as exc:
        fail(str(exc))
    import hydra
    from omegaconf import OmegaConf

    # output_dir (null by default) is also Hydra's run dir when given; oc.select keeps a null.
    if not OmegaConf.has_resolver("arc_or"):
        OmegaConf.register_new_resolver("arc_or", lambda value, default: value if value not in (None, "") else default)
    # The primary config has no model in its defaults list, so Hydra needs "+model=";
    # accept the plain "model=" too rather than failing with Hydra's defaults-list error.
    argv = ["+" + a if a.startswith("model=") else a for a in argv]
    from arc_fabric_core.cli.model_configs import register_model_configs

    register_model_configs(get_plugins(), primary_keys())
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(generate)()


def _engine(
    store_dir: Path,
    device: str,
    dtype: str,
    every: int,
    keep: int,
    keep_steps: tuple[int, ...],
    model_memory: str | None = None,
) -> Any:
    from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_engine, process_cache
    from arc_fabric_core.runtime.devices import parse_bytes

    budget = parse_bytes(str(model_memory), "model_memory") if model_memory is not None else None
    settings = RuntimeSettings(
        store_dir=store_dir,
        device=device,
        dtype=dtype,
        checkpoint_every=every,
        checkpoint_keep=keep,
        checkpoint_keep_steps=keep_steps,
        model_memory=budget,
    )
    cache = process_cache(settings, get_plugins())  # made once; the newest budget applies
    key = (str(store_dir), device, dtype, every, keep, keep_steps)
    if key not in _engines:
        _engines[key] = build_engine(settings, cache=cache)
    return _engines[key]


class RunSettings(BaseModel):
    """The core's keys of a run that are not generation parameters, checked before
    anything is written or loaded (a bad one is one line naming it)."""

    model_config = ConfigDict(extra="forbid")

    store_dir: Path
    output_dir: Path
    checkpoint_every: int = Field(ge=0, le=INT64_MAX, description="Checkpoint every k steps; 0 = none.")
    checkpoint_keep: int = Field(ge=0, le=INT64_MAX, description="Keep the newest n checkpoints; 0 = all.")
    checkpoint_keep_steps: list[Annotated[int, Field(ge=0, le=INT64_MAX)]]
    dtype: str

    @field_validator("checkpoint_keep_steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]  # checkpoint_keep_steps=5
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of steps, e.g. [0,10], got {value!r}")
        return value

    @field_validator("store_dir", "output_dir", mode="after")
    @classmethod
    def _folder(cls, value: Path, info: ValidationInfo) -> Path:
        try:
            return check_folder(value, info.field_name or "folder")
        except InputError as exc:
            raise ValueError(exc.message) from None

    @field_validator("dtype", mode="after")
    @classmethod
    def _dtype(cls, value: str) -> str:
        from arc_fabric_core.runtime.model_cache import check_dtype

        try:
            return check_dtype(value)
        except InputError as exc:
            raise ValueError(exc.message) from None


def generate(cfg: Any) -> None:
    """Hydra task: one video per job."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        _generate(cfg)
    except ArcFabricError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the session is paused at its last checkpoint", code=130)
    except MissingMandatoryValue as exc:
        fail(str(exc))
    except OSError as exc:  # the disk or the system refused a write: its reason, not a traceback
        fail(os_error_line(exc))


def _generate(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from arc_fabric_core.store.files import default_store_dir

    model_cfg = cfg.get("model")
    if model_cfg is None or not model_cfg.get("name"):
        raise InputError("model", "no model selected; add +model=<name>")
    from omegaconf import OmegaConf

    from arc_fabric_core.contract.models import validate_params

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.get("output_dir"):
        out_dir = Path(cfg.output_dir)
        if str(hydra_cfg.mode) == "RunMode.MULTIRUN":  # one folder per job, never one video over another
            out_dir = out_dir / str(hydra_cfg.job.num)
    keep_steps = cfg.get("checkpoint_keep_steps")
    if OmegaConf.is_config(keep_steps):
        keep_steps = OmegaConf.to_container(keep_steps)
    run = validate_params(
        RunSettings,
        {
            "store_dir": Path(str(cfg.store_dir)) if cfg.get("store_dir") else default_store_dir(),
            "output_dir": out_dir,
            "checkpoint_every": cfg.checkpoint_every,
            "checkpoint_keep": cfg.checkpoint_keep,
            "checkpoint_keep_steps": keep_steps,
            "dtype": str(cfg.dtype),
        },
    )
    store_dir, out_dir = run.store_dir, run.output_dir

    values = {k: cfg.get(k) for k in GenerationParams.model_fields}
    # Plugins may add parameters of their own under model.params, or at the top level
    # where their config puts them (LongLive's prompts and switch_frames).
    extra = model_cfg.get("params") or {}
    values.update({k: v for k, v in dict(extra).items()})
    if model_cfg.name in get_plugins().model_names():
        own = set(get_plugins().model(str(model_cfg.name)).params.model_fields) - set(GenerationParams.model_fields)
        values.update({k: cfg[k] for k in own if k in cfg and cfg[k] is not None})
    values = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in values.items()}

    engine = _engine(
        store_dir,
        str(cfg.device),
        run.dtype,
        run.checkpoint_every,
        run.checkpoint_keep,
        tuple(run.checkpoint_keep_steps),
        cfg.get("model_memory"),
    )
    hybrid = None
    if cfg.get("schedule") is not None:
        from omegaconf import OmegaConf

        from arc_fabric_core.engine.hybrid import parse_hybrid

        hybrid = parse_hybrid(OmegaConf.to_container(cfg.schedule, resolve=True))  # type: ignore[arg-type]
    from arc_fabric_core.media.video import destination_problem

    problem = destination_problem(out_dir / "video.mp4")
    if problem is not None:
        raise InputError("output_dir", problem)
    # Every check happens here, before any model loads. The document is written once the
    # model is loaded: a load that fails leaves no session that never ran.
    inputs = cfg.get("inputs") or {}
    inputs = OmegaConf.to_container(inputs, resolve=True) if OmegaConf.is_config(inputs) else dict(inputs)
    session = engine.plan(
        str(model_cfg.name),
        values,
        variant=model_cfg.get("variant"),
        weights=model_cfg.get("weights"),
        hybrid=hybrid,
        inputs={k: v for k, v in inputs.items() if v is not None},  # type: ignore[union-attr]
    )
    p = session.params
    if session.source_note:
        print(f"{session.ref.spec.name}: {session.source_note}")
    metric_names = [str(m) for m in (cfg.get("metrics") or [])]
    reference: Any = cfg.get("reference") or session.reference
    allow_random = bool(cfg.get("metrics_allow_random"))
    if not metric_names and session.reference is not None and session.ref.spec.reference_metrics:
        # Against the sourced ground truth by default; a backbone with no local weights runs
        # random, and every result it gives says so.
        metric_names, allow_random = list(session.ref.spec.reference_metrics), True
    metric_args: dict[str, Any] = {}
    if metric_names:
        from arc_fabric_core.metrics import report as metrics_report

        metric_args = {
            "reference": reference,
            "allow_random": allow_random,
            "options": OmegaConf.to_container(cfg.get("metrics_options") or {}),
            "gate": OmegaConf.to_container(cfg.get("quality_gate") or {}),
            "plugins": engine.plugins,
        }
        metrics_report.check(metric_names, values.get("prompt"), **metric_args)
    said: set[str] = set()
    for stage in session.stages:
        ref = stage.ref
        if ref.label in said:  # a model running two stages (large-small-large) is said once
            continue
        said.add(ref.label)
        if stage.stand_in:
            print(
                f"{ref.spec.name}: no weights configured for a real stage variant, running its tiny stand-in "
                f"'{ref.variant.name}' with RANDOM weights - the video is noise (schedule.tiny=false refuses)"
            )
        elif ref.random_weights and hybrid is None:
            print(
                f"{ref.spec.name}: no weights configured, running the '{ref.variant.name}' variant with RANDOM "
                "weights - the video is noise (set model.weights=PATH for real weights)"
            )
    labels = " > ".join(st.ref.label for st in session.stages)
    print(
        f"{labels} on {engine.device}: {p.num_frames} frames {p.width}x{p.height}, "
        f"{session.doc.total_steps} steps, guidance {p.guidance}, seed {p.seed}"
    )
    start = time.perf_counter()
    if hybrid is None:
        ref = session.ref
        if not engine.cache.is_warm(ref, engine.placement, engine.dtype):
            engine.load(ref, params=session.params)
            device = engine.cache.device_of(ref, engine.dtype)
            print(f"loaded {ref.label} on {device} in {time.perf_counter() - start:.1f}s")
        else:
            print(f"{ref.label} already warm")

    engine.save_new(session)
    run_with_progress(engine, session, progress=bool(cfg.get("progress", True)))
    if hybrid is not None:
        begin = 0
        for i, stage in enumerate(session.stages):
            print(f"stage {i}: {stage.ref.label} steps {begin}..{stage.end} (guidance {stage.params.guidance})")
            begin = stage.end or begin
    frames = engine.decode(session)
    from arc_fabric_core.contract.errors import OutputError
    from arc_fabric_core.media.video import write_mp4

    try:
        video = write_mp4(frames, out_dir / "video.mp4", fps=p.fps)
    except OutputError as exc:  # the session is complete: only the file is missing
        again = f"`sessions decode {session.id} --out {exc.path}` writes it again"
        raise OutputError(
            exc.path, f"{exc.reason}; session {session.id} is complete and kept: {again}", exc.errno
        ) from None
    elapsed = time.perf_counter() - start
    session_dir = engine.store.session_dir(session.id)
    if session.reference is not None:
        truth = write_mp4(session.reference, out_dir / "ground_truth.mp4", fps=p.fps)
        both = write_mp4(side_by_side(session.reference, frames), out_dir / "side_by_side.mp4", fps=p.fps)
        print(f"truth:    {truth} (side by side: {both})")
    if metric_names:
        report = metrics_report.evaluate(metric_names, frames, p.prompt, **metric_args)
        report["seconds"] = round(elapsed, 3)
        report["session"] = session.id
        metrics_report.write(report, out_dir, session_dir)
        for line in metrics_report.summary_lines(report):
            print(line)
    if str(hydra_cfg.mode) == "RunMode.MULTIRUN":
        from arc_fabric_core.cli import sweeps

        sweeps.write_job(out_dir, list(hydra_cfg.overrides.task), elapsed, session.id, report if metric_names else None)
        table, plot = sweeps.summarize(out_dir.parent)
        print(f"sweep:    {table}" + (f", {plot}" if plot else ""))
    print(f"video:    {video}")
    print(f"session:  {session.id} ({session_dir})")
    print(f"latents:  {session_dir / 'latents.safetensors'} (key 'latents')")
    print(f"done in {elapsed:.1f}s")


def side_by_side(truth: Any, frames: Any) -> Any:
    """The ground truth (left) and the video (right), frame by frame; the shorter one
    holds its last frame."""
    import torch

    count = max(truth.shape[0], frames.shape[0])

    def padded(x: Any) -> Any:
        return torch.cat([x, x[-1:].expand(count - x.shape[0], *x.shape[1:])]) if x.shape[0] < count else x

    return torch.cat([padded(truth), padded(frames.to(truth.dtype))], dim=2)
