"""The plugin contract: every hook a plugin may implement.

A model plugin registers its models and implements the stage hooks for them. The
core calls a stage hook for one model and reaches exactly the plugin that registered
that model; plugins that own no model (a profiler, a step cache, a preview emitter)
may wrap any stage with ``@hookimpl(wrapper=True)`` and see every model's calls.

Implementations may accept a subset of the arguments, so hooks can grow.
The engine owns the loop; a plugin owns one step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import torch

    from arc_fabric_core.contract.models import ModelRef, ModelSpec
    from arc_fabric_core.contract.params import GenerationParams
    from arc_fabric_core.contract.schedule import Schedule, StepContext

PROJECT = "arc_fabric"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- registration


@hookspec
def arc_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Declare the plugin's models: call ``register(spec)`` once per model.

    Called once, when the core first needs the model registry.
    """


@hookspec
def arc_register_metrics(register: Callable[[Any], None]) -> None:
    """Optional. Add quality metrics: call ``register(Metric(name, fn, ...))`` once per
    metric (``arc_fabric_core.metrics.Metric``; ``fn(frames, prompt=, reference=,
    allow_random=, options=)`` returns a ``MetricResult``).

    Called when the metrics are listed or computed.
    """


@hookspec
def arc_register_caches(register: Callable[[Any], None]) -> None:
    """Optional. Declare the step caches the plugin implements: call
    ``register(CacheInfo(name, summary))`` (``arc_fabric_core.runtime.step_caches.plugin.CacheInfo``)
    once per cache, ``name`` being the ``params.cache.name`` it answers to (``fbc``,
    ``magcache``, ...). A session asking for a cache no plugin declares is refused
    before any model loads.

    The cache itself is a wrapper of ``arc_denoise_step`` (``@hookimpl(wrapper=True)``)
    from a plugin that owns no model. Called when the caches are listed or checked.
    """


@hookspec
def arc_config_searchpath() -> list[str]:
    """Return Hydra search-path entries (e.g. ``["pkg://my_plugin.conf"]``) holding config
    groups the plugin adds (hybrid schedules, ...).

    Optional: a model's ``model/<name>`` config is derived from its parameter schema
    (``arc_fabric_core.cli.model_configs``), so ``+model=<name> key=value`` works without one.
    Called when the CLI composes its config.
    """


# ---------------------------------------------------------------- stages
# Each stage is called for one model and answered by the plugin that owns it.


@hookspec(firstresult=True)
def arc_load(model: ModelRef, device: torch.device, dtype: str) -> Any:
    """Load the model's components from ``model.weights`` (or the tiny checkpoint
    for a tiny variant) onto ``device``; ``dtype`` is "auto" or a torch dtype name.

    Called when a session needs a model that is not warm. Returns an opaque object
    that the other stage hooks receive as ``components``.
    """


@hookspec(firstresult=True)
def arc_encode(
    model: ModelRef, components: Any, params: GenerationParams, inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Encode the conditioning (prompt, negative prompt, ...) into named tensors.

    ``inputs``: the session's inputs beside text (``ModelSpec.inputs``; empty for most
    models), whole, on the session's device; an image to encode once belongs here.

    Called once when a session starts. The result is persisted with the session,
    so a resume never re-encodes.
    """


@hookspec(firstresult=True)
def arc_schedule(model: ModelRef, components: Any, params: GenerationParams, pass_index: int) -> Schedule:
    """Build a fresh schedule for pass ``pass_index`` (0 unless ``arc_passes`` says
    there are more): the timesteps and a scheduler with ``step()``. A plugin may
    return a subclass of :class:`Schedule` whose ``step`` calls its scheduler its own way.

    Called when a session starts and again on resume, before the scheduler's
    saved internals are restored onto it. Must be deterministic in ``params``.
    """


@hookspec(firstresult=True)
def arc_passes(model: ModelRef, params: GenerationParams) -> list[int]:
    """Optional. The number of steps of each pass, for a model that denoises in
    several passes one after the other, each with its own schedule and possibly its
    own latent size (LTX's multi-scale: a low-resolution pass, then an upsampled
    refinement). Without it a model has one pass of ``params.steps`` steps.

    Called when a session is created (no model is loaded: it must depend on
    ``params`` alone). The engine numbers steps across passes: pass 1 starts at
    step ``passes[0]``.
    """


@hookspec(firstresult=True)
def arc_next_pass(
    model: ModelRef,
    components: Any,
    latents: torch.Tensor,
    pass_index: int,
    schedule: Schedule,
    params: GenerationParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Required with ``arc_passes``. The latents that start pass ``pass_index``, made
    from the finished latents of the pass before (e.g. upsample, match statistics,
    re-noise to ``schedule``'s first level with noise drawn from ``generator``).

    Called by the engine at a pass boundary, after the checkpoint that holds the
    finished pass (so a user can decode it as a preview, or fork there). It must be
    deterministic in its inputs and ``generator``: a resume from that checkpoint
    calls it again and must get the same latents.
    """


@hookspec(firstresult=True)
def arc_source_inputs(model: ModelRef, params: GenerationParams, inputs: dict[str, Any]) -> Any:
    """Optional. The inputs beside text a model takes from where its parameters point (a
    dataset sample named by them) or makes up when none is given (a synthetic sample for a
    first try), as an ``arc_fabric_core.contract.inputs.Sourced``: those inputs (the ones
    given in ``inputs`` win), a ground-truth video to compare the result against, and a
    line saying where they came from. None: nothing to add.

    Called when a session is planned, before its inputs are checked; no model is loaded.
    """


@hookspec(firstresult=True)
def arc_prepare_latents(
    model: ModelRef,
    components: Any,
    params: GenerationParams,
    generator: torch.Generator,
    inputs: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Draw the initial latents (float32, layout (B, C, F, H, W)) from ``generator``
    (``inputs``: as ``arc_encode`` gets them).

    Called once when a session starts.
    """


@hookspec(firstresult=True)
def arc_denoise_step(
    model: ModelRef,
    components: Any,
    latents: torch.Tensor,
    step: StepContext,
    conditioning: dict[str, torch.Tensor],
    params: GenerationParams,
    inputs: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Run the model once at ``step.timestep`` (guidance included) and return the
    model output that the scheduler's ``step()`` consumes.

    ``inputs``: the session's inputs beside text; of one given per chunk
    (``InputSpec.per_chunk``), only the rows of the chunk being made (pass
    ``step.pass_index``).

    Called by the engine's loop once per step, under ``torch.no_grad()``.
    """


@hookspec(firstresult=True)
def arc_extend_params(
    model: ModelRef, params: GenerationParams, blocks: int, prompt: str | None, inputs: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Optional; autoregressive models only (implementing it is what lets a session
    extend). The parameter overrides of a finished session made ``blocks`` blocks longer,
    with ``prompt`` from the first new block on when given (e.g. more frames, one more
    prompt switch). The new parameters' passes must begin with the old ones.

    ``inputs``: the per-chunk inputs of the new blocks as the request gave them (dim 0:
    their rows; not yet checked against the new chunks' count, which these overrides
    decide); the engine appends them to the parent's.

    Called when an extension is created, before any compute.
    """


@hookspec(firstresult=True)
def arc_rewind_params(model: ModelRef, params: GenerationParams, block: int, prompt: str | None) -> dict[str, Any]:
    """Optional; autoregressive models. The parameter overrides of a session rewound to
    ``block`` (pass ``block``) that makes the blocks from there on again, under
    ``prompt`` when given; the blocks before it must keep the prompts they were made with.

    Called when a rewind is created (a fork at the block's first step), before any compute.
    """


@hookspec(firstresult=True)
def arc_decode(model: ModelRef, components: Any, latents: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """Decode latents to frames: float32 in [0, 1], layout (F, H, W, 3).

    Called when a session's video is written or previewed.
    """


@hookspec(firstresult=True)
def arc_activation_bytes(model: ModelRef, params: GenerationParams) -> int:
    """Optional. The memory a run with ``params`` needs beside the weights (activations,
    attention, the VAE decode), in bytes of the device it runs on.

    Called before the model loads, with ``params`` alone: the model cache places the
    model on a device with room for its weights plus this margin. Without it the
    margin is 0.
    """


@hookspec(firstresult=True)
def arc_move(model: ModelRef, components: Any, device: torch.device) -> Any:
    """Optional. Move loaded ``components`` to ``device`` and return them (the model
    cache parks an evicted GPU model in CPU RAM and brings it back this way).

    Without it the cache moves every ``torch.nn.Module`` inside the components (a
    dataclass, a dict or a diffusers pipeline) and updates a ``device`` field beside
    them.
    """


# ---------------------------------------------------------------- operations


@hookspec
def arc_register_operations(register: Callable[[Any], None]) -> None:
    """Optional. Add operations on sessions: call ``register(op)`` once per operation, an
    instance of an ``arc_fabric_core.contract.operations.OperationSpec`` subclass (its
    request schema, check, child creation and start). It becomes a CLI subcommand
    (``sessions <name>``), an API route (``POST /api/sessions/{id}/<name>``), a job kind
    and a form in the UI, for the models whose capabilities list it.

    Called once, when the core first needs the operations registry.
    """


# ---------------------------------------------------------------- server and UI


@hookspec
def arc_register_ui(register: Callable[[Any], None]) -> None:
    """Optional. Add to the server and the web UI: call ``register(UiExtension(...))``
    (``arc_fabric_core.contract.ui``) with routes of the plugin's own (mounted under
    ``/api/ext/<name>/``), a static folder (served at ``/ext/<name>/``) and the ES module
    in it that the UI imports on the pages of the extension's models.

    Called once, when the server's app is made.
    """
