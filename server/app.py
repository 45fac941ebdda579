"""The HTTP API (FastAPI). ``create_app(config)`` builds it; the model is loaded once, at start-up.

Routes: POST/GET /v1/templates, GET/DELETE /v1/templates/{id}, POST /v1/dub, GET/DELETE /v1/jobs/{id},
GET /v1/jobs/{id}/result, GET /healthz, GET /metrics, and the OpenAPI docs at /docs and /openapi.json.
Every error is JSON ``{"error": "...", "detail": "..."}`` with the status documented in docs/server.md.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from server.config import ServerConfig, from_dict
from server.errors import ApiError
from server.jobs import FINISHED, SUCCEEDED, Job
from server.limits import load_audio_upload
from server.live_routes import OPEN_PATHS as _LIVE_OPEN_PATHS, add_live_routes
from server.storage import new_id, valid_id
from server.uploads import read_multipart

# Lazy import below: server.service (torch and the dubber) loads in create_app, so server_LawDNet.py answers --help
# and configuration errors without torch.

log = logging.getLogger("lawdnet.server")
VERSION = "1.0"
_OPEN_PATHS = ("/healthz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect") + _LIVE_OPEN_PATHS
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _multipart_doc(fields: dict, required: list) -> dict:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": fields, "required": required}}}}}


_ERR = {"description": "error", "content": {"application/json": {"example": {"error": "...", "detail": "..."}}}}


class _MetricsAuthMiddleware:
    """Pure ASGI (no body buffering): counts requests per route/status and enforces the optional API key."""

    def __init__(self, app, get_service, api_key: str):
        self.app, self.get_service, self.api_key = app, get_service, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.api_key and scope["path"] not in _OPEN_PATHS and not self._authorized(scope):
                body = ApiError(401, "unauthorized", "missing or wrong API key (Authorization: Bearer <key> or "
                                                     "X-API-Key: <key>)")
                resp = JSONResponse(body.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await resp(scope, receive, send_wrapper)
            return await self.app(scope, receive, send_wrapper)
        finally:
            svc = self.get_service()
            if svc is not None:
                route = scope.get("route")
                svc.metrics.request(scope["method"], getattr(route, "path", "<unmatched>"), status["code"])

    def _authorized(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if not given and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())


class _CleanupFileResponse(FileResponse):
    """A file response that runs ``cleanup`` however the sending ends (done, client gone, error)."""

    def __init__(self, *a, cleanup=None, **kw):
        super().__init__(*a, **kw)
        self._cleanup = cleanup

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._cleanup is not None:
                await run_in_threadpool(self._cleanup)


def _flag(value, name: str) -> bool:
    v = str(value if value is not None else "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ApiError(400, "bad_request", f"{name} must be true or false, got {value!r}")


def create_app(config, service_factory=None) -> FastAPI:
    """The ASGI app for ``config`` (a ServerConfig or a dict of its fields). The model loads at start-up.
    ``service_factory(cfg)`` builds the service behind the routes (default ``DubService``; the Ray gateway's
    in server/cluster.py)."""
    cfg = config if isinstance(config, ServerConfig) else from_dict(config)
    cfg.validate()
    state: dict = {"service": None}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from server.service import DubService

        svc = await run_in_threadpool(service_factory or DubService, cfg)
        state["service"] = app.state.service = svc
        log.info("model loaded (%s); serving", svc.describe().get("device"))
        try:
            yield
        finally:
            summary = await run_in_threadpool(svc.close, cfg.shutdown_grace_s)
            log.info("shut down: %s", summary)

    app = FastAPI(title="LawDNet dubbing server", version=VERSION, lifespan=lifespan,
                  description="Upload a template video once, then dub it with any speech audio.")
    app.add_middleware(_MetricsAuthMiddleware, get_service=lambda: state["service"], api_key=cfg.resolved_api_key())

    def service(request: Request):
        svc = state["service"]
        if svc is None:
            raise ApiError(503, "starting", "the model is still loading", {"Retry-After": "5"})
        return svc

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        names = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse({"error": names.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"error": "bad_request", "detail": detail}, status_code=400)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, exc):  # nobody is listening; the handler's cleanup already ran
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal_error", "detail": type(exc).__name__}, status_code=500)

    # ------------------------------------------------------------------ health / metrics
    @app.get("/healthz", tags=["ops"])
    async def healthz():
        svc = state["service"]
        if svc is None or svc.closing or svc.jobs.closed:
            return JSONResponse({"status": "starting" if svc is None else "shutting_down"}, status_code=503)
        return {"status": "ok", "version": VERSION, "model": svc.describe(),
                "jobs": {"running": svc.jobs.running, "queued": svc.jobs.queued,
                         "capacity": svc.jobs.max_active + svc.jobs.max_queue}}

    @app.get("/metrics", tags=["ops"], responses={200: {"content": {"text/plain": {}, "application/json": {}}}})
    async def metrics(request: Request, format: Optional[str] = None):
        svc = service(request)
        snap = svc.metrics.snapshot()
        want_json = format == "json" or (format is None and "application/json" in request.headers.get("accept", ""))
        if format not in (None, "json", "prometheus"):
            raise ApiError(400, "bad_request", "format must be json or prometheus")
        if want_json:
            return snap
        return PlainTextResponse(svc.metrics.prometheus(snap), media_type="text/plain; version=0.0.4")

    # ------------------------------------------------------------------ templates
    @app.post("/v1/templates", tags=["templates"], status_code=201,
              openapi_extra=_multipart_doc({"video": {"type": "string", "format": "binary"}}, ["video"]),
              responses={200: {"description": "already stored (same content)"}, 400: _ERR, 413: _ERR,
                         415: _ERR, 422: _ERR, 503: _ERR})
    async def upload_template(request: Request):
        """Upload a template video (field ``video``); its face landmarks are analysed once and cached. Optional
        ``face`` (form field or query): the person to dub, ``x,y`` in the first frame or an index left to right."""
        svc = service(request)
        work = svc.storage.new_work_dir("tpl")
        cancel = threading.Event()
        try:
            form = await read_multipart(request, work, {"video": int(cfg.max_video_mb * 2 ** 20)})
            up = form.files.get("video")
            if up is None:
                raise ApiError(400, "bad_request", "multipart field 'video' (the template video file) is missing")
            if up.size == 0:
                raise ApiError(422, "unprocessable_media", "the uploaded video is empty (0 bytes)")
            face = form.fields.get("face") or request.query_params.get("face")   # the person to dub (optional)
            task = asyncio.ensure_future(run_in_threadpool(svc.templates.add, up, cancel, face))
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=0.5)
                    if not task.done() and await request.is_disconnected():
                        cancel.set()   # nobody waits for it: stop the analysis at its next frame
                        with contextlib.suppress(Exception):
                            await task
                        return Response(status_code=499)
            except BaseException:  # handler cancelled (server stopping): the analysis must not outlive it
                cancel.set()
                raise
            meta, created = task.result()
            return JSONResponse(meta, status_code=201 if created else 200,
                                headers={"Location": f"/v1/templates/{meta['template_id']}"})
        finally:
            await run_in_threadpool(svc.storage.remove, work)

    @app.get("/v1/templates", tags=["templates"])
    async def list_templates(request: Request):
        svc = service(request)
        return {"templates": await run_in_threadpool(svc.templates.list)}

    @app.get("/v1/templates/{template_id}", tags=["templates"], responses={404: _ERR})
    async def get_template(template_id: str, request: Request):
        meta = service(request).templates.meta(template_id)
        if meta is None:
            raise ApiError(404, "template_not_found", f"no template with id {template_id!r}")
        return meta

    @app.delete("/v1/templates/{template_id}", tags=["templates"], responses={404: _ERR, 409: _ERR})
    async def delete_template(template_id: str, request: Request):
        svc = service(request)
        await run_in_threadpool(svc.templates.delete, template_id)
        return {"deleted": template_id}

    # ------------------------------------------------------------------ dubbing
    @app.post("/v1/dub", tags=["dubbing"],
              openapi_extra=_multipart_doc({
                  "template_id": {"type": "string"}, "audio": {"type": "string", "format": "binary"},
                  "async": {"type": "boolean", "default": False}}, ["template_id", "audio"]),
              responses={200: {"content": {"video/mp4": {}}, "description": "the dubbed video (sync)"},
                         202: {"description": "job accepted (async=true)"}, 400: _ERR, 404: _ERR, 413: _ERR,
                         415: _ERR, 422: _ERR, 503: _ERR})
    async def dub(request: Request):
        """Dub a template with speech (field ``audio``). Sync: the mp4 body. ``async=true``: 202 + a job id.

        ``template_id`` and ``async`` may be form fields or query parameters."""
        svc = service(request)
        if svc.jobs.closed:
            raise ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "30"})
        work = svc.storage.new_work_dir("job")
        job: Optional[Job] = None
        try:
            form = await read_multipart(request, work, {"audio": int(cfg.max_audio_mb * 2 ** 20)})
            template_id = (form.fields.get("template_id") or request.query_params.get("template_id") or "").strip()
            is_async = _flag(form.fields.get("async", request.query_params.get("async")), "async")
            if not template_id:
                raise ApiError(400, "bad_request", "template_id is missing (form field or query parameter)")
            if not valid_id(template_id) or svc.templates.meta(template_id) is None:
                raise ApiError(404, "template_not_found", f"no template with id {template_id[:80]!r}")
            up = form.files.get("audio")
            if up is None:
                raise ApiError(400, "bad_request", "multipart field 'audio' (the speech file) is missing")
            if up.size == 0:
                raise ApiError(422, "unprocessable_media", "the uploaded audio is empty (0 bytes)")
            audio = await run_in_threadpool(load_audio_upload, up.path, cfg.max_audio_seconds)
            prepared = await run_in_threadpool(svc.templates.acquire, template_id)
            job = Job(id=new_id(), template_id=template_id, work_dir=work, input_path=up.path,
                      output_path=os.path.join(work, "output.mp4"), audio=audio, audio_seconds=audio.seconds,
                      is_async=is_async, template=prepared)
            try:
                svc.jobs.submit(job)
            except BaseException:
                svc.templates.release(template_id)
                job = None
                raise
        except BaseException:
            await run_in_threadpool(svc.storage.remove, work)
            raise
        if is_async:
            return JSONResponse(job.public(svc.jobs.position(job)), status_code=202,
                                headers={"Location": f"/v1/jobs/{job.id}"})
        return await _wait_and_send(request, svc, job)

    async def _wait_and_send(request: Request, svc, job: Job):
        loop = asyncio.get_running_loop()
        fut = svc.jobs.wait_async(job, loop)
        try:
            while not fut.done():
                await asyncio.wait({fut}, timeout=0.5)
                if not fut.done() and await request.is_disconnected():
                    svc.jobs.cancel(job, "the client disconnected")
                    await fut
                    return Response(status_code=499)
        except BaseException:  # handler cancelled (server stopping): the job must not outlive its request
            svc.jobs.cancel(job, "the request was cancelled")
            raise
        return _result_response(svc, job, forget=True)

    def _result_response(svc, job: Job, forget: bool):
        if job.status != SUCCEEDED:
            if forget:
                svc.jobs.forget(job)
            return JSONResponse({"error": job.error, "detail": job.detail, "job_id": job.id},
                                status_code=job.http_status)
        headers = {"X-Job-Id": job.id, "X-Frames": str(job.stats.get("frames", 0)),
                   "X-Audio-Seconds": f"{job.audio_seconds:.3f}"}
        if job.stats.get("warnings"):   # JSON list, ASCII-escaped (header values are latin-1)
            headers["X-Warnings"] = json.dumps(job.stats["warnings"])
        return _CleanupFileResponse(job.output_path, media_type="video/mp4", filename=f"dub-{job.id}.mp4",
                                    headers=headers, cleanup=(lambda: svc.jobs.forget(job)) if forget else None)

    # ------------------------------------------------------------------ jobs
    def _job(svc, job_id: str) -> Job:
        job = svc.jobs.get(job_id) if valid_id(job_id) else None
        if job is None:
            raise ApiError(404, "job_not_found", f"no job with id {job_id[:80]!r} (unknown or expired)")
        return job

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], responses={404: _ERR})
    async def job_status(job_id: str, request: Request):
        svc = service(request)
        job = _job(svc, job_id)
        return job.public(svc.jobs.position(job))

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"],
             responses={200: {"content": {"video/mp4": {}}}, 404: _ERR, 409: _ERR, 422: _ERR, 500: _ERR})
    async def job_result(job_id: str, request: Request):
        """The mp4 of a finished job (kept until ``DELETE /v1/jobs/{id}`` or the result lifetime ends)."""
        svc = service(request)
        job = _job(svc, job_id)
        if job.status not in FINISHED:
            raise ApiError(409, "not_ready", f"job {job.id} is {job.status} ({job.progress:.0%})",
                           {"Retry-After": "1"})
        return _result_response(svc, job, forget=False)

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], responses={404: _ERR})
    async def delete_job(job_id: str, request: Request):
        """Cancel a queued/running job, or delete a finished job's result."""
        svc = service(request)
        job = _job(svc, job_id)
        if job.status not in FINISHED:
            svc.jobs.cancel(job, "cancelled by the client")
            await run_in_threadpool(job.done_event.wait, 60)
        await run_in_threadpool(svc.jobs.forget, job)
        return {"deleted": job.id, "status": job.status}

    add_live_routes(app, cfg, service)   # live sessions (WebSocket, WebRTC) and the web page
    return app
