"""HTTP dubbing server: upload a template video once, then dub it with any speech.

    python server_LawDNet.py --checkpoint model.pth [--host 127.0.0.1] [--port 8000] [--device cpu|cuda:N]
        [--data_dir ./server_data] [--api_key KEY] [--max_queue 16] [--max_active_jobs 4] ...

API (details at http://HOST:PORT/docs): POST /v1/templates (video) -> template id; POST /v1/dub (template_id +
audio) -> mp4, or a job id with async=true; GET /v1/jobs/{id}, GET /v1/jobs/{id}/result; GET /healthz,
GET /metrics; live dubbing: WS /v1/live/ws, POST /v1/live/offer (WebRTC), the web page at /. The API key may
also come from the environment variable LAWDNET_API_KEY.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging

from utils.threads import prefer_passive_waiting

prefer_passive_waiting()   # before torch is imported (utils/threads.py)

from server.app import create_app  # noqa: E402,F401  (re-exported: tests and ASGI hosts import it from here)
from server.config import ServerConfig  # noqa: E402
from utils.errors import UserError, cli_main  # noqa: E402

# Lazy import below: uvicorn loads only to serve (--help and configuration errors answer without it).

_HELP = {
    "checkpoint": "LawDNet checkpoint (ours or official)",
    "device": "cpu or cuda:N (default: cuda if available, else cpu)",
    "data_dir": "folder for templates, the landmark cache and job work folders",
    "api_key": "require this key (Authorization: Bearer KEY or X-API-Key: KEY); default env LAWDNET_API_KEY",
    "max_audio_mb": "largest audio upload in MB (413 above)",
    "max_video_mb": "largest template upload in MB (413 above)",
    "max_audio_seconds": "longest audio in seconds (422 above; decoding stops there)",
    "max_template_seconds": "longest template video in seconds (422 above; 0 = no limit)",
    "template_face_search_seconds": "refuse a template with no face in this many first seconds (0 = off)",
    "max_template_jobs": "template analyses run at the same time (further uploads wait their turn)",
    "max_queue": "jobs allowed to wait for a worker (503 with Retry-After when full)",
    "max_active_jobs": "jobs rendered at the same time (their frames share model batches)",
    "max_batch_frames": "most frames merged into one model call",
    "shutdown_grace_s": "on shutdown, seconds running jobs get to finish before they are cancelled",
    "result_ttl_s": "seconds an async job's result is kept",
    "max_sessions": "live sessions at the same time (busy / 503 above)",
    "session_idle_timeout_s": "a live session that receives no audio for this many seconds ends",
    "live_batch_size": "frames per live model call (latency ~ 80 ms look-ahead + one batch + render)",
    "live_lead_ms": "render live batches this early before they are sent (0: adaptive)",
    "threads": "CPU cores for decoding, the model and encoding (0 = all; torch's share adapts to the load)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="LawDNet HTTP dubbing server")
    for f in dataclasses.fields(ServerConfig):
        if f.name == "extra":
            continue
        flag = f"--{f.name}"
        if f.type in ("bool", bool):
            p.add_argument(flag, default=f.default, type=lambda s: s.lower() in ("1", "true", "yes", "on"),
                           metavar="true|false", help=_HELP.get(f.name, f"default {f.default}"))
        else:
            conv = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            p.add_argument(flag, type=conv, default=f.default, required=f.name == "checkpoint",
                           help=_HELP.get(f.name, f"default {f.default!r}"))
    return p


def config_from_args(argv=None) -> ServerConfig:
    args = build_parser().parse_args(argv)
    return ServerConfig(**{k: v for k, v in vars(args).items() if k in ServerConfig.field_names()}).validate()


def serve(config: ServerConfig) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (then shut down gracefully)."""
    import uvicorn

    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.resolved_api_key():
        logging.getLogger("lawdnet.server").warning("listening on %s without an API key", config.host)
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level,
                timeout_graceful_shutdown=max(1, int(config.shutdown_grace_s)))


def main(argv=None) -> None:
    cfg = config_from_args(argv)
    try:
        serve(cfg)
    except OSError as e:  # port in use, permission denied
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port}: {e}") from None


if __name__ == "__main__":
    cli_main(main)
