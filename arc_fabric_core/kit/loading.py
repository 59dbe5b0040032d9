"""Helpers every diffusers-based plugin needs when it loads or builds a checkpoint.

Heavy imports (diffusers, transformers) stay inside the functions.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def component_dtypes(device: torch.device, dtype: str) -> dict[str, torch.dtype] | torch.dtype:
    """The ``dtype=`` of ``from_pretrained``: "auto" is the published recipe — bf16
    transformer and text encoder, fp32 VAE on a GPU; fp32 everywhere on a CPU."""
    if dtype == "auto":
        return {"default": torch.bfloat16, "vae": torch.float32} if device.type == "cuda" else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype: unknown torch dtype {dtype!r}")
    return value


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No progress bars while a tiny checkpoint loads: they are only noise there."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    try:
        yield
    finally:
        dlogging.enable_progress_bar()
        tlogging.enable_progress_bar()


def cache_root() -> Path:
    """Where tiny checkpoints are built: ``$ARC_FABRIC_CACHE``, else ~/.cache/arc_fabric."""
    return Path(os.environ.get("ARC_FABRIC_CACHE", Path.home() / ".cache" / "arc_fabric")).expanduser()


def build_once(folder: Path, save: Callable[[Path], None], marker: str = "model_index.json") -> Path:
    """``folder``, built by ``save(tmp)`` into a temporary folder beside it and moved in
    place if ``folder/marker`` is missing (atomic: an interrupted build never leaves a
    folder that looks complete; of two racing processes one wins). The build runs under
    a forked RNG, so random weights never disturb the caller's."""
    if (folder / marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # left incomplete by an interrupted build
        shutil.rmtree(folder, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-build-", dir=folder.parent))
    try:
        with torch.random.fork_rng(devices=[]):
            save(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / marker).is_file():  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
