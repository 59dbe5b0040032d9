"""The server's runtime: the queue, the engine, a thread that works through the jobs,
and the events everything emits.

Compute never runs on the event loop: jobs run on the worker thread (or in worker
processes, with the ``subprocess`` executor), and every state change is published on
the :class:`EventBus` for the WebSocket clients.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import ArcFabricError, DamagedSessionError, SessionError
from arc_fabric_core.dispatch.plugins import Plugins, get_plugins
from arc_fabric_core.jobs import runtime_setup
from arc_fabric_core.jobs.checks import PRIORITY_MAX
from arc_fabric_core.jobs.executors import CANCEL_GRACE_SECONDS, Outcome, Progress
from arc_fabric_core.jobs.queue import FINISHED, Job, JobQueue, JobRunner, JobState
from arc_fabric_core.runtime.model_cache import CacheEvent
from arc_fabric_core.server.events import EventBus
from arc_fabric_core.server.payload_summary import summarize_payload
from arc_fabric_core.store.files import SessionStore

log = logging.getLogger(__name__)

LOG_LINES = 200  # kept per job


@dataclass
class Settings:
    data_dir: Path = Path("outputs/server")
    device: str = "auto"
    executor: str = "inprocess"
    model_memory: int | None = None
    cpu_tier: int = 0
    write_videos: bool = True
    previews: bool = True  # a preview JPEG of the latents with every step's event
    worker_plugins: tuple[str, ...] = ()  # subprocess executor: modules its workers register as plugins
    # Subprocess executor: a cancelled job that does not reach its next step within this
    # many seconds is stopped by ending its worker (in-process, a job stops at its next step).
    cancel_grace: float = CANCEL_GRACE_SECONDS
    gpu_poll_seconds: float = 5.0
    # How long a decode request waits for its job; one still queued or running then is
    # answered 202 with the job, to poll like any other.
    decode_wait: float = 300.0

    def runtime(self) -> runtime_setup.RuntimeSettings:
        """The runtime configuration these settings mean (what the cache, the engine and
        the executor are built from)."""
        return runtime_setup.RuntimeSettings(
            store_dir=Path(self.data_dir) / "sessions",
            device=self.device,
            executor=self.executor,
            model_memory=self.model_memory,
            cpu_tier=self.cpu_tier,
            previews=self.previews,
            videos=self.write_videos,
            worker_plugins=tuple(self.worker_plugins),
            cancel_grace=self.cancel_grace,
        )


@dataclass
class JobLive:
    """What the server knows of a job beyond the queue's row: progress and log lines."""

    progress: dict[str, Any] | None = None
    preview: str | None = None  # the latest preview (a JPEG data URL)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    ended: threading.Event = field(default_factory=threading.Event)  # set once it finished
    outcome: Outcome | None = None  # how its run ended, when it did
    error: Exception | None = None  # a decode job's failure, until its request reads it


class Orchestrator:
    def __init__(self, settings: Settings, plugins: Plugins | None = None, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.plugins = plugins or get_plugins()
        self.bus = bus or EventBus()
        root = Path(settings.data_dir)
        runtime = settings.runtime()
        self.store = SessionStore(runtime.store_dir)
        self.queue = JobQueue(root / "jobs.sqlite", plugins=self.plugins)
        # This server's own cache: the models of an in-process executor, the devices the
        # checks and the views look at (another server in this process has its own).
        self.cache = runtime_setup.build_cache(runtime, self.plugins)
        self.cache.subscribe(self._on_cache_event)
        self.engine = runtime_setup.build_engine(runtime, self.plugins, self.cache, store=self.store)
        executor: Any = runtime_setup.build_executor(runtime, lambda: self.engine)
        self.executor = executor
        if hasattr(executor, "subscribe_models"):  # jobs run elsewhere: the workers' caches hold the models
            executor.subscribe_models(self._on_worker_model_event)
        self.runner = JobRunner(self.queue, executor=executor)
        self.live: dict[int, JobLive] = {}
        self.model_events: deque[dict[str, Any]] = deque(maxlen=50)  # recent cache activity, for the snapshot
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for job_id in self.queue.recovered:
            self._log(job_id, "interrupted: the server stopped while it ran; resume its session to continue")

    # ------------------------------------------------------------ lifecycle

    @property
    def working(self) -> bool:
        """Whether this server works through its queue now (started, not stopped)."""
        return not self._stop.is_set() and any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Start working the queue (again, after a stop: an app's lifespan may run more than once)."""
        self._stop.clear()
        worker = threading.Thread(target=self._work, name="arc-jobs", daemon=True)
        poller = threading.Thread(target=self._poll_gpus, name="arc-gpus", daemon=True)
        self._threads = [worker, poller]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop taking jobs; a running job is cancelled at its next step (its session paused)."""
        self._stop.set()
        self._wake.set()
        for job in self.queue.list({JobState.RUNNING}):
            if job.worker and job.worker.endswith(f":{_pid()}"):
                self.queue.cancel(job.id)
        for thread in self._threads:
            thread.join(timeout=60)
        self.executor.close()  # workers go; the next job (after a start) gets new ones

    # ------------------------------------------------------------ jobs

    def submit(self, kind: str, payload: dict[str, Any], priority: int = 0) -> Job:
        """Check a job (as far as possible before compute) and queue it."""
        self.validate(kind, payload)
        job = self.queue.submit(kind, payload, priority=priority)
        self._log(job.id, f"queued ({kind}, priority {priority})")
        self._publish_job(job)
        self._wake.set()
        return job

    def validate(self, kind: str, payload: dict[str, Any]) -> None:
        """Refuse, before it is queued, every job the engine would refuse (the checks
        ``jobs submit`` runs too: :func:`arc_fabric_core.jobs.checks.validate_job`)."""
        from arc_fabric_core.jobs.checks import validate_job

        validate_job(self.engine, kind, payload)  # its capability check included

    def cancel(self, job_id: int) -> Job:
        job = self.queue.cancel(job_id)
        self._log(job_id, "cancelled" if job.state is JobState.CANCELLED else f"cancel requested: {self.cancel_note()}")
        self._publish_job(job)
        if job.state is JobState.CANCELLED:  # it never ran: whoever waits for it is told now
            self.live.setdefault(job_id, JobLive()).ended.set()
        return job

    def decode(self, session_id: str, step: int | None = None) -> dict[str, Any] | Job:
        """The video of a session's final latents (or of a checkpoint's preview at
        ``step``), made by a decode job: the executor decodes where the model is, never
        this process unless its executor runs jobs here. Answers the video once the job
        succeeded, raises what it failed with, or gives the job back while it is still
        queued or running after ``decode_wait`` seconds (or the queue does not run now)."""
        payload: dict[str, Any] = {"session": session_id}
        if step is not None:
            payload["step"] = step
        job = self.submit("decode", payload, priority=PRIORITY_MAX)  # short: ahead of every queued job
        live = self.live.setdefault(job.id, JobLive())
        deadline = time.monotonic() + self.settings.decode_wait
        while not live.ended.wait(timeout=min(0.5, max(deadline - time.monotonic(), 0))):
            job = self.queue.get(job.id)
            if time.monotonic() >= deadline or not self.working or (self.queue.paused and job.state is JobState.QUEUED):
                return job
        job = self.queue.get(job.id)
        outcome, error, live.error = live.outcome, live.error, None
        if job.state is JobState.SUCCEEDED and outcome is not None:
            return {"session": session_id, "step": outcome.step, "video": self.decoded_url(outcome)}
        if error is not None:
            # A worker's error stands on its rebuilt cause: the API answers with its status.
            raised = error.__cause__ if type(error) is ArcFabricError else None
            raise raised if isinstance(raised, ArcFabricError) else error
        raise ArcFabricError(f"the decode job {job.id} was {job.state.value}" + (f": {job.error}" if job.error else ""))

    def decoded_url(self, outcome: Outcome) -> str:
        """Where the video a decode job wrote is served."""
        name = outcome.session_id if outcome.step == outcome.total else f"{outcome.session_id}-step{outcome.step}"
        return f"/files/videos/{name}.mp4"

    def cancel_note(self) -> str:
        """What cancelling a running job does with this server's executor."""
        grace = getattr(self.executor, "cancel_grace", None)
        if grace is not None:
            return (
                f"stops at the next step, or within {grace:g} s by ending its worker "
                "(its session paused at its last checkpoint)"
            )
        return "stops at the next step (in-process: a step already running finishes first)"

    def server_info(self) -> dict[str, Any]:
        """The executor and what a cancel does with it (the health check and the snapshot say it)."""
        grace = getattr(self.executor, "cancel_grace", None)
        return {"executor": self.executor.name, "cancel_grace": grace, "cancel_note": self.cancel_note()}

    def position(self, job: Job) -> int | None:
        """Place in the queue (0 = next to run); None when not queued."""
        if job.state is not JobState.QUEUED:
            return None
        queued = sorted(self.queue.list({JobState.QUEUED}), key=lambda j: (-j.priority, j.id))
        return next((i for i, j in enumerate(queued) if j.id == job.id), None)  # None: claimed meanwhile

    def describe_job(self, job: Job, logs: bool = False, brief: bool = False) -> dict[str, Any]:
        """A job as the API shows it. ``brief`` (the views of every job: the list, the
        snapshot, the events) carries a summary of the payload, not all of it."""
        live = self.live.get(job.id)
        out: dict[str, Any] = {
            "id": job.id,
            "kind": job.kind,
            "state": job.state.value,
            "priority": job.priority,
            "position": self.position(job),
            "session_id": job.session_id,
            "error": job.error,
            "cancel_requested": job.cancel_requested,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "payload": summarize_payload(job.payload) if brief else job.payload,
            "payload_summary": brief,
            "progress": live.progress if live else None,
            "preview": live.preview if live and job.state is JobState.RUNNING else None,
            "video": self._result_video(job, live),
        }
        if logs:
            out["logs"] = list(live.logs) if live else []
        return out

    def _result_video(self, job: Job, live: JobLive | None) -> str | None:
        """The video a succeeded job leaves: its session's, or the one a decode job wrote."""
        if job.state is not JobState.SUCCEEDED or not job.session_id:
            return None
        if job.kind == "decode" and live is not None and live.outcome is not None:
            return self.decoded_url(live.outcome)
        return self.video_url(job.session_id)

    def video_path(self, name: str) -> Path | None:
        """``<session>.mp4`` -> the session's video.mp4; ``<session>-step<K>.mp4`` -> a preview decode."""
        m = re.fullmatch(r"([0-9]{8}-[0-9]{6}-[0-9a-f]{8})(?:-step([0-9]{1,9}))?\.mp4", name)
        if m is None:
            return None
        file = "video.mp4" if m.group(2) is None else f"video-step{int(m.group(2))}.mp4"
        return self.store.session_dir(m.group(1)) / file

    def video_url(self, session_id: str | None) -> str | None:
        if session_id and (self.store.session_dir(session_id) / "video.mp4").is_file():
            return f"/files/videos/{session_id}.mp4"
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._run_one()
            except Exception:  # the worker thread must survive anything
                log.exception("the job runner failed")
                job = None
            if job is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()

    def _run_one(self) -> Job | None:
        current: list[Job] = []

        def on_start(job: Job) -> None:
            current.append(job)
            self.live.setdefault(job.id, JobLive())
            self._log(job.id, "started")
            self._publish_job(job)

        def on_progress(p: Progress) -> None:
            job = current[0]
            done_here = max(p.step - p.first_step, 1)
            progress = {
                "session_id": p.session_id,
                "step": p.step,
                "total": p.total,
                "elapsed": round(p.elapsed_seconds, 3),
                "step_seconds": round(p.step_seconds, 4),
                "eta": round(p.elapsed_seconds / done_here * (p.total - p.step), 3),
            }
            self.live[job.id].progress = progress
            self.bus.publish("progress", job_id=job.id, **progress)
            if p.preview is not None:
                self.live[job.id].preview = p.preview
                self.bus.publish("preview", job_id=job.id, session_id=p.session_id, step=p.step, image=p.preview)

        def on_log(line: str) -> None:
            self._log(current[0].id, line)

        def on_end(job: Job, outcome: Outcome | None, error: Exception | None) -> None:
            live = self.live.setdefault(job.id, JobLive())
            live.outcome = outcome
            if job.kind == "decode" and error is not None:  # its request raises it (the API's status)
                live.error = error.with_traceback(None)

        done = self.runner.run_next(listeners=[on_progress], on_start=on_start, on_log=on_log, on_end=on_end)
        if done is None:
            return None
        self._log(done.id, f"{done.state.value}" + (f": {done.error}" if done.error else ""))
        self._publish_job(done)
        self.live.setdefault(done.id, JobLive()).ended.set()
        return done

    # ------------------------------------------------------------ events

    def _log(self, job_id: int, line: str) -> None:
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        self.live.setdefault(job_id, JobLive()).logs.append(stamped)
        self.bus.publish("log", job_id=job_id, line=stamped)

    def _publish_job(self, job: Job) -> None:
        self.bus.publish("job", job=self.describe_job(job, brief=True))

    def _on_cache_event(self, event: CacheEvent) -> None:
        self._on_worker_model_event(asdict(event))

    def _on_worker_model_event(self, event: dict[str, Any]) -> None:
        published = self.bus.publish(
            "model",
            kind=event["kind"],
            label=event["label"],
            device=event.get("device"),
            bytes=event.get("bytes", 0),
            seconds=event.get("seconds", 0.0),
        )
        self.model_events.append(published)

    def _poll_gpus(self) -> None:
        while not self._stop.wait(self.settings.gpu_poll_seconds):
            try:
                self.bus.publish("gpus", devices=self.gpus())
            except Exception:
                log.exception("reading the devices failed")

    # ------------------------------------------------------------ views

    def model_states(self) -> dict[str, dict[str, Any]]:
        """``model/variant`` -> its state and device, in this process's cache or a worker's
        (a model cold everywhere is absent)."""
        out: dict[str, dict[str, Any]] = {}
        held = [{"label": s.label, "state": s.state.value, "device": s.device} for s in self.cache.states()]
        if hasattr(self.executor, "held_models"):  # what the executor's workers hold
            held += self.executor.held_models()
        for status in held:
            if status["state"] != "cold":
                out[status["label"]] = {"state": status["state"], "device": status["device"]}
        return out

    def gpus(self) -> list[dict[str, Any]]:
        """Every device with its memory and the models warm on it."""
        states = self.model_states()
        out = []
        for device in self.cache.devices():
            info = device.as_dict()
            info["models"] = [label for label, s in states.items() if s["device"] == device.id]
            out.append(info)
        return out

    def models(self) -> list[dict[str, Any]]:
        """Every model as ``Plugins.describe_model`` gives it (capabilities, each variant's
        effective ``defaults``), with the variant ``auto`` runs on this server and where
        each variant is warm."""
        states = self.model_states()
        cold = {"state": "cold", "device": None}
        out = []
        for name in self.plugins.model_names():
            spec = self.plugins.model(name)
            described = self.plugins.describe_model(name)
            auto = spec.auto_variant()
            described["auto_variant"] = auto.name if auto is not None else None
            described["states"] = [{"variant": v.name, **states.get(f"{name}/{v.name}", cold)} for v in spec.variants]
            out.append(described)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The current state, sent first to every (re)connecting client."""
        jobs = [self.describe_job(j, brief=True) for j in self.queue.list() if j.state not in FINISHED or _recent(j)]
        return {
            "jobs": jobs,
            "models": self.models(),
            "gpus": self.gpus(),
            "paused": self.queue.paused,
            "model_events": list(self.model_events),
            "server": self.server_info(),
        }

    def session_summary(self, doc: Any) -> dict[str, Any]:
        return {
            "id": doc.id,
            "model": doc.model.name,
            "variant": doc.model.variant,
            "status": self.store.status_of(doc),
            "step": doc.step_index,
            "total_steps": doc.total_steps,
            "created_at": doc.created_at,
            "parent": doc.parent,
            "parent_step": doc.parent_step,
            "operation": str(doc.operation),
            "prompt": doc.params.get("prompt"),
            "video": self.video_url(doc.id),
        }

    def session_list(self, limit: int) -> list[dict[str, Any]]:
        """Newest first; a damaged session is listed as ``damaged`` with its reason."""
        docs, damaged = self.store.scan()
        out = [self.session_summary(d) for d in docs]
        out += [self.damaged_summary(d) for d in damaged]
        return sorted(out, key=lambda s: s["created_at"], reverse=True)[:limit]

    def damaged_summary(self, damaged: DamagedSessionError) -> dict[str, Any]:
        """The list row of a session whose document cannot be read (what is known of it)."""
        from datetime import UTC, datetime

        try:
            mtime = Path(damaged.path).stat().st_mtime
        except OSError:
            mtime = 0.0
        return {
            "id": damaged.session_id,
            "model": None,
            "variant": None,
            "status": "damaged",
            "step": 0,
            "total_steps": 0,
            "created_at": datetime.fromtimestamp(mtime, UTC).isoformat(timespec="milliseconds"),
            "parent": None,
            "parent_step": None,
            "operation": None,
            "prompt": None,
            "video": None,
            "file": damaged.path,
            "error": f"session.json {damaged.reason}; `sessions repair {damaged.session_id}` rebuilds it "
            "from its newest intact checkpoint",
        }

    def session_detail(self, session_id: str) -> dict[str, Any]:
        from arc_fabric_core.store.lineage import ancestors

        doc = self.store.load_doc(session_id)
        docs = {d.id: d for d in self.store.load_all()}
        return {
            **self.session_summary(doc),
            "doc": doc.model_dump(mode="json"),
            "ancestors": ancestors(doc, docs),
            "children": [d.id for d in docs.values() if d.parent == doc.id],
            "checkpoint_steps": [c.step for c in doc.checkpoints],
            "locked": self.store.is_locked(session_id),
        }


def _recent(job: Job) -> bool:
    return job.finished_at is not None


def _pid() -> int:
    import os

    return os.getpid()


__all__ = ["Orchestrator", "SessionError", "Settings"]
