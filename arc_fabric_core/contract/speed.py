"""The speed settings every model takes: the attention kernel, regional compilation, a
step cache and batched guidance. They are generation parameters (``GenerationParams``
declares them with these types), so a session's document records them, a fork may change them (turn a
cache off for the remaining steps) and a bad value is refused naming its field.

What each one does at run time lives elsewhere: the attention kernel and compilation in
:mod:`arc_fabric_core.runtime.acceleration`, the step caches in the step-cache plugin
(:mod:`arc_fabric_core.runtime.step_caches`), batched guidance in each model's step
(:func:`arc_fabric_core.kit.guidance.batch_guidance` decides, ``run_batched`` runs).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# diffusers' attention backends (``diffusers.models.attention_dispatch.AttentionBackendName``)
# that need nothing from a model hub: the ``*_hub`` ones download their kernel when first
# used, which no machine here can do.
AttentionChoice = Literal[
    "auto",
    "native",
    "_native_flash",
    "_native_cudnn",
    "_native_efficient",
    "_native_math",
    "flex",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "sage",
    "sage_varlen",
    "_sage_qk_int8_pv_fp8_cuda",
    "_sage_qk_int8_pv_fp8_cuda_sm90",
    "_sage_qk_int8_pv_fp16_cuda",
    "_sage_qk_int8_pv_fp16_triton",
    "xformers",
]
# The named backends (every choice but auto).
ATTENTION_BACKENDS: tuple[str, ...] = tuple(c for c in get_args(AttentionChoice) if c != "auto")
BatchGuidance = Literal["auto", "on", "off"]


class _CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FirstBlockCache(_CacheSettings):
    """Run the first transformer block; when its residual changed by less than
    ``threshold`` (relative mean absolute change) since the last step that ran every
    block, reuse that step's residual of the other blocks instead of running them."""

    name: Literal["fbc"] = "fbc"
    threshold: float = Field(0.05, gt=0.0, le=1.0, description="Relative change of the first block's residual.")
    warmup: int = Field(1, ge=1, description="Steps at each pass's start that always run every block.")


class MagCache(_CacheSettings):
    """Magnitude-aware cache: skip the block stack, reusing the last residual, while the
    accumulated error estimated from the residuals' magnitude ratios stays below
    ``threshold``, for at most ``max_skips`` steps in a row, after the first
    ``retention`` share of the steps."""

    name: Literal["magcache"] = "magcache"
    threshold: float = Field(0.06, gt=0.0, le=1.0, description="Accumulated error allowed before a step runs.")
    max_skips: int = Field(3, ge=1, le=100, description="Steps in a row that may be skipped.")
    retention: float = Field(0.2, ge=0.0, lt=1.0, description="Share of each pass's first steps never skipped.")
    mag_ratios: list[Annotated[float, Field(gt=0.0)]] | None = Field(
        None,
        description="Calibrated magnitude ratios per step (interpolated to the steps); "
        "none: estimated from the last two steps that ran.",
    )


class TaylorSeer(_CacheSettings):
    """Run the block stack every ``interval`` steps; in between, forecast its residual
    by a Taylor expansion of order ``order`` from the steps that ran."""

    name: Literal["taylorseer"] = "taylorseer"
    interval: int = Field(3, ge=1, le=100, description="A step that runs every block every this many steps.")
    order: int = Field(1, ge=0, le=4, description="Order of the Taylor forecast (0: reuse the last residual).")
    warmup: int = Field(3, ge=1, description="Steps at each pass's start that always run every block.")
    cooldown: int = Field(1, ge=0, description="Steps at each pass's end that always run every block.")


StepCache = Annotated[FirstBlockCache | MagCache | TaylorSeer, Field(discriminator="name")]
CACHE_NAMES = ("fbc", "magcache", "taylorseer")
NO_CACHE = ("", "none", "off", "false")


SPEED_FIELDS = ("attention", "compile", "cache", "batch_guidance")


def cache_by_name(value: Any) -> Any:
    """``cache=fbc`` from a command line is that cache with its defaults; ``none`` is none."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        if value.strip().lower() in NO_CACHE:
            return None
        if value not in CACHE_NAMES:
            raise ValueError(f"unknown step cache {value!r}; known: none, {', '.join(CACHE_NAMES)}")
        return {"name": value}
    if isinstance(value, dict) and str(value.get("name", "")).lower() in NO_CACHE:
        return None
    return value


def batch_as_bool(value: Any) -> Any:
    """``batch_guidance=true`` (a YAML boolean) is ``on``."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value
