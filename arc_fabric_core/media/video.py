"""Writing frames to video files.

A video is encoded to a temporary file of its own beside the destination, checked (the
encoder's exit status, a file that decodes to as many frames as were given) and only
then renamed over the destination: a write that fails (a full disk) leaves the file
that was there as it was. Writers of one destination take turns — a lock per path in
this process, an flock on ``.<name>.lock`` beside it across processes — so concurrent
writes never interleave and the last complete one wins.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arc_fabric_core.contract.errors import OutputError

# The encoder's settings: H.264 in yuv420p plays in browsers; crf 10 is imageio's quality=8.
_CRF = "10"

# ffmpeg reports a failed write in words; these are the OS reasons behind them.
_FFMPEG_REASONS = {
    "No space left on device": errno.ENOSPC,
    "File too large": errno.EFBIG,
    "Disk quota exceeded": errno.EDQUOT,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}


@dataclass
class _Turns:
    """The writers of one path in this process: the lock they take turns on, how many wait."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


_turns: dict[str, _Turns] = {}
_turns_guard = threading.Lock()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] -> uint8 array."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def write_mp4(frames: torch.Tensor, path: str | Path, fps: int) -> Path:
    """Write (F, H, W, 3) frames in [0, 1] as H.264 mp4 (yuv420p, playable in browsers).

    Atomic: on any failure :class:`OutputError` names the path and the reason, and the
    file at ``path`` (if one was there) is unchanged."""
    path = Path(path)
    existed = path.is_file()
    try:
        return _write(np.ascontiguousarray(to_uint8(frames)), path, fps)
    except OutputError as exc:
        kept = "the file there is unchanged" if existed else "nothing was written"
        raise OutputError(path, f"{exc.reason}; {kept}", exc.errno) from None


def _write(data: np.ndarray, path: Path, fps: int) -> Path:
    if data.ndim != 4 or data.shape[-1] != 3 or not data.shape[0]:
        raise OutputError(path, f"expected (F, H, W, 3) frames, at least one; got shape {tuple(data.shape)}")
    _make_folder(path)
    with _exclusive(path):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-{secrets.token_hex(4)}")
        try:
            _encode(data, tmp, fps, path)
            _check(tmp, data.shape[0], path)
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(path, _os_reason(exc), exc.errno) from None
        finally:
            with contextlib.suppress(OSError):  # nothing half-written stays behind
                tmp.unlink()
    with contextlib.suppress(OSError):  # durability of the rename; the video is complete either way
        _fsync_dir(path.parent)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """Read a video back as a (F, H, W, 3) uint8 array."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path))
    try:
        return np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()


def destination_problem(path: str | Path) -> str | None:
    """Why no video can be written at ``path`` whatever the disk holds (a file where a
    folder must be, a folder in the file's place); None when nothing stands in the way.
    A command checks its output path with it before any compute."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name ending in .mp4"
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    return None


def _make_folder(path: Path) -> None:
    problem = destination_problem(path)
    if problem is not None:
        raise OutputError(path, problem)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path, _os_reason(exc), exc.errno) from None


def _os_reason(exc: OSError) -> str:
    """An OSError in words (its path is named by the error that carries this)."""
    return (exc.strerror or str(exc)).lower()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold ``path``'s write turn: first among this process's threads, then across
    processes (a blocking flock, released with its descriptor even if the process dies)."""
    key = os.path.realpath(path)
    with _turns_guard:
        turns = _turns.setdefault(key, _Turns())
        turns.users += 1
    try:
        with turns.lock:
            try:
                fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(path, _os_reason(exc), exc.errno) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
    finally:
        with _turns_guard:  # forget the lock once nobody waits on it
            turns.users -= 1
            if not turns.users:
                _turns.pop(key, None)


def _ffmpeg() -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    return str(get_ffmpeg_exe())


def _encode(data: np.ndarray, tmp: Path, fps: int, path: Path) -> None:
    """Run ffmpeg on the raw frames; its exit status says whether every byte was written
    (imageio's writer does not look at it, so a full disk went unnoticed)."""
    _, height, width, _ = data.shape
    command = [
        _ffmpeg(),
        "-y",
        "-f",
        "rawvideo",
        "-vcodec",
        "rawvideo",
        "-s",
        f"{width}x{height}",
        "-pix_fmt",
        "rgb24",
        "-r",
        str(int(fps)),
        "-i",
        "-",
        "-an",
        "-vcodec",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-crf",
        _CRF,
        "-v",
        "error",
        "-f",
        "mp4",
        str(tmp),
    ]
    done = subprocess.run(command, input=data.tobytes(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace")
        code = next((c for words, c in _FFMPEG_REASONS.items() if words in said), None)
        if done.returncode == -signal.SIGXFSZ:  # past the file size limit (ulimit -f)
            code = errno.EFBIG
        if code is not None:
            reason = os.strerror(code).lower()
        elif done.returncode < 0:
            reason = f"ffmpeg was killed by signal {-done.returncode}"
        else:
            reason = _last_line(said) or "ffmpeg gave no reason"
        raise OutputError(path, f"{reason} (ffmpeg exit status {done.returncode})", code)
    # A filesystem may report a full disk only when the data reaches it.
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check(tmp: Path, frames: int, path: Path) -> None:
    """The written file is a video of ``frames`` frames (cheap for the short videos made here)."""
    from imageio_ffmpeg import count_frames_and_secs

    if tmp.stat().st_size == 0:
        raise OutputError(path, "the encoder wrote an empty file")
    try:
        found, _ = count_frames_and_secs(str(tmp))
    except RuntimeError as exc:
        raise OutputError(path, f"the encoded file does not read back ({_last_line(str(exc))})") from None
    if found != frames:
        raise OutputError(path, f"the encoded file holds {found} frames, not {frames}")


def _last_line(text: str) -> str:
    """ffmpeg's last line of error output, without its ``[muxer @ 0x...]`` prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last.split("] ", 1)[1] if last.startswith("[") and "] " in last else last


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
