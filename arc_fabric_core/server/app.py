"""The FastAPI app: REST under /api, events on /api/events, files under /files.

Queue semantics as fal.ai users know them: submit a job (or a session operation) and
get its id and queue position; poll ``GET /api/jobs/{id}`` (state, position, progress,
logs) or listen on the WebSocket; the result (session, video) is on the finished job.
Every bad input is a 4xx naming the field; nothing the client sends reaches a 500. A
request body over 1 MiB is refused (413) before it is read; the job list and the events
carry each job's payload in brief, ``GET /api/jobs/{id}`` whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from arc_fabric_core.contract.errors import ArcFabricError, InputError, OutputError, SessionError
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.jobs.queue import JobState
from arc_fabric_core.server.body_limit import BodyLimit
from arc_fabric_core.server.orchestrator import Orchestrator, Settings
from arc_fabric_core.store.session import SESSION_ID

log = logging.getLogger(__name__)

SessionId = Annotated[str, PathParam(pattern=SESSION_ID, description="A session id, e.g. 20261127-044059-1d676c07")]
JobId = Annotated[int, PathParam(ge=1, le=2**62, description="A job id")]


class Problem(BaseModel):
    """Every 4xx answer: which field (if one) and what is allowed."""

    field: str | None = None
    message: str


class Strict(BaseModel):
    # No float of a request may be infinite or NaN (JSON's Infinity, NaN).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerateRequest(Strict):
    model: str = Field(description="An installed model, e.g. wan21")
    variant: str | None = Field(
        None, description="A variant of the model; default: real weights if configured, else tiny"
    )
    weights: str | None = Field(None, description="A local checkpoint folder for a real variant")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation parameters (see the model's schema)")
    schedule: str | dict[str, Any] | None = Field(None, description="A hybrid schedule: a shipped name or a config")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first")


class ForkRequest(Strict):
    step: int = Field(ge=0, description="The step to branch at")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Parameters the branch changes (prompt, ...)")
    priority: int = Field(0, ge=-1000, le=1000)


class MaskRequest(Strict):
    rect: list[int] | None = Field(None, min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels")
    frames: list[int] | None = Field(None, min_length=2, max_length=2, description="first, end (exclusive) frame")


class EditRequest(Strict):
    step: int | None = Field(None, ge=0, description="Re-denoise from this step (or give strength)")
    strength: float | None = Field(None, gt=0, le=1, description="How much to re-denoise, in (0, 1]")
    overrides: dict[str, Any] = Field(default_factory=dict)
    mask: MaskRequest | None = None
    priority: int = Field(0, ge=-1000, le=1000)


class ResumeRequest(Strict):
    until: int | None = Field(None, ge=0, description="Stop at this step (default: the end)")
    priority: int = Field(0, ge=-1000, le=1000)


class DecodeRequest(Strict):
    step: int | None = Field(None, ge=0, description="A checkpointed step to preview (default: the final latents)")


class DecodeView(BaseModel):
    session: str
    step: int = Field(description="The step the video shows")
    video: str = Field(description="Where it is served, under /files/videos/")


class ExtendRequest(Strict):
    blocks: int = Field(1, ge=1, le=1000, description="Blocks to add")
    prompt: str | None = Field(None, description="The prompt of the new blocks (default: the last one)")
    priority: int = Field(0, ge=-1000, le=1000)


class RewindRequest(Strict):
    block: int = Field(ge=0, le=100_000, description="The first block made again")
    prompt: str | None = Field(None, description="The prompt from that block on (default: as before)")
    overrides: dict[str, Any] | None = Field(None, description="Other parameters to change, e.g. seed")
    priority: int = Field(0, ge=-1000, le=1000)


class JobView(BaseModel):
    id: int
    kind: str
    state: str
    priority: int
    position: int | None = Field(description="Place in the queue, 0 = next; null when not queued")
    session_id: str | None
    error: str | None
    cancel_requested: bool = Field(False, description="Cancel was asked; it stops at its next step")
    created_at: str
    started_at: str | None
    finished_at: str | None
    payload: dict[str, Any]
    payload_summary: bool = Field(
        False,
        description="The payload in brief (the job list and events): texts cut to 200 characters, lists left out; "
        "GET /api/jobs/{id} has it whole",
    )
    progress: dict[str, Any] | None
    preview: str | None = Field(None, description="The latest preview (JPEG data URL) while it runs")
    video: str | None
    logs: list[str] | None = None


def create_app(
    settings: Settings | None = None,
    plugins: Plugins | None = None,
    token: str | None = None,
    start_worker: bool = True,
) -> FastAPI:
    """The app over a fresh orchestrator. ``token``: every request must carry it as
    ``Authorization: Bearer`` (WebSocket: ``?token=``)."""
    settings = settings or Settings()
    orch = Orchestrator(settings, plugins=plugins)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        orch.bus.bind(asyncio.get_running_loop())
        if start_worker:
            orch.start()
        try:
            yield
        finally:
            await asyncio.to_thread(orch.stop)

    app = FastAPI(
        title="Arc Fabric",
        version="0.1.0",
        description=__doc__,
        lifespan=lifespan,
        responses={code: {"model": Problem} for code in (404, 409, 413, 422)},
    )
    app.state.orchestrator = orch
    # Innermost of the middlewares: a request without its token is refused before its body is read.
    app.add_middleware(BodyLimit)

    # ------------------------------------------------------------ errors and auth

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"field": exc.field, "message": exc.message}, status_code=422)

    @app.exception_handler(SessionError)
    async def session_error(_: Request, exc: SessionError) -> JSONResponse:
        status = 404 if "not found" in str(exc) else 409
        return JSONResponse({"field": "session", "message": str(exc)}, status_code=status)

    @app.exception_handler(OutputError)
    async def output_error(_: Request, exc: OutputError) -> JSONResponse:
        # Not the client's fault: a full disk is 507 Insufficient Storage, anything else 500.
        return JSONResponse({"field": None, "message": str(exc)}, status_code=507 if exc.out_of_space else 500)

    @app.exception_handler(ArcFabricError)
    async def arc_error(_: Request, exc: ArcFabricError) -> JSONResponse:
        return JSONResponse({"field": None, "message": str(exc)}, status_code=409)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own and routing's (404, 405)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"field": None, "message": str(exc.detail)}
        return JSONResponse(detail, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "path", "query")]
        return JSONResponse(
            {"field": ".".join(loc) or None, "message": first.get("msg", "invalid"), "errors": _plain(exc.errors())},
            status_code=422,
        )

    if token:

        @app.middleware("http")
        async def bearer(request: Request, call_next: Any) -> Any:
            path = request.url.path
            # The page and its scripts hold no data (a browser cannot add a header to load
            # them); a <video src> cannot either, so files also take ?token=.
            if request.method == "GET" and (path == "/" or path.startswith("/static/")):
                return await call_next(request)
            given = request.headers.get("authorization", "")
            if path.startswith("/files/") and "token" in request.query_params:
                given = f"Bearer {request.query_params['token']}"
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(
                    {"field": "authorization", "message": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await call_next(request)

    # ------------------------------------------------------------ models and devices

    @app.get("/api/health", tags=["server"])
    def health() -> dict[str, Any]:
        """Up; the executor and what cancelling a running job does with it."""
        return {"ok": True, **orch.server_info(), "paused": orch.queue.paused}

    @app.get("/api/models", tags=["models"])
    def models() -> list[dict[str, Any]]:
        """Installed models: variants (each with the ``defaults`` a run of it gets), the variant
        ``auto`` runs here (``auto_variant``), capabilities (the session operations it takes),
        parameter JSON schema, warm/cold state and device."""
        return orch.models()

    @app.get("/api/models/{name}", tags=["models"])
    def model(name: Annotated[str, PathParam(max_length=100)]) -> dict[str, Any]:
        for described in orch.models():
            if described["name"] == name:
                return described
        raise InputError("model", f"unknown model {name!r}; installed: {', '.join(orch.plugins.model_names())}")

    @app.get("/api/schedules", tags=["models"])
    def schedules() -> list[str]:
        """The shipped hybrid schedules, by name (give one as a generation's ``schedule``)."""
        from arc_fabric_core.engine.hybrid import shipped_schedules

        return sorted(shipped_schedules())

    @app.get("/api/gpus", tags=["devices"])
    def gpus() -> list[dict[str, Any]]:
        """Every device: memory, utilization, processes, and the models warm on it."""
        return orch.gpus()

    # ------------------------------------------------------------ jobs

    @app.get("/api/jobs", tags=["jobs"])
    def jobs(state: Annotated[JobState | None, Query()] = None) -> list[JobView]:
        return [JobView(**orch.describe_job(j, brief=True)) for j in orch.queue.list({state} if state else None)]

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def job(job_id: JobId, logs: bool = True) -> JobView:
        """State, queue position, progress, logs; the session and video once it succeeded."""
        return JobView(**orch.describe_job(orch.queue.get(job_id), logs=logs))

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: JobId) -> JobView:
        """A queued job leaves the queue; a running one stops at its next step (with the
        subprocess executor, one that does not get there within the grace period is
        stopped by ending its worker). Its session is paused and resumes exactly."""
        return JobView(**orch.describe_job(orch.cancel(job_id)))

    @app.post("/api/queue/pause", tags=["jobs"])
    def pause() -> dict[str, Any]:
        orch.queue.pause()
        orch.bus.publish("queue", paused=True)
        return {"paused": True}

    @app.post("/api/queue/unpause", tags=["jobs"])
    def unpause() -> dict[str, Any]:
        orch.queue.unpause()
        orch._wake.set()
        orch.bus.publish("queue", paused=False)
        return {"paused": False}

    # ------------------------------------------------------------ sessions

    def _queued(kind: str, payload: dict[str, Any], priority: int) -> JobView:
        return JobView(**orch.describe_job(orch.submit(kind, payload, priority)))

    @app.post("/api/sessions", status_code=202, tags=["sessions"])
    def create_session(request: GenerateRequest) -> JobView:
        """Queue a generation; the job's ``session_id`` appears once it starts."""
        payload: dict[str, Any] = {"model": request.model, "params": request.params}
        if request.variant is not None:
            payload["variant"] = request.variant
        if request.weights is not None:
            payload["weights"] = request.weights
        if request.schedule is not None:
            from arc_fabric_core.engine.hybrid import named_schedule

            payload["schedule"] = (
                named_schedule(request.schedule) if isinstance(request.schedule, str) else request.schedule
            )
        return _queued("generate", payload, request.priority)

    @app.get("/api/sessions", tags=["sessions"])
    def sessions(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """Newest first. A session whose document is damaged is listed with ``status``
        ``damaged`` and the reason in ``error``; it never hides or breaks the others."""
        return orch.session_list(limit)

    @app.get("/api/sessions/{session_id}", tags=["sessions"])
    def session(session_id: SessionId) -> dict[str, Any]:
        """The session's document, lineage (ancestors, children) and checkpoints."""
        return orch.session_detail(session_id)

    @app.post("/api/sessions/{session_id}/fork", status_code=202, tags=["sessions"])
    def fork(session_id: SessionId, request: ForkRequest) -> JobView:
        payload = {"session": session_id, "step": request.step}
        if request.overrides:
            payload["overrides"] = request.overrides
        return _queued("fork", payload, request.priority)

    @app.post("/api/sessions/{session_id}/edit", status_code=202, tags=["sessions"])
    def edit(session_id: SessionId, request: EditRequest) -> JobView:
        if (request.step is None) == (request.strength is None):
            raise InputError("step", "give a step or a strength (not both)")
        payload: dict[str, Any] = {"session": session_id}
        for key in ("step", "strength"):
            if getattr(request, key) is not None:
                payload[key] = getattr(request, key)
        if request.overrides:
            payload["overrides"] = request.overrides
        if request.mask is not None:
            payload["mask"] = request.mask.model_dump(exclude_none=True)
        return _queued("edit", payload, request.priority)

    @app.post("/api/sessions/{session_id}/resume", status_code=202, tags=["sessions"])
    def resume(session_id: SessionId, request: Annotated[ResumeRequest | None, Body()] = None) -> JobView:
        request = request or ResumeRequest()
        payload: dict[str, Any] = {"session": session_id}
        if request.until is not None:
            payload["until"] = request.until
        return _queued("resume", payload, request.priority)

    @app.post("/api/sessions/{session_id}/extend", status_code=202, tags=["sessions"])
    def extend(session_id: SessionId, request: ExtendRequest) -> JobView:
        """Autoregressive models only (LongLive): a new session, the video made ``blocks``
        blocks longer (under ``prompt`` from the first new block, when given)."""
        payload: dict[str, Any] = {"session": session_id, "blocks": request.blocks}
        if request.prompt is not None:
            payload["prompt"] = request.prompt
        return _queued("extend", payload, request.priority)

    @app.post("/api/sessions/{session_id}/rewind", status_code=202, tags=["sessions"])
    def rewind(session_id: SessionId, request: RewindRequest) -> JobView:
        """Autoregressive models only (LongLive): a new session that makes the blocks from
        ``block`` on again (under ``prompt`` from there, when given)."""
        payload: dict[str, Any] = {"session": session_id, "block": request.block}
        if request.prompt is not None:
            payload["prompt"] = request.prompt
        if request.overrides:
            payload["overrides"] = request.overrides
        return _queued("rewind", payload, request.priority)

    @app.post("/api/sessions/{session_id}/cancel", tags=["sessions"])
    def cancel_session(session_id: SessionId) -> JobView:
        """Cancel the job running (or queued) on this session."""
        orch.store.load_doc(session_id)
        for j in orch.queue.list({JobState.RUNNING, JobState.QUEUED}):
            if j.session_id == session_id or j.payload.get("session") == session_id:
                return JobView(**orch.describe_job(orch.cancel(j.id)))
        raise HTTPException(409, {"field": "session", "message": f"no queued or running job on session {session_id}"})

    @app.delete("/api/sessions/{session_id}", tags=["sessions"])
    def delete(session_id: SessionId) -> dict[str, Any]:
        freed = orch.engine.delete(session_id)
        orch.bus.publish("session", id=session_id, deleted=True)
        return {"deleted": session_id, "bytes_freed": freed}

    @app.post(
        "/api/sessions/{session_id}/decode",
        tags=["sessions"],
        response_model=DecodeView,
        responses={202: {"model": JobView, "description": "The decode job, still queued or running: poll it"}},
    )
    def decode(session_id: SessionId, request: Annotated[DecodeRequest | None, Body()] = None) -> Any:
        """Write the video of the final latents (or a preview at a checkpointed step).

        A decode job does it, where the model is (the executor's worker), ahead of every
        queued job; the answer comes once it is written. A job that has not finished
        within the server's wait is answered 202 with the job (its ``video`` once it succeeded)."""
        request = request or DecodeRequest()
        done = orch.decode(session_id, request.step)
        if isinstance(done, dict):
            return done
        return JSONResponse(JobView(**orch.describe_job(done)).model_dump(mode="json"), status_code=202)

    # ------------------------------------------------------------ files and events

    @app.get("/files/videos/{name}", tags=["files"])
    def video_file(name: Annotated[str, PathParam(pattern=r"^[0-9A-Za-z._-]+\.mp4$", max_length=200)]) -> FileResponse:
        root = orch.store.root.resolve()
        path = orch.video_path(name)
        if path is None:
            raise HTTPException(
                422, {"field": "name", "message": "expected <session id>.mp4 or <session id>-step<K>.mp4"}
            )
        if not path.resolve().is_relative_to(root) or not path.is_file():
            raise HTTPException(404, {"field": "name", "message": f"no video {name}"})
        return FileResponse(path, media_type="video/mp4")

    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        page = static / "index.html"
        if not page.is_file():
            raise HTTPException(404, {"field": None, "message": "the web UI is not installed"})
        return HTMLResponse(page.read_text())

    @app.websocket("/api/events")
    async def events(ws: WebSocket) -> None:
        """The current state first (``snapshot``), then every event as it happens."""
        if token and not hmac.compare_digest((ws.query_params.get("token") or "").encode(), token.encode()):
            # Accepted first: a refusal during the handshake reaches a browser only as
            # "abnormal closure" (1006), and the page could not tell a wrong token from a
            # network fault.
            await ws.accept()
            await ws.close(code=4401, reason="missing or wrong token (?token=)")
            return
        await ws.accept()
        queue = orch.bus.subscribe()
        try:
            snapshot = await asyncio.to_thread(orch.snapshot)
            await ws.send_json({"type": "snapshot", **snapshot})
            while True:
                await ws.send_text(await queue.get())  # serialized once, by the publisher
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            orch.bus.unsubscribe(queue)

    return app


def _plain(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as JSON (pydantic may put exceptions in ``ctx``)."""
    out = []
    for e in errors:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")})
    return out


__all__ = ["create_app"]
