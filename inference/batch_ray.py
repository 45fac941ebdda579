"""The Ray part of batch dubbing (inference/batch.py ``--ray``); imported only then.

1. Each distinct template is analysed once, as one Ray task per template, into the shared landmark cache
   (``--cache_dir``, default ``out_dir/.cache``); a template that fails (no face, not a video, missing) fails its
   rows with that one line and is never sent to a worker.
2. ``--workers`` actors, one model each, dub the rows (grouped by template, so a worker prepares a template from
   the cache once for a run of its rows); at most two rows are in flight per worker. A worker that dies (node lost,
   SIGKILL) is restarted by Ray (``max_restarts=-1``) and its rows go to another worker: every output is written
   under a temporary name and renamed when complete, so a half-written row leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import ray
from ray.exceptions import RayActorError, RayTaskError

from inference.batch import BatchOptions, Row, TemplateCache, describe_error, run_row
from utils.errors import UserError

# Lazy imports below: they run inside Ray workers, so the model stack loads where the rows are dubbed.

log = logging.getLogger("lawdnet.batch")
_MAX_LOSSES = 3          # a row whose worker died this many times fails (it may be what kills them)


def _analyse(path: str, cfg_dict: dict):
    """Landmarks of one template into the shared cache; None or the error line."""
    from inference.template import prepare_template
    from utils.errors import UserError

    try:
        if not os.path.isfile(path):
            raise UserError(f"{path}: template file not found")
        prepare_template(path, cache_dir=cfg_dict["cache_dir"], use_cache=True, progress=False)
        return None
    except Exception as e:
        return describe_error(e)


class DubWorker:
    def __init__(self, checkpoint: str, cfg_dict: dict):
        from config.config import InferenceConfig
        from inference.dubber import Dubber

        self.dubber = Dubber(checkpoint, InferenceConfig(**cfg_dict), progress=False)
        self.templates = TemplateCache(self.dubber)

    def dub(self, row: dict) -> dict:
        return run_row(self.templates, Row(**row))

    def pid(self) -> int:
        return os.getpid()


def connect(address: str) -> None:
    if ray.is_initialized():
        return
    # Ray's workers import this repository from the same path on every node (docs/cluster.md)
    env = {"env_vars": {"PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}}
    try:
        if address == "local":
            ray.init(include_dashboard=False, runtime_env=env)
        else:
            ray.init(address=address, runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"--ray {address}: cannot join the Ray cluster ({str(e).strip().splitlines()[0]}); start "
                        f"it with `ray start --head` (docs/cluster.md) or use --ray local") from None


def run_ray(rows: list[Row], opts: BatchOptions, on_result) -> None:
    connect(opts.ray)
    cfg = opts.inference
    if not cfg.threads and opts.cpus_per_worker >= 1:
        cfg = dataclasses.replace(cfg, threads=int(opts.cpus_per_worker))
    cfg_dict = dataclasses.asdict(cfg)

    # 1. every template once
    analyse = ray.remote(num_cpus=max(opts.cpus_per_worker, 0.01))(_analyse)
    paths = list(dict.fromkeys(r.template for r in rows if r.template))
    errors = dict(zip(paths, ray.get([analyse.remote(p, cfg_dict) for p in paths])))
    todo = []
    for r in rows:
        err = errors.get(r.template)
        if err:
            on_result(r, {"ok": False, "error": err})
        else:
            todo.append(r)
    if not todo:
        return

    # 2. the rows, over restartable workers
    n = opts.workers
    if n <= 0:
        res = ray.available_resources()
        n = int(res.get("GPU", 0) // opts.gpus_per_worker) if opts.gpus_per_worker else \
            int(res.get("CPU", 1) // max(opts.cpus_per_worker, 0.01))
    n = max(1, min(n, len(todo)))
    worker = ray.remote(DubWorker).options(max_restarts=-1, num_cpus=opts.cpus_per_worker,
                                           num_gpus=opts.gpus_per_worker)
    workers = [worker.remote(opts.checkpoint, cfg_dict) for _ in range(n)]
    queue = list(todo)
    # keep a template's rows on one worker while others take other templates: hand out contiguous runs
    inflight: dict = {}          # ref -> (worker index, row)
    load = [0] * n
    losses: dict = {}
    try:
        while queue or inflight:
            for k in range(n):
                while queue and load[k] < 2:
                    row = queue.pop(0)
                    ref = workers[k].dub.remote(dataclasses.asdict(row))
                    inflight[ref] = (k, row)
                    load[k] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                k, row = inflight.pop(ref)
                load[k] -= 1
                try:
                    on_result(row, ray.get(ref))
                except RayActorError:
                    losses[row.line] = losses.get(row.line, 0) + 1
                    log.warning("worker %d was lost while dubbing line %d; the row goes to another worker", k,
                                row.line)
                    if losses[row.line] >= _MAX_LOSSES:
                        on_result(row, {"ok": False, "error": f"the worker dubbing it died {_MAX_LOSSES} times"})
                    else:
                        queue.insert(0, row)
                        time.sleep(0.5)
                except RayTaskError as e:
                    on_result(row, {"ok": False, "error": describe_error(e)})
    finally:
        for w in workers:
            ray.kill(w, no_restart=True)
