"""Client for the LawDNet dubbing server (server_LawDNet.py): CLI and function API.

    python client_LawDNet.py [--server http://127.0.0.1:8000] [--api_key KEY] health
    python client_LawDNet.py template face.mp4 [--face X,Y|INDEX]   # -> prints the template id (--json: all)
    python client_LawDNet.py dub --video face.mp4 --audio speech.wav --output out.mp4 [--async]
    python client_LawDNet.py dub --template ID --audio speech.wav --output out.mp4
    python client_LawDNet.py templates | delete-template ID | job ID
    python client_LawDNet.py stream --template ID --audio speech.wav --output received.mp4 [--stats_json s.json]
        [--interrupt_at SECONDS]

Function API: ``LawDNetClient(server, api_key).dub(template_id, audio, output)``, or in one call
``dub_video(server, video, audio, output)``. A busy server (503) is retried after its Retry-After.
``stream_audio(server, template_id, audio, output)`` sends speech to a live session paced at real time over the
WebSocket protocol (docs/live.md) and records what comes back; its parts (``LiveStream``, ``send_paced``,
``Recording``, ``stream_stats``) serve other uses (benchmarks/bench_stream.py --soak). The client imports neither
torch nor the server (the wire format is utils/live_protocol.py); the A/V offset of a recording loads the
evaluation package when the statistics are computed.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
from typing import Callable, Optional

import httpx

from utils import live_protocol as proto
from utils.atomic import atomic_write
from utils.errors import UserError, cli_main

# Lazy imports below: numpy, cv2, websockets, the video writer and evaluation.stream_sync load only for a live
# stream or a recording, so the HTTP client starts fast (and never needs torch or the server stack).

API_KEY_ENV = "LAWDNET_API_KEY"
DEFAULT_SERVER = "http://127.0.0.1:8000"


class ApiClientError(UserError):
    """The server answered with an error: ``status``, ``error`` (code) and ``detail``."""

    def __init__(self, status: int, error: str, detail: str, retry_after: Optional[float] = None):
        super().__init__(f"server error {status} {error}: {detail}")
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after


def _content_type(path: str) -> str:
    t, _ = mimetypes.guess_type(path)
    return t if t and t.split("/")[0] in ("audio", "video") else "application/octet-stream"


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        error, detail = body.get("error", "error"), body.get("detail", "")
    except (ValueError, AttributeError):
        error, detail = "error", resp.text[:200]
    ra = resp.headers.get("retry-after")
    raise ApiClientError(resp.status_code, error, detail, float(ra) if ra and ra.isdigit() else None)


class LawDNetClient:
    def __init__(self, server: str = DEFAULT_SERVER, api_key: Optional[str] = None, timeout: float = 900.0,
                 retries: int = 5):
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = int(retries)
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ plumbing
    def _request(self, method: str, url: str, files: Optional[dict] = None, data: Optional[dict] = None,
                 stream_to: Optional[str] = None, **kw) -> httpx.Response:
        """One request, retried on 503 (busy/queue full) after the server's Retry-After."""
        for attempt in range(self.retries + 1):
            handles = []
            try:
                mp = None
                if files:
                    mp = {}
                    for field, path in files.items():
                        fh = open(path, "rb")
                        handles.append(fh)
                        mp[field] = (os.path.basename(path), fh, _content_type(path))
                try:
                    if stream_to is None:
                        resp = self.http.request(method, url, files=mp, data=data, **kw)
                        if resp.status_code == 503 and attempt < self.retries:
                            time.sleep(self._wait(resp))
                            continue
                        _raise_for(resp)
                        return resp
                    with self.http.stream(method, url, files=mp, data=data, **kw) as resp:
                        if resp.status_code == 503 and attempt < self.retries:
                            resp.read()
                            time.sleep(self._wait(resp))
                            continue
                        if resp.status_code >= 400:
                            resp.read()
                            _raise_for(resp)
                        if resp.headers.get("content-type", "").startswith("application/json"):
                            resp.read()
                            return resp   # async submit: a job, not a file
                        self._save(resp, stream_to)
                        return resp
                except httpx.TransportError as e:
                    raise UserError(f"cannot reach {self.http.base_url}: {type(e).__name__}: {e}") from None
            except FileNotFoundError as e:
                raise UserError(f"{e.filename}: file not found") from None
            finally:
                for fh in handles:
                    fh.close()
        raise AssertionError("unreachable")

    @staticmethod
    def _wait(resp) -> float:
        ra = resp.headers.get("retry-after", "")
        return min(60.0, float(ra)) if ra.replace(".", "", 1).isdigit() else 2.0

    @staticmethod
    def _save(resp: httpx.Response, output_path: str) -> None:
        with atomic_write(output_path, "wb") as f:   # never a half-written output under the final name
            for chunk in resp.iter_bytes(1 << 16):
                f.write(chunk)

    # ------------------------------------------------------------------ API
    def health(self) -> dict:
        return self._request("GET", "/healthz").json()

    def wait_until_up(self, timeout_s: float = 120.0, poll_s: float = 0.5) -> dict:
        """Poll /healthz until the server answers ``ok`` (it is unreachable or still loading its model before);
        returns the health answer. UserError after ``timeout_s``."""
        end = time.monotonic() + timeout_s
        while True:
            try:
                h = self.health()
                if h.get("status") == "ok":
                    return h
            except UserError:           # not listening yet, or 503 while the model loads
                pass
            if time.monotonic() > end:
                raise UserError(f"{self.http.base_url} did not come up within {timeout_s:g} s")
            time.sleep(poll_s)

    def metrics(self) -> dict:
        return self._request("GET", "/metrics", params={"format": "json"}).json()

    def upload_template(self, video_path, face: Optional[str] = None) -> dict:
        """Upload a template video; returns its metadata (``template_id``, frames, ...). ``face``: the person to
        dub when it shows several (``"x,y"`` in the first frame, or an index counted left to right)."""
        data = {"face": str(face)} if face not in (None, "") else None
        return self._request("POST", "/v1/templates", files={"video": os.fspath(video_path)}, data=data).json()

    def interrupt(self, session_id: str) -> dict:
        """Barge-in on a live session (WebRTC ones; a WebSocket client sends the message on its socket)."""
        return self._request("POST", f"/v1/live/{session_id}/interrupt").json()

    def list_templates(self) -> list:
        return self._request("GET", "/v1/templates").json()["templates"]

    def delete_template(self, template_id: str) -> dict:
        return self._request("DELETE", f"/v1/templates/{template_id}").json()

    def dub(self, template_id: str, audio_path, output_path) -> dict:
        """Synchronous dub: waits for the server and writes the mp4 to ``output_path``."""
        resp = self._request("POST", "/v1/dub", files={"audio": os.fspath(audio_path)},
                             data={"template_id": template_id}, stream_to=os.fspath(output_path))
        return {"output": os.fspath(output_path), "job_id": resp.headers.get("x-job-id", ""),
                "frames": int(resp.headers.get("x-frames", 0) or 0)}

    def submit(self, template_id: str, audio_path) -> dict:
        """Asynchronous dub: returns the job (``job_id``, ``status``)."""
        return self._request("POST", "/v1/dub", files={"audio": os.fspath(audio_path)},
                             data={"template_id": template_id, "async": "true"}).json()

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, poll_s: float = 0.5, timeout_s: Optional[float] = None,
             progress: Optional[Callable[[dict], None]] = None) -> dict:
        """Poll until the job ends; raises ApiClientError if it failed or was cancelled."""
        end = time.monotonic() + timeout_s if timeout_s else None
        while True:
            j = self.job(job_id)
            if progress is not None:
                progress(j)
            if j["status"] == "succeeded":
                return j
            if j["status"] in ("failed", "cancelled"):
                raise ApiClientError(422 if j.get("error") == "unprocessable_media" else 500,
                                     j.get("error", j["status"]), j.get("detail", ""))
            if end is not None and time.monotonic() > end:
                raise UserError(f"job {job_id} did not finish within {timeout_s} s (status {j['status']})")
            time.sleep(poll_s)

    def download(self, job_id: str, output_path) -> str:
        self._request("GET", f"/v1/jobs/{job_id}/result", stream_to=os.fspath(output_path))
        return os.fspath(output_path)

    def delete_job(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{job_id}").json()

    def dub_async(self, template_id: str, audio_path, output_path, poll_s: float = 0.5,
                  progress: Optional[Callable[[dict], None]] = None) -> dict:
        """Submit, wait, download, then delete the job's result on the server."""
        job = self.submit(template_id, audio_path)
        info = self.wait(job["job_id"], poll_s=poll_s, progress=progress)
        self.download(job["job_id"], output_path)
        self.delete_job(job["job_id"])
        return {"output": os.fspath(output_path), "job_id": job["job_id"], "frames": info.get("frames_total", 0)}


def dub_video(server: str, video_path, audio_path, output_path, api_key: Optional[str] = None,
              use_async: bool = False) -> dict:
    """Upload ``video_path`` as a template (a no-op if the server has it) and dub it with ``audio_path``."""
    with LawDNetClient(server, api_key) as c:
        tid = c.upload_template(video_path)["template_id"]
        out = (c.dub_async if use_async else c.dub)(tid, audio_path, output_path)
        return {**out, "template_id": tid}


# ---------------------------------------------------------------------------- live streaming
# Four parts: the protocol (LiveStream: one WebSocket session and its receiver thread), the pacing (send_paced),
# the recording rebuilt from the received frames (rebuild_recording / write_recording) and the statistics
# (stream_stats); stream_audio runs them in order. The wire format is utils/live_protocol.py, shared with the
# server: this client needs neither torch nor the server's web framework.

def _ws_url(server: str, path: str, params: dict) -> str:
    from urllib.parse import urlencode

    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[8:]
    elif base.startswith("http://"):
        base = "ws://" + base[7:]
    return f"{base}{path}?{urlencode(params)}"


def _percentile(xs, q):
    import numpy as np

    return float(np.percentile(xs, q)) if len(xs) else None


def _check_output(path) -> str:
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
        raise UserError(f"{path}: the recording must be .mp4, .m4v, .mov or .mkv")
    return path


class Received:
    """One frame as it arrived: ``at`` (monotonic), ``head`` (JSON header), ``jpeg``, ``pcm`` (int16)."""
    __slots__ = ("at", "head", "jpeg", "pcm")

    def __init__(self, at, head, jpeg, pcm):
        self.at, self.head, self.jpeg, self.pcm = at, head, jpeg, pcm


class LiveStream:
    """One live session over the WebSocket protocol (docs/live.md): ``send_pcm`` / ``end`` / ``interrupt`` /
    ``close``; a receiver thread appends every frame to ``frames`` (or hands it to ``on_frame`` when
    ``keep_frames`` is False: long runs) and every text message to ``messages``."""

    def __init__(self, server: str, template_id: str, api_key: Optional[str] = None, timeout_s: float = 30.0,
                 keep_frames: bool = True, on_frame: Optional[Callable[[Received], None]] = None):
        import threading

        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        url = _ws_url(server, proto.WS_PATH, {"template_id": template_id, "sample_rate": proto.RATE})
        try:
            # held across calls (closed by close()); entering it says so to websockets (no legacy warning)
            self.ws = connect(url, additional_headers=headers, open_timeout=20, max_size=None).__enter__()
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise UserError(f"cannot open a live session at {server}: {type(e).__name__}: {e}") from None
        self.frames: list = []
        self.messages: list = []
        self.keep_frames, self.on_frame = keep_frames, on_frame
        self.done = threading.Event()
        try:
            first = json.loads(self.ws.recv(timeout=timeout_s))
        except Exception:
            self.ws.close()
            raise
        if first.get("type") != proto.READY:
            self.ws.close()
            raise ApiClientError(int(first.get("status", 500)), first.get("error", "error"), first.get("detail", ""))
        self.session = first
        self._rx = threading.Thread(target=self._receive, name="lawdnet-live-rx", daemon=True)
        self._rx.start()

    def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for msg in self.ws:
                if isinstance(msg, bytes):
                    head, jpeg, pcm = proto.unpack_frame(msg)
                    r = Received(time.monotonic(), head, jpeg, pcm)
                    if self.keep_frames:
                        self.frames.append(r)
                    if self.on_frame is not None:
                        self.on_frame(r)
                else:
                    self.messages.append(json.loads(msg))
        except ConnectionClosed:
            pass
        finally:
            self.done.set()

    def _send(self, data) -> float:
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(data)
        except ConnectionClosed:
            raise UserError("the server closed the live session: "
                            + str((self.closed or {}).get("reason", "connection closed"))) from None
        return time.monotonic()

    def send_pcm(self, pcm: bytes) -> float:
        """Send int16 LE mono PCM at 16 kHz; returns when it was sent (monotonic)."""
        return self._send(pcm)

    def end(self) -> float:
        return self._send(proto.control(proto.END))

    def interrupt(self) -> float:
        """Barge-in: the server drops the speech not yet shown. Returns when it was sent (monotonic)."""
        return self._send(proto.control(proto.INTERRUPT))

    @property
    def closed(self) -> Optional[dict]:
        return next((m for m in self.messages if m.get("type") == proto.CLOSED), None)

    def close(self, wait_s: float = 10.0) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(proto.control(proto.CLOSE))
        except ConnectionClosed:
            pass
        self.done.wait(wait_s)
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def send_paced(stream: LiveStream, pcm, chunk_ms: float = 40.0, stop_after_s: Optional[float] = None,
               t0: Optional[float] = None) -> list:
    """Send int16 samples in chunks of ``chunk_ms`` at real time (from ``t0``, default now); stops before the
    chunk that starts at ``stop_after_s`` seconds of audio. Returns the monotonic send time of each chunk."""
    step = int(round(proto.RATE * chunk_ms / 1000))
    total = len(pcm) if stop_after_s is None else min(len(pcm), int(round(stop_after_s * proto.RATE)))
    sent = []
    t0 = time.monotonic() if t0 is None else t0
    for i, a in enumerate(range(0, total, step)):
        delay = t0 + i * step / proto.RATE - time.monotonic()     # from the chunk index: no accumulated drift
        if delay > 0:
            time.sleep(delay)
        sent.append(stream.send_pcm(pcm[a:min(a + step, total)].tobytes()))
    return sent


class Recording:
    """The received stream in timeline order: one JPEG and 640 samples per slot (a missing slot repeats the
    previous picture, with silence), ``repeated[i]`` for pictures not rendered for their slot."""

    def __init__(self, frames: list):
        import numpy as np

        if not frames:
            raise UserError("the server sent no frames")
        frames = sorted(frames, key=lambda f: f.head["k"])
        by_k = {f.head["k"]: f for f in frames}
        self.k0, kmax = frames[0].head["k"], frames[-1].head["k"]
        self.jpegs, audio, self.repeated, self.missing = [], [], [], 0
        last = frames[0]
        for k in range(self.k0, kmax + 1):
            f = by_k.get(k)
            self.repeated.append(f is None or f.head["dropped"])
            if f is None:
                self.missing += 1
                audio.append(np.zeros(proto.FRAME_SAMPLES, "<i2"))
            else:
                audio.append(f.pcm)
                last = f
            self.jpegs.append(last.jpeg)
        self.audio = np.concatenate(audio).astype(np.float32) / 32768.0

    def write(self, output_path: str):
        """Encode the recording (H.264 + AAC, 25 fps); returns the decoded pictures (n, H, W, 3) RGB."""
        import cv2
        import numpy as np

        from utils.media.video_io import VideoWriter

        decoded = []
        with VideoWriter(output_path, fps=float(proto.FPS), audio=self.audio, sample_rate=proto.RATE, crf=18,
                         preset="veryfast") as w:
            for jpg in self.jpegs:
                rgb = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                decoded.append(rgb)
                w.write(rgb)
        return np.stack(decoded)


def frame_latencies(frames: list, sent: list, chunk_samples: int, total: int) -> list:
    """Per speech frame (ms): the chunk holding its last sample was sent -> the frame arrived."""
    lat = []
    for f in frames:
        h = f.head
        if not h["speech"] or h["audio_pos"] < 0 or h["audio_pos"] >= total:
            continue
        last_sample = min(h["audio_pos"] + h["audio_samples"], total) - 1
        ci = min(last_sample // chunk_samples, len(sent) - 1)
        lat.append(1000 * (f.at - sent[ci]))
    return lat


def interrupt_timing(frames: list, at: float) -> dict:
    """After an interrupt sent at ``at``: when the last frame still holding speech (sound or mouth) and the first
    idle frame arrived (ms)."""
    last = first_idle = None
    for f in sorted(frames, key=lambda f: f.at):
        if f.at < at:
            continue
        if f.head.get("idle", not f.head["speech"]):
            first_idle = 1000 * (f.at - at)
            break
        last = 1000 * (f.at - at)
    return {"interrupt_to_last_speech_ms": round(last, 1) if last is not None else 0.0,
            "interrupt_to_first_idle_ms": round(first_idle, 1) if first_idle is not None else None}


def stream_stats(stream: LiveStream, rec: Recording, decoded, sent: list, chunk_ms: float, total: int,
                 output_path: str, interrupted_at: Optional[float] = None) -> dict:
    """Latency p50 / p95 / max, delivery, drops, A/V offset of the recording (evaluation/stream_sync.py), the
    server's own statistics and, after an interrupt, how fast the speech stopped."""
    import numpy as np

    from evaluation.stream_sync import av_offset

    step = int(round(proto.RATE * chunk_ms / 1000))
    frames = stream.frames
    speech = [f for f in frames if f.head["speech"]]
    lat = frame_latencies(frames, sent, step, total)
    sync = av_offset(decoded, rec.audio, stream.session.get("mouth_box"), repeated=rec.repeated)
    stats = {
        "output": output_path, "session_id": stream.session.get("session_id"), "chunk_ms": chunk_ms,
        "first_k": rec.k0, "audio_seconds": round(total / proto.RATE, 3), "frames_received": len(frames),
        "frames_missing": rec.missing, "speech_frames_expected": -(-total // proto.FRAME_SAMPLES),
        "speech_frames_delivered": len(speech),
        "frames_dropped": sum(1 for f in frames if f.head["dropped"]),
        "speech_frames_dropped": sum(1 for f in speech if f.head["dropped"]),
        "latency_ms": {"p50": _percentile(lat, 50), "p95": _percentile(lat, 95),
                       "max": max(lat) if lat else None, "mean": float(np.mean(lat)) if lat else None},
        "av_offset_frames": sync.get("offset_frames"), "av_offset_correlation": sync.get("correlation"),
        "server": (stream.closed or {}).get("stats", {}),
        "lookahead_ms": stream.session.get("lookahead_ms"), "batch_size": stream.session.get("batch_size"),
    }
    if interrupted_at is not None:
        stats["interrupt"] = {"at_audio_s": round(total / proto.RATE, 3), **interrupt_timing(frames, interrupted_at),
                              "ack": next((m for m in stream.messages if m.get("type") == proto.INTERRUPTED), None)}
    return stats


def stream_audio(server: str, template_id: str, audio_path, output_path, api_key: Optional[str] = None,
                 chunk_ms: float = 40.0, stats_json: Optional[str] = None, lead_in_s: float = 0.6,
                 tail_s: float = 0.6, timeout_s: float = 30.0, interrupt_at: Optional[float] = None) -> dict:
    """Live-dub ``audio_path`` on a stored template: send it as 16 kHz PCM chunks of ``chunk_ms`` paced at real
    time, record the returned frames + audio into ``output_path`` and return statistics (``stream_stats``).
    ``interrupt_at`` (seconds of audio): stop sending there and interrupt the session (barge-in); the stats then
    say when the last speech frame and the first idle frame arrived after the interrupt.
    """
    import numpy as np

    from utils.media.audio_io import load_audio

    if not 20 <= chunk_ms <= 200:
        raise UserError(f"--chunk_ms must be 20-200, got {chunk_ms:g}")
    if interrupt_at is not None and interrupt_at <= 0:
        raise UserError(f"--interrupt_at must be > 0 s, got {interrupt_at:g}")
    output_path = _check_output(output_path)
    samples = load_audio(os.fspath(audio_path), proto.RATE)
    if not len(samples):
        raise UserError(f"{audio_path}: the audio is empty")
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    stream = LiveStream(server, template_id, api_key, timeout_s=timeout_s)
    interrupted_at = None
    try:
        time.sleep(lead_in_s)
        sent = send_paced(stream, pcm, chunk_ms, stop_after_s=interrupt_at)
        total = min(len(pcm), int(round(interrupt_at * proto.RATE))) if interrupt_at is not None else len(pcm)
        end = time.monotonic() + timeout_s
        if interrupt_at is not None and total < len(pcm):
            interrupted_at = stream.interrupt()
            while not any(f.at > interrupted_at and f.head.get("idle") for f in stream.frames[-50:]) and \
                    not stream.done.is_set() and time.monotonic() < end:
                time.sleep(0.02)
        else:
            stream.end()
            while not any(f.head["speech"] and f.head["audio_pos"] + f.head["audio_samples"] >= total
                          for f in stream.frames[-50:]) and not stream.done.is_set() and time.monotonic() < end:
                time.sleep(0.02)
        time.sleep(tail_s)
    finally:
        stream.close()
    rec = Recording(stream.frames)
    decoded = rec.write(output_path)
    stats = stream_stats(stream, rec, decoded, sent, chunk_ms, total, output_path, interrupted_at)
    if stats_json:
        with atomic_write(stats_json, "w") as f:
            json.dump(stats, f, indent=1)
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Client for the LawDNet dubbing server.")
    p.add_argument("--server", default=os.environ.get("LAWDNET_SERVER", DEFAULT_SERVER), help="server base URL")
    p.add_argument("--api_key", default=None, help=f"API key (default: env {API_KEY_ENV})")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("health", help="server status")
    t = sub.add_parser("template", help="upload a template video, print its id")
    t.add_argument("video")
    t.add_argument("--face", default=None, help="the person to dub when the video shows several: x,y (pixels in "
                   "the first frame) or an index counted left to right")
    t.add_argument("--json", action="store_true", help="print the whole answer (JSON), not just the id")
    sub.add_parser("templates", help="list templates")
    d = sub.add_parser("delete-template", help="delete a template")
    d.add_argument("template_id")
    j = sub.add_parser("job", help="status of a job")
    j.add_argument("job_id")
    g = sub.add_parser("dub", help="dub a template with speech")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--template", help="template id (from 'template')")
    src.add_argument("--video", help="template video (uploaded first; the server deduplicates)")
    g.add_argument("--audio", required=True)
    g.add_argument("--output", required=True)
    g.add_argument("--async", dest="use_async", action="store_true", help="submit a job and poll it")
    st = sub.add_parser("stream", help="live-dub speech sent at real time; record what comes back")
    st.add_argument("--template", required=True, help="template id (from 'template')")
    st.add_argument("--audio", required=True, help="speech file (any format), sent as 16 kHz PCM")
    st.add_argument("--output", required=True, help="recording of the returned stream (mp4)")
    st.add_argument("--stats_json", default=None, help="write latency / delivery / A/V offset statistics here")
    st.add_argument("--chunk_ms", type=float, default=40.0, help="size of each sent chunk (20-200 ms)")
    st.add_argument("--interrupt_at", type=float, default=None,
                    help="stop sending after this many seconds of audio and interrupt the session (barge-in)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "stream":
        out = stream_audio(args.server, args.template, args.audio, args.output, api_key=args.api_key,
                           chunk_ms=args.chunk_ms, stats_json=args.stats_json, interrupt_at=args.interrupt_at)
        print(json.dumps(out, indent=1))
        return out
    with LawDNetClient(args.server, args.api_key) as c:
        if args.cmd == "health":
            out = c.health()
        elif args.cmd == "template":
            out = c.upload_template(args.video, face=args.face)
            if not args.json:              # TID=$(python client_LawDNet.py template face.mp4)
                print(out["template_id"])
                return out
        elif args.cmd == "templates":
            out = c.list_templates()
        elif args.cmd == "delete-template":
            out = c.delete_template(args.template_id)
        elif args.cmd == "job":
            out = c.job(args.job_id)
        else:
            tid = args.template or c.upload_template(args.video)["template_id"]
            if args.use_async:
                def show(j):
                    print(f"\r{j['status']} {j['progress']:.0%}", end="", file=sys.stderr, flush=True)
                out = c.dub_async(tid, args.audio, args.output, progress=show)
                print(file=sys.stderr)
            else:
                out = c.dub(tid, args.audio, args.output)
            out["template_id"] = tid
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    cli_main(main)
