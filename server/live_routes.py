"""Routes of live dubbing (server/live.py) and the web page.

    WS   /v1/live/ws?template_id=ID[&sample_rate=16000][&api_key=KEY]   programs (protocol: docs/live.md)
    POST /v1/live/offer   {"template_id", "sdp", "type"} -> WebRTC answer + session   browsers
    GET  /v1/live         open sessions;   DELETE /v1/live/{session_id}   end one
    GET  /  and  /ui      the web page (server/static/index.html)

WebSocket frames from the server: text JSON ``ready`` / ``closed`` / ``error`` messages, and one binary message
per output frame: ``uint32 LE header length | JSON header | JPEG | int16 LE PCM`` (see ``pack_frame``).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import os
import struct
import time

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server import webrtc
from server.errors import ApiError
from server.storage import valid_id
from utils.media.timebase import FPS, SAMPLE_RATE

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html")
OPEN_PATHS = ("/", "/ui")          # the page itself holds no data; every API call it makes carries the key


def pack_frame(slot, pic) -> bytes:
    """One binary WebSocket message: uint32 LE header length, JSON header, JPEG bytes, int16 LE PCM (16 kHz)."""
    pcm = (np.clip(slot.audio, -1, 1) * 32767).astype("<i2").tobytes()
    head = json.dumps({"type": "frame", "k": slot.k, "pts": round(slot.k / FPS, 3), "speech": slot.speech,
                       "audio_pos": slot.audio_pos, "template_index": slot.template_index,
                       "dropped": slot.dropped, "video_bytes": len(pic.jpeg), "audio_samples": len(slot.audio),
                       "server_time": round(time.time(), 4)}).encode()
    return struct.pack("<I", len(head)) + head + pic.jpeg + pcm


def unpack_frame(data: bytes) -> tuple[dict, bytes, np.ndarray]:
    """Inverse of ``pack_frame``: (header, JPEG bytes, int16 PCM)."""
    (n,) = struct.unpack_from("<I", data, 0)
    head = json.loads(data[4:4 + n])
    v0 = 4 + n
    v1 = v0 + int(head["video_bytes"])
    return head, data[v0:v1], np.frombuffer(data[v1:], "<i2")


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

    @app.delete("/v1/live/{session_id}", tags=["live"])
    async def end_session(session_id: str, request: Request):
        svc = service(request)
        s = svc.live.get(session_id) if valid_id(session_id) else None
        if s is None:
            raise ApiError(404, "session_not_found", f"no live session {session_id[:80]!r}")
        await run_in_threadpool(s.close, "ended by DELETE", True)
        return {"deleted": session_id, "stats": dict(s.stats)}

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

    @app.websocket("/v1/live/ws")
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
            await ws.send_json({"type": "ready", **session.public()})
            async for slot, pic in session.frames():
                await ws.send_bytes(pack_frame(slot, pic))
        except (WebSocketDisconnect, RuntimeError, OSError):
            session.close("the client disconnected")
        finally:
            receiver.cancel()
            session.close(session.close_reason or "ended")
            if ws.client_state == WebSocketState.CONNECTED:
                try:
                    await ws.send_json({"type": "closed", "reason": session.close_reason, "stats": dict(session.stats)})
                    await ws.close(code=1011 if session.error is not None else 1000)
                except (RuntimeError, OSError, WebSocketDisconnect):
                    pass


def _check_template(svc, tid: str) -> None:
    if not tid:
        raise ApiError(400, "bad_request", "template_id is missing")
    if not valid_id(tid) or svc.templates.meta(tid) is None:
        raise ApiError(404, "template_not_found", f"no template with id {tid[:80]!r}")


async def _receive(ws: WebSocket, session) -> None:
    """Client -> server: binary = int16 LE mono PCM; text = {"type": "end"} (utterance done) or "close"."""
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
                try:
                    kind = json.loads(msg["text"]).get("type")
                except (ValueError, AttributeError):
                    kind = None
                if kind == "end":
                    session.end_utterance()
                elif kind == "close":
                    session.close("closed by the client")
                    return
                else:
                    await ws.send_json({"type": "error", "status": 400, "error": "bad_request",
                                        "detail": "text messages are {\"type\": \"end\"} or {\"type\": \"close\"}"})
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    session.close(session.close_reason or "the client disconnected")
