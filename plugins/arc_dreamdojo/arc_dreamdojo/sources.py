"""Where a rollout's first frame and actions come from when they are not given: a
LeRobot dataset's evaluation window (``dataset=PATH sample=N``), or — for the tiny
variant with nothing configured — a small synthetic sample made here, so that a first
``+model=dreamdojo`` runs anywhere (and says so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from arc_dreamdojo.spec import DreamDojoParams, embodiment_of
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.inputs import Sourced, load_input
from arc_fabric_core.contract.models import ModelRef

# The authors' evaluation size; a dataset sample is made there, then resized to the rollout's.
SAMPLE_HEIGHT, SAMPLE_WIDTH = 480, 640


def source_inputs(model: ModelRef, params: DreamDojoParams, inputs: dict[str, Any]) -> Sourced | None:
    from arc_dreamdojo.plugin import check_embodiment

    embodiment = embodiment_of(model.variant.name)
    given = {name: load_input(value, f"inputs.{name}") for name, value in inputs.items()}
    if "actions" in given and given["actions"].ndim == 2 and given["actions"].shape[1] == 384:
        check_embodiment(given["actions"].to(torch.float32), embodiment)
    if "image" in given:
        _check_image(given["image"], params)
    if params.dataset is not None:
        sample, note = _dataset_sample(model, params, embodiment)
    elif "image" in given:
        return None  # with actions, or without: diffusers' Cosmos 2.5 base model (no action MLPs)
    elif model.variant.tiny:
        from arc_dreamdojo.dataset import synthetic_sample

        sample = synthetic_sample(params.chunks, params.height, params.width, seed=params.seed)
        note = (
            "no dataset or image and actions configured: a synthetic sample made here "
            "(give dataset=PATH sample=N, or image=PATH actions=PATH.npy)"
        )
    else:
        missing = sorted({"image", "actions"} - given.keys())
        raise InputError(
            f"inputs.{missing[0]}",
            f"{model.label} needs a first frame and actions: give image=PATH actions=PATH.npy, "
            "or dataset=PATH sample=N",
        )
    image, frames = _fit(sample.image, sample.frames, params)
    found: dict[str, Any] = {"image": image, "actions": sample.actions}
    return Sourced(inputs=found, reference=frames, note=note)


def _check_image(image: torch.Tensor, params: DreamDojoParams) -> None:
    if image.ndim == 3 and image.shape[0] == 3 and tuple(image.shape[1:]) != (params.height, params.width):
        raise InputError(
            "inputs.image",
            f"is {image.shape[2]}x{image.shape[1]}; the rollout is {params.width}x{params.height}: give a frame of "
            "that size (the dataset reader centre-crops to 4:3 and resizes to 640x480, as the authors do), or set "
            "width and height to the frame's",
        )


def _dataset_sample(model: ModelRef, params: DreamDojoParams, embodiment: str) -> tuple[Any, str]:
    from arc_dreamdojo.dataset import LeRobotDataset

    assert params.dataset is not None
    stats = Path(params.stats) if params.stats else _weights_stats(model)
    dataset = LeRobotDataset(Path(params.dataset), stats=stats, embodiment=embodiment)
    sample = dataset.sample(params.sample, chunks=params.chunks, per_task=params.samples_per_task)
    w = sample.window
    note = (
        f"sample {params.sample} of {params.dataset}: task {w.task!r}, episode {w.episode_index}, "
        f"frames from {w.start} ({params.chunks} chunks)"
    )
    return sample, note


def _weights_stats(model: ModelRef) -> Path | None:
    """The statistics shipped with the weights (:func:`arc_dreamdojo.weights.stats_path`)."""
    if model.weights is None:
        return None
    from arc_dreamdojo.weights import stats_path

    return stats_path(Path(model.weights))


def _fit(image: torch.Tensor, frames: torch.Tensor, params: DreamDojoParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample at the rollout's size (bilinear, antialiased; none at 480x640)."""
    size = (params.height, params.width)
    if tuple(image.shape[1:]) == size:
        return image, frames
    image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    video = F.interpolate(frames.permute(0, 3, 1, 2), size=size, mode="bilinear", antialias=True, align_corners=False)
    return image.clamp(0, 1), video.permute(0, 2, 3, 1).clamp(0, 1)
