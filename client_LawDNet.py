"""Client for the LawDNet dubbing server (server_LawDNet.py): CLI and function API.

    python client_LawDNet.py [--server http://127.0.0.1:8000] [--api_key KEY] health
    python client_LawDNet.py template face.mp4                       # -> prints the template id
    python client_LawDNet.py dub --video face.mp4 --audio speech.wav --output out.mp4 [--async]
    python client_LawDNet.py dub --template ID --audio speech.wav --output out.mp4
    python client_LawDNet.py templates | delete-template ID | job ID
    python client_LawDNet.py stream --template ID --audio speech.wav --output received.mp4 [--stats_json s.json]

Function API: ``LawDNetClient(server, api_key).dub(template_id, audio, output)``, or in one call
``dub_video(server, video, audio, output)``. A busy server (503) is retried after its Retry-After.
``stream_audio(server, template_id, audio, output)`` sends speech to a live session paced at real time over the
WebSocket protocol (docs/live.md) and records what comes back.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlencode

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from utils.atomic import atomic_write
from utils.errors import UserError, cli_main
from utils.media.audio_io import load_audio
from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE
from utils.media.video_io import VideoWriter

# Lazy imports below: cv2, inference.dubber, server.live_routes and evaluation.stream_sync (torch, fastapi) load
# only for a live stream, so the HTTP client starts fast.

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

    def metrics(self) -> dict:
        return self._request("GET", "/metrics", params={"format": "json"}).json()

    def upload_template(self, video_path) -> dict:
        """Upload a template video; returns its metadata (``template_id``, frames, ...)."""
        return self._request("POST", "/v1/templates", files={"video": os.fspath(video_path)}).json()

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


def _ws_url(server: str, path: str, params: dict) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[8:]
    elif base.startswith("http://"):
        base = "ws://" + base[7:]
    return f"{base}{path}?{urlencode(params)}"


def _percentile(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else None


def stream_audio(server: str, template_id: str, audio_path, output_path, api_key: Optional[str] = None,
                 chunk_ms: float = 40.0, stats_json: Optional[str] = None, lead_in_s: float = 0.6,
                 tail_s: float = 0.6, timeout_s: float = 30.0) -> dict:
    """Live-dub ``audio_path`` on a stored template: send it as 16 kHz PCM chunks of ``chunk_ms`` paced at real
    time, record the returned frames + audio into ``output_path`` and return statistics.

    Stats: per-frame latency (chunk that completes a frame's audio sent -> that frame received) p50 / p95 /
    max in ms, frames delivered / dropped (not rendered in time) / missing, and the A/V offset measured on the
    recording (evaluation/stream_sync.py; positive = picture after sound).
    """
    from inference.dubber import check_output_path
    from server.live_routes import unpack_frame

    if not 20 <= chunk_ms <= 200:
        raise UserError(f"--chunk_ms must be 20-200, got {chunk_ms:g}")
    output_path = check_output_path(output_path)
    samples = load_audio(os.fspath(audio_path), 16000)
    if not len(samples):
        raise UserError(f"{audio_path}: the audio is empty")
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = _ws_url(server, "/v1/live/ws", {"template_id": template_id, "sample_rate": SAMPLE_RATE})
    try:
        ws = connect(url, additional_headers=headers, open_timeout=20, max_size=None)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
        raise UserError(f"cannot open a live session at {server}: {type(e).__name__}: {e}") from None
    frames, done = [], threading.Event()
    info: dict = {}
    total = len(pcm)
    try:
        first = json.loads(ws.recv(timeout=timeout_s))
        if first.get("type") != "ready":
            raise ApiClientError(int(first.get("status", 500)), first.get("error", "error"), first.get("detail", ""))
        info["session"] = first

        def receive():
            try:
                for msg in ws:
                    if isinstance(msg, bytes):
                        head, jpeg, audio = unpack_frame(msg)
                        frames.append((time.monotonic(), head, jpeg, audio))
                        if head["speech"] and head["audio_pos"] + head["audio_samples"] >= total:
                            info.setdefault("last_speech_at", time.monotonic())
                    else:
                        m = json.loads(msg)
                        info.setdefault("messages", []).append(m)
                        if m.get("type") == "closed":
                            info["closed"] = m
            except ConnectionClosed:
                pass
            finally:
                done.set()

        rx = threading.Thread(target=receive, daemon=True)
        rx.start()
        time.sleep(lead_in_s)
        step = int(round(SAMPLE_RATE * chunk_ms / 1000))
        sent = []
        t0 = time.monotonic()
        for i, a in enumerate(range(0, total, step)):
            delay = t0 + i * step / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ws.send(pcm[a:a + step].tobytes())
            sent.append(time.monotonic())
        ws.send(json.dumps({"type": "end"}))
        end = time.monotonic() + timeout_s
        while "last_speech_at" not in info and not done.is_set() and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(tail_s)
        try:
            ws.send(json.dumps({"type": "close"}))
        except ConnectionClosed:
            pass
        done.wait(10)
    finally:
        ws.close()
    if not frames:
        raise UserError("the server sent no frames")
    # the recording: frames in timeline order (a missing index repeats the previous picture)
    import cv2

    frames.sort(key=lambda f: f[1]["k"])
    k0 = frames[0][1]["k"]
    by_k = {f[1]["k"]: f for f in frames}
    kmax = frames[-1][1]["k"]
    pictures, audio, repeated, missing = [], [], [], 0
    last = frames[0]
    for k in range(k0, kmax + 1):
        f = by_k.get(k)
        repeated.append(f is None or f[1]["dropped"])
        if f is None:
            missing += 1
            f = last
        last = f
        pictures.append(f[2])
        audio.append(f[3])
    audio_f = np.concatenate(audio).astype(np.float32) / 32768.0
    decoded = []
    with VideoWriter(output_path, fps=FPS, audio=audio_f, sample_rate=SAMPLE_RATE, crf=18, preset="veryfast") as w:
        for jpg in pictures:
            rgb = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            decoded.append(rgb)
            w.write(rgb)
    # latency of each speech frame: the chunk holding its last sample was sent -> the frame arrived
    lat = []
    speech = [f for f in frames if f[1]["speech"]]
    for t_recv, head, _, _ in speech:
        last_sample = min(head["audio_pos"] + head["audio_samples"], total) - 1
        ci = min(last_sample // step, len(sent) - 1)
        lat.append(1000 * (t_recv - sent[ci]))
    from evaluation.stream_sync import av_offset

    sync = av_offset(np.stack(decoded), audio_f, info["session"].get("mouth_box"), repeated=repeated)
    expected = -(-total // FRAME_SAMPLES)
    stats = {
        "output": output_path, "session_id": info["session"].get("session_id"), "chunk_ms": chunk_ms,
        "first_k": k0,
        "audio_seconds": round(total / SAMPLE_RATE, 3), "frames_received": len(frames), "frames_missing": missing,
        "speech_frames_expected": expected, "speech_frames_delivered": len(speech),
        "frames_dropped": sum(1 for f in frames if f[1]["dropped"]),
        "speech_frames_dropped": sum(1 for f in speech if f[1]["dropped"]),
        "latency_ms": {"p50": _percentile(lat, 50), "p95": _percentile(lat, 95),
                       "max": max(lat) if lat else None, "mean": float(np.mean(lat)) if lat else None},
        "av_offset_frames": sync.get("offset_frames"), "av_offset_correlation": sync.get("correlation"),
        "server": (info.get("closed") or {}).get("stats", {}),
        "lookahead_ms": info["session"].get("lookahead_ms"), "batch_size": info["session"].get("batch_size"),
    }
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
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "stream":
        out = stream_audio(args.server, args.template, args.audio, args.output, api_key=args.api_key,
                           chunk_ms=args.chunk_ms, stats_json=args.stats_json)
        print(json.dumps(out, indent=1))
        return out
    with LawDNetClient(args.server, args.api_key) as c:
        if args.cmd == "health":
            out = c.health()
        elif args.cmd == "template":
            out = c.upload_template(args.video)
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
