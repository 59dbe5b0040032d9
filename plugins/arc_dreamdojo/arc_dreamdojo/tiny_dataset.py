"""A tiny GR-1 dataset written offline in the published LeRobot v2 layout, for tests and first runs.

Episodes are smooth 44-dim joint trajectories (``action``; ``observation.state`` lags it by one row)
and a smooth pattern drifting across each frame, at 20 Hz, frames not 4:3 so the crop is exercised.
Beside the LeRobot files it writes ``unified_stats.json``: statistics in the format of the authors'
``GR1_unified_stats.json``, wider than the dataset's own ``meta/stats.json`` (as shared statistics are).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from arc_dreamdojo.dataset import DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH, GR1_LAYOUT, GR1_VIDEO_KEY

UNIFIED_STATS = "unified_stats.json"
FPS = 20
STATE_DIM = 44
# Joints held still: the legs and neck (unused by the model) and the first waist joint, whose
# min == max exercises the normaliser's zero for constant dims.
CONSTANT_DIMS = [*range(13, 22), 41]


def _names() -> list[str]:
    return [f"{part}_{i}" for part, (lo, hi) in GR1_LAYOUT.items() for i in range(hi - lo)]


def _trajectory(rng: np.random.Generator, frames: int) -> np.ndarray:
    base = rng.uniform(-1.0, 1.0, STATE_DIM)
    amplitude = rng.uniform(0.1, 0.5, STATE_DIM)
    frequency = rng.uniform(0.5, 2.0, STATE_DIM)
    phase = rng.uniform(0.0, 2 * math.pi, STATE_DIM)
    t = np.arange(frames, dtype=np.float64)[:, None] / frames
    action = base + amplitude * np.sin(2 * math.pi * frequency * t + phase)
    action[:, CONSTANT_DIMS] = 0.25
    return action


def _video(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    phase = rng.uniform(0.0, 2 * math.pi, 3)
    y = np.arange(height, dtype=np.float64)[None, :, None, None]
    x = np.arange(width, dtype=np.float64)[None, None, :, None]
    t = np.arange(frames, dtype=np.float64)[:, None, None, None]
    waves = np.sin(2 * math.pi * (x / 40.0 - t / 30.0) + phase) * np.cos(2 * math.pi * y / 64.0 + t / 25.0)
    ramp = 60.0 * (x / width - 0.5)  # left-right asymmetry, so a wrong crop shows
    return np.clip(128.0 + 80.0 * waves + ramp, 0, 255).astype(np.uint8)


def _write_video(path: Path, video: np.ndarray) -> None:
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = video.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=FPS,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=8,
        macro_block_size=2,  # keep the size as given (yuv420p needs it even)
        ffmpeg_log_level="error",
        # One thread and bit-exact muxing: the same bytes on every run.
        output_params=["-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact"],
    )
    writer.send(None)
    for frame in video:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _column_stats(values: np.ndarray) -> dict[str, list[float]]:
    values = values.reshape(len(values), -1).astype(np.float64)
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def build_tiny_dataset(
    root: Path,
    episodes_per_task: int = 2,
    tasks: int = 2,
    frames: int = 120,
    height: int = 96,
    width: int = 160,
    seed: int = 0,
) -> Path:
    """Write the dataset under ``root`` (created) and return ``root``. Deterministic in its arguments."""
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even (yuv420p video), got {height}x{width}")
    if min(episodes_per_task, tasks, frames) < 1:
        raise ValueError("episodes_per_task, tasks and frames must be at least 1")
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    count = episodes_per_task * tasks
    task_names = [f"pick the object and place it in bin {i}" for i in range(tasks)]
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("observation.state", "action", "timestamp")}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        columns[key] = []
    for episode in range(count):
        task = episode // episodes_per_task
        action = _trajectory(rng, frames)
        state = np.concatenate([action[:1], action[:-1]])  # the state reached one row later
        frame_index = np.arange(frames, dtype=np.int64)
        table = {
            "observation.state": state,
            "action": action,
            "timestamp": frame_index / FPS,
            "frame_index": frame_index,
            "episode_index": np.full(frames, episode, dtype=np.int64),
            "index": frame_index + episode * frames,
            "task_index": np.full(frames, task, dtype=np.int64),
        }
        arrays = {
            key: pa.array(list(value), type=pa.list_(pa.float64())) if value.ndim == 2 else pa.array(value)
            for key, value in table.items()
        }
        data_path = root / DEFAULT_DATA_PATH.format(episode_chunk=0, episode_index=episode)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), data_path)
        video_path = root / DEFAULT_VIDEO_PATH.format(episode_chunk=0, episode_index=episode, video_key=GR1_VIDEO_KEY)
        _write_video(video_path, _video(rng, frames, height, width))
        for key, value in table.items():
            columns[key].append(value)

    names = _names()
    scalar = {"shape": [1], "names": None}
    info = {
        "codebase_version": "v2.0",
        "robot_type": "GR1T1",
        "total_episodes": count,
        "total_frames": count * frames,
        "total_tasks": tasks,
        "total_videos": count,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{count}"},
        "data_path": DEFAULT_DATA_PATH,
        "video_path": DEFAULT_VIDEO_PATH,
        "features": {
            GR1_VIDEO_KEY: {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channel"],
                "video_info": {
                    "video.fps": float(FPS),
                    "video.codec": "h264",
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "has_audio": False,
                },
            },
            "observation.state": {"dtype": "float64", "shape": [STATE_DIM], "names": names},
            "action": {"dtype": "float64", "shape": [STATE_DIM], "names": names},
            "timestamp": {"dtype": "float64", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        },
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    _write_jsonl(
        root / "meta/episodes.jsonl",
        [{"episode_index": e, "tasks": [task_names[e // episodes_per_task]], "length": frames} for e in range(count)],
    )
    _write_jsonl(root / "meta/tasks.jsonl", [{"task_index": i, "task": name} for i, name in enumerate(task_names)])
    parts = {part: {"start": lo, "end": hi} for part, (lo, hi) in GR1_LAYOUT.items()}
    modality = {
        "state": {part: {"original_key": "observation.state", **span} for part, span in parts.items()},
        "action": {part: {"original_key": "action", **span} for part, span in parts.items()},
        "video": {"ego_view_freq20": {"original_key": GR1_VIDEO_KEY}},
    }
    (root / "meta/modality.json").write_text(json.dumps(modality, indent=4))

    stats = {key: _column_stats(np.concatenate(values)) for key, values in columns.items()}
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    # Shared statistics span more data than this dataset: widen the moving joints' range.
    unified = json.loads(json.dumps(stats))
    moving = [d for d in range(STATE_DIM) if d not in CONSTANT_DIMS]
    for key in ("observation.state", "action"):
        for d in moving:
            unified[key]["min"][d] -= 0.5
            unified[key]["max"][d] += 0.25
    (root / UNIFIED_STATS).write_text(json.dumps(unified, indent=4))
    return root
