"""A diffusers pipeline folder loaded for inference: real weights or a tiny checkpoint.

Every diffusers-based plugin loads the same way: the weights folder of a real variant,
or for a tiny variant the checkpoint it builds once, through the very same
``from_pretrained`` call (so the tiny variant exercises the real path), in the dtypes
of :func:`~arc_fabric_core.kit.loading.component_dtypes`; then on the device with every
model frozen. Heavy imports stay with the caller (it passes the pipeline class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.kit.loading import component_dtypes, quiet_loading

M = TypeVar("M", bound=torch.nn.Module)


@dataclass
class PipelineComponents:
    """A loaded model on diffusers' components. ``pipe`` holds them: stages call its
    encoder and latent helpers, so that they match the pipeline exactly."""

    pipe: Any  # a diffusers.DiffusionPipeline
    device: torch.device

    @property
    def transformer(self) -> Any:
        return self.pipe.transformer


def frozen(module: M) -> M:
    """``module`` in eval mode with no parameter requiring grad: dropout off, and no
    autograd graph is kept even where a caller forgets ``torch.no_grad()``."""
    return module.eval().requires_grad_(False)


def load_pipeline(
    pipeline_class: Any,
    model: ModelRef,
    device: torch.device,
    dtype: str,
    tiny_folder: Callable[[], Path],
    prepare: Callable[[Any], None] | None = None,
) -> Any:
    """``pipeline_class`` from ``model``'s weights folder or, for a tiny variant, from the
    folder ``tiny_folder()`` returns (built there once; its progress bars are only noise),
    in the dtypes ``dtype`` asks for. ``prepare(pipe)`` runs before it moves (to change
    weights on the CPU); then it goes to ``device`` with every model frozen and its
    progress bar off."""
    dtypes = component_dtypes(device, dtype)
    if model.weights is not None:
        pipe = pipeline_class.from_pretrained(str(model.weights), dtype=dtypes)
    else:
        with quiet_loading():
            pipe = pipeline_class.from_pretrained(str(tiny_folder()), dtype=dtypes)
    if prepare is not None:
        prepare(pipe)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            frozen(component)
    return pipe
