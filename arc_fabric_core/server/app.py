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
from pydantic import BaseModel, ConfigDict, Field, create_model

from arc_fabric_core.contract.errors import ArcFabricError, InputError, OutputError, SessionError
from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.jobs.queue import JobState
from arc_fabric_core.operations.decode import DecodeRequest
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


class Queued(Strict):
    """What every queued operation's body has beside its request: the job's priority."""

    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first")


def body_model(op: Any) -> type[BaseModel]:
    """An operation's API body: its request schema (the operation's module) and a priority."""
    name = "".join(part.capitalize() for part in op.name.replace("-", "_").split("_")) + "Request"
    return create_model(name, __base__=(op.Request, Queued), __module__=__name__, __doc__=op.summary or None)


def payload_of(request: BaseModel, session: str | None = None) -> dict[str, Any]:
    """A job's payload from a body: the fields given (not null, not empty), less the priority."""
    given = request.model_dump(exclude_unset=True, exclude_none=True, exclude={"priority"})
    payload = {k: v for k, v in given.items() if v != {}}
    return {"session": session, **payload} if session is not None else payload


class DecodeView(BaseModel):
    session: str
    step: int = Field(description="The step the video shows")
    video: str = Field(description="Where it is served, under /files/videos/")


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
            if request.method == "GET" and (path == "/" or path.startswith(("/static/", "/ext/"))):
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

    operations = orch.plugins.operations()
    generate_body = body_model(operations["generate"])

    def create_session(request: BaseModel) -> JobView:
        """Queue a generation; the job's ``session_id`` appears once it starts."""
        payload = payload_of(request)
        payload.setdefault("params", {})
        if isinstance(payload.get("schedule"), str):
            from arc_fabric_core.engine.hybrid import named_schedule

            payload["schedule"] = named_schedule(payload["schedule"])
        return _queued("generate", payload, request.priority)  # type: ignore[attr-defined]

    create_session.__annotations__ = {"request": generate_body, "return": JobView}
    app.post("/api/sessions", status_code=202, tags=["sessions"])(create_session)

    @app.get("/api/sessions", tags=["sessions"])
    def sessions(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """Newest first. A session whose document is damaged is listed with ``status``
        ``damaged`` and the reason in ``error``; it never hides or breaks the others."""
        return orch.session_list(limit)

    @app.get("/api/sessions/{session_id}", tags=["sessions"])
    def session(session_id: SessionId) -> dict[str, Any]:
        """The session's document, lineage (ancestors, children) and checkpoints."""
        return orch.session_detail(session_id)

    @app.get("/api/operations", tags=["models"])
    def list_operations() -> list[dict[str, Any]]:
        """Every registered operation (the built-in ones and those plugins add): its name,
        what it does, whether it acts on a stored session, and its request's JSON schema
        (what the UI builds its form from). A model lists those it takes (``operations``)."""
        return [
            {
                "name": op.name,
                "summary": op.summary,
                "on_session": op.on_session,
                "runs": op.runs,
                "schema": op.Request.model_json_schema(),
            }
            for op in operations.values()
        ]

    # One route per operation on a stored session, its body the operation's own request
    # schema (``decode`` has its own route below: it answers with the video).
    for op in operations.values():
        if op.on_session and op.runs:
            _operation_route(app, op, _queued)

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

    _mount_extensions(app, orch)

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


def _operation_route(app: FastAPI, op: Any, queued: Any) -> None:
    """``POST /api/sessions/{session_id}/<name>``: queue the operation ``op`` on a session."""
    body = body_model(op)
    fields = op.Request.model_fields
    optional = not any(f.is_required() for f in fields.values())  # then the body may be left out

    def route(session_id: str, request: Any = None) -> JobView:
        request = request if request is not None else body()
        return queued(op.name, payload_of(request, session_id), request.priority)

    route.__name__ = op.name.replace("-", "_")
    route.__doc__ = op.summary
    body_type: Any = Annotated[body | None, Body()] if optional else body
    route.__annotations__ = {"session_id": SessionId, "request": body_type, "return": JobView}
    route.__defaults__ = (None,) if optional else None
    app.post(f"/api/sessions/{{session_id}}/{op.name}", status_code=202, tags=["sessions"], summary=op.summary)(route)


def _mount_extensions(app: FastAPI, orch: Orchestrator) -> None:
    """The plugins' UI extensions (``arc_register_ui``): each one's routes under
    ``/api/ext/<name>``, its static folder at ``/ext/<name>``, and the list the UI reads
    (``GET /api/extensions``) to import their modules."""
    from fastapi.staticfiles import StaticFiles

    extensions = orch.plugins.ui_extensions()
    for ext in extensions:
        if ext.routes is not None:
            app.include_router(ext.routes(orch), prefix=f"/api/ext/{ext.name}", tags=[f"ext:{ext.name}"])
        app.mount(f"/ext/{ext.name}", StaticFiles(directory=Path(ext.static), check_dir=False), name=f"ext-{ext.name}")

    @app.get("/api/extensions", tags=["server"])
    def list_extensions() -> list[dict[str, Any]]:
        """The UI extensions the plugins add: each one's name, the models it is for (empty:
        all), its ES module and style sheets (paths next to the page) and its routes' base."""
        return [ext.describe() for ext in extensions]


def _plain(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as JSON (pydantic may put exceptions in ``ctx``)."""
    out = []
    for e in errors:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")})
    return out


__all__ = ["create_app"]
