"""DreamDojo's GR-1 evaluation data: a reader of LeRobot v2 datasets, windows and samples.

A dataset is one LeRobot v2 folder (``meta/{info.json, episodes.jsonl, tasks.jsonl, modality.json,
stats.json}``, ``data/chunk-*/episode_*.parquet``, ``videos/chunk-*/<video key>/episode_*.mp4``), as
published in ``nvidia/PhysicalAI-Robotics-GR00T-Teleop-GR1``. Parquet is read with pyarrow and mp4
with the ffmpeg binary that imageio-ffmpeg ships (it decodes h264 and AV1). The ``lerobot`` package
(0.4.4) is not used: it requires ``torch<2.11``, ``torchvision<0.26`` and ``diffusers<0.36`` (we pin
torch 2.14.1, torchvision 0.29.1, diffusers 0.42.1), and its reader expects the v3 layout while these
datasets are v2.0.

Statistics: the authors normalise GR-1 actions with their shared ``GR1_unified_stats.json`` (the
dataset's own ``meta/stats.json`` only supplies key names there). Pass that file (or any file of the
same format: per column ``mean/std/min/max/q01/q99``) as ``stats``; without it, the dataset's
``meta/stats.json`` (the same format) is used, which matches the authors only where the two agree.

A sample follows the authors' evaluation (``groot_dreams``' dataset and ``cosmos_predict2/
action_conditioned.py``): for ``n = 1 + 12 * chunks`` output frames, ``n + 1`` rows are taken at
``start, start + 2, ..., start + 2n`` (stride 2: 20 Hz -> 10 fps); the first row is only the baseline
of the first action group and its frame is dropped, so the video starts at ``start + 2``.

Tasks: the authors evaluate one LeRobot dataset per task (``In-lab_Eval/gr1_unified.<task>_robot``, 10
windows from each of 10). Here one folder may hold several tasks, grouped by their rows' ``task_index``;
a folder holding one task gives exactly the authors' windows for it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arc_fabric_core.contract.errors import InputError

# Where each embodiment's actions sit in the 384-dim unified action vector (docs/POSTTRAIN.md).
EMBODIMENT_SLICES: dict[str, tuple[int, int]] = {
    "gr1": (0, 29),
    "g1": (58, 101),
    "yam": (101, 147),
    "agibot": (147, 169),
}
# Frames of the recording per output frame (their ``timestep_interval``): 20 Hz -> 10 fps for GR-1/G1.
FRAME_STRIDES: dict[str, int] = {"gr1": 2, "g1": 2, "yam": 4, "agibot": 4}
ACTION_DIM = 384
CHUNK_ACTIONS = 12  # actions per chunk: 12 -> 13 frames, 4 latent frames
DELTA_GROUP = 4  # actions per latent frame; deltas are taken per group
HEIGHT, WIDTH = 480, 640

# The GR-1 parts the authors use, in their concatenation order (not the order of the 44-dim layout).
GR1_ACTION_PARTS = ("left_arm", "right_arm", "left_hand", "right_hand", "waist")
# The 44-dim layout of ``observation.state`` and ``action`` (meta/modality.json of the GR-1 data).
GR1_LAYOUT: dict[str, tuple[int, int]] = {
    "left_arm": (0, 7),
    "left_hand": (7, 13),
    "left_leg": (13, 19),
    "neck": (19, 22),
    "right_arm": (22, 29),
    "right_hand": (29, 35),
    "right_leg": (35, 41),
    "waist": (41, 44),
}
GR1_VIDEO_KEY = "observation.images.ego_view_freq20"
DEFAULT_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
DEFAULT_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
META_FILES = ("meta/info.json", "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/modality.json")


@dataclass(frozen=True)
class Window:
    """One evaluation clip: ``start`` is the baseline row in the 20 Hz episode (its frame is not shown)."""

    task: str
    task_index: int
    episode_index: int
    start: int
    chunks: int

    @property
    def num_frames(self) -> int:
        return 1 + CHUNK_ACTIONS * self.chunks


@dataclass(frozen=True, eq=False)
class Sample:
    """``image`` (3, H, W) and ``frames`` (1 + 12k, H, W, 3) float32 in [0, 1]; ``actions`` (12k, 384)."""

    image: torch.Tensor
    actions: torch.Tensor
    frames: torch.Tensor
    window: Window
    fps: int


def _chunks(chunks: int) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise InputError("chunks", f"chunks must be a whole number of at least 1, got {chunks!r}")
    return chunks


def _read_json(path: Path, field: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(field, f"{path} is not readable JSON: {error}") from error


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise InputError("dataset", f"{path} is not readable JSON lines: {error}") from error


class LeRobotDataset:
    """A LeRobot v2 dataset of one embodiment; only GR-1 samples (``embodiment="gr1"``) are built."""

    def __init__(self, root: Path, stats: Path | None = None, embodiment: str = "gr1") -> None:
        if embodiment not in EMBODIMENT_SLICES:
            raise InputError("embodiment", f"unknown embodiment {embodiment!r}; known: {', '.join(EMBODIMENT_SLICES)}")
        self.root = Path(root)
        self.embodiment = embodiment
        self.stride = FRAME_STRIDES[embodiment]
        for name in META_FILES:
            self._require(name)
        self.info: dict[str, Any] = _read_json(self.root / "meta/info.json", "dataset")
        self.modality: dict[str, Any] = _read_json(self.root / "meta/modality.json", "dataset")
        self.data_path: str = self.info.get("data_path", DEFAULT_DATA_PATH)
        self.video_path: str = self.info.get("video_path", DEFAULT_VIDEO_PATH)
        self.chunks_size = int(self.info.get("chunks_size", 1000))
        self.video_key = self._video_key()
        self.video_fps = self._video_fps()
        self.fps = round(float(self.info.get("fps", 20)) / self.stride)  # output frames per second
        self.tasks: dict[int, str] = {
            int(t["task_index"]): str(t["task"]) for t in _read_jsonl(self.root / "meta/tasks.jsonl")
        }
        self.episodes: list[tuple[int, int]] = [
            (int(e["episode_index"]), int(e["length"])) for e in _read_jsonl(self.root / "meta/episodes.jsonl")
        ]
        if not self.episodes:
            raise InputError("dataset", f"{self.root} has no episodes in meta/episodes.jsonl")
        for episode, _ in self.episodes:
            self._require(str(self._parquet(episode).relative_to(self.root)))
            self._require(str(self._video(episode).relative_to(self.root)))
        self.stats_path = self._stats_path(stats)
        self._stats: dict[str, Any] = _read_json(self.stats_path, "stats")
        # Checked now, so a bad modality.json or statistics file fails here rather than at the first sample.
        self._layout = self._gr1_layout() if embodiment == "gr1" else ([], [], [])
        self._episode_tasks: dict[int, int] = {}

    # -- layout -------------------------------------------------------------------------------------------
    def _require(self, relative: str) -> None:
        if not (self.root / relative).is_file():
            raise InputError("dataset", f"{self.root} is not a LeRobot v2 dataset: no {relative}")

    def _video_key(self) -> str:
        videos = self.modality.get("video") or {}
        for name, meta in videos.items():  # the first (GR-1 has one camera)
            return str((meta or {}).get("original_key") or f"observation.images.{name}")
        return GR1_VIDEO_KEY

    def _video_fps(self) -> float:
        feature = self.info.get("features", {}).get(self.video_key, {})
        # LeRobot versions name the block "video_info" or "info"; the authors read either.
        block = feature.get("video_info") or feature.get("info") or {}
        return float(block.get("video.fps", self.info.get("fps", 20)))

    def _parquet(self, episode: int) -> Path:
        return self.root / self.data_path.format(episode_chunk=episode // self.chunks_size, episode_index=episode)

    def _video(self, episode: int) -> Path:
        chunk = episode // self.chunks_size
        return self.root / self.video_path.format(episode_chunk=chunk, episode_index=episode, video_key=self.video_key)

    def _stats_path(self, stats: Path | None) -> Path:
        if stats is not None:
            if not Path(stats).is_file():
                raise InputError("stats", f"no statistics file {stats}")
            return Path(stats)
        path = self.root / "meta/stats.json"
        if not path.is_file():
            raise InputError(
                "stats",
                f"{self.root} has no meta/stats.json; pass the unified statistics json (GR1_unified_stats.json)",
            )
        return path

    # -- windows ------------------------------------------------------------------------------------------
    def _task_of(self, episode: int) -> int:
        # An episode's task is its rows' task_index (read once, one column).
        if episode not in self._episode_tasks:
            import pyarrow.parquet as pq

            column = pq.read_table(self._parquet(episode), columns=["task_index"]).column("task_index")
            if len(column) == 0:
                raise InputError("dataset", f"{self._parquet(episode)} has no rows")
            self._episode_tasks[episode] = int(column[0].as_py())
        return self._episode_tasks[episode]

    def _window(self, episode: int, start: int, chunks: int) -> Window:
        task = self._task_of(episode)
        return Window(self.tasks.get(task, f"task {task}"), task, episode, start, chunks)

    def _starts(self, length: int, chunks: int) -> int:
        # A start is valid while its last row, start + stride * (1 + 12 * chunks), is in the episode
        # (the authors' ``base_index + max(delta_indices) < length``).
        return max(length - self.stride * (1 + CHUNK_ACTIONS * _chunks(chunks)), 0)

    def windows(self, chunks: int) -> list[Window]:
        """Every valid window, episode by episode (meta/episodes.jsonl order), starts ascending."""
        return [self._window(e, s, chunks) for e, length in self.episodes for s in range(self._starts(length, chunks))]

    def eval_windows(self, chunks: int, per_task: int | None = None) -> list[Window]:
        """``per_task`` evenly spaced windows of each task (tasks by task_index).

        The authors' deterministic uniform sampling, where each task is one LeRobot dataset: the j-th of
        a task's N windows (in ``windows`` order) is window ``int(j / per_task * N)``; with no
        ``per_task`` each task gives as many as the smallest has (their sampling without
        ``--num-samples``, where float rounding repeats a few windows and skips their neighbours)."""
        tasks: dict[int, list[tuple[int, int]]] = {}  # task -> [(episode, starts)]
        for episode, length in self.episodes:
            if starts := self._starts(length, chunks):
                tasks.setdefault(self._task_of(episode), []).append((episode, starts))
        if not tasks:
            raise InputError("chunks", f"no episode of {self.root} is long enough for {chunks} chunk(s)")
        sizes = {task: sum(starts for _, starts in parts) for task, parts in tasks.items()}
        fewest = min(sizes.values())
        if per_task is None:
            per_task = fewest
        if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
            raise InputError("per_task", f"per_task must be a whole number of at least 1, got {per_task!r}")
        if per_task > fewest:
            raise InputError("per_task", f"per_task {per_task} is more than the {fewest} windows of the smallest task")
        picked = []
        for task in sorted(tasks):
            for j in range(per_task):
                rank = int(j / per_task * sizes[task])  # their float formula, kept as is
                for episode, starts in tasks[task]:
                    if rank < starts:
                        picked.append(self._window(episode, rank, chunks))
                        break
                    rank -= starts
        return picked

    # -- samples ------------------------------------------------------------------------------------------
    def sample(self, index: int, chunks: int = 4, per_task: int | None = None) -> Sample:
        """The ``index``-th evaluation window (``eval_windows(chunks, per_task)``), loaded."""
        windows = self.eval_windows(chunks, per_task)
        if not 0 <= index < len(windows):
            raise InputError(
                "sample",
                f"sample {index} is out of range: the dataset has {len(windows)} windows (0..{len(windows) - 1})",
            )
        return self.load(windows[index])

    def load(self, window: Window) -> Sample:
        """The window's first frame, its 12k actions and its 1 + 12k ground-truth frames.

        Rows ``start + 2i`` for i in 0..n; the actions are the deltas of rows 1..n against each group's
        preceding row (row 0 for the first group), and the frames those of rows 1..n (row 0 has none)."""
        if self.embodiment != "gr1":
            raise InputError("embodiment", f"only gr1 datasets are read; {self.embodiment} actions are not built")
        import pyarrow.parquet as pq

        table = pq.read_table(self._parquet(window.episode_index), columns=["action", "timestamp"])
        rows = window.start + self.stride * np.arange(window.num_frames + 1)
        if rows[-1] >= table.num_rows:
            raise InputError(
                "sample", f"window {window} runs past episode {window.episode_index} ({table.num_rows} rows)"
            )
        actions = self._actions(_list_column(table.column("action"))[rows])
        timestamps = table.column("timestamp").to_numpy().astype(np.float64)
        if np.all(timestamps == 0):  # as the authors: no timestamps -> the video's frame times
            timestamps = np.arange(len(timestamps)) / self.video_fps
        # The first row is only the first action group's baseline: the video starts one step later.
        frames = self._frames(self._video(window.episode_index), timestamps[rows[1:]])
        return Sample(frames[0].permute(2, 0, 1).contiguous(), actions, frames, window, self.fps)

    def _gr1_layout(self) -> tuple[list[int], list[float], list[float]]:
        """The 29 columns of the 44-dim ``action`` the authors use, in their order, with their min/max."""
        columns: list[int] = []
        lows: list[float] = []
        highs: list[float] = []
        for part in GR1_ACTION_PARTS:
            meta = (self.modality.get("action") or {}).get(part)
            if meta is None:
                raise InputError("dataset", f"{self.root}/meta/modality.json has no action.{part}")
            key, start, end = meta.get("original_key") or part, int(meta["start"]), int(meta["end"])
            if key != "action":  # the authors read the ``action`` column, never observation.state
                raise InputError("dataset", f"action.{part} reads {key!r}; GR-1 actions are the 'action' column")
            column = self._stats.get(key) or {}
            if "min" not in column or "max" not in column or len(column["min"]) < end or len(column["max"]) < end:
                raise InputError("stats", f"{self.stats_path} has no {key} min/max covering [{start}, {end})")
            columns.extend(range(start, end))
            lows.extend(column["min"][start:end])
            highs.extend(column["max"][start:end])
        return columns, lows, highs

    def _actions(self, raw: np.ndarray) -> torch.Tensor:
        """(n + 1, 44) raw GR-1 action rows -> (n - 1, 384): deltas of min-max normalised values."""
        columns, lows, highs = self._layout
        # Their Normalizer holds the statistics as float32 tensors and computes in the data's float64.
        low = np.asarray(lows, dtype=np.float32).astype(np.float64)
        high = np.asarray(highs, dtype=np.float32).astype(np.float64)
        values = raw[:, columns].astype(np.float64)
        spread = high != low
        normed = np.zeros_like(values)
        normed[:, spread] = (values[:, spread] - low[spread]) / (high[spread] - low[spread])
        normed[:, spread] = 2 * normed[:, spread] - 1  # in [-1, 1]; no clipping; min == max gives 0
        # Deltas per group of 4 against the row before the group: a[t:t+4] - a[t-1], t = 1, 5, 9, ...
        groups = [normed[t : t + DELTA_GROUP] - normed[t - 1] for t in range(1, len(normed) - 1, DELTA_GROUP)]
        deltas = torch.from_numpy(np.concatenate(groups, axis=0)).float()
        out = torch.zeros(deltas.shape[0], ACTION_DIM, dtype=torch.float32)
        lo, hi = EMBODIMENT_SLICES["gr1"]
        out[:, lo:hi] = deltas
        return out

    def _frames(self, path: Path, timestamps: np.ndarray) -> torch.Tensor:
        # decord's choice: the frame whose time is nearest (ties to the earlier frame).
        wanted = np.maximum(np.ceil(timestamps * self.video_fps - 0.5).astype(np.int64), 0)
        decoded = _decode(path, wanted)
        return prepare_frames(torch.from_numpy(decoded))


def _list_column(column: Any) -> np.ndarray:
    """A parquet list column of equal-length float lists as a (rows, dim) float64 array."""
    array = column.combine_chunks()
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    rows = len(array)
    if rows == 0 or flat.size % rows:
        raise InputError("dataset", "the action column is not a list of equal-length vectors")
    return flat.reshape(rows, flat.size // rows)


def _decode(path: Path, indices: np.ndarray) -> np.ndarray:
    """The frames at ``indices`` (decoded in order up to the last one) as (len, H, W, 3) uint8.

    An index past the end of the video gives its last frame, as the nearest-timestamp choice would."""
    import imageio_ffmpeg

    last = int(indices.max())
    kept: dict[int, np.ndarray] = {}
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
    try:
        meta = next(reader)
        width, height = meta["size"]
        frame = None
        for number, raw in enumerate(reader):
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            kept[number] = frame
            if number >= last:
                break
        if frame is None:
            raise InputError("dataset", f"{path} has no video frames")
    finally:
        reader.close()
    final = max(kept)
    return np.stack([kept[min(int(i), final)] for i in indices])


def centre_crop(frames: torch.Tensor) -> torch.Tensor:
    """Crop (..., H, W) frames to the largest centred 4:3 area (the authors' ``VideoCrop.center_crop``)."""
    ratio = WIDTH / HEIGHT
    height, width = frames.shape[-2:]
    if width / height > ratio:
        height_out, width_out = height, int(height * ratio)
    elif width / height < ratio:
        height_out, width_out = int(width / ratio), width
    else:
        height_out, width_out = height, width
    top, left = (height - height_out) // 2, (width - width_out) // 2
    return frames[..., top : top + height_out, left : left + width_out]


def prepare_frames(decoded: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 480, 640, 3) float32 in [0, 1], as the authors' eval sees them.

    uint8 / 255, centre crop to 4:3, bilinear resize with antialiasing (torchvision's ``Resize``, which is
    this ``interpolate`` call), then back to uint8 by truncation (their ``(x * 255).to(uint8)``), / 255."""
    video = decoded.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    video = centre_crop(video).contiguous()
    video = F.interpolate(video, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False, antialias=True)
    video = video.mul_(255.0).clamp_(0, 255).to(torch.uint8)
    return video.permute(0, 2, 3, 1).contiguous().to(torch.float32).div_(255.0)


def synthetic_sample(chunks: int, height: int, width: int, seed: int = 0) -> Sample:
    """A deterministic stand-in sample (no dataset needed): a smooth pattern drifting across the frame
    and smooth small GR-1 action deltas in [0, 29) of the 384 vector."""
    chunks = _chunks(chunks)
    if height < 1 or width < 1:
        raise InputError("height", f"height and width must be positive, got {height}x{width}")
    count = 1 + CHUNK_ACTIONS * chunks
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(3, generator=generator) * 2 * math.pi
    y = torch.linspace(0, 1, height).view(1, height, 1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width, 1)
    t = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1) / count
    waves = torch.sin(2 * math.pi * (1.5 * x + 0.75 * y - t) + phase) * torch.cos(2 * math.pi * (y - 0.5 * t))
    frames = (0.5 + 0.4 * waves).clamp(0, 1).to(torch.float32)
    lo, hi = EMBODIMENT_SLICES["gr1"]
    frequency = 0.5 + torch.rand(hi - lo, generator=generator)
    offset = torch.rand(hi - lo, generator=generator) * 2 * math.pi
    steps = torch.arange(count - 1, dtype=torch.float32).view(-1, 1) / (count - 1)
    actions = torch.zeros(count - 1, ACTION_DIM, dtype=torch.float32)
    actions[:, lo:hi] = 0.05 * torch.sin(2 * math.pi * frequency * steps + offset)
    window = Window("synthetic", 0, 0, 0, chunks)
    return Sample(frames[0].permute(2, 0, 1).contiguous(), actions, frames, window, 20 // FRAME_STRIDES["gr1"])
