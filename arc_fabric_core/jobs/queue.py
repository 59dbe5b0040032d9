"""A persisted job queue (SQLite) and the runner that works through it.

States: queued -> running -> succeeded | failed | cancelled, and running -> interrupted
when the process running the job stopped (or crashed) meanwhile; the queue notices when
it is next opened. An interrupted job's
session is at its last checkpoint: ``requeue`` runs it again from there.

Higher priority runs first; equal priorities run in order of submission. Cancelling a
queued job takes it out of the queue; cancelling a running one stops it at the next
step boundary with its session checkpointed (paused) — in a worker process, a job that
does not reach that boundary within the executor's grace period is stopped by ending
the worker (its session paused at its last checkpoint). The queue can be paused:
running jobs finish, nothing new starts.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.jobs.kinds import kinds

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    session_id TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_next ON jobs (state, priority DESC, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    priority: int
    state: JobState
    session_id: str | None
    error: str | None
    cancel_requested: bool
    worker: str | None  # host:pid of the process running it
    created_at: str
    started_at: str | None
    finished_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JobQueue:
    """The queue in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path, plugins: Any = None) -> None:
        self.path = Path(path)
        self.plugins = plugins  # whose operations are the job kinds (default: the process's)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives any process crash (only a power cut may lose the
        # last ones) and needs no fsync, so a busy disk never stalls the API's reads.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.recovered = self._recover()

    def close(self) -> None:
        self._db.close()

    def _recover(self) -> list[int]:
        """Jobs left running by a worker process that is gone: they were interrupted.

        A job another live process is running (``jobs list`` while ``jobs work`` runs)
        is left alone.
        """
        with self._tx() as db:
            rows = db.execute("SELECT id, worker FROM jobs WHERE state = ?", (JobState.RUNNING,)).fetchall()
            ids = [r["id"] for r in rows if not _alive(r["worker"])]
            for job_id in ids:
                db.execute(
                    "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                    (
                        JobState.INTERRUPTED,
                        "its worker stopped while this job ran; its session is at its last checkpoint",
                        _now(),
                        job_id,
                    ),
                )
        return ids

    class _Tx:
        def __init__(self, queue: JobQueue) -> None:
            self.queue = queue

        def __enter__(self) -> sqlite3.Connection:
            self.queue._lock.acquire()
            self.queue._db.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes too
            return self.queue._db

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            try:
                self.queue._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.queue._lock.release()

    def _tx(self) -> JobQueue._Tx:
        return JobQueue._Tx(self)

    # ------------------------------------------------------------ submit and look

    def submit(self, kind: str, payload: dict[str, Any], priority: int = 0) -> Job:
        """Queue a job; its kind and payload keys are checked first."""
        known = kinds(self.plugins)
        if kind not in known:
            raise InputError("kind", f"unknown job kind {kind!r}; allowed: {', '.join(known)}")
        required, optional = known[kind]
        missing = sorted(required - set(payload))
        unknown = sorted(set(payload) - required - optional)
        if missing:
            raise InputError(f"payload.{missing[0]}", f"a {kind} job needs it (needs: {', '.join(sorted(required))})")
        if unknown:
            allowed = ", ".join(sorted(required | optional))
            raise InputError(f"payload.{unknown[0]}", f"unknown for a {kind} job; allowed: {allowed}")
        from arc_fabric_core.jobs.checks import check_priority

        priority = check_priority(priority)
        session = payload.get("session")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, payload, priority, state, session_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    json.dumps(payload),
                    priority,
                    JobState.QUEUED,
                    session if self._operation(kind).in_place else None,  # the session it works on is known
                    _now(),
                ),
            )
            job_id = int(cur.lastrowid or 0)
        return self.get(job_id)

    def _operation(self, kind: str, missing_ok: bool = False) -> Any:
        """The registered operation of a job kind (None for one no longer registered, with ``missing_ok``)."""
        operations = (self.plugins or get_plugins()).operations()
        return operations.get(kind) if missing_ok else operations[kind]

    def get(self, job_id: int) -> Job:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InputError("job", f"no job {job_id}")
        return _job(row)

    def list(self, states: set[JobState] | None = None) -> list[Job]:
        rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        jobs = [_job(r) for r in rows]
        return [j for j in jobs if states is None or j.state in states]

    # ------------------------------------------------------------ the state machine

    def claim(self) -> Job | None:
        """The next job to run (now running), or None when the queue is paused or empty."""
        with self._tx() as db:
            if self._is_paused(db):
                return None
            row = db.execute(
                "SELECT id FROM jobs WHERE state = ? ORDER BY priority DESC, id LIMIT 1", (JobState.QUEUED,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, started_at = ?, worker = ? WHERE id = ?",
                (JobState.RUNNING, _now(), _worker(), row["id"]),
            )
        return self.get(row["id"])

    def attach_session(self, job_id: int, session_id: str) -> None:
        """Record the session a job works on, as soon as it exists (a crash can then resume it)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET session_id = ? WHERE id = ?", (session_id, job_id))

    def finish(self, job_id: int, state: JobState, error: str | None = None) -> Job:
        if state not in FINISHED:
            raise InputError("state", f"a job finishes as {', '.join(sorted(FINISHED))}, not {state}")
        with self._tx() as db:
            current = self._state(db, job_id)
            if current is not JobState.RUNNING:
                raise InputError("job", f"job {job_id} is {current}, not running")
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ?", (state, error, _now(), job_id)
            )
        return self.get(job_id)

    def cancel(self, job_id: int) -> Job:
        """A queued job leaves the queue; a running one stops at its next step boundary."""
        with self._tx() as db:
            current = self._state(db, job_id)
            if current is JobState.QUEUED:
                db.execute(
                    "UPDATE jobs SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                    (JobState.CANCELLED, "cancelled before it started", _now(), job_id),
                )
            elif current is JobState.RUNNING:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise InputError("job", f"job {job_id} is already {current}; only queued or running jobs cancel")
        return self.get(job_id)

    def cancel_requested(self, job_id: int) -> bool:
        row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def requeue(self, job_id: int) -> Job:
        """Run an interrupted (or failed) job again: from its session's last checkpoint if it has one."""
        with self._tx() as db:
            job = _job(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone() or _missing(job_id))
            if job.state not in (JobState.INTERRUPTED, JobState.FAILED):
                raise InputError("job", f"job {job_id} is {job.state}; only interrupted or failed jobs requeue")
            kind, payload = job.kind, job.payload
            op = self._operation(kind, missing_ok=True)
            # The session it ran exists: continue it, not start again (an operation that runs
            # no loop, a decode, is done again as it was).
            if job.session_id is not None and (op is None or op.runs):
                kind, payload = "resume", {"session": job.session_id}
            db.execute(
                "UPDATE jobs SET state = ?, kind = ?, payload = ?, error = NULL, cancel_requested = 0, "
                "worker = NULL, started_at = NULL, finished_at = NULL WHERE id = ?",
                (JobState.QUEUED, kind, json.dumps(payload), job_id),
            )
        return self.get(job_id)

    # ------------------------------------------------------------ pausing the queue

    def pause(self) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('paused', '1')")

    def unpause(self) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('paused', '0')")

    @property
    def paused(self) -> bool:
        return self._is_paused(self._db)

    @staticmethod
    def _is_paused(db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT value FROM meta WHERE key = 'paused'").fetchone()
        return bool(row and row["value"] == "1")

    @staticmethod
    def _state(db: sqlite3.Connection, job_id: int) -> JobState:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            _missing(job_id)
        return JobState(row["state"])


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str | None) -> bool:
    """Whether the process that claimed a job still runs (only knowable on this host)."""
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's worker: never declared dead from here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _missing(job_id: int) -> Any:
    raise InputError("job", f"no job {job_id}")


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        priority=row["priority"],
        state=JobState(row["state"]),
        session_id=row["session_id"],
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        worker=row["worker"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class JobRunner:
    """Works through the queue, one job at a time, with an executor (default: an
    in-process one around ``engine``; ``SubprocessExecutor`` runs jobs in plugin envs)."""

    def __init__(self, queue: JobQueue, engine: Any = None, executor: Any = None) -> None:
        from arc_fabric_core.jobs.executors import InProcessExecutor

        if executor is None and engine is None:
            raise ValueError("JobRunner needs an engine or an executor")
        self.queue = queue
        self.engine = engine
        self.executor = executor or InProcessExecutor(engine)

    def run_next(
        self,
        listeners: list[Callable[[Any], None]] | None = None,
        on_start: Callable[[Job], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        on_end: Callable[[Job, Any, Exception | None], None] | None = None,
    ) -> Job | None:
        """Claim and run one job; return it finished (or None when nothing could start).

        ``on_start`` hears the job once claimed; ``listeners`` hear every step; ``on_log``
        every line of its log (:mod:`arc_fabric_core.jobs.log`); ``on_end`` the finished
        job with the executor's ``Outcome`` or the exception it failed with (a caller
        waiting for the job's result reads it there: the queue keeps only its text)."""
        job = self.queue.claim()
        if job is None:
            return None
        if on_start is not None:
            on_start(job)
        stop = lambda: self.queue.cancel_requested(job.id)  # noqa: E731 - asked at every step boundary
        try:
            outcome = self.executor.run(
                job.kind,
                job.payload,
                on_session=lambda session_id: self.queue.attach_session(job.id, session_id),
                stop=stop,
                listeners=listeners or (),
                on_log=on_log,
            )
        except Exception as exc:  # the job fails with the reason; the runner goes on
            from arc_fabric_core.jobs.executors import JobCancelled

            if isinstance(exc, JobCancelled):
                finished = self.queue.finish(job.id, JobState.CANCELLED, str(exc))
            else:
                finished = self.queue.finish(job.id, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            if on_end is not None:
                on_end(finished, None, exc)
            return finished
        if not outcome.done and job.payload.get("until") is None:
            finished = self.queue.finish(
                job.id,
                JobState.CANCELLED,
                f"cancelled at step {outcome.step}/{outcome.total}; "
                f"session {outcome.session_id} is paused there and resumes with a resume job",
            )
        else:
            finished = self.queue.finish(job.id, JobState.SUCCEEDED)
        if on_end is not None:
            on_end(finished, outcome, None)
        return finished

    def run_all(self) -> list[Job]:
        done = []
        while (job := self.run_next()) is not None:
            done.append(job)
        return done
