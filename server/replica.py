"""One model replica of the dubbing service on a Ray cluster (docs/cluster.md): a whole ``DubService`` (the model,
its frame batcher, job slots and template store) behind a few plain methods that the gateway
(server/cluster.py) calls through a Ray actor handle.

Inputs arrive as bytes (through Ray's object store), so no replica depends on another's disk; results and
templates go where every node finds them: ``data_dir`` on a shared filesystem, or object storage
(``--store_url``, server/object_store.py). Each replica works in its own ``<data_dir>/tmp/replica-<k>/`` and sweeps
only that at start-up, so a restarted replica never removes another's files. Errors come back as dicts (status,
code, detail), never as exceptions, so what the client sees is exactly what one machine would answer.

This module does not import Ray: ``ray.remote(ReplicaWorker)`` happens in server/cluster.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading

from server.config import from_dict
from server.errors import ApiError
from server.jobs import SUCCEEDED, Job
from server.limits import load_audio_upload
from server.object_store import ObjectStore
from server.storage import Storage
from server.uploads import UploadedFile

# Lazy imports below: DubService (torch, the model) loads only in a replica process; the gateway imports
# this module too and never loads torch.

log = logging.getLogger("lawdnet.server")


def _error(e: ApiError) -> dict:
    return {"status": "failed", "error": e.error, "detail": e.detail, "http_status": e.status,
            "headers": dict(e.headers)}


class ReplicaWorker:
    def __init__(self, config: dict, index: int):
        from server.service import DubService   # here: the gateway imports this module and never loads torch

        cfg = from_dict(config)
        if not cfg.inference.threads and cfg.cpus_per_replica >= 1:   # the cores Ray reserved for this replica
            cfg.inference = dataclasses.replace(cfg.inference, threads=int(cfg.cpus_per_replica))
        logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.index = int(index)
        self.config = cfg
        self.storage = Storage(cfg.data_dir, work_name=f"replica-{self.index}")
        self.svc = DubService(cfg, storage=self.storage)
        self.store = ObjectStore(cfg.store_url) if cfg.store_url else None     # templates (object-storage mode)
        self.results = ObjectStore(cfg.store_url or cfg.data_dir)              # finished results, both modes
        self._jobs: dict = {}
        self._live: dict = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    def info(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "node": socket.gethostname(), "model": self.svc.describe()}

    def progress(self, job_id: str):
        job = self._jobs.get(job_id)
        return None if job is None else {"frames_done": job.frames_done, "frames_total": job.frames_total}

    def running_jobs(self) -> list[str]:
        return list(self._jobs)

    def metrics(self) -> dict:
        return self.svc.metrics.snapshot()

    # ------------------------------------------------------------------ templates
    def _local_template(self, template_id: str) -> None:
        """Object-storage mode: fetch a published template this node has not seen yet."""
        if self.store is not None and self.storage.read_template_meta(template_id) is None:
            self.store.pull_template(self.storage, template_id)

    def add_template(self, data: bytes, sha256: str, size: int, face=None) -> dict:
        work = self.storage.new_work_dir("tpl")
        try:
            path = os.path.join(work, "video.upload")
            with open(path, "wb") as f:
                f.write(data)
            del data
            try:
                meta, created = self.svc.templates.add(UploadedFile(path=path, size=int(size), sha256=sha256),
                                                       face=face)
            except ApiError as e:
                return _error(e)
            if self.store is not None:
                tid = meta["template_id"]
                prepared = self.svc.templates.acquire(tid)
                try:
                    self.store.push_template(self.storage, tid, prepared.template.cache_file)
                finally:
                    self.svc.templates.release(tid)
            return {"status": "ok", "meta": meta, "created": bool(created)}
        finally:
            self.storage.remove(work)

    def drop_template(self, template_id: str) -> None:
        """The template was deleted: forget it here (memory, its landmark cache, the local copy in object mode)."""
        t = self.svc.templates
        with t._lock:
            prepared = t._lru.pop(template_id, None)
        cache_file = prepared.template.cache_file if prepared is not None else ""
        if self.store is not None or cache_file:
            if os.path.isdir(os.path.join(self.storage.templates, template_id)):
                self.storage.delete_template(template_id, cache_file)
            elif cache_file and os.path.dirname(os.path.abspath(cache_file)) == self.storage.cache:
                try:
                    os.remove(cache_file)
                except OSError:
                    pass

    # ------------------------------------------------------------------ dubbing
    def render(self, job_id: str, template_id: str, audio: bytes, attempt: int = 1) -> dict:
        """Render one job (blocking; its frames share this replica's model batches with the other jobs here) and
        publish the mp4 under results/<job_id>/ (shared path or object storage). Returns the outcome as a dict."""
        work = self.storage.new_work_dir("job")
        job = None
        try:
            path = os.path.join(work, "audio.upload")
            with open(path, "wb") as f:
                f.write(audio)
            del audio
            self._local_template(template_id)
            dub_audio = load_audio_upload(path, self.config.max_audio_seconds)
            prepared = self.svc.templates.acquire(template_id)
            job = Job(id=job_id, template_id=template_id, work_dir=work, input_path=path,
                      output_path=os.path.join(work, "output.mp4"), audio=dub_audio,
                      audio_seconds=dub_audio.seconds, is_async=True, template=prepared)
            try:
                self.svc.jobs.submit(job)
            except BaseException:
                self.svc.templates.release(template_id)
                raise
            self._jobs[job_id] = job
            job.done_event.wait()
            if job.status != SUCCEEDED:
                return {"status": job.status, "error": job.error, "detail": job.detail,
                        "http_status": job.http_status}
            self.results.put_output(job_id, job.output_path)
            return {"status": SUCCEEDED, "stats": job.stats, "replica": self.index, "pid": os.getpid(),
                    "attempt": attempt}
        except ApiError as e:
            return _error(e)
        finally:
            self._jobs.pop(job_id, None)
            if job is not None:
                self.svc.jobs.forget(job)
            else:
                self.storage.remove(work)

    def cancel(self, job_id: str, reason: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        self.svc.jobs.cancel(job, reason)
        return True

    # ------------------------------------------------------------------ live sessions (relayed by the gateway)
    def live_open(self, template_id: str, sample_rate: int) -> dict:
        """Open a live session here; its frames are pumped at their send times into a relay the gateway pulls."""
        try:
            self._local_template(template_id)
            session = self.svc.live.open(template_id, int(sample_rate), "ws")
        except ApiError as e:
            return _error(e)
        relay = _LiveRelay(session)
        with self._lock:
            self._live[session.id] = relay
        relay.start(on_end=lambda: self._live.pop(session.id, None))
        return {"status": "ok", "public": session.public()}

    def live_push(self, session_id: str, seq: int, kind: str, data=None) -> None:
        relay = self._live.get(session_id)
        if relay is not None:
            relay.push(int(seq), kind, data)

    def live_pull(self, session_id: str, wait_s: float = 0.25) -> dict:
        relay = self._live.get(session_id)
        if relay is None:
            return {"frames": [], "closed": True, "reason": "no such session on this replica", "stats": {},
                    "error": True}
        return relay.pull(float(wait_s))

    def live_close(self, session_id: str, reason: str) -> None:
        relay = self._live.get(session_id)
        if relay is not None:
            relay.session.close(reason)

    def live_sessions(self) -> list[str]:
        return list(self._live)

    def close(self, grace_s: float = 5.0) -> dict:
        return self.svc.close(grace_s)


class _LiveRelay:
    """One live session's frames, taken at their send times by an event loop of its own and kept until the
    gateway pulls them; its input (PCM chunks, utterance ends) is applied in the gateway's order (``seq``)."""

    MAX_QUEUED = 250          # 10 s of frames nobody pulled: the client (or the gateway) is gone or too slow

    def __init__(self, session):
        self.session = session
        self._cond = threading.Condition()
        self._frames: list = []
        self._done = False
        self._next = 0
        self._pending: dict = {}

    def start(self, on_end) -> None:
        import asyncio

        def pump():
            async def run():
                async for slot, pic in self.session.frames():
                    head = {"k": slot.k, "speech": slot.speech, "audio_pos": slot.audio_pos,
                            "template_index": slot.template_index, "dropped": slot.dropped,
                            "interrupted": slot.interrupted, "shows_speech": pic.shows_speech}
                    with self._cond:
                        self._frames.append((head, pic.jpeg, slot.audio))
                        self._cond.notify_all()
                        if len(self._frames) > self.MAX_QUEUED:
                            self.session.close("the client does not read the stream fast enough")

            try:
                asyncio.run(run())
            except Exception:
                log.exception("live relay of session %s failed", self.session.id)
                self.session.close("internal error")
            finally:
                with self._cond:
                    self._done = True
                    self._cond.notify_all()

        self._on_end = on_end
        threading.Thread(target=pump, name=f"lawdnet-relay-{self.session.id[:8]}", daemon=True).start()

    def push(self, seq: int, kind: str, data) -> None:
        with self._cond:
            self._pending[seq] = (kind, data)
            ready = []
            while self._next in self._pending:
                ready.append(self._pending.pop(self._next))
                self._next += 1
        for kind, data in ready:
            try:
                if kind == "pcm":
                    self.session.push_pcm16(data)
                elif kind == "end":
                    self.session.end_utterance()
                elif kind == "interrupt":
                    self.session.interrupt()
            except ApiError:
                pass              # e.g. too much audio ahead: dropped, as the session itself would refuse it

    def pull(self, wait_s: float) -> dict:
        with self._cond:
            if not self._frames and not self._done:
                self._cond.wait(wait_s)
            frames, self._frames = self._frames, []
            done = self._done and not frames
        s = self.session
        if done:
            self._on_end()
        return {"frames": frames, "closed": done, "reason": s.close_reason, "stats": s.public_stats(),
                "error": s.error is not None}
