"""Load benchmark of the HTTP dubbing server: throughput and p50/p95 latency of synchronous dubs of 5 s of
speech at concurrency 1, 4 and 8, over loopback only.

    python benchmarks/bench_server.py                                 # tiny random model, CPU, own server
    python benchmarks/bench_server.py --checkpoint model.pth --device cuda:0 --video face.mp4
    python benchmarks/bench_server.py --url http://127.0.0.1:8000 --video face.mp4   # an already running server

Without --checkpoint a tiny LawDNet (random weights, m=64) is built: that measures the server's overhead and
batching, not a real model's speed. Requests per level: --requests (default 2 x concurrency, at least 4).
"""
import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_main  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _tiny_checkpoint(path):
    import torch

    from config.config import ModelConfig
    from models import LawDNet
    from models.checkpoint import save_lawdnet

    torch.manual_seed(0)
    cfg = ModelConfig(audio_channel=80, encoder_channels=(8, 16, 32), align_channels=16, attn_dim=32,
                      decoder_channels=16, warp_mode="corrected", coarse_grid_size=16)
    save_lawdnet(path, LawDNet(cfg), audio_feature="mel", mouth_region_size=64)
    return path


def _speech(path, seconds):
    """``seconds`` of espeak-ng speech (repeated sentences, cut to length) as a 16-bit wav."""
    import numpy as np

    from utils.media.audio_io import save_wav
    from utils.synthetic.speech import synthesize_speech

    x, sr, _ = synthesize_speech("The quick brown fox jumps over the lazy dog near the river bank.")
    n = int(seconds * sr)
    x = np.tile(np.concatenate([x, np.zeros(sr // 5, np.float32)]), n // len(x) + 2)[:n]
    save_wav(path, x, sr)
    return path


class _ThreadServer:
    def __init__(self, config):
        import uvicorn

        from server_LawDNet import create_app

        self.app = create_app(config)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise UserError("the server failed to start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=120)


def _pct(xs, q):
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_benchmark(url, video, audio, levels=(1, 4, 8), requests=None, api_key=None, warmup=True) -> list:
    """Measure each concurrency level; returns one dict per level."""
    from client_LawDNet import LawDNetClient
    from utils.media.audio_io import audio_duration

    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise UserError(f"{url}: the benchmark only talks to loopback servers (127.0.0.1, localhost, ::1)")
    audio_s = audio_duration(audio)
    out_dir = tempfile.mkdtemp(prefix="bench_server_")
    with LawDNetClient(url, api_key, retries=0) as c:
        tid = c.upload_template(video)["template_id"]
        if warmup:
            c.dub(tid, audio, os.path.join(out_dir, "warmup.mp4"))
        rows = []
        for conc in levels:
            n = requests or max(4, 2 * conc)
            lat = []

            def one(i):
                with LawDNetClient(url, api_key, retries=0) as cc:
                    t0 = time.perf_counter()
                    r = cc.dub(tid, audio, os.path.join(out_dir, f"c{conc}_{i}.mp4"))
                    lat.append(time.perf_counter() - t0)
                    return r["frames"]

            t0 = time.perf_counter()
            with ThreadPoolExecutor(conc) as pool:
                frames = sum(pool.map(one, range(n)))
            wall = time.perf_counter() - t0
            m = c.metrics()
            rows.append({"concurrency": conc, "requests": n, "wall_s": wall, "req_per_s": n / wall,
                         "audio_s_per_s": n * audio_s / wall, "frames_per_s": frames / wall,
                         "p50_s": _pct(lat, 0.5), "p95_s": _pct(lat, 0.95),
                         "largest_batch": m.get("largest_batch_frames", 0)})
    for name in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, name))
    os.rmdir(out_dir)
    return rows


def format_table(rows, audio_s) -> str:
    head = (f"{'conc':>4} {'reqs':>4} {'wall s':>7} {'req/s':>6} {'audio s/s':>9} {'frames/s':>8} "
            f"{'p50 s':>6} {'p95 s':>6} {'max batch':>9}")
    lines = [f"synchronous dubs of {audio_s:.1f} s of audio", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['concurrency']:>4} {r['requests']:>4} {r['wall_s']:>7.2f} {r['req_per_s']:>6.2f} "
                     f"{r['audio_s_per_s']:>9.2f} {r['frames_per_s']:>8.1f} {r['p50_s']:>6.2f} {r['p95_s']:>6.2f} "
                     f"{r['largest_batch']:>9}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="", help="benchmark this running (loopback) server instead of starting one")
    p.add_argument("--checkpoint", default="", help="model for the server started here (default: tiny random)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--video", default="", help="template video (default: a synthetic talking head)")
    p.add_argument("--audio_seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=0, help="requests per level (default 2 x concurrency, >= 4)")
    p.add_argument("--api_key", default=None)
    args = p.parse_args(argv)
    if any(c < 1 or c > 64 for c in args.concurrency):
        raise UserError("--concurrency values must be 1-64")
    work = tempfile.mkdtemp(prefix="bench_server_work_")
    server = None
    try:
        video = args.video
        if not video:
            from utils.synthetic.talking_head import make_talking_head
            video = make_talking_head(os.path.join(work, "face.mp4"), "Hello there, nice to meet you.", size=160,
                                      head_motion=0.3, preset="veryfast")["video"]
        audio = _speech(os.path.join(work, "speech.wav"), args.audio_seconds)
        url = args.url
        if not url:
            ckpt = args.checkpoint or _tiny_checkpoint(os.path.join(work, "tiny.pth"))
            server = _ThreadServer({"checkpoint": ckpt, "device": args.device,
                                    "data_dir": os.path.join(work, "data"),
                                    "max_active_jobs": max(args.concurrency), "max_queue": max(args.concurrency)})
            url = server.url
        rows = run_benchmark(url, video, audio, args.concurrency, args.requests or None, args.api_key)
        print(format_table(rows, args.audio_seconds))
        return rows
    finally:
        if server is not None:
            server.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    cli_main(main)
