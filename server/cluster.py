"""The gateway of the dubbing service on a Ray cluster (docs/cluster.md): the service object behind the HTTP routes
of server/app.py when the app runs as a Ray Serve deployment (server/ray_serve.py).

It holds no model. Templates, dubs and jobs go to ``--replicas`` model replicas, Ray actors
(server/replica.py: a whole DubService each) placed by Ray on any node with the CPUs / GPUs they ask for:

* a dub (sync or async) is a job of the gateway's JobManager (same limits, queue, cancellation, TTL as on one
  machine); its worker thread sends the audio to the least busy replica and polls its progress. If that replica
  dies (SIGKILL, node lost), Ray raises ``RayActorError``: the job's progress restarts at 0 and it is sent to
  another replica (Ray restarts the dead one, ``max_restarts=-1``), up to ``_MAX_ATTEMPTS`` times;
* a finished result is published by the replica under ``results/<job_id>/`` where every node reads it (shared
  ``data_dir`` or ``--store_url``) with the job's record (job.json), so a restarted gateway still serves it;
* a template upload is analysed by one replica and committed to shared storage (or published to the object
  store), so every replica can use it;
* an accepted async job keeps its audio under ``results/<job_id>/`` until it ends: a gateway that stops (or
  dies) before it finished hands it over, and the next gateway resumes it from frame 0 under the same id;
* ``/metrics`` adds the replicas' model counters to the gateway's request counters;
* a live session (WebSocket) is opened on one replica and stays there; the gateway relays its audio in and its
  frames out (``RemoteLive``); if that replica dies the session ends with ``closed`` and a new one opens on
  another replica. WebRTC sessions are not relayed yet (503).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from types import SimpleNamespace
from typing import Callable, Optional

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from server.config import ServerConfig
from server.errors import ApiError
from server.jobs import CANCELLED, FAILED, FINISHED, SUCCEEDED, Job, JobCancelled, JobManager
from server.metrics import Metrics
from server.object_store import ObjectStore
from server.replica import ReplicaWorker
from server.storage import Storage, valid_id
from server.templates import TemplateStore, face_choice, template_id_of
from utils.errors import UserError

log = logging.getLogger("lawdnet.server")

NAMESPACE = "lawdnet"
_MAX_ATTEMPTS = 5             # a job is tried on this many replicas before it fails (each loss = one attempt)
_DOWN_S = 5.0                 # a replica that died is not picked for this long (Ray restarts it meanwhile)


def replica_name(index: int) -> str:
    return f"lawdnet-replica-{index}"


class ReplicaPool:
    """The model replicas: named, detached, restartable Ray actors (a restarted gateway finds them again)."""

    def __init__(self, cfg: ServerConfig, config_dict: dict):
        self.cfg = cfg
        actor = ray.remote(ReplicaWorker)
        self.handles = []
        for k in range(int(cfg.replicas)):
            self.handles.append(actor.options(
                name=replica_name(k), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                max_restarts=-1, max_concurrency=64, num_cpus=float(cfg.cpus_per_replica),
                num_gpus=float(cfg.gpus_per_replica)).remote(config_dict, k))
        self._lock = threading.Lock()
        self.load = collections.Counter()          # calls in flight per replica
        self.down_until: dict = {}
        self.calls = collections.Counter()         # calls sent per replica (metrics)
        self.losses = 0

    def wait_ready(self, timeout_s: float = 900.0) -> list[dict]:
        return ray.get([h.info.remote() for h in self.handles], timeout=timeout_s)

    def up(self) -> int:
        now = time.time()
        return sum(1 for k in range(len(self.handles)) if self.down_until.get(k, 0) <= now)

    def _pick(self, avoid) -> int:
        now = time.time()
        with self._lock:
            order = sorted(range(len(self.handles)),
                           key=lambda k: (self.down_until.get(k, 0) > now, k in avoid, self.load[k], self.calls[k]))
            k = order[0]
            self.load[k] += 1
            self.calls[k] += 1
            return k

    def lost(self, k: int) -> None:
        """Replica ``k`` died: not picked for a while (Ray restarts it meanwhile)."""
        self.losses += 1
        self.down_until[k] = time.time() + _DOWN_S

    def release(self, k: int) -> None:
        with self._lock:
            self.load[k] -= 1

    def run(self, method: str, *args, poll: Optional[Callable] = None, on_lost: Optional[Callable] = None):
        """Call ``method`` on the least busy replica; if the replica dies, call it on another one. ``poll(handle)``
        runs every 0.5 s while the call is in flight; ``on_lost(attempt)`` after each lost replica."""
        tried: list = []
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            k = self._pick(tried)
            handle = self.handles[k]
            try:
                ref = getattr(handle, method).remote(*args, attempt) if method == "render" else \
                    getattr(handle, method).remote(*args)
                while True:
                    ready, _ = ray.wait([ref], timeout=0.5)
                    if ready:
                        return ray.get(ref)
                    if poll is not None:
                        poll(handle)
            except RayActorError as e:
                self.lost(k)
                tried.append(k)
                log.warning("replica %d was lost during %s (attempt %d): %s; retrying on another replica",
                            k, method, attempt, type(e).__name__)
                if on_lost is not None:
                    on_lost(attempt)
            finally:
                self.release(k)
        raise ApiError(503, "busy", f"{_MAX_ATTEMPTS} replicas were lost while working on this request; try again",
                       {"Retry-After": "30"})

    def broadcast(self, method: str, *args) -> None:
        for h in self.handles:
            try:
                getattr(h, method).remote(*args)    # fire and forget
            except RayActorError:
                pass

    def gather(self, method: str, timeout_s: float = 3.0) -> list:
        out = []
        for h in self.handles:
            try:
                out.append(ray.get(getattr(h, method).remote(), timeout=timeout_s))
            except (RayActorError, GetTimeoutError):
                out.append(None)
        return out


class ClusterTemplates(TemplateStore):
    """Templates seen from the gateway: listed from shared storage / the object store, analysed by a replica."""

    def __init__(self, pool: ReplicaPool, storage: Storage, store: Optional[ObjectStore], metrics):
        super().__init__(None, storage, metrics=metrics)
        self.pool, self.store = pool, store

    def list(self) -> list[dict]:
        if self.store is None:
            return super().list()
        return [m for m in (self.store.template_meta(i) for i in self.store.list_template_ids()) if m]

    def meta(self, template_id: str) -> Optional[dict]:
        if self.store is None:
            return super().meta(template_id)
        return self.store.template_meta(template_id) if valid_id(template_id) else None

    def add(self, upload, cancel=None, face=None) -> tuple[dict, bool]:
        existing = self.meta(template_id_of(upload.sha256, face_choice(face)))
        if existing is not None:
            return existing, False
        with open(upload.path, "rb") as f:
            data = f.read()
        with self._lock:
            self._pending += 1
        try:
            out = self.pool.run("add_template", data, upload.sha256, upload.size, face)
        finally:
            with self._lock:
                self._pending -= 1
        if out["status"] != "ok":
            raise ApiError(out["http_status"], out["error"], out["detail"], out.get("headers"))
        return out["meta"], out["created"]

    def acquire(self, template_id: str):
        """Count the job's use of the template (deleting it answers 409 meanwhile); the replica loads it."""
        if self.meta(template_id) is None:
            raise ApiError(404, "template_not_found", f"no template with id {template_id!r}")
        with self._lock:
            self._refs[template_id] += 1
        return None

    def delete(self, template_id: str) -> None:
        super().delete(template_id)      # 404 / 409 as on one machine; removes it from the shared data_dir
        if self.store is not None:
            self.store.delete_template(template_id)
        self.pool.broadcast("drop_template", template_id)


class ClusterJobs(JobManager):
    """The gateway's jobs: rendered remotely; finished ones recorded under results/ for every node and restart."""

    def __init__(self, *a, results: ObjectStore, **kw):
        self.results = results
        super().__init__(*a, **kw)

    def submit(self, job: Job, loop=None) -> None:
        super().submit(job, loop)
        if job.is_async and not getattr(job, "resumed", False):
            try:      # kept until the job ends, so that a restarted gateway resumes it
                self.results.put_pending(job.id, job.input_path, {
                    "template_id": job.template_id, "created": job.created, "audio_seconds": job.audio_seconds,
                    "frames_total": job.audio.num_frames if job.audio is not None else job.frames_total})
            except Exception:
                log.exception("could not record pending job %s", job.id)

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        if self.closed and job.is_async and reason.startswith("the server shut down"):
            job.handed_over = True        # the gateway stops: the next one resumes this job (pending.json)
        super().cancel(job, reason)

    def resume(self, templates) -> int:
        """Accept again the async jobs a previous gateway accepted and never finished; returns how many."""
        n = 0
        for job_id, rec in self.results.pending_jobs():
            work = self.storage.new_work_dir("job")
            job = Job(id=job_id, template_id=rec.get("template_id", ""), work_dir=work,
                      input_path=os.path.join(work, "audio.upload"), output_path=os.path.join(work, "output.mp4"),
                      audio_seconds=float(rec.get("audio_seconds") or 0.0), is_async=True,
                      frames_total=int(rec.get("frames_total") or 0), created=rec.get("created") or time.time())
            job.resumed = True
            try:
                self.results.fetch_input(job_id, job.input_path)
                templates.acquire(job.template_id)
            except Exception as e:   # its template was deleted meanwhile, or its input is gone
                self.storage.remove(work)
                self.results.put_record(job_id, {**job.public(), "status": FAILED, "error": "template_not_found"
                                                 if isinstance(e, ApiError) else "internal_error",
                                                 "detail": str(e), "http_status": 404 if isinstance(e, ApiError)
                                                 else 500, "stats": {}})
                self.results.drop_pending(job_id)
                continue
            try:
                self.submit(job)
            except ApiError:
                templates.release(job.template_id)
                self.storage.remove(work)
                log.warning("job %s not resumed now (no free slot); a later restart resumes it", job_id)
                continue
            n += 1
        return n

    def _finish(self, job: Job, status: str, error: str, detail: str, http_status: int) -> None:
        if getattr(job, "handed_over", False):
            super()._finish(job, status, error, detail, http_status)     # only this gateway's copy ends
            return
        outcome = getattr(job, "remote_outcome", None)
        if outcome and status == FAILED:     # the replica's own answer (422 audio_too_long, 404, ...)
            error, detail, http_status = outcome["error"], outcome["detail"], int(outcome["http_status"])
        if status != SUCCEEDED:           # e.g. cancelled just after its replica published the mp4
            try:
                self.results.delete_result(job.id)
            except Exception:
                log.exception("could not delete the result of job %s", job.id)
        # done_event (set in super()._finish) lets a DELETE forget the job; forget waits for the record written
        # below, or it would delete the result folder before the record re-creates it
        job.recorded = threading.Event()
        try:
            super()._finish(job, status, error, detail, http_status)
            if job.is_async:
                try:
                    self.results.put_record(job.id, {**job.public(), "http_status": job.http_status,
                                                     "stats": job.stats})
                    self.results.drop_pending(job.id)
                except Exception:
                    log.exception("could not record job %s", job.id)
        finally:
            job.recorded.set()

    def get(self, job_id: str) -> Optional[Job]:
        job = self.jobs.get(job_id)
        if job is not None or not valid_id(job_id):
            return job
        rec = self.results.result_record(job_id)      # finished before this gateway (re)started
        if rec is None or rec.get("status") not in FINISHED:
            return None
        job = Job(id=job_id, template_id=rec.get("template_id", ""), work_dir="", input_path="",
                  output_path=self.results.local_output(job_id), audio_seconds=rec.get("audio_seconds") or 0.0,
                  is_async=True, status=rec["status"], frames_done=rec.get("frames_done", 0),
                  frames_total=rec.get("frames_total", 0), error=rec.get("error", ""), detail=rec.get("detail", ""),
                  http_status=int(rec.get("http_status", 200)), stats=rec.get("stats") or {},
                  created=rec.get("created") or time.time(), started=rec.get("started") or 0.0,
                  finished=rec.get("finished") or time.time())
        if job.status == SUCCEEDED and not job.output_path:     # object storage: fetch it to this node
            job.work_dir = self.storage.new_work_dir("res")
            job.output_path = os.path.join(job.work_dir, "output.mp4")
            self.results.fetch_output(job_id, job.output_path)
        job.done_event.set()
        with self._cv:
            job = self.jobs.setdefault(job_id, job)
        return job

    def forget(self, job: Job) -> None:
        recorded = getattr(job, "recorded", None)
        if recorded is not None:
            recorded.wait(30)
        super().forget(job)
        if self.closed and job.is_async and (job.status == SUCCEEDED or getattr(job, "handed_over", False)):
            return        # the gateway stops (shutdown, redeploy): finished results outlive it for the next one
        try:
            self.results.delete_result(job.id)
        except Exception:
            log.exception("could not delete the result of job %s", job.id)


class RemoteSession:
    """A live session on one replica, seen from the gateway (the interface server/live_routes.py uses): input is
    forwarded in order, frames are pulled as the replica releases them at their send times. When the replica
    is lost the session ends (the route sends ``closed``) and the client can open a new one at once."""

    def __init__(self, live: "RemoteLive", k: int, handle, public: dict):
        self.live, self.k, self.handle = live, k, handle
        self._public = public
        self.id = public["session_id"]
        self.template_id = public["template_id"]
        self.stats = dict(public.get("stats") or {})
        self.closed = False
        self.close_reason = ""
        self.error = None
        self._seq = 0
        self._lock = threading.Lock()

    def public(self) -> dict:
        return {**self._public, "stats": dict(self.stats), "replica": self.k}

    def _send(self, kind: str, data=None) -> None:
        with self._lock:
            if self.closed:
                return
            seq, self._seq = self._seq, self._seq + 1
        try:
            self.handle.live_push.remote(self.id, seq, kind, data)     # fire and forget; ordered by seq
        except RayActorError:
            pass

    def push_pcm16(self, data: bytes) -> None:
        self._send("pcm", bytes(data))

    def end_utterance(self) -> None:
        self._send("end")

    def interrupt(self) -> dict:
        """Barge-in, applied on the replica in order with the audio pushed before it; its counts arrive with the
        session's statistics (``public_stats``), not in this answer."""
        self._send("interrupt")
        return {"relayed": True}

    def public_stats(self) -> dict:
        return dict(self.stats)

    def close(self, reason: str = "closed", wait: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed, self.close_reason = True, reason
        try:
            self.handle.live_close.remote(self.id, reason)
        except RayActorError:
            pass
        self.live._closed(self)

    async def frames(self):
        while not self.closed:
            try:
                out = await self.handle.live_pull.remote(self.id, 0.25)
            except RayActorError:
                self.live.pool.lost(self.k)
                self.error = "replica lost"
                self.close("the replica serving this session was lost; open a new session")
                return
            self.stats = out["stats"] or self.stats
            for head, jpeg, audio in out["frames"]:
                shows_speech = head.pop("shows_speech", False)
                yield SimpleNamespace(audio=audio, **head), SimpleNamespace(jpeg=jpeg, shows_speech=shows_speech)
            if out["closed"]:
                if out["error"]:
                    self.error = "failed on its replica"
                self.close(out["reason"] or "ended")
                return


class RemoteLive:
    """Live sessions of the cluster: each opened on the least busy replica that has a free slot, and kept there
    for its lifetime (``--max_sessions`` per replica)."""

    def __init__(self, pool: ReplicaPool, metrics=None):
        self.pool, self.metrics = pool, metrics
        self.max_sessions = 0
        self._lock = threading.Lock()
        self.sessions: dict = {}

    def open(self, template_id: str, sample_rate: int = 16000, kind: str = "ws", jpeg: bool = True):
        if kind != "ws":
            raise ApiError(503, "busy", "WebRTC live sessions are not relayed by the Ray cluster service yet; use "
                                        "the WebSocket (/v1/live/ws) or a server without --ray (docs/cluster.md)")
        last = ApiError(503, "busy", "no replica is available for a live session; try again later",
                        {"Retry-After": "10"})
        tried: list = []
        for _ in range(len(self.pool.handles)):
            k = self.pool._pick(tried)
            tried.append(k)
            try:
                out = ray.get(self.pool.handles[k].live_open.remote(template_id, sample_rate), timeout=120)
            except (RayActorError, GetTimeoutError):
                self.pool.lost(k)
                self.pool.release(k)
                continue
            if out["status"] != "ok":
                self.pool.release(k)
                last = ApiError(out["http_status"], out["error"], out["detail"], out.get("headers"))
                if out["error"] == "busy":
                    continue            # this replica's sessions are all taken: try another one
                raise last
            s = RemoteSession(self, k, self.pool.handles[k], out["public"])
            with self._lock:
                self.sessions[s.id] = s
            if self.metrics is not None:
                self.metrics.inc("live_sessions_total")
            return s
        raise last

    def _closed(self, s: RemoteSession) -> None:
        with self._lock:
            if self.sessions.pop(s.id, None) is None:
                return
        self.pool.release(s.k)

    def get(self, session_id: str):
        with self._lock:
            return self.sessions.get(session_id)

    def list(self) -> list:
        with self._lock:
            return [s.public() for s in self.sessions.values()]

    @property
    def count(self) -> int:
        return len(self.sessions)

    def close_all(self) -> None:
        with self._lock:
            live = list(self.sessions.values())
        for s in live:
            s.close("the server is shutting down")


class ClusterService:
    """Duck-type of server.service.DubService for create_app (storage, metrics, templates, jobs, live, describe,
    close)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.storage = Storage(config.data_dir, work_name="gateway")
        self.storage.sweep_tmp()
        self.metrics = Metrics()
        self.store = ObjectStore(config.store_url) if config.store_url else None
        self.results = ObjectStore(config.store_url or config.data_dir)
        cfg_dict = {k: getattr(config, k) for k in config.field_names()}
        cfg_dict["inference"] = dataclasses.asdict(config.inference)
        self.pool = ReplicaPool(config, cfg_dict)
        infos = self.pool.wait_ready()
        self._model = dict(infos[0]["model"])
        log.info("%d replicas ready: %s", len(infos), ", ".join(f"{i['node']}:{i['pid']}" for i in infos))
        self.templates = ClusterTemplates(self.pool, self.storage, self.store, self.metrics)
        n = int(config.replicas)
        self.jobs = ClusterJobs(self._render, self.storage, max_active=n * config.max_active_jobs,
                                max_queue=config.max_queue, result_ttl_s=config.result_ttl_s, metrics=self.metrics,
                                on_finish=self._release_template, results=self.results)
        resumed = self.jobs.resume(self.templates)
        if resumed:
            log.info("resumed %d async job(s) accepted by the previous gateway", resumed)
        self.live = RemoteLive(self.pool, self.metrics)
        self.live.max_sessions = n * config.max_sessions
        g = self.metrics.gauges
        g["live_sessions"] = lambda: self.live.count
        g["queue_depth"] = lambda: self.jobs.queued
        g["jobs_running"] = lambda: self.jobs.running
        g["replicas"] = lambda: len(self.pool.handles)
        g["replicas_up"] = self.pool.up
        g["replicas_lost_total"] = lambda: self.pool.losses
        self.closing = False
        self._merge_snapshot()

    def _merge_snapshot(self) -> None:
        """/metrics: the gateway's own snapshot plus the replicas' model counters."""
        own = self.metrics.snapshot

        def snapshot():
            snap = own()
            reps = [r for r in self.pool.gather("metrics") if r]
            for r in reps:
                for k, v in r["counters"].items():
                    if k.startswith(("model_", "frames_", "template_")):
                        snap["counters"][k] = snap["counters"].get(k, 0) + v
            snap["largest_batch_frames"] = max([r["largest_batch_frames"] for r in reps] or [0])
            snap["frames_per_second"] = round(sum(r["frames_per_second"] for r in reps), 3)
            snap["model_seconds_total"] = round(sum(r["model_seconds_total"] for r in reps), 3)
            calls = snap["counters"].get("model_calls_total", 0)
            snap["mean_batch_frames"] = round(snap["counters"].get("frames_generated_total", 0) / calls, 3) \
                if calls else 0.0
            snap["replica_calls"] = {str(k): v for k, v in sorted(self.pool.calls.items())}
            return snap

        self.metrics.snapshot = snapshot

    def describe(self) -> dict:
        return {**self._model, "replicas": len(self.pool.handles), "replicas_up": self.pool.up(),
                "storage": self.config.store_url or "shared data_dir"}

    def _render(self, job: Job) -> dict:
        with open(job.input_path, "rb") as f:
            data = f.read()

        def poll(handle):
            if job.cancel_event.is_set():     # sent at every poll: the replica may not have registered the job yet
                handle.cancel.remote(job.id, job.detail or "cancelled")
            try:
                p = ray.get(handle.progress.remote(job.id), timeout=2.0)
            except (RayActorError, GetTimeoutError):
                return
            if p:
                job.frames_done, job.frames_total = p["frames_done"], p["frames_total"]

        def lost(attempt):
            job.frames_done = 0           # the client sees the progress restart
            job.stats = {**job.stats, "replicas_lost": attempt}
            job.check_cancel()

        job.frames_total = job.audio.num_frames if job.audio is not None else job.frames_total   # resumed: no audio
        deadline = time.time() + 300
        while True:
            out = self.pool.run("render", job.id, job.template_id, data, poll=poll, on_lost=lost)
            # a replica whose own job slots are full (after another one was lost) or that is stopping: try again
            if out.get("error") not in ("queue_full", "shutting_down") or time.time() > deadline:
                break
            job.check_cancel()
            time.sleep(1.0)
        job.check_cancel()                # cancelled while the result was on its way
        if out["status"] == CANCELLED:
            raise JobCancelled(out.get("detail") or "cancelled")
        if out["status"] != SUCCEEDED:
            job.remote_outcome = out
            raise UserError(out.get("detail") or out.get("error", "failed"))
        stats = dict(out["stats"])
        stats.update(replica=out["replica"], replica_pid=out["pid"], attempts=out["attempt"])
        local = self.results.local_output(job.id)
        if local:
            job.output_path = local
        else:
            self.results.fetch_output(job.id, job.output_path)
        job.frames_done = job.frames_total
        return stats

    def _release_template(self, job: Job) -> None:
        self.templates.release(job.template_id)

    def close(self, grace_s: float) -> dict:
        self.closing = True
        self.live.close_all()
        out = self.jobs.shutdown(grace_s)
        self.storage.sweep_tmp()
        return out
