"""``python server_LawDNet.py --ray ADDRESS --replicas N [--gpus_per_replica 1]``: the dubbing service on a Ray
cluster (docs/cluster.md).

Ray Serve runs the HTTP API of server/app.py (the same routes, limits, API key and errors as on one machine) as a
deployment, the gateway, whose service object is server/cluster.py's ``ClusterService``; Serve's proxy listens on
``--host``/``--port`` of the head node. The gateway starts ``--replicas`` model replicas as named Ray actors
(server/replica.py), which Ray places on any node with the resources they ask for. Imported only under ``--ray``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

from server.config import ServerConfig, from_dict
from utils.errors import UserError

# Lazy imports below: Ray loads only under --ray; the app and the cluster service load inside the Serve
# replica that runs them.

log = logging.getLogger("lawdnet.server")
APP_NAME = "lawdnet"


def _config_dict(cfg: ServerConfig) -> dict:
    d = {k: getattr(cfg, k) for k in cfg.field_names()}
    d["inference"] = dataclasses.asdict(cfg.inference)
    return d


def gateway_app(cfg: ServerConfig):
    """The Serve application (bind()-ed gateway deployment) for ``cfg``."""
    from ray import serve

    config = _config_dict(cfg)

    def build():   # runs in the gateway's replica process: the FastAPI app around a ClusterService
        from server.app import create_app
        from server.cluster import ClusterService

        return create_app(from_dict(config), service_factory=ClusterService)

    capacity = int(cfg.replicas) * (int(cfg.max_active_jobs) + int(cfg.max_queue)) + 256

    @serve.deployment(name="lawdnet-gateway", num_replicas=1, max_ongoing_requests=capacity,
                      ray_actor_options={"num_cpus": 0}, health_check_timeout_s=60,
                      graceful_shutdown_timeout_s=max(1.0, float(cfg.shutdown_grace_s)))
    @serve.ingress(build)
    class LawDNetGateway:
        pass

    return LawDNetGateway.bind()


def connect(address: str, **init_kw) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one `ray start` set up on this node; ``local``: start
    one here); nothing if this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    # Ray's workers import this repository from the same path on every node (docs/cluster.md)
    env = {"env_vars": {"PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}}
    try:
        if address == "local":
            ray.init(namespace="lawdnet", include_dashboard=False, runtime_env=env, **init_kw)
        else:
            ray.init(address=address, namespace="lawdnet", runtime_env=env, **init_kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"--ray {address}: cannot join the Ray cluster ({str(e).strip().splitlines()[0]}); start "
                        f"it with `ray start --head` (docs/cluster.md) or use --ray local") from None


def start(cfg: ServerConfig, wait: bool = True):
    """Deploy the service on the connected cluster; returns the Serve handle. Blocks until the replicas are up."""
    from ray import serve

    serve.start(http_options={"host": cfg.host, "port": int(cfg.port)})
    return serve.run(gateway_app(cfg), name=APP_NAME, route_prefix="/", blocking=False)


def stop(cfg: ServerConfig) -> None:
    """Undeploy the gateway (it drains its jobs for --shutdown_grace_s) and end the model replicas."""
    import ray
    from ray import serve

    from server.cluster import NAMESPACE, replica_name

    try:
        serve.delete(APP_NAME)
    except Exception:
        log.exception("could not delete the Serve application")
    for k in range(int(cfg.replicas)):
        try:
            ray.kill(ray.get_actor(replica_name(k), namespace=NAMESPACE), no_restart=True)
        except ValueError:    # not there
            pass


def serve_on_ray(cfg: ServerConfig) -> None:
    """The foreground command: deploy, then wait for Ctrl-C / SIGTERM, then shut everything down."""
    import signal

    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.resolved_api_key():
        log.warning("listening on %s without an API key", cfg.host)
    connect(cfg.ray)
    stopping = {"flag": False}

    def on_term(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        start(cfg)
        log.info("serving on http://%s:%s with %d replicas (Ctrl-C to stop)", cfg.host, cfg.port, cfg.replicas)
        while not stopping["flag"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(cfg)
