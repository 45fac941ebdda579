"""Live-dubbing benchmark: 1 / 2 / 4 sessions streaming speech at real time over loopback WebSockets at once;
per-frame latency p50 / p95, frames/s delivered, dropped frames, A/V offset of the recordings.

    python benchmarks/bench_stream.py                                  # tiny model (m=64), CPU, own server
    python benchmarks/bench_stream.py --checkpoint model.pth --device cuda:0 --video face.mp4   # e.g. m = 288
    python benchmarks/bench_stream.py --features                       # live vs offline feature difference
    python benchmarks/bench_stream.py --soak 600                       # one session, TTS-like bursts, interrupts

--soak SECONDS runs one session that long: utterances of 1.5-4 s of speech sent at real time, pauses of 0.5-2 s,
every 4th utterance cut off half-way by an interrupt. It prints per minute the speech frames, latency p50 / p95
and dropped frames, then the A/V offset of the first and the last minute's recording, the RSS of the process
(server + client) after the first minute and at the end, and interrupt -> first idle frame.

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


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(url, tid, seconds: float, seed: int = 0) -> dict:
    """One live session for ``seconds``: bursts, pauses and interrupts (see the module doc); returns the results."""
    import bisect
    import collections
    import gc
    import random

    import numpy as np

    from client_LawDNet import LiveStream, Recording
    from evaluation.stream_sync import av_offset
    from utils import live_protocol as proto
    from utils.synthetic.speech import synthesize_speech

    x, sr, _ = synthesize_speech("The quick brown fox jumps over the lazy dog near the river bank. Open the door, "
                                 "and good morning to you all. We will meet again on Thursday afternoon.")
    from scipy.signal import resample_poly

    speech = (np.clip(resample_poly(x, 16000, sr), -1, 1) * 32767).astype("<i2")
    first_frames, last_frames = [], collections.deque(maxlen=60 * proto.FPS)
    minutes = collections.defaultdict(lambda: {"lat": [], "dropped": 0, "frames": 0})
    chunk_ends, chunk_sent = [], []           # cumulative pushed samples after each chunk, its send time
    pending = collections.deque()             # interrupt times waiting for their first idle frame
    idle_after = []
    t_start = [None]

    def on_frame(r):
        h = r.head
        if t_start[0] is None:
            t_start[0] = r.at
        m = minutes[int((r.at - t_start[0]) // 60)]
        m["frames"] += 1
        m["dropped"] += int(h["dropped"])
        if h["speech"] and chunk_ends:
            i = bisect.bisect_left(chunk_ends, h["audio_pos"] + h["audio_samples"])
            if i < len(chunk_sent):
                m["lat"].append(1000 * (r.at - chunk_sent[i]))
        if pending:
            if h.get("idle"):
                idle_after.append(1000 * (r.at - pending.popleft()))
        if len(first_frames) < 60 * proto.FPS:
            first_frames.append(r)
        else:
            last_frames.append(r)

    rng = random.Random(seed)
    stream = LiveStream(url, tid, keep_frames=False, on_frame=on_frame)
    pos, n_utt, n_int = 0, 0, 0
    rss_start = None
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            length = int(rng.uniform(1.5, 4.0) * 16000)
            a = rng.randrange(0, max(1, len(speech) - length))
            utt = np.resize(speech[a:], length) if a + length > len(speech) else speech[a:a + length]
            cut = n_utt % 4 == 3
            stop = length // 2 if cut else length
            ts = time.monotonic()
            for i, c in enumerate(range(0, stop, 640)):
                delay = ts + i * 0.04 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                chunk = utt[c:min(c + 640, stop)]
                chunk_ends.append(pos + len(chunk))
                chunk_sent.append(stream.send_pcm(chunk.tobytes()))
                pos += len(chunk)
            if cut:
                pending.append(stream.interrupt())
                n_int += 1
            else:
                stream.end()
            n_utt += 1
            time.sleep(rng.uniform(0.5, 2.0))
            if rss_start is None and time.monotonic() - t0 > 60:
                gc.collect()
                rss_start = _rss_mb()
        time.sleep(1.0)
        gc.collect()
        rss_end = _rss_mb()
    finally:
        stream.close()
    server = (stream.closed or {}).get("stats", {})
    box = stream.session.get("mouth_box")

    def offset(frames):
        rec = Recording(list(frames))
        import cv2

        pics = np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for j in rec.jpegs])
        return av_offset(pics, rec.audio, box, repeated=rec.repeated).get("offset_frames")

    return {"seconds": seconds, "utterances": n_utt, "interrupts": n_int,
            "minutes": [{"minute": k, "frames": v["frames"], "speech_frames": len(v["lat"]),
                         "p50": float(np.percentile(v["lat"], 50)) if v["lat"] else None,
                         "p95": float(np.percentile(v["lat"], 95)) if v["lat"] else None,
                         "dropped": v["dropped"]} for k, v in sorted(minutes.items())],
            "av_offset_start": offset(first_frames), "av_offset_end": offset(last_frames),
            "rss_start_mb": rss_start if rss_start is not None else rss_end, "rss_end_mb": rss_end,
            "interrupt_to_idle_ms": idle_after, "server": server}


def format_soak(r) -> str:
    import numpy as np

    lines = ["| minute | frames | speech frames | latency p50 (ms) | latency p95 (ms) | dropped |",
             "|---|---|---|---|---|---|"]
    for m in r["minutes"]:
        f = (lambda v: "-" if v is None else f"{v:.0f}")
        lines.append(f"| {m['minute'] + 1} | {m['frames']} | {m['speech_frames']} | {f(m['p50'])} | {f(m['p95'])} | "
                     f"{m['dropped']} |")
    ia = r["interrupt_to_idle_ms"]
    growth = 100 * (r["rss_end_mb"] / r["rss_start_mb"] - 1) if r["rss_start_mb"] else 0.0
    s = r["server"]
    lines += ["", "| | start | end |", "|---|---|---|",
              f"| A/V offset (frames, + = picture after sound) | {r['av_offset_start']:+.2f} | "
              f"{r['av_offset_end']:+.2f} |",
              f"| RSS (MB, server + client; start = after the first minute) | {r['rss_start_mb']:.0f} | "
              f"{r['rss_end_mb']:.0f} ({growth:+.1f} %) |",
              "", f"{r['utterances']} utterances, {r['interrupts']} interrupts; interrupt -> first idle frame "
              f"received: p50 {np.median(ia) if ia else float('nan'):.0f} ms, max {max(ia) if ia else float('nan'):.0f}"
              f" ms; server: {s.get('frames_sent', 0)} frames sent, {s.get('frames_dropped', 0)} dropped, "
              f"{s.get('frames_late', 0)} late, {s.get('underruns', 0)} underruns, "
              f"{s.get('batches_skipped', 0)} batches skipped"]
    return "\n".join(lines)


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
                     "av_offset": max(abs(r["av_offset_frames"] or 0) for r in results),
                     "batches": {b: sum(r["server"].get(f"batches_of_{b}", 0) for r in results) for b in range(1, 17)}})
    return rows


def format_rows(rows) -> str:
    head = "| sessions | latency p50 (ms) | latency p95 (ms) | frames/s delivered (all sessions, incl. repeats) | speech frames | dropped | underruns | worst A/V offset (frames) | batches rendered, by size |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sizes = ", ".join(f"{n}x{b}" for b, n in sorted(r["batches"].items()) if n)
        lines.append(f"| {r['sessions']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['frames_per_s']:.1f} | "
                     f"{r['speech_frames']} | {r['dropped']} | {r['underruns']} | {r['av_offset']:.2f} | {sizes} |")
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
    p.add_argument("--no_adaptive", action="store_true", help="fixed batches of --batch_size (no adaptive batch)")
    p.add_argument("--features", action="store_true", help="print the streaming feature difference table only")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="one session this long with bursts, pauses and interrupts (drift, memory, latency per minute)")
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
                                "live_adaptive_batch": not args.no_adaptive, "session_idle_timeout_s": 600,
                                "max_batch_frames": max(32, args.batch_size * max(args.sessions))})
        with LawDNetClient(server.url, retries=0) as c:
            tid = c.upload_template(video)["template_id"]
        load = os.getloadavg()[0]
        mode = f"fixed batch {args.batch_size}" if args.no_adaptive else f"adaptive batch 1-{args.batch_size}"
        if args.soak:
            r = soak(server.url, tid, args.soak)
            print(f"soak: {args.soak:.0f} s, one session, {mode}, device {args.device}, load average at start "
                  f"{load:.2f}, at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
            print(format_soak(r))
            return r
        rows = run_levels(server.url, tid, audio, args.sessions, work)
        print(f"{args.audio_seconds:.1f} s of speech per session, 40 ms chunks, {mode}, device {args.device}, "
              f"load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
        print(format_rows(rows))
        return rows
    finally:
        if server is not None:
            server.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    cli_main(main)
