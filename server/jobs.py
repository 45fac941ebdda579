"""Dubbing jobs: a bounded waiting line, a fixed number of rendering threads, per-job folders and cancellation.

Capacity is ``max_active`` rendering jobs plus ``max_queue`` waiting ones; a submit beyond that raises a 503
with a Retry-After estimate. A job's failure is recorded on that job only. Every job owns one work folder; the
input is deleted when the job ends, the whole folder when it fails, is cancelled, or its result is collected
(sync requests) or expires (async results, ``result_ttl_s``).
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from server.errors import ApiError, user_message
from utils.errors import UserError

log = logging.getLogger("lawdnet.server")

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class JobCancelled(Exception):
    """Raised inside a job's threads to stop its rendering."""


@dataclass(eq=False)   # identity semantics: jobs live in sets and queues
class Job:
    id: str
    template_id: str
    work_dir: str
    input_path: str
    output_path: str
    audio: object = None                   # decoded audio (inference.DubAudio)
    template: object = None                # inference.PreparedTemplate, held (ref-counted) until the job ends
    audio_seconds: float = 0.0
    is_async: bool = False
    status: str = QUEUED
    frames_done: int = 0
    frames_total: int = 0
    error: str = ""
    detail: str = ""
    http_status: int = 200
    stats: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float = 0.0
    finished: float = 0.0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)
    _waiters: list = field(default_factory=list)

    @property
    def progress(self) -> float:
        if self.status == SUCCEEDED:
            return 1.0
        return self.frames_done / self.frames_total if self.frames_total else 0.0

    def public(self, position: Optional[int] = None) -> dict:
        d = {"job_id": self.id, "status": self.status, "progress": round(self.progress, 4),
             "frames_done": self.frames_done, "frames_total": self.frames_total, "template_id": self.template_id,
             "audio_seconds": round(self.audio_seconds, 3), "created": self.created,
             "started": self.started or None, "finished": self.finished or None}
        if position is not None:
            d["queue_position"] = position
        if self.status in (FAILED, CANCELLED):
            d["error"], d["detail"] = self.error, self.detail
        if self.status == SUCCEEDED:
            d["result_url"] = f"/v1/jobs/{self.id}/result"
            d["seconds"] = round(self.stats.get("seconds", 0.0), 3)
            d["warnings"] = list(self.stats.get("warnings", []))
        return d

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled(self.detail or "cancelled")


_local = threading.local()


def current_job() -> Optional[Job]:
    return getattr(_local, "job", None)


def check_current_job() -> None:
    """``before_call`` hook of the model batcher: stop a cancelled job before its next model call."""
    job = current_job()
    if job is not None:
        job.check_cancel()


class JobManager:
    def __init__(self, run: Callable[[Job], dict], storage, max_active: int = 4, max_queue: int = 16,
                 result_ttl_s: float = 3600.0, metrics=None, on_finish: Optional[Callable[[Job], None]] = None):
        self._run = run
        self.storage = storage
        self.max_active, self.max_queue = int(max_active), int(max_queue)
        self.result_ttl_s = float(result_ttl_s)
        self.metrics = metrics
        self.on_finish = on_finish
        self.jobs: dict[str, Job] = {}
        self._queue: collections.deque = collections.deque()
        self._running: set = set()
        self._cv = threading.Condition()
        self._closed = False
        self._durations: collections.deque = collections.deque(maxlen=20)
        self._workers = [threading.Thread(target=self._worker, name=f"lawdnet-job-{i}", daemon=True)
                         for i in range(self.max_active)]
        for t in self._workers:
            t.start()
        self._janitor = threading.Thread(target=self._sweep_loop, name="lawdnet-janitor", daemon=True)
        self._janitor.start()

    # ------------------------------------------------------------------ queries
    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, job_id: str) -> Optional[Job]:
        return self.jobs.get(job_id)

    def position(self, job: Job) -> Optional[int]:
        with self._cv:
            try:
                return list(self._queue).index(job) + 1
            except ValueError:
                return None

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: mean recent job time x waiting jobs per worker."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return int(min(300, max(1, math.ceil(mean * (self.queued + 1) / max(1, self.max_active)))))

    # ------------------------------------------------------------------ submit / cancel
    def submit(self, job: Job, loop=None) -> None:
        with self._cv:
            if self._closed:
                raise ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "30"})
            if len(self._queue) + len(self._running) >= self.max_active + self.max_queue:
                raise ApiError(503, "queue_full",
                               f"{len(self._running)} jobs running and {len(self._queue)} waiting; try again later",
                               {"Retry-After": str(self.retry_after())})
            self.jobs[job.id] = job
            self._queue.append(job)
            self._cv.notify()
        if self.metrics is not None:
            self.metrics.inc("jobs_submitted_total")

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        """Stop a job: a waiting one is dropped at once, a running one stops at its next frame or model call."""
        with self._cv:
            if job.status in FINISHED:
                return
            job.detail = reason
            job.cancel_event.set()
            if job in self._queue:
                self._queue.remove(job)
                queued = True
            else:
                queued = False
        if queued:
            self._finish(job, CANCELLED, "cancelled", reason, 499)

    def wait_async(self, job: Job, loop):
        """An asyncio future that resolves when ``job`` ends (for request handlers)."""
        fut = loop.create_future()

        def resolve():
            if not fut.done():
                fut.set_result(job)

        with self._cv:
            if job.done_event.is_set():
                resolve()
            else:
                job._waiters.append(lambda: loop.call_soon_threadsafe(resolve))
        return fut

    def forget(self, job: Job) -> None:
        """Drop a finished job and its folder (result collected or expired)."""
        with self._cv:
            self.jobs.pop(job.id, None)
        self.storage.remove(job.work_dir)

    # ------------------------------------------------------------------ workers
    def _worker(self):
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue and self._closed:
                    return
                job = self._queue.popleft()
                self._running.add(job)
                job.status, job.started = RUNNING, time.time()
            _local.job = job
            try:
                self._execute(job)
            finally:
                _local.job = None
                with self._cv:
                    self._running.discard(job)
                    self._cv.notify_all()

    def _execute(self, job: Job) -> None:
        paths = {job.input_path: "the uploaded audio", job.work_dir: "<job>"}
        try:
            job.check_cancel()
            job.stats = self._run(job)
        except JobCancelled as e:
            self._finish(job, CANCELLED, "cancelled", str(e) or "cancelled", 499)
        except UserError as e:
            self._finish(job, FAILED, "unprocessable_media", user_message(e, paths), 422)
        except Exception as e:  # one job's crash must never take the server or other jobs down
            if job.cancel_event.is_set():
                self._finish(job, CANCELLED, "cancelled", job.detail or "cancelled", 499)
            else:
                log.exception("job %s failed", job.id)
                self._finish(job, FAILED, "internal_error", f"{type(e).__name__}: {user_message(e, paths)}", 500)
        else:
            self._durations.append(time.time() - job.started)
            self._finish(job, SUCCEEDED, "", "", 200)

    def _finish(self, job: Job, status: str, error: str, detail: str, http_status: int) -> None:
        job.audio = None  # free the decoded samples (the template reference goes in on_finish)
        self.storage.remove(job.input_path)
        if status != SUCCEEDED:
            self.storage.remove(job.work_dir)
        with self._cv:
            job.status, job.error, job.detail, job.http_status = status, error, detail, http_status
            job.finished = time.time()
            job.done_event.set()
            waiters, job._waiters = job._waiters, []
            if status != SUCCEEDED and not job.is_async:
                self.jobs.pop(job.id, None)   # nobody can ask for it again
        if self.metrics is not None:
            self.metrics.inc(f"jobs_{status}_total")
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:
                log.exception("on_finish hook failed")
        for w in waiters:
            try:
                w()
            except RuntimeError:  # the event loop is gone (shutdown)
                pass

    # ------------------------------------------------------------------ expiry / shutdown
    def _sweep_loop(self):
        while not self._closed:
            time.sleep(min(30.0, max(0.5, self.result_ttl_s / 4)))
            self.sweep()

    def sweep(self) -> int:
        now, n = time.time(), 0
        for job in list(self.jobs.values()):
            if job.status in FINISHED and job.finished and now - job.finished > self.result_ttl_s:
                self.forget(job)
                n += 1
        return n

    def shutdown(self, grace_s: float = 30.0) -> dict:
        """Refuse new jobs, let queued and running ones finish for ``grace_s``, then cancel what is left and
        delete every job folder. Returns counts."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        deadline = time.time() + grace_s
        with self._cv:
            while (self._queue or self._running) and time.time() < deadline:
                self._cv.wait(timeout=0.2)
            left = list(self._queue) + list(self._running)
        for job in left:
            self.cancel(job, "the server shut down before the job finished")
        with self._cv:
            end = time.time() + 30
            while self._running and time.time() < end:
                self._cv.wait(timeout=0.2)
        for t in self._workers:
            t.join(timeout=5)
        removed = 0
        for job in list(self.jobs.values()):
            self.forget(job)
            removed += 1
        return {"cancelled": len(left), "removed": removed}
