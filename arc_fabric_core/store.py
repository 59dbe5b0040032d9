"""The session store: a directory per session, written atomically and checksummed.

    <root>/<session id>/session.json          the SessionDoc
    <root>/<session id>/conditioning.safetensors
    <root>/<session id>/checkpoints/step_00012.safetensors
    <root>/<session id>/latents.safetensors   final latents under key "latents"

Every file is written to a temporary name, fsynced and renamed, so a crash never
leaves a half-written file under a real name; session.json only ever names files
that are complete, and records their sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from arc_fabric_core.errors import SessionError
from arc_fabric_core.session import FORMAT_VERSION, CheckpointRecord, FileRecord, SessionDoc

DOC_NAME = "session.json"


def atomic_write(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename (+ fsync of the folder).

    ``sync_dir=False`` skips the folder fsync: the rename is still atomic, only its
    durability across a power cut waits for the next synced write (session.json's).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk must not leave debris behind
            tmp.unlink()
        raise
    if not sync_dir:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SessionStore:
    """Reads and writes sessions under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def session_dir(self, session_id: str) -> Path:
        return self.root / session_id

    def exists(self, session_id: str) -> bool:
        return (self.session_dir(session_id) / DOC_NAME).is_file()

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / DOC_NAME).is_file())

    # -- the document

    def save_doc(self, doc: SessionDoc) -> None:
        doc.touch()
        atomic_write(self.session_dir(doc.id) / DOC_NAME, doc.model_dump_json(indent=2).encode())

    def load_doc(self, session_id: str) -> SessionDoc:
        path = self.session_dir(session_id) / DOC_NAME
        if not path.is_file():
            known = ", ".join(self.list_ids()[-5:]) or "none"
            raise SessionError(f"session {session_id!r} not found in {self.root} (latest: {known})")
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SessionError(f"session {session_id}: {path.name} is unreadable ({exc})") from None
        version = str(raw.get("format_version", "0.0"))
        if int(version.split(".")[0]) > int(FORMAT_VERSION.split(".")[0]):
            raise SessionError(
                f"session {session_id} was written in store format {version}; this version reads up to "
                f"{FORMAT_VERSION.split('.')[0]}.x — upgrade arc-fabric-core"
            )
        return SessionDoc.model_validate(raw)

    # -- tensor files

    def write_tensors(
        self, session_id: str, relpath: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
    ) -> FileRecord:
        data = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
        # session.json is written (and its folder synced) right after every tensor file.
        atomic_write(self.session_dir(session_id) / relpath, data, sync_dir=False)
        return FileRecord(file=relpath, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    def read_tensors(self, session_id: str, record: FileRecord) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Load a tensor file, verifying its checksum; raise SessionError naming it if corrupt."""
        path = self.session_dir(session_id) / record.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SessionError(f"session {session_id}: cannot read {record.file} ({exc})") from None
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise SessionError(f"session {session_id}: {record.file} is corrupt (checksum mismatch)")
        tensors = st_load(data)
        # The header is 8 bytes of length, then JSON whose "__metadata__" holds our strings.
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        return tensors, metadata

    def remove_file(self, session_id: str, relpath: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.session_dir(session_id) / relpath).unlink()


class CheckpointWriter:
    """Writes checkpoints on a background thread, in order, off the compute path.

    The engine snapshots tensors to CPU synchronously (cheap) and hands them over;
    serialisation, hashing, fsync and the session.json update happen here.
    ``flush()`` waits for everything queued; an error in the thread resurfaces there.
    At most ``max_pending`` writes wait while one is being written, so after a SIGKILL
    the store is at most ``max_pending + 1`` writes behind the loop.
    """

    def __init__(self, store: SessionStore, max_pending: int = 2) -> None:
        self.store = store
        # Bounded: when the writer falls behind, the loop waits; a crash loses at most a few writes.
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="arc-checkpoint-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, job: Callable[[], None]) -> None:
        self._raise_pending()
        self._queue.put(job)

    def flush(self) -> None:
        self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise SessionError(f"checkpoint write failed: {err}") from err


def checkpoint_name(step: int) -> str:
    return f"checkpoints/step_{step:05d}.safetensors"


def add_checkpoint(doc: SessionDoc, record: FileRecord, step: int, keep: int) -> list[str]:
    """Record a new checkpoint in ``doc``; return files that fell out of the keep window."""
    doc.checkpoints = [c for c in doc.checkpoints if c.step != step]
    doc.checkpoints.append(CheckpointRecord(step=step, **record.model_dump()))
    doc.checkpoints.sort(key=lambda c: c.step)
    dropped: list[str] = []
    if keep > 0 and len(doc.checkpoints) > keep:
        for old in doc.checkpoints[:-keep]:
            dropped.append(old.file)
        doc.checkpoints = doc.checkpoints[-keep:]
    return dropped
