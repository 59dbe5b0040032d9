"""Inputs beyond text: what a model takes beside its prompt (a first frame, an array of
robot actions), declared per model and checked before anything is written or computed.

A model lists its inputs in ``ModelSpec.inputs``, one :class:`InputSpec` each: a name
(the key in requests and in the stage hooks' ``inputs``), a kind (what it is:
``image``, ``actions``, ...), a dtype and a shape rule. A request gives each input as a
tensor, a nested list of numbers, or a local file (``.safetensors``, ``.npy``, ``.json``,
or an image: ``.png``/``.jpg``/``.webp``/``.bmp``, read as ``(3, H, W)`` floats in
[0, 1]). The checked tensors are stored with the session (content-hashed safetensors
under ``inputs/``, shared by its forks) and handed to ``arc_encode``,
``arc_prepare_latents`` and ``arc_denoise_step``.

An input with ``per_chunk`` belongs to an autoregressive model's chunks (its passes, a
block of frames each): dim 0 holds ``per_chunk`` rows per chunk, ``arc_denoise_step``
gets only the rows of the chunk it is making, and an extension takes the rows of its new
chunks (``arc_extend_params``' ``inputs``), appended to the parent's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from arc_fabric_core.contract.errors import InputError

InputName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Dim = int | Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9_]*)$")]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FILE_SUFFIXES = (".safetensors", ".npy", ".json", *IMAGE_SUFFIXES)
# An input is data, not a dataset: a request's or a file's values beyond this are refused.
MAX_ELEMENTS = 64 * 1024 * 1024


@dataclass
class Sourced:
    """What a model's ``arc_source_inputs`` found: inputs by name (values as
    :func:`load_input` takes them), the ground truth its video is compared with ((F, H,
    W, 3) in [0, 1], or None), and a line saying where they came from."""

    inputs: dict[str, Any]
    reference: torch.Tensor | None = None
    note: str | None = None


class InputSpec(BaseModel):
    """One input a model takes beside text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: InputName = Field(description="its key in requests and in the hooks' inputs")
    kind: InputName = Field(description="what it is: image, video, actions, audio, or a kind of the plugin's own")
    description: str = ""
    shape: tuple[Dim, ...] = Field(
        description='per dimension: a size, "*" (any), or a parameter\'s name (its value, e.g. "height")'
    )
    dtype: Literal["float32", "float16", "bfloat16", "int64", "int32", "bool"] = "float32"
    per_chunk: int | None = Field(
        None, ge=1, description="rows per chunk (a pass of an autoregressive model); dim 0 is chunks x this"
    )
    required: bool = True
    minimum: float | None = Field(None, description="the least value allowed")
    maximum: float | None = Field(None, description="the greatest value allowed")

    @model_validator(mode="after")
    def _rule(self) -> InputSpec:
        if not self.shape:
            raise ValueError(f"input {self.name!r}: shape must name at least one dimension")
        if self.per_chunk is not None and self.shape[0] != "*":
            raise ValueError(f'input {self.name!r}: with per_chunk, dim 0 (the rows of the chunks) must be "*"')
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"input {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}")
        return self

    def describe(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def expected(self, params: Any, chunks: int) -> list[int | str]:
        """The shape a request must give, with parameters and chunks filled in."""
        dims: list[int | str] = []
        for i, dim in enumerate(self.shape):
            if i == 0 and self.per_chunk is not None:
                dims.append(chunks * self.per_chunk)
            elif isinstance(dim, str) and dim != "*":
                dims.append(int(getattr(params, dim)))
            else:
                dims.append(dim)
        return dims

    def check(self, value: torch.Tensor, params: Any, chunks: int, field: str) -> torch.Tensor:
        """``value`` in this input's dtype, its shape and range checked (on the CPU)."""
        tensor = value.detach().to("cpu")
        want = DTYPES[self.dtype]
        if tensor.dtype != want:
            # Widening and narrowing within numbers is what a list or an array needs (JSON
            # numbers are float64 or int64); bool is its own kind, and floats never become ints.
            lossy = tensor.dtype.is_floating_point and not want.is_floating_point
            if lossy or (tensor.dtype is torch.bool) != (want is torch.bool):
                raise InputError(field, f"must be {self.dtype}, got {str(tensor.dtype).removeprefix('torch.')}")
            tensor = tensor.to(want)
        dims = self.expected(params, chunks)
        shape = list(tensor.shape)
        fits = len(shape) == len(dims) and all(d == "*" or d == s for d, s in zip(dims, shape, strict=True))
        if not fits:
            rule = ", ".join(str(d) for d in dims)
            per = f" ({self.per_chunk} rows for each of {chunks} chunks)" if self.per_chunk is not None else ""
            raise InputError(field, f"must have shape ({rule}){per}; got {tuple(shape)}")
        if tensor.dtype.is_floating_point and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise InputError(field, "must hold finite numbers only (it holds inf or NaN)")
        if tensor.numel() and tensor.dtype is not torch.bool:
            low, high = float(tensor.min()), float(tensor.max())
            if self.minimum is not None and low < self.minimum:
                raise InputError(field, f"values must be at least {self.minimum}; the least is {low:g}")
            if self.maximum is not None and high > self.maximum:
                raise InputError(field, f"values must be at most {self.maximum}; the greatest is {high:g}")
        return tensor.contiguous()

    def rows(self, tensor: torch.Tensor, chunk: int) -> torch.Tensor:
        """The rows of chunk ``chunk`` (the whole tensor for an input not given per chunk)."""
        if self.per_chunk is None:
            return tensor
        return tensor[chunk * self.per_chunk : (chunk + 1) * self.per_chunk]


def load_input(value: Any, field: str) -> torch.Tensor:
    """A request's value as a tensor: a tensor or array as it is, a nested list of numbers,
    or a local file's content (see the module's docstring for the formats)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (str, Path)):
        return _read_file(Path(value).expanduser(), field)
    if isinstance(value, (list, tuple)):
        return _from_list(value, field)
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(value))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    raise InputError(
        field, f"must be a tensor, a list of numbers or a file path ({', '.join(FILE_SUFFIXES)}); got {value!r:.60}"
    )


def _from_list(value: Sequence[Any], field: str) -> torch.Tensor:
    def count(v: Any) -> int:
        return sum(count(x) for x in v) if isinstance(v, (list, tuple)) else 1

    if count(value) > MAX_ELEMENTS:
        raise InputError(field, f"holds more than {MAX_ELEMENTS} numbers; give it as a file")
    if not all(_numeric(v) for v in _leaves(value)):
        raise InputError(field, "must be a list of numbers (or of lists of numbers)")
    try:
        return torch.tensor(value)
    except (ValueError, TypeError) as exc:
        raise InputError(field, f"must be a rectangular list of numbers ({exc})") from None


def _leaves(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, bool))


def _read_file(path: Path, field: str) -> torch.Tensor:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise InputError(field, f"{path}: not a file of a known kind; allowed: {', '.join(FILE_SUFFIXES)}")
    if not path.is_file():
        raise InputError(field, f"{path}: no such file")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise InputError(field, f"{path}: must hold one tensor, holds {len(tensors)} ({', '.join(tensors)})")
            tensor = next(iter(tensors.values()))
        elif suffix == ".npy":
            import numpy as np

            tensor = torch.from_numpy(np.ascontiguousarray(np.load(path, allow_pickle=False)))
        elif suffix == ".json":
            return _from_list(json.loads(path.read_text()), field)
        else:
            tensor = _read_image(path)
    except InputError:
        raise
    except Exception as exc:  # a corrupt or unreadable file: the reader's reason, named
        raise InputError(field, f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if tensor.numel() > MAX_ELEMENTS:
        raise InputError(field, f"{path}: holds more than {MAX_ELEMENTS} numbers")
    return tensor


def _read_image(path: Path) -> torch.Tensor:
    """An image file as (3, H, W) float32 in [0, 1] (RGB; alpha dropped)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def check_inputs(
    specs: Sequence[InputSpec], given: Mapping[str, Any] | None, params: Any, chunks: int, model: str
) -> dict[str, torch.Tensor]:
    """The inputs of a new session: every name known, every required one given, each
    loaded and checked against its spec (``chunks``: the passes of its schedule). Errors
    name the field (``inputs.<name>``) and what is allowed."""
    given = dict(given or {})
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none (it takes text only)"
        raise InputError(f"inputs.{unknown[0]}", f"{model} takes no input {unknown[0]!r}; its inputs: {allowed}")
    checked: dict[str, torch.Tensor] = {}
    for spec in specs:
        field = f"inputs.{spec.name}"
        if spec.name not in given or given[spec.name] is None:
            if spec.required:
                raise InputError(field, f"{model} needs it: {spec.kind}, shape ({_rule(spec)}); {spec.description}")
            continue
        checked[spec.name] = spec.check(load_input(given[spec.name], field), params, chunks, field)
    return checked


def check_chunk_inputs(
    specs: Sequence[InputSpec], given: Mapping[str, Any] | None, params: Any, chunks: int, model: str
) -> dict[str, torch.Tensor]:
    """The inputs of ``chunks`` new chunks (an extension): only per-chunk inputs, each
    with the rows of those chunks; a required one must be given."""
    per_chunk = [spec for spec in specs if spec.per_chunk is not None]
    others = sorted(set(given or {}) & {spec.name for spec in specs if spec.per_chunk is None})
    if others:
        raise InputError(
            f"inputs.{others[0]}",
            f"{model} takes {others[0]!r} once for the whole video, not per chunk: an extension keeps its parent's",
        )
    return check_inputs(per_chunk, given, params, chunks, model)


def _rule(spec: InputSpec) -> str:
    dims = [str(d) for d in spec.shape]
    if spec.per_chunk is not None:
        dims[0] = f"{spec.per_chunk} x chunks"
    return ", ".join(dims)


def chunk_inputs(specs: Sequence[InputSpec], inputs: Mapping[str, torch.Tensor], chunk: int) -> dict[str, torch.Tensor]:
    """What ``arc_denoise_step`` gets while chunk ``chunk`` is made: the rows of that chunk
    of a per-chunk input, every other input whole."""
    by_name = {spec.name: spec for spec in specs}
    return {name: by_name[name].rows(t, chunk) if name in by_name else t for name, t in inputs.items()}
