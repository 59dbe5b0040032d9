"""The DreamDojo panel's routes, mounted by the server under ``/api/ext/dreamdojo/``.

- ``GET dataset?path=&chunks=&per_task=``: a LeRobot dataset's tasks, their episodes and
  the evaluation windows (``sample`` is a window's index, as the parameter takes it);
- ``GET sample/frame.png``, ``GET sample/truth.mp4`` (``path``, ``sample``, ``chunks``,
  ``per_task``): a window's first frame and its ground-truth video;
- ``GET sessions/{id}/frame.png``, ``.../truth.mp4``: a session's first frame (its stored
  input) and the ground truth of its rollout, at the rollout's size and fps;
- ``GET sessions/{id}/actions``: the norm of each action row, and per chunk;
- ``GET sessions/{id}/metrics``: the session's video against its ground truth.

Paths are folders on the server's machine. Videos and frames are written once into a
cache folder beside the session store (``<data dir>/ext-cache/dreamdojo``): the browser
seeks in a file, and a second look costs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from arc_dreamdojo.act import origin, rollout_window
from arc_dreamdojo.spec import ACTIONS_PER_CHUNK, DreamDojoParams, embodiment_of
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.store.session import SESSION_ID

CACHE = ("ext-cache", "dreamdojo")
MAX_CHUNKS = 200
LPIPS_WEIGHTS = {"vgg16", "lpips_linear"}  # the fields rollout_metrics names when LPIPS lacks its weights


SessionId = Annotated[str, PathParam(pattern=SESSION_ID)]
DatasetPath = Annotated[str, Query(min_length=1, max_length=4096, description="A LeRobot v2 folder on the server")]
Chunks = Annotated[int, Query(ge=1, le=MAX_CHUNKS)]
PerTask = Annotated[int, Query(ge=1, le=10_000)]
Sample = Annotated[int, Query(ge=0, le=1_000_000)]
Embodiment = Annotated[str, Query(pattern=r"^[a-z0-9]{1,20}$")]
Fps = Annotated[int, Query(ge=1, le=240)]


def make_router(orch: Any) -> APIRouter:
    """The routes over ``orch`` (the server's orchestrator: its store and plugins)."""
    router = APIRouter()
    cache = Path(orch.store.root).parent.joinpath(*CACHE)

    def conflict(field: str, message: str) -> HTTPException:
        return HTTPException(409, {"field": field, "message": message})

    @router.get("/dataset")
    def dataset_listing(
        path: DatasetPath, chunks: Chunks = 2, per_task: PerTask = 10, embodiment: Embodiment = "gr1"
    ) -> dict[str, Any]:
        """The dataset's evaluation windows of ``chunks`` chunks, by task and episode."""
        ds = open_dataset(path, embodiment)
        windows = ds.eval_windows(chunks, per_task)
        tasks: dict[int, dict[str, Any]] = {}
        listed = []
        for index, w in enumerate(windows):
            listed.append(
                {
                    "sample": index,
                    "task": str(w.task),
                    "task_index": int(w.task_index),
                    "episode_index": int(w.episode_index),
                    "start": int(w.start),
                    "chunks": int(w.chunks),
                }
            )
            task = tasks.setdefault(int(w.task_index), {"task_index": int(w.task_index), "task": str(w.task)})
            episodes = task.setdefault("episodes", [])
            if int(w.episode_index) not in episodes:
                episodes.append(int(w.episode_index))
        return {
            "path": str(Path(path).expanduser().resolve()),
            "chunks": chunks,
            "samples_per_task": per_task,
            "frames": 1 + ACTIONS_PER_CHUNK * chunks,
            "tasks": sorted(tasks.values(), key=lambda t: t["task_index"]),
            "windows": listed,
        }

    @router.get("/sample/frame.png")
    def sample_frame(
        path: DatasetPath,
        sample: Sample = 0,
        chunks: Chunks = 2,
        per_task: PerTask = 10,
        embodiment: Embodiment = "gr1",
    ) -> Response:
        """A window's first frame, as the rollout starts from it (the dataset's 640x480)."""
        key = _key("frame", path, sample, chunks, per_task, embodiment)
        file = cache / f"{key}.png"
        if not file.is_file():
            got = open_dataset(path, embodiment).sample(sample, chunks=chunks, per_task=per_task)
            _write_atomic(file, png(got.image))
        return FileResponse(file, media_type="image/png")

    @router.get("/sample/truth.mp4")
    def sample_truth(
        path: DatasetPath,
        sample: Sample = 0,
        chunks: Chunks = 2,
        per_task: PerTask = 10,
        embodiment: Embodiment = "gr1",
        fps: Fps = 10,
    ) -> FileResponse:
        """A window's ground-truth video (1 + 12 x chunks frames)."""
        from arc_fabric_core.media.video import write_mp4

        file = cache / f"{_key('truth', path, sample, chunks, per_task, embodiment, fps)}.mp4"
        if not file.is_file():
            got = open_dataset(path, embodiment).sample(sample, chunks=chunks, per_task=per_task)
            write_mp4(got.frames, file, fps)
        return FileResponse(file, media_type="video/mp4")

    @router.get("/sessions/{session_id}/frame.png")
    def session_frame(session_id: SessionId) -> Response:
        """The first frame the session's rollout starts from (its stored input)."""
        doc = orch.store.load_doc(session_id)
        image = orch.store.read_inputs(doc).get("image")
        if image is None:
            raise conflict("session", f"session {session_id} holds no first frame")
        return Response(png(image), media_type="image/png")

    @router.get("/sessions/{session_id}/truth.mp4")
    def session_truth(session_id: SessionId) -> FileResponse:
        """The ground truth of the session's rollout: its dataset window, as many chunks as
        it has, at its size and fps."""
        return FileResponse(truth_file(session_id), media_type="video/mp4")

    @router.get("/sessions/{session_id}/actions")
    def session_actions(session_id: SessionId) -> dict[str, Any]:
        """The L2 norm of every action row the session was given, and each chunk's mean and max."""
        doc = orch.store.load_doc(session_id)
        actions = orch.store.read_inputs(doc).get("actions")
        if actions is None:
            raise conflict("session", f"session {session_id} holds no actions")
        return action_norms(actions)

    @router.get("/sessions/{session_id}/metrics")
    def session_metrics(session_id: SessionId) -> dict[str, Any]:
        """PSNR, SSIM, LPIPS (and per frame) of the session's video against its ground truth."""
        try:
            from arc_dreamdojo.metrics import rollout_metrics
        except ImportError:
            return {"available": False, "message": "metrics not available: arc_dreamdojo.metrics is not installed"}
        video = orch.store.session_dir(session_id) / "video.mp4"
        orch.store.load_doc(session_id)
        if not video.is_file():
            raise conflict("session", f"session {session_id} has no video yet: decode it first")
        truth = truth_file(session_id)
        stamp = f"{video.stat().st_mtime_ns}-{truth.stat().st_mtime_ns}"
        file = cache / f"metrics-{session_id}-{_key(stamp)}.json"
        if file.is_file():
            return json.loads(file.read_text())
        pred, real = _frames(video), _frames(truth)
        if pred.shape != real.shape:
            raise conflict("session", f"the video is {tuple(pred.shape)}, its ground truth {tuple(real.shape)}")
        try:
            try:
                scores = rollout_metrics(pred, real)
            except InputError as exc:
                if exc.field not in LPIPS_WEIGHTS:
                    raise
                # No local LPIPS weights (nothing is downloaded): PSNR and SSIM still say something.
                scores = rollout_metrics(pred, real, lpips=False)
                scores["notes"] = [f"LPIPS not computed: {exc.message}"]
        except Exception as exc:  # a metric that cannot run here (no LPIPS weights) is a state, not a crash
            return {"available": False, "message": f"metrics not available: {exc}"}
        out = {"available": True, **_plain(scores)}
        _write_atomic(file, json.dumps(out).encode())
        return out

    def truth_file(session_id: str) -> Path:
        from arc_dreamdojo.sources import _fit
        from arc_fabric_core.media.video import write_mp4

        doc = orch.store.load_doc(session_id)
        ref, params = session_params(orch, doc)
        if params.dataset is None:
            raise conflict(
                "session", f"session {session_id} was not made from a dataset sample: it has no ground truth"
            )
        first = session_params(orch, origin(orch.store, doc))[1]
        embodiment = embodiment_of(ref.variant.name)
        parts = (params.dataset, params.stats, embodiment, first.sample, first.chunks, first.samples_per_task)
        key = _key("truth", *parts, params.chunks, params.height, params.width, params.fps)
        file = cache / f"{key}.mp4"
        if not file.is_file():
            ds = open_dataset(params.dataset, embodiment, params.stats)
            got = ds.load(rollout_window(orch, doc, ds, params.chunks))
            _, frames = _fit(got.image, got.frames, params)
            write_mp4(frames, file, params.fps)
        return file

    return router


def session_params(orch: Any, doc: Any) -> tuple[Any, DreamDojoParams]:
    from arc_fabric_core.engine.planning import resolve_info

    ref = resolve_info(orch.plugins, doc.model)
    params = ref.params(doc.params)
    if not isinstance(params, DreamDojoParams):
        raise InputError("session", f"session {doc.id} is a {doc.model.name} session, not a DreamDojo rollout")
    return ref, params


@functools.lru_cache(maxsize=8)
def _dataset(root: str, embodiment: str, stats: str | None) -> Any:
    from arc_dreamdojo.dataset import LeRobotDataset

    return LeRobotDataset(Path(root), stats=Path(stats) if stats else None, embodiment=embodiment)


def open_dataset(path: str, embodiment: str = "gr1", stats: str | None = None) -> Any:
    """The dataset at ``path`` on this machine (kept open: its index is read once)."""
    from arc_dreamdojo.spec import EMBODIMENTS

    if embodiment not in EMBODIMENTS:
        raise InputError("embodiment", f"unknown embodiment {embodiment!r}; known: {', '.join(EMBODIMENTS)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError("path", f"no folder {path} on the server")
    return _dataset(str(root.resolve()), embodiment, stats)


def action_norms(actions: torch.Tensor) -> dict[str, Any]:
    rows = actions.to(torch.float32).reshape(actions.shape[0], -1).norm(dim=1)
    chunks = []
    for c in range(rows.shape[0] // ACTIONS_PER_CHUNK):
        part = rows[c * ACTIONS_PER_CHUNK : (c + 1) * ACTIONS_PER_CHUNK]
        chunks.append({"chunk": c, "mean": round(float(part.mean()), 5), "max": round(float(part.max()), 5)})
    return {"per_chunk": ACTIONS_PER_CHUNK, "rows": [round(float(v), 5) for v in rows], "chunks": chunks}


def png(image: torch.Tensor) -> bytes:
    """(3, H, W) in [0, 1] -> PNG bytes."""
    import imageio.v3 as iio

    pixels = (image.detach().to(torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.ascontiguousarray(pixels.cpu().numpy()), extension=".png")
    return buffer.getvalue()


def _frames(path: Path) -> torch.Tensor:
    from arc_fabric_core.media.video import read_video

    return torch.from_numpy(read_video(path)).to(torch.float32) / 255


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """Metrics as JSON: tensors and numpy values as numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no infinity (a PSNR of identical frames)
    return value


__all__ = ["make_router"]
