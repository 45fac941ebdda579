"""Settings of the dubbing server (one dataclass; the CLI flags of server_LawDNet.py map 1:1 onto it)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Optional

from utils.errors import UserError

API_KEY_ENV = "LAWDNET_API_KEY"


@dataclass
class ServerConfig:
    checkpoint: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = ""                     # "" -> cuda if available else cpu; "cpu", "cuda:N"
    data_dir: str = "./server_data"      # templates, landmark cache, per-job work folders
    api_key: str = ""                    # "" -> env LAWDNET_API_KEY; still "" -> no authentication
    # limits
    max_audio_mb: float = 50.0           # upload size of one audio (413 above)
    max_video_mb: float = 500.0          # upload size of one template video (413 above)
    max_audio_seconds: float = 600.0     # decoded duration of one audio (422 above)
    max_queue: int = 16                  # jobs waiting for a worker (503 + Retry-After when full)
    max_active_jobs: int = 4             # jobs rendering at the same time (their frames share model batches)
    max_template_jobs: int = 4           # template analyses at the same time (they share the CPU fairly)
    max_template_seconds: float = 600.0  # longest template video (422 above; checked in the header and decoding)
    template_face_search_seconds: float = 10.0   # give up when no face shows in this many first seconds
    # live sessions (server/live.py)
    max_sessions: int = 4                # live sessions at the same time (503 busy above)
    session_idle_timeout_s: float = 60.0 # a live session that gets no audio for this long ends
    live_batch_size: int = 4             # frames per live model call (latency: look-ahead + one batch + encode)
    live_lead_ms: float = 0.0            # how early a live batch is rendered before it is sent; 0 = adaptive
    live_jpeg_quality: int = 85          # JPEG quality of WebSocket live frames
    # model / batching
    batch_size: int = 8                  # frames per job per model call
    max_batch_frames: int = 32           # frames of several jobs merged into one model call
    batch_wait_ms: float = 5.0           # how long the model worker waits for more frames to merge
    amp: bool = True
    cuda_graphs: bool = False
    threads: int = 0                     # CPU cores for decode + model + encode; 0 = all (torch's count tuned)
    mouth_region_size: int = 0           # only for official checkpoints (ours store it)
    audio_feature: str = ""              # only for official checkpoints
    audio_model_path: str = ""
    profile: str = ""                    # preprocessing profile official | lawdnet; "" = the checkpoint's
    amp_dtype: str = ""                  # GPU autocast fp16 | bf16; "" = the profile's
    # lifetimes
    result_ttl_s: float = 3600.0         # finished async results are deleted after this long
    shutdown_grace_s: float = 30.0       # on shutdown, running jobs get this long to finish
    template_memory: int = 8             # prepared templates kept in memory (the rest reload from disk cache)
    log_level: str = "info"
    extra: dict = field(default_factory=dict)

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get(API_KEY_ENV, "")

    def validate(self) -> "ServerConfig":
        if not self.checkpoint:
            raise UserError("--checkpoint is required")
        if not os.path.isfile(self.checkpoint):
            raise UserError(f"{self.checkpoint}: checkpoint file not found")
        for name in ("max_audio_mb", "max_video_mb", "max_audio_seconds", "batch_wait_ms", "result_ttl_s",
                      "shutdown_grace_s", "threads", "max_template_seconds", "template_face_search_seconds"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= int(self.live_jpeg_quality) <= 100:
            raise UserError(f"--live_jpeg_quality must be 1-100, got {self.live_jpeg_quality}")
        for name in ("session_idle_timeout_s", "live_lead_ms"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_active_jobs", "max_template_jobs", "batch_size", "max_batch_frames", "template_memory",
                     "max_sessions", "live_batch_size"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise UserError(f"--max_queue must be >= 0, got {self.max_queue}")
        if not 0 <= int(self.port) < 65536:
            raise UserError(f"--port must be 0-65535, got {self.port}")
        return self

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]


def from_dict(d: Optional[dict] = None, **kw) -> ServerConfig:
    d = {**(d or {}), **kw}
    unknown = set(d) - set(ServerConfig.field_names())
    if unknown:
        raise UserError(f"unknown server settings: {', '.join(sorted(unknown))}")
    return ServerConfig(**d)
