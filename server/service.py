"""The server's long-lived state: the model (loaded once), the model batcher, templates, jobs, metrics."""
from __future__ import annotations

import dataclasses
import logging
import os

from inference.dubber import Dubber
from server.batcher import BatchingInferer
from server.config import ServerConfig
from server.errors import user_message
from server.jobs import Job, JobManager, check_current_job
from server.live import LiveManager
from server.metrics import Metrics
from server.storage import Storage
from server.templates import TemplateStore
from utils.errors import UserError
from utils.heap import settle_heap

log = logging.getLogger("lawdnet.server")


class DubService:
    def __init__(self, config: ServerConfig, storage: Storage = None):
        self.config = config
        self.storage = storage or Storage(config.data_dir)
        swept = self.storage.sweep_tmp()
        if swept:
            log.warning("removed %d work folder(s) left by a previous run", swept)
        self.metrics = Metrics()
        self.batcher = BatchingInferer(max_frames=config.max_batch_frames, wait_s=config.batch_wait_ms / 1000.0,
                                       before_call=check_current_job, metrics=self.metrics)
        # the server keeps its own template cache; everything else as configured
        self.dubber = Dubber(config.checkpoint, dataclasses.replace(config.inference, cache_dir=self.storage.cache),
                             infer_fn=self.batcher, progress=False)
        self.batcher.target = self.dubber.runner
        self.templates = TemplateStore(self.dubber, self.storage, max_analyses=config.max_template_jobs,
                                       max_waiting=max(1, config.max_queue), memory=config.template_memory,
                                       max_seconds=config.max_template_seconds,
                                       face_search_seconds=config.template_face_search_seconds, metrics=self.metrics)
        self.jobs = JobManager(self._render, self.storage, max_active=config.max_active_jobs,
                               max_queue=config.max_queue, result_ttl_s=config.result_ttl_s, metrics=self.metrics,
                               on_finish=self._release_template)
        self.live = LiveManager(self.dubber, self.templates, self.metrics, max_sessions=config.max_sessions,
                                idle_timeout_s=config.session_idle_timeout_s, batch_size=config.live_batch_size,
                                lead_ms=config.live_lead_ms, jpeg_quality=config.live_jpeg_quality,
                                adaptive_batch=config.live_adaptive_batch)
        g = self.metrics.gauges
        g["live_sessions"] = lambda: self.live.count
        g["queue_depth"] = lambda: self.jobs.queued
        g["jobs_running"] = lambda: self.jobs.running
        g["model_calls_waiting"] = lambda: self.batcher.waiting
        g["template_analyses_pending"] = lambda: self.templates.pending
        g["templates_stored"] = lambda: len(self.storage.list_template_ids())
        self.closing = False
        settle_heap()                  # start-up objects (torch, the model) are never walked by a later full GC

    def describe(self) -> dict:
        d = self.dubber
        return {"device": str(d.device), "mouth_region_size": d.mouth_region_size,
                "audio_feature": d.audio_feature, "profile": d.profile.name,
                "checkpoint": os.path.basename(self.config.checkpoint),
                "batch_size": d.batch_size, "max_batch_frames": self.batcher.max_frames}

    def _render(self, job: Job) -> dict:
        def progress(done, total):
            job.frames_done, job.frames_total = done, total
            job.check_cancel()   # runs in the encode thread: stops a cancelled job within a frame

        job.frames_total = job.audio.num_frames
        stats = self.dubber.dub(job.template, job.audio, job.output_path, progress_callback=progress)
        names = {os.path.basename(job.input_path): "the uploaded audio", "video.upload": "the template video"}
        stats["warnings"] = [user_message(UserError(w), names) for w in stats.get("warnings", [])]
        return stats

    def _release_template(self, job: Job) -> None:
        if job.template is not None:
            job.template = None
            self.templates.release(job.template_id)

    def close(self, grace_s: float) -> dict:
        self.closing = True
        self.live.close_all()
        out = self.jobs.shutdown(grace_s)
        self.batcher.close()
        self.storage.sweep_tmp()
        return out
