"""What a plugin declares about a model: variants, parameters and latent space."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from arc_fabric_core.contract.bounds import AtMost
from arc_fabric_core.contract.capabilities import Capabilities
from arc_fabric_core.contract.errors import ArcFabricError, InputError, WeightsError
from arc_fabric_core.contract.inputs import InputSpec
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.speed import SPEED_FIELDS


@dataclass(frozen=True)
class LatentSpace:
    """The latent space a model denoises in.

    Two models can hand latents to each other (a hybrid schedule) only when these match.
    """

    family: str  # the VAE family, e.g. "wan-vae"
    channels: int
    temporal_compression: int
    spatial_compression: int

    def latent_frame(self, frame: int) -> int:
        """The latent frame holding pixel frame ``frame``.

        Video VAEs here are causal: latent frame 0 is pixel frame 0 alone, then each
        latent frame holds the next ``temporal_compression`` pixel frames.
        """
        if frame <= 0 or self.temporal_compression == 1:
            return max(frame, 0)
        return (frame - 1) // self.temporal_compression + 1

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F, H, W) of the latents for a video of the given pixel size."""
        frames = (num_frames - 1) // self.temporal_compression + 1
        return (
            self.channels,
            frames,
            height // self.spatial_compression,
            width // self.spatial_compression,
        )


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a model: real weights from a local folder, or tiny random ones."""

    name: str
    description: str
    tiny: bool = False
    # Environment variable holding the local checkpoint folder of a real variant.
    weights_env: str | None = None
    # Components the checkpoint folder must contain; checked before anything loads.
    required_components: tuple[str, ...] = ()
    # Parameter defaults that differ from the model's (a tiny variant runs small).
    param_defaults: dict[str, Any] = field(default_factory=dict)
    # The real variants a tiny variant stands in for when their weights are absent
    # (a hybrid of 1.3b and 14b runs on two tiny models of different sizes).
    stands_in_for: tuple[str, ...] = ()
    # A variant whose latent space differs from the model's (a tiny VAE with fewer channels).
    latent_space: LatentSpace | None = None
    # Tighter bounds of this variant than its parameter class's (a tiny transformer's
    # shorter positional table), by field; checked with the parameters.
    param_bounds: dict[str, AtMost] = field(default_factory=dict)
    # A check of the checkpoint folder where ``required_components`` cannot say it (a file
    # or another in its place): ``check_folder(folder)`` lists what is wrong, one line each.
    check_folder: Callable[[Path], list[str]] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model as registered by a plugin through ``arc_register_models``."""

    name: str
    description: str
    params: type[GenerationParams]
    latent_space: LatentSpace
    variants: tuple[VariantSpec, ...]
    # False for a model that needs no checkpoint at all (procedural, closed-form, an API):
    # nothing warns that its output is noise, and a weights path given to it is refused.
    needs_weights: bool = True
    # What the model supports (edit, masks, extend, rewind, inputs beside text). None, or
    # a field left out: derived from the hooks its plugin implements. The registry checks
    # a declaration against those hooks (``contract.capabilities.resolve_capabilities``).
    capabilities: Capabilities | None = None
    # The inputs it takes beside text (a first frame, an array of actions), each with its
    # shape rule: checked before anything runs, stored with the session, given to the
    # stage hooks (``contract.inputs``). Their kinds are its ``capabilities.inputs``.
    inputs: tuple[InputSpec, ...] = ()
    # The metrics a generation runs when its ``arc_source_inputs`` found a ground truth and
    # no metrics were asked for (a world model's rollout against the recorded episode).
    reference_metrics: tuple[str, ...] = ()
    # Why a step cache (params.cache) cannot run this model, or None where it can: a model
    # whose step makes other transformer calls than its denoising ones (LongLive's clean
    # passes writing the KV cache) would have a cache skip them.
    step_cache_refusal: str | None = None

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ArcFabricError(f"model {self.name!r} names an input twice: {names}")
        fields = self.params.model_fields
        for spec in self.inputs:
            for dim in spec.shape:
                if isinstance(dim, str) and dim != "*" and dim not in fields:
                    raise ArcFabricError(
                        f"model {self.name!r}: input {spec.name!r}'s shape names {dim!r}, not a parameter of "
                        f"{self.params.__name__}"
                    )

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InputError(f"inputs.{name}", f"{self.name} takes no input {name!r}")

    def variant(self, name: str) -> VariantSpec:
        for variant in self.variants:
            if variant.name == name:
                return variant
        allowed = ", ".join(v.name for v in self.variants)
        raise InputError("model.variant", f"unknown variant {name!r} of {self.name}; allowed: auto, {allowed}")

    @property
    def tiny_variant(self) -> VariantSpec | None:
        return next((v for v in self.variants if v.tiny), None)

    def tiny_for(self, variant: str) -> VariantSpec | None:
        """The tiny variant that stands in for ``variant`` (the first tiny one otherwise)."""
        if self.variant(variant).tiny:
            return self.variant(variant)
        return next((v for v in self.variants if v.tiny and variant in v.stands_in_for), self.tiny_variant)

    def resolve(self, variant: str | None, weights: str | os.PathLike[str] | None) -> ModelRef:
        """Pick the variant and weights folder, checking the folder before any load.

        ``variant`` "auto" (or None) takes the first real variant whose weights are
        configured and falls back to the tiny variant.
        """
        if not self.needs_weights:
            if weights is not None:
                raise InputError(
                    "model.weights", f"{self.name} needs no weights; drop model.weights (got {str(weights)!r})"
                )
            chosen_variant = self.auto_variant() if variant in (None, "auto") else self.variant(variant)
            assert chosen_variant is not None
            return ModelRef(spec=self, variant=chosen_variant, weights=None)
        if variant in (None, "auto"):
            chosen = self.auto_variant(weights)
            if chosen is None:
                raise WeightsError("model.weights", f"{self.name} has no tiny variant and no weights are configured")
        else:
            chosen = self.variant(variant)
        if chosen.tiny:
            return ModelRef(spec=self, variant=chosen, weights=None)
        path = weights if weights is not None else (os.environ.get(chosen.weights_env) if chosen.weights_env else None)
        tiny_hint = f"; to try without weights use model.variant={self.tiny_variant.name}" if self.tiny_variant else ""
        if not path:
            env = f" or set {chosen.weights_env}" if chosen.weights_env else ""
            raise WeightsError(
                "model.weights",
                f"variant {chosen.name!r} of {self.name} needs a local checkpoint: "
                f"pass model.weights=PATH{env}{tiny_hint}",
            )
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise WeightsError("model.weights", f"{folder} does not exist or is not a folder{tiny_hint}")
        missing = [c for c in chosen.required_components if not (folder / c).exists()]
        if missing:
            raise WeightsError(
                "model.weights",
                f"{folder} lacks {', '.join(missing)} "
                f"(expected the published layout of {self.name} {chosen.name}){tiny_hint}",
            )
        problems = chosen.check_folder(folder) if chosen.check_folder is not None else []
        if problems:
            raise WeightsError("model.weights", "; ".join(problems) + tiny_hint)
        return ModelRef(spec=self, variant=chosen, weights=folder.resolve())

    def auto_variant(self, weights: str | os.PathLike[str] | None = None) -> VariantSpec | None:
        """The variant ``auto`` runs here: the first real variant whose weights are given
        or configured (its environment variable set), else the tiny one (None: neither).

        What :meth:`resolve` picks, without checking the weights folder; a model that
        needs no weights runs its first variant.
        """
        if not self.needs_weights:
            return self.variants[0]
        for v in self.variants:
            if not v.tiny and (weights is not None or (v.weights_env and os.environ.get(v.weights_env))):
                return v
        return self.tiny_variant

    def defaults(self, variant: str) -> dict[str, Any]:
        """The parameters a run of ``variant`` gets when it is given none, JSON-ready: its
        ``param_defaults`` over the schema's defaults, validated (so with what the schema
        derives from them, e.g. a named schedule's timesteps and step count)."""
        chosen = self.variant(variant)
        try:
            return validate_params(self.params, dict(chosen.param_defaults)).model_dump(mode="json")
        except InputError:  # a plugin's defaults that do not validate: shown as they are
            from pydantic_core import to_jsonable_python

            fields = self.params.model_fields
            base = {k: f.get_default(call_default_factory=True) for k, f in fields.items() if not f.is_required()}
            return to_jsonable_python({**base, **chosen.param_defaults})

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: what the plugin listing and the API show."""
        return {
            "name": self.name,
            "description": self.description,
            "variants": [
                {
                    "name": v.name,
                    "description": v.description,
                    "tiny": v.tiny,
                    "weights_env": v.weights_env,
                    "param_defaults": v.param_defaults,
                    "defaults": self.defaults(v.name),
                    "stands_in_for": list(v.stands_in_for),
                }
                for v in self.variants
            ],
            "latent_space": {
                "family": self.latent_space.family,
                "channels": self.latent_space.channels,
                "temporal_compression": self.latent_space.temporal_compression,
                "spatial_compression": self.latent_space.spatial_compression,
            },
            "needs_weights": self.needs_weights,
            "params_schema": self.params.model_json_schema(),
            "fixed_params": sorted(self.params.fixed_fields),
            "inputs": [spec.describe() for spec in self.inputs],
        }


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: spec, variant and (for a real variant) its weights folder."""

    spec: ModelSpec
    variant: VariantSpec
    weights: Path | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.spec.name, self.variant.name, str(self.weights or ""))

    @property
    def latent_space(self) -> LatentSpace:
        return self.variant.latent_space or self.spec.latent_space

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.variant.name}"

    @property
    def random_weights(self) -> bool:
        """Whether this runs a model's random stand-in (its output is noise, and says so)."""
        return self.spec.needs_weights and self.variant.tiny

    def params(self, values: dict[str, Any]) -> GenerationParams:
        """Validate user values over the variant's and the model's defaults."""
        merged = {**self.variant.param_defaults, **{k: v for k, v in values.items() if v is not None}}
        checked = validate_params(self.spec.params, merged)
        for name, bound in self.variant.param_bounds.items():
            try:
                bound.check(getattr(checked, name))
            except ValueError as exc:
                raise InputError(name, str(exc)) from None
        return checked


def validate_params(schema: type[BaseModel], values: dict[str, Any]) -> Any:
    """Build ``schema`` from ``values``; the first problem becomes one InputError."""
    try:
        return schema(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "params"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            # What the video is first; how fast it is made (contract.speed) after.
            allowed = ", ".join(sorted(set(schema.model_fields) - set(SPEED_FIELDS)))
            msg = f"unknown parameter; allowed: {allowed}; speed: {', '.join(sorted(SPEED_FIELDS))}"
        elif "input" in err and err["type"] != "missing" and "got " not in msg:
            # A plugin's own message may name the value already ("... got 0").
            msg = f"{msg} (got {_shown(err['input'])})"
        raise InputError(where, msg) from None


# A refusal shows at most this much of the value it refuses (a long text is its length).
SHOWN_CHARS = 200


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:SHOWN_CHARS]}… ({size})"
