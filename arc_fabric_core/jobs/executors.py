"""Where a job's steps run: here (``inprocess``) or in a worker process per plugin env (``subprocess``).

An executor takes a claimed job and runs it to its end, reporting the session it works
on as soon as it exists, every step, and whether it finished. Everything it hands back
is small (ids, step numbers, text): latents stay where the model is, sessions go
through the shared store. That boundary is what a distributed executor needs too — a
Ray actor per plugin env (``runtime_env`` naming the env), chosen by session affinity,
implements the same :class:`Executor` protocol with actor calls instead of sockets; the
engine and the plugins do not change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from arc_fabric_core.contract.errors import ArcFabricError, InputError, OutputError, SessionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a job's run ended (an exception means it failed)."""

    session_id: str
    done: bool  # the job ran to its end: its session reached its last step (else it paused), or its video is written
    step: int  # where the session is (a decode: the step its video shows)
    total: int


@dataclass(frozen=True)
class Progress:
    """One step of a job, as every executor reports it."""

    session_id: str
    step: int
    total: int
    step_seconds: float
    elapsed_seconds: float
    first_step: int = 0  # where this run started (a resume starts mid-way): for ETAs
    preview: str | None = None  # a JPEG data URL of the latents (arc_fabric_core.media.previews), when asked for


class WorkerDied(ArcFabricError):
    """The worker process running a job exited before the job ended."""


class JobCancelled(ArcFabricError):
    """A cancelled job that ended without a session to pause (its worker was ended first)."""


class VideoNotWritten(ArcFabricError):
    """A job's session finished, but its video could not be made (a full disk, a failed
    decode). The session keeps its final latents: ``sessions decode ID`` makes the video."""


CANCEL_GRACE_SECONDS = 10.0  # how long a cancelled job in a worker may take to reach its next step


class Executor(Protocol):
    name: str

    def run(
        self,
        kind: str,
        payload: dict[str, Any],
        on_session: Callable[[str], None],
        stop: Callable[[], bool],
        listeners: Iterable[Callable[[Progress], None]] = (),
        on_log: Callable[[str], None] | None = None,
    ) -> Outcome: ...

    def close(self) -> None: ...


def planned(engine: Any, kind: str, payload: dict[str, Any]) -> tuple[Any, Any]:
    """A job's operation and its plan, after the operation's own check. Its keys were
    checked when it was queued; ``until`` is the run's, not the operation's (any running
    job may stop early)."""
    from arc_fabric_core.jobs.checks import check_session_id

    op = engine.plugins.operation(kind)
    session = check_session_id(payload["session"]) if op.on_session else None
    fields = op.Request.model_fields
    request = op.job_request({k: v for k, v in payload.items() if k in fields or k == "session"})
    return op, op.check(engine, request, session)


def session_for(engine: Any, kind: str, payload: dict[str, Any]) -> Any:
    """The session a job works on: what its operation creates (a new or branched
    session, written) or opens, after the operation's own check."""
    op, plan = planned(engine, kind, payload)
    return op.create(engine, plan)


def run_job(
    engine: Any,
    kind: str,
    payload: dict[str, Any],
    on_session: Callable[[str], None],
    stop: Callable[[], bool],
    listeners: Iterable[Callable[[Progress], None]] = (),
    previews: bool = False,
    video: bool = False,
    on_log: Callable[[str], None] | None = None,
) -> Outcome:
    """Run one job with ``engine`` (in this process: the in-process executor and the
    worker both call it); with ``previews`` every step's progress carries a preview JPEG;
    with ``video`` a finished session is decoded to its ``video.mp4`` before the job ends,
    where the model is (a client that sees the job succeed finds the video). ``on_log``
    hears the job's log lines (:mod:`arc_fabric_core.jobs.log`)."""
    from arc_fabric_core.jobs.log import job_log

    with job_log(on_log, getattr(engine, "cache", None)) as say:
        if not engine.plugins.operation(kind).runs:
            return _execute_job(engine, kind, payload, on_session, say)
        return _run_job(engine, kind, payload, on_session, stop, list(listeners), previews, video, say)


def _execute_job(
    engine: Any, kind: str, payload: dict[str, Any], on_session: Callable[[str], None], say: Callable[[str], None]
) -> Outcome:
    """A job of an operation that runs no loop (a decode): carried out by the
    operation's own ``execute``, here, where the model is (the server never decodes in
    its own process)."""
    op, plan = planned(engine, kind, payload)
    session = op.create(engine, plan)
    on_session(session.id)
    done = op.execute(engine, plan, session, say)
    return Outcome(session.id, True, done.step, session.doc.total_steps)


def _run_job(
    engine: Any,
    kind: str,
    payload: dict[str, Any],
    on_session: Callable[[str], None],
    stop: Callable[[], bool],
    listeners: list[Callable[[Progress], None]],
    previews: bool,
    video: bool,
    say: Callable[[str], None],
) -> Outcome:
    session = session_for(engine, kind, payload)
    on_session(session.id)
    doc = session.doc
    until = payload.get("until")
    say(
        f"session {session.id}: {kind} with {session.ref.label}, "
        f"steps {session.step_index}→{until if until is not None else doc.total_steps} of {doc.total_steps}"
    )

    streamed = [0]

    def relay(event: Any) -> None:
        preview = None
        if event.frames is not None:
            streamed[0] += event.frames.shape[0]
            say(f"step {event.step}: {event.frames.shape[0]} more frames decoded ({streamed[0]} so far this run)")
        if previews and event.frames is not None:  # real frames, decoded as the model went
            from arc_fabric_core.media.previews import data_url, frame_jpeg

            preview = data_url(frame_jpeg(event.frames))
        elif previews and event.latents is not None:
            from arc_fabric_core.media.previews import data_url, preview_jpeg

            # Upscaled by the VAE's spatial compression: the preview has the video's size.
            preview = data_url(preview_jpeg(event.latents, scale=session.ref.latent_space.spatial_compression))
        progress = Progress(
            session.id, event.step, event.total, event.step_seconds, event.elapsed_seconds, event.first_step, preview
        )
        for listener in listeners:
            listener(progress)

    session = engine.run(session, until=until, listeners=[relay], stop=stop)
    if not session.done:
        say(f"paused at step {session.step_index} of {session.doc.total_steps} (checkpointed)")
    elif video:
        say("decoding the video")
        try:
            path = write_session_video(engine, session)
        except Exception as exc:  # a client told the job succeeded would look for the video
            reason = str(exc) if isinstance(exc, ArcFabricError) else f"{type(exc).__name__}: {exc}"
            said = (
                f"session {session.id} finished (its latents are kept) but its video was not written: {reason}; "
                f"`sessions decode {session.id}` writes it again"
            )
            say(said)
            raise VideoNotWritten(said) from exc
        say(f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KiB)")
    return Outcome(session.id, session.done, session.step_index, session.doc.total_steps)


def write_session_video(engine: Any, session: Any) -> Path:
    """Decode a finished session to ``video.mp4`` in its store folder (where the server serves it from)."""
    from arc_fabric_core.media.video import write_mp4

    path = engine.store.session_dir(session.id) / "video.mp4"
    write_mp4(engine.decode(session), path, fps=session.params.fps)
    return path


class InProcessExecutor:
    """Jobs run by an engine in this process (the default: CLI and tests)."""

    name = "inprocess"

    def __init__(self, engine: Any, previews: bool = False, videos: bool = False) -> None:
        self.engine = engine
        self.previews = previews
        self.videos = videos

    def run(
        self,
        kind: str,
        payload: dict[str, Any],
        on_session: Callable[[str], None],
        stop: Callable[[], bool],
        listeners: Iterable[Callable[[Progress], None]] = (),
        on_log: Callable[[str], None] | None = None,
    ) -> Outcome:
        return run_job(self.engine, kind, payload, on_session, stop, listeners, self.previews, self.videos, on_log)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the local protocol
# One JSON object per line over a TCP connection on 127.0.0.1. The orchestrator sends
# {"op": "hello", "token"}, then {"op": "run", "kind", "payload"} and, while it runs,
# possibly {"op": "cancel"}; the worker answers with events: {"event": "session"},
# {"event": "step"}, {"event": "log", "line"}, {"event": "model"} (a cache event with the
# worker's model states), and one {"event": "done"} or {"event": "error"}.


def error_event(exc: BaseException) -> dict[str, Any]:
    """A job's failure as the worker sends it: the line, and for the core's own errors
    what rebuilds them on the other side (an API answers with the same status)."""
    event: dict[str, Any] = {"event": "error", "error": f"{type(exc).__name__}: {exc}"}
    if type(exc) is InputError:
        event["raised"] = {"type": "InputError", "field": exc.field, "message": exc.message}
    elif type(exc) is OutputError:
        event["raised"] = {"type": "OutputError", "path": str(exc.path), "reason": exc.reason, "errno": exc.errno}
    elif type(exc) is SessionError:
        event["raised"] = {"type": "SessionError", "message": str(exc)}
    return event


def remote_error(event: dict[str, Any]) -> ArcFabricError:
    """The error a worker's ``error`` event stands for: it reads as the worker's line,
    caused by the error rebuilt where the worker could describe it."""
    error = ArcFabricError(event["error"])
    raised = event.get("raised") or {}
    cause: ArcFabricError | None = None
    if raised.get("type") == "InputError":
        cause = InputError(str(raised["field"]), str(raised["message"]))
    elif raised.get("type") == "OutputError":
        cause = OutputError(raised["path"], str(raised["reason"]), raised.get("errno"))
    elif raised.get("type") == "SessionError":
        cause = SessionError(str(raised["message"]))
    error.__cause__ = cause
    return error


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class Lines:
    """Reads newline-delimited JSON messages from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message; None at end of stream; TimeoutError when none came in ``timeout``."""
        while b"\n" not in self.buffer:
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                return None  # reset by a peer that died
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


@dataclass
class _Worker:
    python: str
    process: subprocess.Popen[bytes]
    sock: socket.socket
    lines: Lines
    info: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.process.pid


class SubprocessExecutor:
    """Jobs run by worker processes, one per Python environment, started on first use.

    ``pythons`` maps a model name to the interpreter of the env its plugin lives in
    (``python -m arc_fabric_core env path NAME``); a model not in it runs in the env
    created for it with ``env create``, else with this interpreter. A worker that dies
    fails its job with the reason; the next job for that env starts a new one.

    Cancel stops a job at its next step; one that does not reach it within
    ``cancel_grace`` seconds (a step that hangs, a load that never ends) is stopped by
    ending its worker: its session is left paused at its last checkpoint, and the next
    job gets a new worker.
    """

    name = "subprocess"

    def __init__(
        self,
        store_dir: str | Path,
        pythons: Mapping[str, str] | None = None,
        device: str = "auto",
        dtype: str = "auto",
        start_timeout: float = 300.0,
        worker_args: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        previews: bool = False,
        videos: bool = False,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
    ) -> None:
        if not cancel_grace > 0:
            raise InputError("cancel_grace", f"must be more than 0 seconds, got {cancel_grace}")
        self.store_dir = Path(store_dir)
        self.cancel_grace = float(cancel_grace)
        self.pythons = dict(pythons or {})
        self.device, self.dtype = device, dtype
        self.start_timeout = start_timeout
        self.worker_args = list(worker_args)
        self.environ = dict(environ or {})  # added to the workers' environment
        self.previews = previews  # workers send a preview JPEG with every step
        self.videos = videos  # workers decode finished sessions to video.mp4
        self.workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        # What each worker's model cache holds (its ``ModelStatus`` list as JSON), by
        # interpreter: the server's model cards and device view read it.
        self.model_states: dict[str, list[dict[str, Any]]] = {}
        self._model_listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe_models(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` with every cache event of every worker (a worker that dies
        reports its warm models evicted)."""
        self._model_listeners.append(listener)

    def held_models(self) -> list[dict[str, Any]]:
        return [status for states in list(self.model_states.values()) for status in states]

    def _tell_models(self, event: dict[str, Any]) -> None:
        for listener in list(self._model_listeners):
            try:
                listener(event)
            except Exception:  # a listener's failure never fails a job
                log.exception("model listener failed on %s", event)

    # ------------------------------------------------------------ which env

    def python_for(self, kind: str, payload: dict[str, Any]) -> str:
        """The interpreter of the env that runs this job's model."""
        model = self._model_of(kind, payload)
        if model in self.pythons:
            return self.pythons[model]
        from arc_fabric_core.runtime.envs import find_env

        env = find_env(model)
        return str(env.python) if env is not None else sys.executable

    def _model_of(self, kind: str, payload: dict[str, Any]) -> str:
        if kind == "generate":
            return str(payload["model"])
        from arc_fabric_core.store.files import SessionStore

        return SessionStore(self.store_dir).load_doc(str(payload["session"])).model.name

    # ------------------------------------------------------------ workers

    def worker(self, python: str) -> _Worker:
        """The live worker for ``python``, started if there is none (or the last one died)."""
        with self._lock:
            current = self.workers.get(python)
            if current is not None and current.process.poll() is None:
                return current
            if current is not None:
                self._drop(python)
            worker = self._start(python)
            self.workers[python] = worker
            return worker

    def _start(self, python: str) -> _Worker:
        token = secrets.token_hex(16)
        command = [
            python,
            "-m",
            "arc_fabric_core.jobs.worker",
            "--store",
            str(self.store_dir),
            "--device",
            self.device,
            "--dtype",
            self.dtype,
            *self.worker_args,
        ]
        env = {**os.environ, **self.environ, "ARC_WORKER_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        log.info("starting a worker: %s", " ".join(command))
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            raise WorkerDied(f"cannot start a worker with {python}: {exc}") from None
        assert process.stdout is not None
        port = self._read_port(process, python)
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        lines = Lines(sock)
        send(sock, {"op": "hello", "token": token})
        info = lines.read(timeout=30)
        if not info or not info.get("ok"):
            process.kill()
            raise WorkerDied(f"the worker of {python} refused the handshake: {info}")
        log.info("worker %s ready (pid %d, plugins %s)", python, process.pid, ", ".join(info.get("models", [])))
        return _Worker(python, process, sock, lines, info)

    def _read_port(self, process: subprocess.Popen[bytes], python: str) -> int:
        """The worker prints ``ARC_WORKER_PORT <port>`` once it listens; anything else is its failure."""
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.start_timeout)
        line = result[0].decode(errors="replace").strip() if result else ""
        if not line.startswith("ARC_WORKER_PORT "):
            process.kill()
            code = process.wait(10)
            raise WorkerDied(
                f"the worker of {python} did not start ({_exit_reason(code)}); its error is above"
                if line or code
                else f"the worker of {python} did not start within {self.start_timeout:.0f}s"
            )
        return int(line.split()[1])

    def _drop(self, python: str) -> None:
        worker = self.workers.pop(python, None)
        if worker is not None:
            worker.sock.close()
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(10)
        # Whatever it held is gone with it.
        for status in self.model_states.pop(python, []):
            if status.get("state") != "cold":
                label, device = status["label"], status.get("device")
                self._tell_models({"kind": "evict", "label": label, "device": device, "bytes": status["bytes"]})

    # ------------------------------------------------------------ running a job

    def run(
        self,
        kind: str,
        payload: dict[str, Any],
        on_session: Callable[[str], None],
        stop: Callable[[], bool],
        listeners: Iterable[Callable[[Progress], None]] = (),
        on_log: Callable[[str], None] | None = None,
    ) -> Outcome:
        python = self.python_for(kind, payload)
        worker = self.worker(python)
        listeners = list(listeners)
        send(
            worker.sock,
            {"op": "run", "kind": kind, "payload": payload, "previews": self.previews, "video": self.videos},
        )
        cancelled_at: float | None = None  # when the worker was told to stop (the grace runs from there)
        session_id = None
        while True:
            try:
                message = worker.lines.read(timeout=0.25)
            except TimeoutError:
                message = {}  # nothing came: time to look at the cancel flag
            if message is None:
                code = self._wait(worker)
                self._drop(python)
                where = f" (session {session_id} is at its last checkpoint)" if session_id else ""
                reason = _exit_reason(code)
                said = f"the worker (pid {worker.pid}, {python}) died during the job: {reason}{where}"
                if session_id is not None:
                    self._record_death(session_id, said)
                raise WorkerDied(said)
            event = message.get("event")
            if event == "session":
                session_id = message["session_id"]
                on_session(session_id)
            elif event == "step":
                progress = Progress(**{k: message[k] for k in Progress.__dataclass_fields__ if k in message})
                for listener in listeners:
                    listener(progress)
                if cancelled_at is not None:  # it reached a step: it pauses there (the grace covers the flush)
                    cancelled_at = time.monotonic()
            elif event == "log":
                if on_log is not None:
                    on_log(str(message["line"]))
            elif event == "model":
                self.model_states[python] = list(message.pop("states", []))
                self._tell_models(message)
            elif event == "done":
                return Outcome(message["session_id"], message["done"], message["step"], message["total"])
            elif event == "error":
                raise remote_error(message)
            if cancelled_at is None:
                if event in (None, "step") and stop():  # asked at every step and while nothing comes
                    cancelled_at = time.monotonic()
                    send(worker.sock, {"op": "cancel"})
            elif time.monotonic() - cancelled_at > self.cancel_grace:
                return self._end_cancelled(python, worker, session_id, on_log)

    def _end_cancelled(
        self, python: str, worker: _Worker, session_id: str | None, on_log: Callable[[str], None] | None
    ) -> Outcome:
        """Stop a cancelled job that did not reach its next step in time: end its worker,
        and leave its session paused at its last checkpoint (the next job gets a new worker)."""
        from arc_fabric_core.store.files import SessionStore
        from arc_fabric_core.store.session import SessionStatus

        said = f"cancel: no step within {self.cancel_grace:g} s of the request; ending its worker (pid {worker.pid})"
        log.warning("%s", said)
        if on_log is not None:
            on_log(said)
        self._drop(python)  # SIGKILL, then what it held is reported evicted
        if session_id is None:
            raise JobCancelled(f"cancelled before its session started; its worker (pid {worker.pid}) was ended")
        # The worker's lock died with it (an flock), so the status can be set from here.
        running = frozenset({SessionStatus.RUNNING})
        doc = SessionStore(self.store_dir).set_status(session_id, SessionStatus.PAUSED, only_from=running)
        if on_log is not None:
            on_log(f"session {session_id} paused at step {doc.step_index} of {doc.total_steps} (its last checkpoint)")
        return Outcome(session_id, doc.final is not None, doc.step_index, doc.total_steps)

    def _record_death(self, session_id: str, said: str) -> None:
        """A worker that died mid-run left its session ``running`` (or ``created``) on disk:
        record it failed with the reason; it resumes from its last checkpoint. Its lock
        died with the worker (an flock), so the status can be set from here."""
        from arc_fabric_core.contract.errors import SessionError, brief
        from arc_fabric_core.store.files import SessionStore
        from arc_fabric_core.store.session import SessionStatus

        unfinished = frozenset({SessionStatus.CREATED, SessionStatus.RUNNING})
        with contextlib.suppress(SessionError, OSError):  # the job's own error is what matters here
            SessionStore(self.store_dir).set_status(session_id, SessionStatus.FAILED, brief(said), only_from=unfinished)

    @staticmethod
    def _wait(worker: _Worker) -> int | None:
        try:
            return worker.process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def pids(self) -> dict[str, int]:
        """Live workers by interpreter (tests and the API read it)."""
        return {p: w.pid for p, w in self.workers.items() if w.process.poll() is None}

    def close(self) -> None:
        with self._lock:
            for python, worker in list(self.workers.items()):
                try:
                    send(worker.sock, {"op": "shutdown"})
                    worker.process.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                self._drop(python)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " — out of memory (the kernel's OOM killer) or kill -9" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
