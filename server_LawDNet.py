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
import logging

from utils.threads import prefer_passive_waiting

prefer_passive_waiting()   # before torch is imported (utils/threads.py)

from server.app import create_app  # noqa: E402,F401  (re-exported: tests and ASGI hosts import it from here)
from config.config import InferenceConfig, add_arguments, from_args  # noqa: E402
from server.config import ServerConfig  # noqa: E402
from utils.errors import UserError, cli_main  # noqa: E402

# Lazy import below: uvicorn loads only to serve (--help and configuration errors answer without it).


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="LawDNet HTTP dubbing server")
    add_arguments(p, ServerConfig, skip=("extra", "inference"))
    add_arguments(p.add_argument_group("dub settings (InferenceConfig)"), InferenceConfig, skip=("cache_dir",))
    return p


def config_from_args(argv=None) -> ServerConfig:
    args = build_parser().parse_args(argv)
    cfg = from_args(ServerConfig, args)
    cfg.inference = from_args(InferenceConfig, args)
    return cfg.validate()


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
    if cfg.ray:   # a Ray cluster (docs/cluster.md); Ray is imported only here
        from server.ray_serve import serve_on_ray

        return serve_on_ray(cfg)
    try:
        serve(cfg)
    except OSError as e:  # port in use, permission denied
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port}: {e}") from None


if __name__ == "__main__":
    cli_main(main)
