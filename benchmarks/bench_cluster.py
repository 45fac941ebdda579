"""The dubbing service and batch dubbing on a Ray cluster: 1 vs 2 replicas / workers (docs/cluster.md).

    python benchmarks/bench_cluster.py [--requests 8] [--concurrency 4] [--rows 8] [--seconds 3]

Starts a local, loopback-only Ray cluster and measures, with the tiny random model (m=64) on CPU:

* the offline API through Ray Serve (synchronous ``POST /v1/dub`` of ``--seconds`` of speech, ``--concurrency``
  clients, ``--requests`` dubs): dubs/s, frames/s, p50 / p95 latency, for 1 replica x 1 core, 1 replica x 2 cores
  and 2 replicas x 1 core;
* batch dubbing (``inference.batch``) of ``--rows`` rows: on this machine without Ray (all cores), and on Ray with
  1 and 2 workers x 1 core: rows/s, frames/s, p95 seconds per row.

Prints a markdown table. On a 2-core machine the two replicas share the same two cores that one replica with two
threads uses, so the gain shows the parallelism of the pipeline, not more hardware; on GPU nodes each replica has
its own GPU and throughput grows with the number of replicas until the storage or the network is the limit.
"""
import argparse
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # loopback-only cluster (read when ray is imported)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def _assets(root, seconds):
    import numpy as np

    from utils.media.audio_io import save_wav
    from models.tiny import write_tiny_checkpoint
    from utils.synthetic.speech import synthesize_speech
    from utils.synthetic.talking_head import make_talking_head

    ckpt = write_tiny_checkpoint(os.path.join(root, "tiny.pth"))
    video = make_talking_head(os.path.join(root, "face.mp4"), "Hello there, how are you?", size=128,
                              head_motion=0.3, preset="veryfast")["video"]
    x, sr, _ = synthesize_speech("The quick brown fox jumps over the lazy dog near the river bank.")
    n = int(seconds * sr)
    x = np.tile(np.concatenate([x, np.zeros(sr // 5, np.float32)]), n // len(x) + 2)[:n]
    audio = os.path.join(root, "speech.wav")
    save_wav(audio, x, sr)
    return ckpt, video, audio


def bench_service(ckpt, video, audio, root, replicas, cores, requests, concurrency):
    from ray import serve

    from client_LawDNet import LawDNetClient
    from server import ray_serve
    from server.config import from_dict

    cfg = from_dict(checkpoint=ckpt, device="cpu", data_dir=os.path.join(root, f"shared-{replicas}-{cores}"),
                    host="127.0.0.1", port=_free_port(), replicas=replicas, cpus_per_replica=cores, batch_size=8,
                    shutdown_grace_s=5, log_level="warning").validate()
    try:
        ray_serve.start(cfg)
        url = f"http://127.0.0.1:{cfg.port}"
        c = LawDNetClient(url, retries=0, timeout=600)
        c.wait_until_up(300)
        tid = c.upload_template(video)["template_id"]
        c.dub(tid, audio, os.path.join(root, "warm.mp4"))          # warm-up: template in memory, first batch
        if replicas > 1:
            with ThreadPoolExecutor(replicas) as pool:
                list(pool.map(lambda i: LawDNetClient(url, retries=0, timeout=600).dub(
                    tid, audio, os.path.join(root, f"warm{i}.mp4")), range(replicas)))

        def one(i):
            t0 = time.perf_counter()
            r = LawDNetClient(url, retries=0, timeout=600).dub(tid, audio, os.path.join(root, f"o{i}.mp4"))
            return time.perf_counter() - t0, r["frames"]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            res = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        c.close()
    finally:
        ray_serve.stop(cfg)
        serve.shutdown()
    lat = [r[0] for r in res]
    return {"dubs/s": len(res) / wall, "frames/s": sum(r[1] for r in res) / wall, "p50 s": _pct(lat, 0.5),
            "p95 s": _pct(lat, 0.95)}


def bench_batch(ckpt, video, audio, root, rows, ray_address, workers):
    import csv

    from config.config import InferenceConfig
    from inference.batch import BatchOptions, run_batch

    d = tempfile.mkdtemp(dir=root, prefix="batch-")
    man = os.path.join(d, "jobs.csv")
    with open(man, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["template", "audio", "output"])
        for i in range(rows):
            w.writerow([video, audio, f"out{i}.mp4"])
    opts = BatchOptions(checkpoint=ckpt, out_dir=os.path.join(d, "out"), ray=ray_address, workers=workers,
                        inference=InferenceConfig(device="cpu"), progress=False)
    t0 = time.perf_counter()
    done = run_batch(man, opts)
    wall = time.perf_counter() - t0
    assert all(r.status == "dubbed" for r in done), [r.error for r in done]
    return {"dubs/s": rows / wall, "frames/s": sum(r.frames for r in done) / wall, "p50 s": _pct(
        [r.seconds for r in done], 0.5), "p95 s": _pct([r.seconds for r in done], 0.95)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    import ray

    root = tempfile.mkdtemp(prefix="bench_cluster-")
    ckpt, video, audio = _assets(root, args.seconds)
    table = []
    table.append(("batch, one machine, no Ray (all cores)", bench_batch(ckpt, video, audio, root, args.rows, "", 0)))
    ray.init(num_cpus=2, include_dashboard=False, namespace="lawdnet", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    try:
        for replicas, cores in ((1, 1), (1, 2), (2, 1)):
            name = f"service, {replicas} replica{'s' if replicas > 1 else ''} x {cores} core{'s' if cores > 1 else ''}"
            table.append((name, bench_service(ckpt, video, audio, root, replicas, cores, args.requests,
                                              args.concurrency)))
            print(name, table[-1][1], flush=True)
        for workers in (1, 2):
            name = f"batch on Ray, {workers} worker{'s' if workers > 1 else ''} x 1 core"
            table.append((name, bench_batch(ckpt, video, audio, root, args.rows, "auto", workers)))
            print(name, table[-1][1], flush=True)
    finally:
        ray.shutdown()
    print(f"\n{args.requests} sync dubs at concurrency {args.concurrency} / {args.rows} batch rows, "
          f"{args.seconds:g} s of speech each (tiny model, m=64, CPU; dubs/s = rows/s for batch; batch latency "
          f"= seconds per row in its worker)\n")
    print("| configuration | dubs/s | frames/s | p50 s | p95 s |")
    print("|---|---|---|---|---|")
    for name, r in table:
        print(f"| {name} | {r['dubs/s']:.2f} | {r['frames/s']:.1f} | {r['p50 s']:.2f} | {r['p95 s']:.2f} |")


if __name__ == "__main__":
    main()
