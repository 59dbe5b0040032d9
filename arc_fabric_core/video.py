"""Writing frames to video files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] -> uint8 array."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def write_mp4(frames: torch.Tensor, path: str | Path, fps: int) -> Path:
    """Write (F, H, W, 3) frames in [0, 1] as H.264 mp4 (yuv420p, playable in browsers)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio.get_writer(
        str(tmp),
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-pix_fmt", "yuv420p"],
    )
    try:
        for frame in to_uint8(frames):
            writer.append_data(frame)
    finally:
        writer.close()
    tmp.replace(path)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Read a video back as a (F, H, W, 3) uint8 array."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path))
    try:
        return np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()
