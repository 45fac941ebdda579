"""Counters and gauges for /metrics, rendered as Prometheus text (default) or JSON."""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Optional


class Metrics:
    def __init__(self, window_s: float = 60.0):
        self._lock = threading.Lock()
        self.started = time.time()
        self.window_s = float(window_s)
        self.counters: collections.Counter = collections.Counter()
        self.requests: collections.Counter = collections.Counter()    # (method, route, status) -> n
        self._frames: collections.deque = collections.deque()          # (time, frames) of recent model calls
        self.model_seconds = 0.0
        self.largest_batch = 0                                          # frames in the largest model call
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, n: float = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, int(status))] += 1

    def model_call(self, frames: int, seconds: float) -> None:
        now = time.time()
        with self._lock:
            self.counters["model_calls_total"] += 1
            self.counters["frames_generated_total"] += frames
            self.model_seconds += seconds
            self.largest_batch = max(self.largest_batch, int(frames))
            self._frames.append((now, frames))
            while self._frames and now - self._frames[0][0] > self.window_s:
                self._frames.popleft()

    def frames_per_second(self) -> float:
        now = time.time()
        with self._lock:
            recent = [f for t, f in self._frames if now - t <= self.window_s]
        if not recent:
            return 0.0
        span = min(self.window_s, max(1.0, now - self.started))
        return sum(recent) / span

    def snapshot(self) -> dict:
        with self._lock:
            counters = dict(self.counters)
            requests = [{"method": m, "route": r, "status": s, "count": n}
                        for (m, r, s), n in sorted(self.requests.items())]
            model_seconds = self.model_seconds
            largest = self.largest_batch
        calls = counters.get("model_calls_total", 0)
        gauges = {}
        for k, fn in self.gauges.items():
            try:
                gauges[k] = float(fn())
            except Exception:
                gauges[k] = float("nan")
        return {
            "uptime_seconds": round(time.time() - self.started, 3),
            "requests_total": sum(r["count"] for r in requests), "requests": requests,
            "counters": counters, "gauges": gauges,
            "frames_per_second": round(self.frames_per_second(), 3),
            "model_seconds_total": round(model_seconds, 3),
            "largest_batch_frames": largest,
            "mean_batch_frames": round(counters.get("frames_generated_total", 0) / calls, 3) if calls else 0.0,
        }

    def prometheus(self, snap: Optional[dict] = None) -> str:
        s = snap or self.snapshot()
        out = []

        def metric(name, kind, help_, rows):
            out.append(f"# HELP lawdnet_{name} {help_}")
            out.append(f"# TYPE lawdnet_{name} {kind}")
            for labels, value in rows:
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
                out.append(f"lawdnet_{name}{{{lab}}} {value}" if lab else f"lawdnet_{name} {value}")

        metric("http_requests_total", "counter", "HTTP requests by route and status",
               [({"method": r["method"], "route": r["route"], "status": r["status"]}, r["count"])
                for r in s["requests"]])
        for k, v in sorted(s["counters"].items()):
            metric(k, "counter", k.replace("_", " "), [({}, v)])
        for k, v in sorted(s["gauges"].items()):
            metric(k, "gauge", k.replace("_", " "), [({}, v)])
        metric("frames_per_second", "gauge", "generated frames per second over the last minute",
               [({}, s["frames_per_second"])])
        metric("model_seconds_total", "counter", "seconds spent in model calls", [({}, s["model_seconds_total"])])
        metric("largest_batch_frames", "gauge", "frames in the largest model call (jobs merged)",
               [({}, s["largest_batch_frames"])])
        metric("uptime_seconds", "gauge", "seconds since start", [({}, s["uptime_seconds"])])
        return "\n".join(out) + "\n"


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
