"""How much memory a checkpoint's weights take, known before loading anything.

A safetensors file starts with an 8-byte little-endian length and a JSON header that
gives every tensor's dtype, shape and byte range; reading the headers alone sizes a
model (all shards, all components) in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from arc_fabric_core.contract.errors import WeightsError

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
# A header larger than this is not a safetensors header (the format caps it at 100 MB).
MAX_HEADER = 100_000_000


def tensor_bytes(path: str | os.PathLike[str], as_dtype_bytes: int | None = None) -> int:
    """Bytes of the tensors in one safetensors file, from its header.

    ``as_dtype_bytes`` sizes floating-point tensors as if cast to that width (a bf16
    load of a float32 checkpoint takes half); integer and bool tensors keep theirs.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length <= MAX_HEADER:
                raise ValueError(f"header length {length}")
            header = json.loads(fh.read(length))
    except (OSError, ValueError) as exc:
        raise WeightsError("model.weights", f"{path} is not a readable safetensors file ({exc})") from None
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        width = DTYPE_BYTES.get(dtype)
        if width is None:
            raise WeightsError("model.weights", f"{path}: tensor {name} has an unknown dtype {dtype}")
        if as_dtype_bytes is not None and dtype.startswith(("F", "BF")):
            width = as_dtype_bytes
        total += width * math.prod(info["shape"])
    return total


def folder_bytes(folder: str | os.PathLike[str], as_dtype_bytes: int | None = None) -> dict[str, int]:
    """Bytes of every component of a checkpoint folder (diffusers layout), by component.

    Weights at the top of the folder count under "" (a single-file checkpoint).
    """
    root = Path(folder)
    if not root.is_dir():
        raise WeightsError("model.weights", f"{root} does not exist or is not a folder")
    sizes: dict[str, int] = {}
    for path in sorted(root.rglob("*.safetensors")):
        component = path.relative_to(root).parts[0] if path.parent != root else ""
        sizes[component] = sizes.get(component, 0) + tensor_bytes(path, as_dtype_bytes)
    return sizes
