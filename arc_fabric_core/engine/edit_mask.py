"""Where an edit applies: a mask in pixel coordinates, mapped onto the latent grid.

A latent cell is edited when any pixel it encodes is: the edit then covers all of
what the user marked (and at most one latent cell's worth more around it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import LatentSpace
from arc_fabric_core.contract.params import GenerationParams


class EditMask(BaseModel):
    """Pixel-space mask of an edit. Spatial (a rectangle or a mask image) and temporal
    (a frame range) parts combine: the edit covers the spatial region in those frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rect: tuple[int, int, int, int] | None = Field(None, description="x0, y0, x1, y1 in pixels; x1 and y1 exclusive.")
    image: str | None = Field(None, description="Path of a mask image the video's size; white = edit.")
    frames: tuple[int, int] | None = Field(None, description="Pixel frames [start, end) to edit.")

    @property
    def empty(self) -> bool:
        return self.rect is None and self.image is None and self.frames is None


def latent_mask(
    mask: EditMask, params: GenerationParams, space: LatentSpace, grid: tuple[int, int, int] | None = None
) -> torch.Tensor | None:
    """The (1, 1, F, H, W) bool latent mask (True = edit), or None for "everywhere".

    ``grid`` is the (F, H, W) of the latents edited, when it is not what the latent
    space gives for the video's size (a multi-scale model's last pass runs at another
    size and its decode resizes): pixels then map onto it proportionally.

    Every check happens here, before any compute: a mask outside the frame or an
    empty one is an InputError naming the field.
    """
    if mask.empty:
        return None
    width, height, frames = params.width, params.height, params.num_frames
    _, lf, lh, lw = space.latent_shape(frames, height, width)
    if grid is not None:
        lf, lh, lw = grid
    if mask.rect is not None and mask.image is not None:
        raise InputError("mask", "give a rectangle or a mask image, not both")

    spatial = torch.ones(lh, lw, dtype=torch.bool)
    if mask.rect is not None:
        x0, y0, x1, y1 = mask.rect
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InputError(
                "mask.rect",
                f"{mask.rect} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} "
                "(pixels, end exclusive, inside the frame, not empty)",
            )
        spatial = torch.zeros(lh, lw, dtype=torch.bool)
        # Every cell holding a marked pixel: floor of the start, ceiling of the end.
        spatial[y0 * lh // height : -(-y1 * lh // height), x0 * lw // width : -(-x1 * lw // width)] = True
    if mask.image is not None:
        spatial = _image_mask(Path(mask.image), width, height, lh, lw)

    temporal = torch.ones(lf, dtype=torch.bool)
    if mask.frames is not None:
        f0, f1 = mask.frames
        if not 0 <= f0 < f1 <= frames:
            raise InputError(
                "mask.frames", f"{mask.frames} must satisfy 0 <= start < end <= {frames} (pixel frames, end exclusive)"
            )
        temporal = torch.zeros(lf, dtype=torch.bool)
        temporal[space.latent_frame(f0) : space.latent_frame(f1 - 1) + 1] = True
    return (temporal.view(lf, 1, 1) & spatial.view(1, lh, lw)).view(1, 1, lf, lh, lw)


def _image_mask(path: Path, width: int, height: int, lh: int, lw: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError("mask.image", f"{path} does not exist")
    try:
        with Image.open(path) as img:
            gray = img.convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError("mask.image", f"{path} is not a readable image ({exc})") from None
    if gray.size != (width, height):
        raise InputError("mask.image", f"{path} is {gray.size[0]}x{gray.size[1]}; the video is {width}x{height}")
    pixels = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8).view(height, width) > 127
    if not pixels.any():
        raise InputError("mask.image", f"{path} marks nothing (white = edit; the image is all dark)")
    # Any marked pixel marks the latent cell it falls in.
    ys, xs = pixels.nonzero(as_tuple=True)
    cells = torch.zeros(lh, lw, dtype=torch.bool)
    cells[ys * lh // height, xs * lw // width] = True
    return cells
