"""Hybrid schedules: stages over one sigma schedule, each run by its own model.

A hybrid is data (a Hydra ``schedule`` config): the stages in order — the model of
each, its guidance — and the boundaries where one hands the latents to the next. A
boundary is a share of the steps (``fraction``), a step number (``step``), a noise
level (``sigma``: a stage runs while its sigma >= boundary), or, as Wan 2.2 has it, a
timestep ratio (``timestep``: a stage runs while ``t >= boundary * 1000``). Stages
must share a latent space; that is checked when the session is created, before any
model loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import ModelRef, validate_params

BoundaryUnit = Literal["fraction", "step", "timestep", "sigma"]
# The schedule configs shipped with the core (the primary config's schedule/ group).
SCHEDULE_DIR = Path(__file__).resolve().parents[1] / "conf" / "schedule"
# Wan 2.2's boundary_ratio is a share of the scheduler's training timesteps.
NUM_TRAIN_TIMESTEPS = 1000


class StageSpec(BaseModel):
    """One stage as a config gives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite guidance runs to NaN latents

    model: str | None = Field(None, description="Model name; null = the session's model (+model=...).")
    variant: str | None = Field(None, description="Variant; null = model.variant.")
    weights: str | None = Field(None, description="Local checkpoint folder; null = the variant's env variable.")
    guidance: float | None = Field(None, ge=0.0, description="Guidance of this stage; null = the session's.")


class HybridSpec(BaseModel):
    """A schedule config: ``stages`` and the ``boundaries`` between them."""

    # An infinite or NaN boundary places no hand-off (and a step one overflows int()).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = None
    description: str | None = None
    stages: list[StageSpec] = Field(min_length=1)
    # One boundary per hand-off. A two-stage config may give the scalar ``boundary``.
    boundaries: list[float] = Field(default_factory=list)
    boundary: float | None = None
    unit: BoundaryUnit = "fraction"
    # Real variants without configured weights: auto = their tiny stand-ins (said loudly),
    # true = always the tiny stand-ins, false = refuse.
    tiny: Literal["auto", "true", "false"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _tiny_as_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tiny"), bool):
            data = {**data, "tiny": str(data["tiny"]).lower()}
        return data

    @model_validator(mode="after")
    def _one_boundary_per_handoff(self) -> HybridSpec:
        if self.boundary is not None:
            if self.boundaries:
                raise ValueError("give boundary (two stages) or boundaries, not both")
            self.boundaries = [self.boundary]
            self.boundary = None
        need = len(self.stages) - 1
        if len(self.boundaries) != need:
            raise ValueError(
                f"{len(self.stages)} stages need {need} boundar{'y' if need == 1 else 'ies'}, "
                f"got {len(self.boundaries)}: {self.boundaries}"
            )
        b = self.boundaries
        if self.unit == "fraction":
            if any(not 0 < x < 1 for x in b) or any(x >= y for x, y in pairwise(b)):
                raise ValueError(f"fraction boundaries must rise strictly within (0, 1), got {b}")
        elif self.unit in ("timestep", "sigma"):
            # Noise levels fall as denoising goes on, so the hand-offs do too.
            if any(not 0 < x < 1 for x in b) or any(x <= y for x, y in pairwise(b)):
                what = f"timestep boundaries (shares of {NUM_TRAIN_TIMESTEPS})" if self.unit == "timestep" else "sigmas"
                raise ValueError(f"{what} must fall within (0, 1), got {b}")
        else:
            if any(x != int(x) or x < 1 for x in b) or any(x >= y for x, y in pairwise(b)):
                raise ValueError(f"step boundaries must be rising whole steps >= 1, got {b}")
        return self


def parse_hybrid(values: dict[str, Any]) -> HybridSpec:
    """A HybridSpec from config values; problems become one ``schedule.<field>`` error."""
    try:
        return validate_params(HybridSpec, values)
    except InputError as exc:
        raise InputError(f"schedule.{exc.field}" if exc.field != "params" else "schedule", exc.message) from None


def shipped_schedules() -> list[str]:
    """Names of the schedule configs shipped with the core (configs/schedule/)."""
    return sorted(p.stem for p in SCHEDULE_DIR.glob("*.yaml"))


def named_schedule(name: str) -> dict[str, Any]:
    """The values of a shipped schedule config, as ``+schedule=<name>`` composes them."""
    from omegaconf import OmegaConf

    path = SCHEDULE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InputError("schedule", f"unknown schedule {name!r}; shipped: {', '.join(shipped_schedules())}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(values, dict)
    return {str(k): v for k, v in values.items()}


def resolve_stage(
    plugins: Any, stage: StageSpec, default_model: str, default_variant: str | None, tiny: str
) -> tuple[ModelRef, bool]:
    """(the stage's model, whether a tiny stand-in replaced a real variant)."""
    spec = plugins.model(stage.model or default_model)
    variant = stage.variant or default_variant or "auto"
    if variant == "auto" or not spec.needs_weights or spec.variant(variant).tiny:
        return spec.resolve(variant, stage.weights), False
    configured = stage.weights is not None or bool(
        spec.variant(variant).weights_env and os.environ.get(spec.variant(variant).weights_env or "")
    )
    if tiny == "true" or (tiny == "auto" and not configured):
        stand_in = spec.tiny_for(variant)
        if stand_in is None:
            raise InputError("schedule.stages", f"{spec.name} has no tiny variant to stand in for {variant!r}")
        return spec.resolve(stand_in.name, None), True
    return spec.resolve(variant, stage.weights), False


def check_latent_spaces(refs: Sequence[ModelRef]) -> None:
    """Refuse stages that cannot hand latents to each other."""
    first = refs[0]
    for i, ref in enumerate(refs[1:], start=1):
        if ref.latent_space != first.latent_space:
            raise InputError(
                "schedule.stages",
                f"stage {i} ({ref.label}) denoises in another latent space than stage 0 ({first.label}): "
                f"{_describe(ref)} vs {_describe(first)}; the stages of one schedule must share the VAE family, "
                "channels and compression",
            )


def _describe(ref: ModelRef) -> str:
    s = ref.latent_space
    return f"{s.family} {s.channels}ch /{s.temporal_compression}t /{s.spatial_compression}s"


def end_steps(
    unit: str,
    boundaries: Sequence[float],
    total: int,
    timesteps: Sequence[float] | None,
    sigmas: Sequence[float] | None = None,
) -> list[int] | None:
    """The step where each stage ends (the last ends at ``total``); None while a timestep
    or sigma boundary waits for the schedule (``sigmas``: the noise level of each step)."""
    if unit == "fraction":
        ends = [round(b * total) for b in boundaries]
    elif unit == "step":
        ends = [int(b) for b in boundaries]
        if ends and ends[-1] >= total:
            raise InputError("schedule.boundaries", f"step boundaries must be below the {total} steps, got {ends}")
    else:
        levels = timesteps if unit == "timestep" else sigmas
        if levels is None:
            return None
        if len(levels) < total:
            raise InputError("schedule.unit", f"this schedule has no {unit} for every step; use fraction or step")
        scale = NUM_TRAIN_TIMESTEPS if unit == "timestep" else 1.0
        # Wan 2.2: the first model runs while t >= boundary * num_train_timesteps.
        ends, start = [], 0
        for b in boundaries:
            end = next((i for i in range(start, total) if levels[i] < b * scale), total)
            ends.append(end)
            start = end
    return [*ends, total]
