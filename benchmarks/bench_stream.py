"""Live-dubbing benchmark: 1 / 2 / 4 sessions streaming speech at real time over loopback WebSockets at once;
per-frame latency p50 / p95, frames/s delivered, dropped frames, A/V offset of the recordings.

    python benchmarks/bench_stream.py                                  # tiny model (m=64), CPU, own server
    python benchmarks/bench_stream.py --checkpoint model.pth --device cuda:0 --video face.mp4   # e.g. m = 288
    python benchmarks/bench_stream.py --features                       # live vs offline feature difference

Without --checkpoint the tiny audio-sensitive random LawDNet of models/tiny.py is used (the cost of a
real m = 64 model, not its quality). --features measures how far streaming DeepSpeech2 / HuBERT features are
from the offline ones with small weights written in the official formats (the real weights are not available).
"""
import argparse
import os
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_main  # noqa: E402
from utils.media.timebase import SAMPLE_RATE  # noqa: E402


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


def _speech(path, seconds):
    import numpy as np

    from utils.media.audio_io import save_wav
    from utils.synthetic.speech import synthesize_speech

    x, sr, _ = synthesize_speech("The quick brown fox jumps over the lazy dog near the river bank.")
    n = int(seconds * sr)
    x = np.tile(np.concatenate([x, np.zeros(sr // 5, np.float32)]), n // len(x) + 2)[:n]
    save_wav(path, x, sr)
    return path


def run_levels(url, tid, audio, levels, work):
    import numpy as np

    from client_LawDNet import stream_audio

    rows = []
    for n in levels:
        results = [None] * n

        def one(i):
            results[i] = stream_audio(url, tid, audio, os.path.join(work, f"s{n}_{i}.mp4"))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if any(r is None for r in results):
            raise UserError(f"a stream failed at {n} sessions")
        lat = [r["latency_ms"] for r in results]
        rows.append({"sessions": n, "p50_ms": float(np.median([x["p50"] for x in lat])),
                     "p95_ms": float(max(x["p95"] for x in lat)),
                     "frames_per_s": sum(r["frames_received"] for r in results) / wall,
                     "speech_frames": sum(r["speech_frames_delivered"] for r in results),
                     "dropped": sum(r["frames_dropped"] for r in results),
                     "underruns": sum(r["server"].get("underruns", 0) for r in results),
                     "av_offset": max(abs(r["av_offset_frames"] or 0) for r in results)})
    return rows


def format_rows(rows) -> str:
    head = "| sessions | latency p50 (ms) | latency p95 (ms) | frames/s delivered (all sessions, incl. repeats) | speech frames | dropped | underruns | worst A/V offset (frames) |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sessions']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['frames_per_s']:.1f} | "
                     f"{r['speech_frames']} | {r['dropped']} | {r['underruns']} | {r['av_offset']:.2f} |")
    return "\n".join(lines)


def feature_table(work) -> str:
    """Live vs offline features of 5 s of speech, 4-frame chunks, default contexts and a few others."""
    import numpy as np
    import torch
    from scipy.signal import resample_poly

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from ds2_reference import tiny_ds2_state, write_ds2_checkpoint
    from transformers import HubertConfig, HubertModel

    from utils.audio.features import get_frontend
    from utils.audio.mel import MelFrontEnd
    from utils.audio.streaming import DEFAULT_CONTEXT, feature_difference
    from utils.synthetic.speech import synthesize_speech

    x, sr, _ = synthesize_speech("Open the door. Good morning to you. The quick brown fox jumps over the lazy dog.")
    x = resample_poly(x, SAMPLE_RATE, sr).astype(np.float32)
    ds2 = os.path.join(work, "ds2.ckpt")
    write_ds2_checkpoint(ds2, tiny_ds2_state())
    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                       conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    hub = os.path.join(work, "hubert")
    HubertModel(cfg).eval().save_pretrained(hub)
    fronts = {"mel": MelFrontEnd(), "deepspeech2": get_frontend("deepspeech2", ds2),
              "hubert": get_frontend("hubert", hub)}
    lines = ["| front-end | left context | right context (added latency) | mean abs diff / mean abs offline | max abs diff |",
             "|---|---|---|---|---|"]
    for name, fe in fronts.items():
        dl, dr = DEFAULT_CONTEXT[name]
        for left, right in sorted({(0, 0), (dl, dr), (dl, 2 * dr), (2 * dl, dr)}):
            d = feature_difference(fe, x, 4, left, right)
            tag = " (default)" if (left, right) == (dl, dr) else ""
            lines.append(f"| {name}{tag} | {left} frames ({left * 40} ms) | {d['right_ms']:.1f} ms | "
                         f"{d['relative']:.4f} | {d['max_abs']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="", help="model (default: the tiny audio-sensitive random one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--video", default="", help="template video (default: a synthetic still-head talking head)")
    p.add_argument("--audio_seconds", type=float, default=6.0)
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--batch_size", type=int, default=4, help="--live_batch_size of the server")
    p.add_argument("--features", action="store_true", help="print the streaming feature difference table only")
    args = p.parse_args(argv)
    if any(n < 1 or n > 16 for n in args.sessions):
        raise UserError("--sessions values must be 1-16")
    work = tempfile.mkdtemp(prefix="bench_stream_")
    server = None
    try:
        if args.features:
            table = feature_table(work)
            print(table)
            return table
        from client_LawDNet import LawDNetClient
        from models.tiny import write_tiny_checkpoint

        video = args.video
        if not video:
            from utils.synthetic.talking_head import make_talking_head
            video = make_talking_head(os.path.join(work, "face.mp4"), "Hello there, nice to meet you.", size=160,
                                      head_motion=0.0, preset="veryfast")["video"]
        audio = _speech(os.path.join(work, "speech.wav"), args.audio_seconds)
        ckpt = args.checkpoint or write_tiny_checkpoint(os.path.join(work, "tiny.pth"))
        server = _ThreadServer({"checkpoint": ckpt, "device": args.device, "data_dir": os.path.join(work, "data"),
                                "max_sessions": max(args.sessions), "live_batch_size": args.batch_size,
                                "max_batch_frames": max(32, args.batch_size * max(args.sessions))})
        with LawDNetClient(server.url, retries=0) as c:
            tid = c.upload_template(video)["template_id"]
        rows = run_levels(server.url, tid, audio, args.sessions, work)
        print(f"{args.audio_seconds:.1f} s of speech per session, 40 ms chunks, live batch {args.batch_size}, "
              f"device {args.device}")
        print(format_rows(rows))
        return rows
    finally:
        if server is not None:
            server.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    cli_main(main)
