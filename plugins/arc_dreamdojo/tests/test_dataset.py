"""The LeRobot v2 reader on a tiny dataset built offline: layout errors, windows, the authors'
action formula, crop and resize, frame stride, and the synthetic stand-in sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from arc_dreamdojo.dataset import EMBODIMENT_SLICES, FRAME_STRIDES, LeRobotDataset, synthetic_sample
from arc_dreamdojo.tiny_dataset import UNIFIED_STATS, build_tiny_dataset

from arc_fabric_core.contract.errors import InputError

VIDEO = "videos/chunk-000/observation.images.ego_view_freq20/episode_{:06d}.mp4"
PARQUET = "data/chunk-000/episode_{:06d}.parquet"
LEVEL = 1 / 255 + 1e-6  # one uint8 step: the authors truncate to uint8 after resizing


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 2 tasks x 2 episodes x 120 frames of 96x160 (5:3, so 16 columns are cropped each side)
    return build_tiny_dataset(tmp_path_factory.mktemp("gr1") / "tiny")


@pytest.fixture(scope="module")
def dataset(tiny: Path) -> LeRobotDataset:
    return LeRobotDataset(tiny, stats=tiny / UNIFIED_STATS)


def _decoded(path: Path) -> np.ndarray:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])


def _on_grid(frame: np.ndarray) -> np.ndarray:
    """The decoded frame, centre-cropped by hand: 96x160 -> rows 0:96, columns 16:144, (3, 96, 128) in [0, 1]."""
    return torch.from_numpy(frame[:, 16:144].astype(np.float32) / 255).permute(2, 0, 1).numpy()


def test_the_published_layout(tiny: Path) -> None:
    info = json.loads((tiny / "meta/info.json").read_text())
    assert info["fps"] == 20 and info["codebase_version"] == "v2.0"
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    assert info["features"]["action"]["shape"] == [44]
    assert info["features"]["observation.images.ego_view_freq20"]["video_info"]["video.fps"] == 20.0
    modality = json.loads((tiny / "meta/modality.json").read_text())
    assert modality["action"]["right_arm"] == {"original_key": "action", "start": 22, "end": 29}
    assert modality["state"]["waist"] == {"original_key": "observation.state", "start": 41, "end": 44}
    table = pq.read_table(tiny / PARQUET.format(3))
    assert set(table.column_names) == {
        "observation.state",
        "action",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    }
    assert len(table.column("action")[0].as_py()) == 44 and table.column("task_index")[0].as_py() == 1


@pytest.mark.parametrize(
    "missing",
    [
        "meta/info.json",
        "meta/episodes.jsonl",
        "meta/tasks.jsonl",
        "meta/modality.json",
        PARQUET.format(1),
        VIDEO.format(2),
    ],
)
def test_a_missing_file_is_named(tiny: Path, tmp_path: Path, missing: str) -> None:
    root = Path(shutil.copytree(tiny, tmp_path / "copy"))
    (root / missing).unlink()
    with pytest.raises(InputError) as info:
        LeRobotDataset(root)
    assert info.value.field == "dataset"
    assert info.value.message == f"{root} is not a LeRobot v2 dataset: no {missing}"


def test_missing_statistics(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        LeRobotDataset(tiny, stats=tmp_path / "GR1_unified_stats.json")
    assert info.value.field == "stats"
    narrow = tmp_path / "narrow.json"  # statistics that stop before the waist
    narrow.write_text(json.dumps({"action": {"min": [0.0] * 41, "max": [1.0] * 41}}))
    with pytest.raises(InputError, match=r"has no action min/max covering \[41, 44\)") as info:
        LeRobotDataset(tiny, stats=narrow)
    assert info.value.field == "stats"
    root = Path(shutil.copytree(tiny, tmp_path / "copy"))
    (root / "meta/stats.json").unlink()
    LeRobotDataset(root, stats=root / UNIFIED_STATS)  # given statistics need no meta/stats.json
    with pytest.raises(InputError, match=r"no meta/stats\.json") as info:
        LeRobotDataset(root)
    assert info.value.field == "stats"


def test_a_sample_out_of_range(dataset: LeRobotDataset) -> None:
    with pytest.raises(InputError) as info:
        dataset.sample(12, chunks=1, per_task=5)
    assert info.value.field == "sample"
    assert info.value.message == "sample 12 is out of range: the dataset has 10 windows (0..9)"


def test_eval_windows_are_evenly_spaced_and_deterministic(dataset: LeRobotDataset, tiny: Path) -> None:
    # One chunk spans 2 * 13 = 26 rows: starts 0..93 in each 120-row episode, 188 per task;
    # the j-th of 5 is window int(j / 5 * 188) = 0, 37, 75, 112, 150 of the task.
    windows = dataset.eval_windows(1, per_task=5)
    picked = [(w.task_index, w.episode_index, w.start) for w in windows]
    assert picked == [
        (0, 0, 0),
        (0, 0, 37),
        (0, 0, 75),
        (0, 1, 18),
        (0, 1, 56),
        (1, 2, 0),
        (1, 2, 37),
        (1, 2, 75),
        (1, 3, 18),
        (1, 3, 56),
    ]
    assert windows[0].task == "pick the object and place it in bin 0" and windows[0].chunks == 1
    assert LeRobotDataset(tiny).eval_windows(1, per_task=5) == windows
    assert len(dataset.windows(1)) == 4 * 94 and len(dataset.windows(4)) == 4 * (120 - 98)
    # No per_task: as many as the smallest task has (188), still through int(j / 188 * 188), which
    # floats put one below j at times (3 / 188 * 188 = 2.9999999999999996): the authors repeat start 2.
    every = dataset.eval_windows(1)
    assert len(every) == 376 and [w.start for w in every[:5]] == [0, 1, 2, 2, 4]
    with pytest.raises(InputError) as info:
        dataset.eval_windows(4, per_task=45)
    assert info.value.field == "per_task"


def test_actions_follow_the_authors_formula(dataset: LeRobotDataset, tiny: Path) -> None:
    window = dataset.eval_windows(1, per_task=5)[3]  # episode 1, start 18
    s = window.start
    rows = pq.read_table(tiny / PARQUET.format(window.episode_index)).column("action").to_pylist()
    stats = json.loads((tiny / UNIFIED_STATS).read_text())["action"]

    def norm(row: int, dim: int) -> float:
        low, high = stats["min"][dim], stats["max"][dim]
        return 2 * (rows[row][dim] - low) / (high - low) - 1

    actions = dataset.load(window).actions
    assert actions.shape == (12, 384) and actions.dtype == torch.float32
    # Output column 0 is left_arm[0] (dim 0); 7 right_arm[0] (dim 22); 14 left_hand[0] (dim 7);
    # 20 right_hand[0] (dim 29); 28 waist[2] (dim 43). Output row i uses row s + 2 (i + 1); its group's
    # baseline is the row before the group: s for rows 0-3, s + 8 for rows 4-7, s + 16 for rows 8-11.
    expected = {
        (0, 0): norm(s + 2, 0) - norm(s, 0),
        (3, 7): norm(s + 8, 22) - norm(s, 22),
        (4, 14): norm(s + 10, 7) - norm(s + 8, 7),
        (7, 28): norm(s + 16, 43) - norm(s + 8, 43),
        (11, 20): norm(s + 24, 29) - norm(s + 16, 29),
    }
    for (i, j), value in expected.items():
        assert actions[i, j].item() == pytest.approx(value, abs=1e-6), (i, j)
    assert torch.all(actions[:, 26] == 0)  # waist[0] is constant: min == max normalises to 0
    assert torch.all(actions[:, 29:] == 0) and actions[:, :29].abs().max() > 0.05
    # The dataset's own meta/stats.json (narrower) gives other values.
    assert not torch.allclose(LeRobotDataset(tiny).load(window).actions, actions)


def test_frames_are_cropped_resized_and_strided(dataset: LeRobotDataset, tiny: Path) -> None:
    window = dataset.eval_windows(2, per_task=2)[1]
    sample = dataset.load(window)
    assert sample.frames.shape == (25, 480, 640, 3) and sample.frames.dtype == torch.float32
    assert sample.image.shape == (3, 480, 640) and sample.actions.shape == (24, 384) and sample.fps == 10
    assert torch.equal(sample.image, sample.frames[0].permute(2, 0, 1))
    assert sample.frames.min() >= 0 and sample.frames.max() <= 1
    video = _decoded(tiny / VIDEO.format(window.episode_index))
    s = window.start
    # Bilinear x5 (align_corners=False): output pixel 5k + 2 samples source pixel k exactly.
    for j in (0, 1, 24):
        got = sample.frames[j].permute(2, 0, 1).numpy()[:, 2::5, 2::5]
        assert np.abs(got - _on_grid(video[s + 2 + 2 * j])).max() <= LEVEL, j  # frame start + 2 (j + 1)
        assert np.abs(got - _on_grid(video[s + 1 + 2 * j])).mean() > 2 / 255  # not the frame between
    # Output pixel (4, 4) sits at source (0.4, 0.4): weights 0.6 / 0.4 on rows and columns 0, 1.
    p = _on_grid(video[s + 2])[:, :2, :2]
    by_hand = 0.36 * p[:, 0, 0] + 0.24 * p[:, 0, 1] + 0.24 * p[:, 1, 0] + 0.16 * p[:, 1, 1]
    assert np.abs(sample.image[:, 4, 4].numpy() - by_hand).max() <= LEVEL
    # Without the crop (columns 0:128) the grid does not match.
    uncropped = video[s + 2, :, :128].astype(np.float32).transpose(2, 0, 1) / 255
    assert np.abs(sample.image.numpy()[:, 2::5, 2::5] - uncropped).mean() > 4 / 255


def test_other_embodiments_are_not_built(tiny: Path) -> None:
    assert EMBODIMENT_SLICES == {"gr1": (0, 29), "g1": (58, 101), "yam": (101, 147), "agibot": (147, 169)}
    assert FRAME_STRIDES == {"gr1": 2, "g1": 2, "yam": 4, "agibot": 4}
    g1 = LeRobotDataset(tiny, embodiment="g1")
    with pytest.raises(InputError, match="only gr1 datasets are read") as info:
        g1.load(g1.windows(1)[0])
    assert info.value.field == "embodiment"
    with pytest.raises(InputError) as info:
        LeRobotDataset(tiny, embodiment="gr2")
    assert info.value.field == "embodiment"


def test_synthetic_sample() -> None:
    sample = synthetic_sample(2, 64, 96, seed=3)
    assert sample.image.shape == (3, 64, 96) and sample.frames.shape == (25, 64, 96, 3)
    assert sample.actions.shape == (24, 384) and sample.fps == 10 and sample.window.chunks == 2
    assert torch.all(sample.actions[:, 29:] == 0) and sample.actions[:, :29].abs().max() > 0
    assert sample.frames.min() >= 0 and sample.frames.max() <= 1
    assert torch.equal(sample.image, sample.frames[0].permute(2, 0, 1))
    assert not torch.equal(sample.frames[0], sample.frames[1])  # the pattern moves
    assert torch.equal(synthetic_sample(2, 64, 96, seed=3).frames, sample.frames)
    assert not torch.equal(synthetic_sample(2, 64, 96, seed=4).actions, sample.actions)


def test_the_tiny_dataset_is_deterministic(tmp_path: Path) -> None:
    small = {"episodes_per_task": 1, "tasks": 1, "frames": 30, "height": 48, "width": 80}
    first = build_tiny_dataset(tmp_path / "a", **small)
    second = build_tiny_dataset(tmp_path / "b", **small)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
