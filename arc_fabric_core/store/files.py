"""The session store: a directory per session, written atomically and checksummed.

    <root>/<session id>/session.json          the SessionDoc
    <root>/<session id>/conditioning.safetensors
    <root>/<session id>/checkpoints/step_00012.safetensors
    <root>/<session id>/latents.safetensors   final latents under key "latents"
    <root>/<session id>/edit.safetensors      an edit's source latents, noise and mask
    <root>/<session id>/inputs/<sha256>.safetensors   an input beside text (an image, actions)
    <root>/<session id>/.lock                 locked by the one process writing it

Every file is written to a temporary name, fsynced and renamed, so a crash never
leaves a half-written file under a real name; session.json only ever names files
that are complete, and records their sha256.

Tensor files are immutable once written. A fork therefore shares its parent's
checkpoints as hard links: no bytes are copied, and deleting the parent (or its
keep policy dropping a checkpoint) never breaks the child, because the file lives
on while any session still names it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from arc_fabric_core.contract.errors import DamagedSessionError, InputError, SessionError
from arc_fabric_core.store.session import FORMAT_VERSION, CheckpointRecord, FileRecord, SessionDoc, SessionStatus

DOC_NAME = "session.json"
R = TypeVar("R", bound=FileRecord)
LOCK_NAME = ".lock"
INPUTS_DIR = "inputs"
# Checkpoint metadata key holding a copy of session.json (less its checkpoint list), from
# which ``repair`` rebuilds a damaged document.
DOC_COPY_KEY = "session"
# A temporary file older than this is debris from a crash, never a write in flight.
STALE_TMP_SECONDS = 3600
# Temporary names carry their writer's pid: ``.<name>.tmp-<pid>-...``.
_TMP_PID = re.compile(r"\.tmp-([0-9]+)")
# Open-file-description locks (Linux) can be queried without being taken, so a reader
# asking "is it being written?" never makes a writer's attempt fail. They belong to the
# open file, like flock, so they die with the process (even on SIGKILL). Elsewhere: flock.
_OFD = hasattr(fcntl, "F_OFD_SETLK") and sys.maxsize > 2**32
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: type, whence, start, len, pid


def default_store_dir() -> Path:
    """$ARC_FABRIC_STORE, else outputs/sessions: one store, so that lineage spans runs."""
    return Path(os.environ.get("ARC_FABRIC_STORE") or "outputs/sessions").expanduser()


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
        """The folder of ``session_id``, refused unless the id is a plain folder name: an id
        with a separator or ``..`` would reach outside the store."""
        if (
            not isinstance(session_id, str)
            or session_id in ("", ".", "..")
            or any(c in session_id for c in ("/", "\\", "\0"))
        ):
            raise InputError("session", f"invalid session id {session_id!r}: not a plain folder name")
        return self.root / session_id

    def exists(self, session_id: str) -> bool:
        return (self.session_dir(session_id) / DOC_NAME).is_file()

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / DOC_NAME).is_file())

    def load_all(self) -> list[SessionDoc]:
        """Every readable session document, oldest first (damaged ones: see :meth:`scan`)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[SessionDoc], list[DamagedSessionError]]:
        """Every session: the readable documents, oldest first, and the damaged ones (each
        with its id, file and reason), so that one bad folder never hides or breaks another."""
        docs: list[SessionDoc] = []
        damaged: list[DamagedSessionError] = []
        for session_id in self.list_ids():
            try:
                docs.append(self.load_doc(session_id))
            except DamagedSessionError as exc:
                damaged.append(exc)
            except SessionError as exc:  # e.g. a newer store format: not ours to read
                damaged.append(DamagedSessionError(session_id, str(self._doc_path(session_id)), str(exc)))
        return sorted(docs, key=lambda d: (d.created_at, d.id)), damaged

    # -- the writer lock

    @contextlib.contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        """Hold the session's write lock; refuse at once if another writer holds it.

        The lock dies with its process, so a crash (even SIGKILL) never leaves a stale lock.
        """
        folder = self.session_dir(session_id)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                if holder == str(os.getpid()):
                    who = "a job running in this process"
                else:
                    who = f"another process (pid {holder or 'unknown'})"
                raise SessionError(
                    f"session {session_id} is being written by {who}; "
                    "two writers on one session are refused — wait for it or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def is_locked(self, session_id: str) -> bool:
        """Whether a process is writing the session. Asks without taking the lock (where
        the platform allows), so a page polling it never makes a writer fail."""
        try:
            fd = os.open(self.session_dir(session_id) / LOCK_NAME, os.O_RDONLY)
        except OSError:
            return False  # no lock file: never written
        try:
            return _is_held(fd)
        finally:
            os.close(fd)

    def status_of(self, doc: SessionDoc) -> str:
        """The status to show: ``interrupted`` for a session recorded as running that no
        live process writes (its process was killed); resume continues it."""
        if doc.status is SessionStatus.RUNNING and not self.is_locked(doc.id):
            return "interrupted"
        return doc.status.value

    # -- the document

    def save_doc(self, doc: SessionDoc) -> None:
        doc.touch()
        atomic_write(self.session_dir(doc.id) / DOC_NAME, doc.model_dump_json(indent=2).encode())

    def set_status(
        self,
        session_id: str,
        status: SessionStatus,
        error: str | None = None,
        only_from: frozenset[SessionStatus] | None = None,
    ) -> SessionDoc:
        """Record a session's status outside a run, under its write lock (refused while a
        process runs it); with ``only_from``, only a session in one of those statuses
        changes. Returns the document as it now is."""
        with self.lock(session_id):
            doc = self.load_doc(session_id)
            if only_from is None or doc.status in only_from:
                doc.status, doc.error = status, error
                self.save_doc(doc)
        return doc

    def _doc_path(self, session_id: str) -> Path:
        return self.session_dir(session_id) / DOC_NAME

    def load_doc(self, session_id: str) -> SessionDoc:
        """The session's document; :class:`DamagedSessionError` (naming the file and what is
        wrong) for one that is not a session document of this folder."""
        path = self._doc_path(session_id)
        if not path.is_file():
            known = ", ".join(self.list_ids()[-5:]) or "none"
            raise SessionError(f"session {session_id!r} not found in {self.root} (latest: {known})")
        return self._parse_doc(session_id, path)

    def _parse_doc(self, session_id: str, path: Path) -> SessionDoc:
        from pydantic import ValidationError

        def damaged(reason: str) -> DamagedSessionError:
            return DamagedSessionError(session_id, str(path), reason)

        try:
            raw = json.loads(path.read_bytes())
        except OSError as exc:
            raise damaged(f"cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:  # JSON or UTF-8: truncated or overwritten
            raise damaged(f"is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise damaged(f"holds a JSON {type(raw).__name__}, not a session object")
        version = raw.get("format_version", "0.0")
        if not isinstance(version, str) or re.fullmatch(r"[0-9]{1,6}\.[0-9]{1,6}", version) is None:
            raise damaged(f"format_version {str(version)[:40]!r} is not MAJOR.MINOR")
        if int(version.split(".")[0]) > int(FORMAT_VERSION.split(".")[0]):
            raise SessionError(
                f"session {session_id} was written in store format {version}; this version reads up to "
                f"{FORMAT_VERSION.split('.')[0]}.x — upgrade arc-fabric-core"
            )
        try:
            doc = SessionDoc.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise damaged(f"{where}: {first['msg']}") from None
        if doc.id != session_id:
            # A copied or renamed folder: acting on the id inside would touch another session.
            raise damaged(f"it names session {doc.id!r}, not its folder {session_id!r} (a copied or renamed folder)")
        return doc

    def repair(self, session_id: str) -> tuple[SessionDoc, list[str]]:
        """Rebuild a damaged session.json from its checkpoints: each carries a copy of the
        document as it was written (less the checkpoint list). The newest checkpoint that
        parses gives the document; every checkpoint file that parses is listed again with
        its checksum taken now; files it named that no longer match are dropped (the
        conditioning is then encoded again on resume). Returns the document and notes."""
        folder = self.session_dir(session_id)
        if not (folder / DOC_NAME).is_file() and not (folder / "checkpoints").is_dir():
            self.load_doc(session_id)  # raises: not found
        with self.lock(session_id):
            try:
                doc = self.load_doc(session_id)
                return doc, ["intact: nothing to repair"]
            except DamagedSessionError:
                pass
            found: list[tuple[int, CheckpointRecord, dict[str, str]]] = []
            for path in sorted((folder / "checkpoints").glob("step_*.safetensors")):
                parsed = _parse_tensor_file(path)
                if parsed is None or "step" not in parsed[1]:
                    continue
                data, metadata = parsed
                step = int(metadata["step"])
                rel = path.relative_to(folder).as_posix()
                record = CheckpointRecord(step=step, file=rel, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
                found.append((step, record, metadata))
            copies = [(step, m[DOC_COPY_KEY]) for step, _, m in found if DOC_COPY_KEY in m]
            # A fork's first checkpoint may be its parent's (shared): prefer the session's own.
            own = [(step, text) for step, text in copies if json.loads(text).get("id") == session_id]
            copies = own or copies
            if not copies:
                raise SessionError(
                    f"session {session_id}: no intact checkpoint carries a copy of its document "
                    f"({len(found)} checkpoints parse); the tensors stay in {folder}"
                )
            step, text = max(copies)
            doc = SessionDoc.model_validate_json(text)
            notes = [f"document from the checkpoint at step {step}"]
            if doc.id != session_id:
                notes.append(f"that copy was written as session {doc.id}; this folder now has its own id")
            doc.id = session_id
            doc.checkpoints = sorted((r for _, r, _ in found), key=lambda r: r.step)
            doc.step_index = max(r.step for r in doc.checkpoints)
            doc.final = None
            final = _parse_tensor_file(folder / "latents.safetensors")
            if final is not None and doc.step_index == doc.total_steps:
                doc.final = FileRecord(
                    file="latents.safetensors", sha256=hashlib.sha256(final[0]).hexdigest(), bytes=len(final[0])
                )
            if doc.conditioning is not None and not self._matches(session_id, doc.conditioning):
                notes.append("conditioning dropped (it is encoded again on resume)")
                doc.conditioning = None
            for stage in doc.stages:
                if stage.conditioning is not None and not self._matches(session_id, stage.conditioning):
                    stage.conditioning = None
            for what, record in (("edit source", doc.edit.tensors if doc.edit else None), ("extended", doc.extends)):
                if record is not None and not self._matches(session_id, record):
                    raise SessionError(f"session {session_id}: its {what} latents ({record.file}) are gone or changed")
            for name, record in doc.inputs.items():
                if not self._matches(session_id, record):
                    raise SessionError(f"session {session_id}: its input {name!r} ({record.file}) is gone or changed")
            doc.status = SessionStatus.COMPLETED if doc.final is not None else SessionStatus.PAUSED
            doc.error = None
            self.save_doc(doc)
            steps = [r.step for r in doc.checkpoints]
            notes.append(f"{len(steps)} checkpoints, steps {min(steps)}..{max(steps)}")
            return doc, notes

    def _matches(self, session_id: str, record: FileRecord) -> bool:
        try:
            data = (self.session_dir(session_id) / record.file).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(data).hexdigest() == record.sha256

    # -- tensor files

    def write_tensors(
        self, session_id: str, relpath: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
    ) -> FileRecord:
        data = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
        # session.json is written (and its folder synced) right after every tensor file.
        atomic_write(self.session_dir(session_id) / relpath, data, sync_dir=False)
        return FileRecord(file=relpath, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    def write_input(self, session_id: str, name: str, tensor: torch.Tensor) -> FileRecord:
        """An input of the session, under ``name``, in a file named by its content's hash:
        the same input given to two sessions is the same file, which forks share."""
        data = st_save({name: tensor.detach().to("cpu").contiguous()})
        digest = hashlib.sha256(data).hexdigest()
        relpath = f"{INPUTS_DIR}/{digest}.safetensors"
        target = self.session_dir(session_id) / relpath
        if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest):
            atomic_write(target, data, sync_dir=False)
        return FileRecord(file=relpath, sha256=digest, bytes=len(data))

    def read_inputs(self, doc: SessionDoc) -> dict[str, torch.Tensor]:
        """The session's inputs beside text by name, checksums verified (empty: none)."""
        inputs: dict[str, torch.Tensor] = {}
        for name, record in doc.inputs.items():
            tensors, _ = self.read_tensors(doc.id, record)
            if name not in tensors:
                raise SessionError(f"session {doc.id}: {record.file} does not hold input {name!r}")
            inputs[name] = tensors[name]
        return inputs

    def share_inputs(self, parent: SessionDoc, doc: SessionDoc) -> None:
        """Give ``doc`` the parent's inputs (hard links, as a fork's checkpoints)."""
        doc.inputs = {name: self.share_file(parent.id, record, doc.id) for name, record in parent.inputs.items()}

    def tensor_shape(self, session_id: str, record: FileRecord, key: str) -> tuple[int, ...]:
        """The shape of one tensor of a session file, read from its header alone."""
        from safetensors import safe_open

        path = self.session_dir(session_id) / record.file
        try:
            with safe_open(str(path), framework="pt") as fh:
                return tuple(fh.get_slice(key).get_shape())
        except Exception as exc:  # a missing or corrupt file: say which
            raise SessionError(f"session {session_id}: cannot read {record.file} ({exc})") from None

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

    def share_file(self, src_session: str, record: R, dst_session: str, name: str | None = None) -> R:
        """Give ``dst_session`` the same immutable file: a hard link, a copy where links
        fail; under ``name`` in its folder when given (else the same name)."""
        src = self.session_dir(src_session) / record.file
        dst = self.session_dir(dst_session) / (name or record.file)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        try:
            os.link(src, dst)
        except FileNotFoundError:
            raise SessionError(f"session {src_session}: {record.file} is gone (deleted or dropped meanwhile)") from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # A filesystem without hard links (some network and FAT mounts): copy, atomically.
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return record.model_copy(update={"file": name} if name else None)

    # -- delete and garbage collection

    def delete(self, session_id: str) -> int:
        """Remove the session folder named ``session_id`` (damaged or not); return the bytes
        freed. Its children keep their shared files. Refused while it is being written."""
        folder = self.session_dir(session_id)
        if not (folder / DOC_NAME).is_file():
            self.load_doc(session_id)  # raises: not found
        with self.lock(session_id):  # the folder named is the one locked and removed
            freed = _unshared_bytes(folder)
            # The document goes first: a crash half-way leaves a folder without session.json,
            # which gc() removes, never a document naming missing files.
            (folder / DOC_NAME).unlink()
            shutil.rmtree(folder, ignore_errors=True)
        return freed

    def gc(self, dry_run: bool = False) -> list[GarbageFile]:
        """Remove what no session document names: checkpoints dropped by a crash between
        writes, temporary debris, and folders of half-created or half-deleted sessions.
        Sessions being written (locked) are left alone."""
        garbage: list[GarbageFile] = []
        if not self.root.is_dir():
            return garbage
        now = time.time()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if self.is_locked(folder.name):
                continue
            if not (folder / DOC_NAME).is_file():
                files = [f for f in folder.rglob("*") if f.is_file()]
                if files and all(now - f.stat().st_mtime < 60 for f in files if f.name != LOCK_NAME):
                    continue  # possibly a session being created right now
                garbage.append(GarbageFile(folder.name, str(folder), _unshared_bytes(folder), "no session.json"))
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            try:
                doc = self.load_doc(folder.name)
            except SessionError:
                continue  # damaged: reported by load_doc when used, never deleted blindly
            named = {r.file for r in _records(doc)} | {DOC_NAME, LOCK_NAME}
            for path in sorted(folder.rglob("*")):
                if not path.is_file():
                    continue
                rel = path.relative_to(folder).as_posix()
                is_tmp = ".tmp-" in path.name
                # Only the store's own kinds of file: a video decoded next to them is the user's.
                if rel in named or not (is_tmp or path.suffix == ".safetensors"):
                    continue
                if is_tmp and now - path.stat().st_mtime < STALE_TMP_SECONDS and _writer_alive(path.name):
                    continue  # perhaps a write in flight
                stat = path.stat()
                size = stat.st_size if stat.st_nlink == 1 else 0
                garbage.append(GarbageFile(doc.id, rel, size, "temporary debris" if is_tmp else "unreferenced"))
                if not dry_run:
                    path.unlink()
        return garbage


class CheckpointWriter:
    """Writes one session's checkpoints on a background thread, in order, off the compute path.

    The engine snapshots tensors to CPU synchronously (cheap) and hands over jobs that
    write tensor files and update ``doc`` in memory; a job may return files that the
    update made obsolete. Whenever the queue runs empty, session.json is saved once for
    all the jobs before it, and only then are those files removed: so the document
    never names a missing file, and a writer that falls behind saves it less often.
    ``flush()`` waits for everything queued; an error in the thread resurfaces there.
    At most ``max_pending`` jobs wait while one runs, and session.json is saved at least
    every ``max_pending + 1`` jobs, so after a SIGKILL the store is at most about
    ``2 * (max_pending + 1)`` jobs behind the loop.
    """

    def __init__(self, store: SessionStore, doc: SessionDoc, max_pending: int = 2) -> None:
        self.store = store
        self.doc = doc
        # Bounded: when the writer falls behind, the loop waits; a crash loses at most a few writes.
        self._queue: queue.Queue[Callable[[], list[str] | None] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._max_pending = max_pending
        self._dirty = 0  # jobs done since session.json was last saved
        self._obsolete: list[str] = []
        self._thread = threading.Thread(target=self._work, name="arc-checkpoint-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    self._commit()
                    return
                if self._error is None:
                    self._obsolete.extend(job() or ())
                    self._dirty += 1
                    # Also when it never runs empty: the document stays at most a few jobs behind.
                    if self._queue.empty() or self._dirty > self._max_pending:
                        self._commit()
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def _commit(self) -> None:
        if not self._dirty or self._error is not None:
            return
        self.store.save_doc(self.doc)
        self._dirty = 0
        for name in self._obsolete:
            self.store.remove_file(self.doc.id, name)
        self._obsolete.clear()

    def submit(self, job: Callable[[], list[str] | None]) -> None:
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


def _parse_tensor_file(path: Path) -> tuple[bytes, dict[str, str]] | None:
    """A safetensors file's bytes and metadata if it parses whole (None if not)."""
    try:
        data = path.read_bytes()
        st_load(data)  # every tensor's bytes present: a truncated file fails here
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except Exception:
        return None
    return data, metadata


def _lock_arg(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)


def _try_lock(fd: int) -> bool:
    """Take the write lock on ``fd`` without waiting; False if another holds it."""
    try:
        if _OFD:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _lock_arg(fcntl.F_WRLCK))
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _is_held(fd: int) -> bool:
    if _OFD:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _lock_arg(fcntl.F_WRLCK))
        return struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK
    # Without OFD locks the only test is to try (briefly, shared); a writer starting in
    # that instant is refused, as before.
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _writer_alive(name: str) -> bool:
    """Whether the process that named a temporary file still runs (unknown: assume so)."""
    m = _TMP_PID.search(name)
    if m is None:
        return True
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


@dataclass(frozen=True)
class GarbageFile:
    session: str
    file: str
    bytes: int  # freed on disk (0 for a file still linked from another session)
    reason: str


def _records(doc: SessionDoc) -> list[FileRecord]:
    """Every file the document names (gc keeps them)."""
    records: list[FileRecord] = [*doc.checkpoints, *doc.inputs.values()]
    for record in (doc.conditioning, doc.final, doc.edit.tensors if doc.edit else None, doc.extends):
        if record is not None:
            records.append(record)
    records.extend(st.conditioning for st in doc.stages if st.conditioning is not None)
    return records


def _unshared_bytes(folder: Path) -> int:
    """Bytes that removing ``folder`` frees: files no other session links to."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            stat = path.lstat()
            if path.is_file() and stat.st_nlink == 1:
                total += stat.st_size
    return total


def session_bytes(store: SessionStore, doc: SessionDoc) -> tuple[int, int]:
    """(bytes of all files the session names, bytes only it holds)."""
    total = own = 0
    for record in _records(doc):
        with contextlib.suppress(OSError):
            stat = (store.session_dir(doc.id) / record.file).stat()
            total += stat.st_size
            own += stat.st_size if stat.st_nlink == 1 else 0
    return total, own


def checkpoint_name(step: int) -> str:
    return f"checkpoints/step_{step:05d}.safetensors"


def add_checkpoint(
    doc: SessionDoc, record: FileRecord, step: int, keep: int, keep_steps: frozenset[int] = frozenset()
) -> list[str]:
    """Record a new checkpoint in ``doc``; return files that fell out of the keep policy.

    The newest ``keep`` checkpoints stay (0 = all), and so does every step in ``keep_steps``.
    """
    doc.checkpoints = [c for c in doc.checkpoints if c.step != step]
    doc.checkpoints.append(CheckpointRecord(step=step, **record.model_dump()))
    doc.checkpoints.sort(key=lambda c: c.step)
    if keep <= 0 or len(doc.checkpoints) <= keep:
        return []
    newest = {c.step for c in doc.checkpoints[-keep:]}
    kept = [c for c in doc.checkpoints if c.step in newest or c.step in keep_steps]
    dropped = [c.file for c in doc.checkpoints if c not in kept]
    doc.checkpoints = kept
    return dropped
