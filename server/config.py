"""Settings of the dubbing server: its own fields plus the dub settings (one ``InferenceConfig``, shared with the
CLI, live sessions and the demo). The CLI flags of server_LawDNet.py and the keys of ``from_dict`` are the fields of
both, flat: ``--device cpu`` sets ``ServerConfig.inference.device``."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Optional

from config.config import InferenceConfig
from utils.errors import UserError

API_KEY_ENV = "LAWDNET_API_KEY"


@dataclass
class ServerConfig:
    checkpoint: str = ""                 # LawDNet checkpoint (ours or official); required
    host: str = "127.0.0.1"              # address to listen on (another than loopback wants an API key)
    port: int = 8000                     # port to listen on
    data_dir: str = "./server_data"      # folder for templates, the landmark cache and job work folders
    # require this key (Authorization: Bearer KEY or X-API-Key: KEY); unset: env LAWDNET_API_KEY, else none
    api_key: str = ""
    # limits
    max_audio_mb: float = 50.0           # upload size of one audio (413 above)
    max_video_mb: float = 500.0          # upload size of one template video (413 above)
    max_audio_seconds: float = 600.0     # decoded duration of one audio (422 above)
    max_queue: int = 16                  # jobs allowed to wait for a worker (503 + Retry-After when full)
    max_active_jobs: int = 4             # jobs rendering at the same time (their frames share model batches)
    max_template_jobs: int = 4           # template analyses at the same time (they share the CPU fairly)
    max_template_seconds: float = 600.0  # longest template video in seconds (422 above; 0 = no limit)
    template_face_search_seconds: float = 10.0   # refuse a template with no face in this many first seconds (0 = off)
    # live sessions (server/live.py)
    max_sessions: int = 4                # live sessions at the same time (503 busy above)
    session_idle_timeout_s: float = 60.0 # a live session that gets no audio for this long ends
    live_batch_size: int = 4             # frames per live model call (latency: look-ahead + one batch + encode)
    live_adaptive_batch: bool = True     # live batches of 1 frame up to live_batch_size, by the load (lower latency)
    live_lead_ms: float = 0.0            # how early a live batch is rendered before it is sent; 0 = adaptive
    live_jpeg_quality: int = 85          # JPEG quality of WebSocket live frames
    # model batching (the dub settings themselves, batch_size included, are in ``inference``)
    max_batch_frames: int = 32           # frames of several jobs merged into one model call
    batch_wait_ms: float = 5.0           # how long the model worker waits for more frames to merge
    # lifetimes
    result_ttl_s: float = 3600.0         # finished async results are deleted after this long
    shutdown_grace_s: float = 30.0       # on shutdown, seconds running jobs get to finish before they are cancelled
    template_memory: int = 8             # prepared templates kept in memory (the rest reload from disk cache)
    log_level: str = "info"              # debug | info | warning | error
    # a Ray cluster (docs/cluster.md); unset: one machine, and Ray is never imported
    ray: str = ""                        # Ray address: auto (the cluster `ray start` joined), local, or HOST:PORT
    replicas: int = 2                    # --ray: model replicas (each one model, batcher and job slots)
    gpus_per_replica: float = 0.0        # --ray: GPUs each replica reserves (1 on a GPU cluster; 0 = CPU)
    cpus_per_replica: float = 1.0        # --ray: CPU cores each replica reserves (also its --threads when unset)
    # --ray: templates and results in S3-compatible object storage (fsspec URL, e.g. s3://bucket/lawdnet) instead
    # of data_dir on a filesystem every node mounts at the same path
    store_url: str = ""
    # how every dub is made (device, batch_size, mouth size / front-end of official checkpoints, threads, ...);
    # its cache_dir is always the server's own (data_dir)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    extra: dict = field(default_factory=dict)

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get(API_KEY_ENV, "")

    def validate(self) -> "ServerConfig":
        self.inference.validate()
        if not self.checkpoint:
            raise UserError("--checkpoint is required")
        if not os.path.isfile(self.checkpoint):
            raise UserError(f"{self.checkpoint}: checkpoint file not found")
        for name in ("max_audio_mb", "max_video_mb", "max_audio_seconds", "batch_wait_ms", "result_ttl_s",
                      "shutdown_grace_s", "max_template_seconds", "template_face_search_seconds"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= int(self.live_jpeg_quality) <= 100:
            raise UserError(f"--live_jpeg_quality must be 1-100, got {self.live_jpeg_quality}")
        for name in ("session_idle_timeout_s", "live_lead_ms"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_active_jobs", "max_template_jobs", "max_batch_frames", "template_memory",
                     "max_sessions", "live_batch_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise UserError(f"--max_queue must be >= 0, got {self.max_queue}")
        if int(self.replicas) < 1 or self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            raise UserError("--replicas must be >= 1 and --gpus_per_replica / --cpus_per_replica >= 0")
        if not 0 <= int(self.port) < 65536:
            raise UserError(f"--port must be 0-65535, got {self.port}")
        return self

    @classmethod
    def field_names(cls) -> list[str]:
        """The server's own settings (the dub settings are ``InferenceConfig``'s fields)."""
        return [f.name for f in fields(cls) if f.name not in ("extra", "inference")]


def from_dict(d: Optional[dict] = None, **kw) -> ServerConfig:
    """A ServerConfig from flat settings: the server's fields and InferenceConfig's (or ``inference=`` an
    InferenceConfig / dict)."""
    d = {**(d or {}), **kw}
    inf = d.pop("inference", None) or {}
    inf = dataclasses.asdict(inf) if isinstance(inf, InferenceConfig) else dict(inf)
    inf_names = {f.name for f in fields(InferenceConfig)}
    inf.update({k: d.pop(k) for k in list(d) if k in inf_names and k not in ServerConfig.field_names()})
    unknown = (set(d) - set(ServerConfig.field_names())) | (set(inf) - inf_names)
    if unknown:
        raise UserError(f"unknown server settings: {', '.join(sorted(unknown))}")
    return ServerConfig(**d, inference=InferenceConfig(**inf))
