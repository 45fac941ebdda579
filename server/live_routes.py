"""Routes of live dubbing (server/live.py) and the web page.

    WS   /v1/live/ws?template_id=ID[&sample_rate=16000][&api_key=KEY]   programs (protocol: docs/live.md)
    POST /v1/live/offer   {"template_id", "sdp", "type"} -> WebRTC answer + session   browsers
    GET  /v1/live         open sessions;   GET /v1/live/{id}   one (its statistics);   DELETE /v1/live/{id}   end one
    POST /v1/live/{id}/interrupt   barge-in: drop the speech not yet shown (WebSocket: {"type": "interrupt"})
    GET  /v1/templates/{id}/preview.jpg   the template's first frame;   GET /v1/templates/{id}/faces   its faces
    POST /v1/templates/{id}/face   {"face": "x,y" | index} -> the template with that person chosen (page clicks)
    GET  /  and  /ui      the web page (server/static/index.html)

The wire format (messages, frame packing, timestamps) is utils/live_protocol.py, shared with the clients.
"""
from __future__ import annotations

import asyncio
import hmac
import os

import cv2
import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server import webrtc
from server.errors import ApiError
from server.storage import valid_id
from utils import live_protocol as proto
from utils.media.timebase import FPS, SAMPLE_RATE
from utils.media.video_io import iter_frames

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
OPEN_PATHS = ("/", "/ui")          # the page itself holds no data; every API call it makes carries the key


def pack_frame(slot, pic) -> bytes:
    """One binary WebSocket message for output slot ``slot`` showing ``pic``'s picture (utils/live_protocol.py)."""
    head = proto.frame_header(slot.k, speech=slot.speech, audio_pos=slot.audio_pos,
                              template_index=slot.template_index, dropped=slot.dropped, video_bytes=len(pic.jpeg),
                              audio_samples=len(slot.audio), idle=not (slot.speech or pic.shows_speech),
                              interrupted=slot.interrupted)
    return proto.pack_frame(head, pic.jpeg, proto.pcm16(slot.audio))


def _ws_authorized(ws: WebSocket, api_key: str) -> bool:
    if not api_key:
        return True
    given = ws.headers.get("x-api-key", "")
    auth = ws.headers.get("authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    given = given or ws.query_params.get("api_key", "")
    return bool(given) and hmac.compare_digest(given.encode(), api_key.encode())


def add_live_routes(app: FastAPI, cfg, service) -> None:
    """Register the live routes on ``app``; ``service(request)`` returns the DubService (503 while starting)."""
    api_key = cfg.resolved_api_key()

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/ui")

    @app.get("/ui", tags=["live"], include_in_schema=False)
    async def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/v1/live", tags=["live"])
    async def list_sessions(request: Request):
        svc = service(request)
        return {"sessions": svc.live.list(), "max_sessions": svc.live.max_sessions}

    def _session(request: Request, session_id: str):
        svc = service(request)
        s = svc.live.get(session_id) if valid_id(session_id) else None
        if s is None:
            raise ApiError(404, "session_not_found", f"no live session {session_id[:80]!r}")
        return s

    @app.get("/v1/live/{session_id}", tags=["live"])
    async def get_session(session_id: str, request: Request):
        """One session: its description and statistics (latency, dropped frames, interrupts, ...)."""
        return _session(request, session_id).public()

    @app.delete("/v1/live/{session_id}", tags=["live"])
    async def end_session(session_id: str, request: Request):
        s = _session(request, session_id)
        await run_in_threadpool(s.close, "ended by DELETE", True)
        return {"deleted": session_id, "stats": s.public_stats()}

    @app.post("/v1/live/{session_id}/interrupt", tags=["live"])
    async def interrupt(session_id: str, request: Request):
        """Barge-in (WebRTC sessions; WebSocket clients send ``{"type": "interrupt"}``): the speech pushed but not
        yet shown is dropped, the sound stops and the mouth closes into the idle template."""
        s = _session(request, session_id)
        return {"type": proto.INTERRUPTED, "session_id": session_id, **s.interrupt()}

    @app.get("/v1/templates/{template_id}/preview.jpg", tags=["templates"])
    async def template_preview(template_id: str, request: Request):
        """The template's first frame (the page shows it; a click on a person chooses the face)."""
        svc = service(request)
        _check_template(svc, template_id)
        jpeg = await run_in_threadpool(_first_frame_jpeg, svc.storage.template_video(template_id))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/v1/templates/{template_id}/faces", tags=["templates"])
    async def template_faces(template_id: str, request: Request):
        """The faces of the template's first frame with a face (boxes left to right) and which one is dubbed."""
        svc = service(request)
        _check_template(svc, template_id)
        return await run_in_threadpool(_faces, svc, template_id)

    @app.post("/v1/templates/{template_id}/face", tags=["templates"], status_code=201)
    async def choose_face(template_id: str, request: Request):
        """``{"face": "x,y" | index}``: the same video with that person chosen, as a template of its own (the
        upload's ``face`` field does the same for a new video)."""
        svc = service(request)
        _check_template(svc, template_id)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "bad_request", "the body must be JSON {\"face\": \"x,y\" or an index}") from None
        face = str(body.get("face", "")) if isinstance(body, dict) else ""
        meta, _ = await run_in_threadpool(svc.templates.add_face, template_id, face)
        return meta

    @app.post("/v1/live/offer", tags=["live"])
    async def offer(request: Request):
        """WebRTC: ``{"template_id", "sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer", "session_id", ...}``."""
        svc = service(request)
        if not webrtc.available():
            raise ApiError(501, "webrtc_unavailable", "aiortc is not installed: pip install aiortc")
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "bad_request", "the body must be JSON {template_id, sdp, type}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        tid, sdp, kind = (str(body.get(k) or "") for k in ("template_id", "sdp", "type"))
        if not tid or not sdp or kind != "offer":
            raise ApiError(400, "bad_request", "template_id, sdp and type='offer' are required")
        _check_template(svc, tid)
        webrtc.use_loopback_ice(cfg.host)
        try:
            return await webrtc.answer_offer(svc.live, tid, sdp, kind)
        except ApiError:
            raise
        except ValueError as e:   # aiortc rejects a malformed SDP with ValueError
            raise ApiError(400, "bad_request", f"invalid SDP offer: {e}") from None

    @app.websocket(proto.WS_PATH)
    async def live_ws(ws: WebSocket):
        await ws.accept()
        svc = app.state.service if hasattr(app.state, "service") else None

        async def fail(status, error, detail, code=1008):
            await ws.send_json({"type": "error", "status": status, "error": error, "detail": detail})
            await ws.close(code=code)

        if not _ws_authorized(ws, api_key):
            return await fail(401, "unauthorized", "missing or wrong API key (header or ?api_key=)")
        if svc is None:
            return await fail(503, "starting", "the model is still loading", 1013)
        q = ws.query_params
        tid = q.get("template_id", "")
        try:
            rate = int(q.get("sample_rate", str(SAMPLE_RATE)))
        except ValueError:
            return await fail(400, "bad_request", f"sample_rate must be an integer, got {q.get('sample_rate')!r}")
        try:
            _check_template(svc, tid)
            session = await run_in_threadpool(svc.live.open, tid, rate, "ws")
        except ApiError as e:
            return await fail(e.status, e.error, e.detail, 1013 if e.status == 503 else 1008)
        receiver = asyncio.ensure_future(_receive(ws, session))
        try:
            await ws.send_json({"type": proto.READY, **session.public()})
            async for slot, pic in session.frames():
                await ws.send_bytes(pack_frame(slot, pic))
        except (WebSocketDisconnect, RuntimeError, OSError):
            session.close("the client disconnected")
        finally:
            receiver.cancel()
            session.close(session.close_reason or "ended")
            if ws.client_state == WebSocketState.CONNECTED:
                try:
                    await ws.send_json({"type": proto.CLOSED, "reason": session.close_reason,
                                        "stats": session.public_stats()})
                    await ws.close(code=1011 if session.error is not None else 1000)
                except (RuntimeError, OSError, WebSocketDisconnect):
                    pass


def _check_template(svc, tid: str) -> None:
    if not tid:
        raise ApiError(400, "bad_request", "template_id is missing")
    if not valid_id(tid) or svc.templates.meta(tid) is None:
        raise ApiError(404, "template_not_found", f"no template with id {tid[:80]!r}")


def _first_frame_jpeg(video: str) -> bytes:
    f = next(iter(iter_frames(video, fps=FPS, max_frames=1)), None)
    if f is None:
        raise ApiError(500, "template_damaged", "cannot read the template's first frame")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


def _faces(svc, template_id: str) -> dict:
    """Faces of the first frame with one (at most the first 5 s), left to right, and the dubbed face's box there."""
    prepared = svc.templates.acquire(template_id)
    try:
        t = prepared.template
        for i, f in enumerate(iter_frames(t.path, fps=25.0, max_frames=125)):
            boxes = sorted(svc.templates.detect_faces(f), key=lambda b: float(b[0] + b[2]))
            if boxes:
                lm = t.landmarks[i]
                chosen = [float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()),
                          float(lm[:, 1].max())] if t.valid[i] else None
                return {"template_id": template_id, "frame": i, "width": int(t.width), "height": int(t.height),
                        "faces": [[round(float(v), 1) for v in b] for b in boxes], "dubbed": chosen,
                        "face": t.face}
        return {"template_id": template_id, "frame": None, "width": int(t.width), "height": int(t.height),
                "faces": [], "dubbed": None, "face": t.face}
    finally:
        svc.templates.release(template_id)


async def _receive(ws: WebSocket, session) -> None:
    """Client -> server: binary = int16 LE mono PCM; text = {"type": "end" | "interrupt" | "close"}."""
    try:
        while not session.closed:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("bytes") is not None:
                try:
                    session.push_pcm16(msg["bytes"])
                except ApiError as e:
                    await ws.send_json({"type": "error", "status": e.status, "error": e.error, "detail": e.detail})
            elif msg.get("text") is not None:
                kind = proto.parse_control(msg["text"])
                if kind == proto.END:
                    session.end_utterance()
                elif kind == proto.INTERRUPT:
                    await ws.send_json({"type": proto.INTERRUPTED, "session_id": session.id, **session.interrupt()})
                elif kind == proto.CLOSE:
                    session.close("closed by the client")
                    return
                else:
                    await ws.send_json({"type": "error", "status": 400, "error": "bad_request",
                                        "detail": "text messages are {\"type\": \"end\" | \"interrupt\" | "
                                                  "\"close\"}"})
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    session.close(session.close_reason or "the client disconnected")
