"""End-to-end dubbing benchmark: frames/s, peak RSS and the time per stage, for templates of several lengths.

    python benchmarks/bench_infer.py [--durations 10 60] [--mouth_sizes 64 288] [--widths tiny|official]
                                     [--device cpu|cuda:N] [--batch_size 8] [--json out.json]

For each (mouth size, duration) a synthetic template of that length (a talking head played forward/backward)
and a speech track of the same length are written once, then a fresh process runs
``generate_video_with_audio`` twice: first with an empty template cache (landmark detection included), then
with the cache (the steady-state dubbing cost). The child reports its peak RSS. The table shows frames/s of
both runs, the dubbing time split by stage, the generator-only time and the ratio dub / generator.
Targets: peak RSS for 60 s within 1.3x of 10 s (bounded memory); dub time within 1.5x of generator time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402

TINY = dict(encoder_channels=(16, 32, 64), align_channels=32, attn_dim=64, decoder_channels=32)


def make_inputs(folder, seconds: float, frame_size: int):
    """Template mp4 of ``seconds`` (ping-pong of a synthetic talking head) + a speech wav of the same length."""
    import numpy as np

    from inference.schedule import pingpong_index
    from utils.media.audio_io import load_audio, save_wav
    from utils.synthetic.talking_head import make_talking_head
    from utils.media.video_io import VideoWriter, iter_frames

    base = os.path.join(folder, f"base_{frame_size}.mp4")
    if not os.path.exists(base):
        make_talking_head(base, "Peter bought a big map before the trip to Madrid, and we watched the moon rise.",
                          size=frame_size, preset="ultrafast")
    frames = list(iter_frames(base))
    n = int(round(seconds * FPS))
    video = os.path.join(folder, f"template_{frame_size}_{seconds:g}s.mp4")
    if not os.path.exists(video):
        with VideoWriter(video, fps=FPS, preset="ultrafast", crf=20) as w:
            for k in range(n):
                w.write(frames[pingpong_index(k, len(frames))])
    speech = os.path.join(folder, f"speech_{seconds:g}s.wav")
    if not os.path.exists(speech):
        a = load_audio(base, SAMPLE_RATE)
        save_wav(speech, np.tile(a, int(np.ceil(n * FRAME_SAMPLES / len(a))))[: n * FRAME_SAMPLES], SAMPLE_RATE)
    return video, speech


def make_checkpoint(folder, m: int, widths: str) -> str:
    import torch

    from config.config import ModelConfig
    from models import LawDNet
    from models.checkpoint import save_lawdnet

    path = os.path.join(folder, f"lawdnet_{widths}_m{m}.pth")
    if not os.path.exists(path):
        torch.manual_seed(0)
        cfg = ModelConfig(audio_channel=80, **(TINY if widths == "tiny" else {}))
        save_lawdnet(path, LawDNet(cfg).eval(), audio_feature="mel", mouth_region_size=m)
    return path


def child(args) -> None:
    """Run in a fresh process: uncached then cached dub; print one JSON line with stats and peak RSS."""
    import resource

    from config.config import InferenceConfig
    from inference_function import generate_video_with_audio

    cache = tempfile.mkdtemp(prefix="bench_cache_")
    cfg = InferenceConfig(batch_size=args.batch_size, device=args.device or None, cache_dir=cache,
                          compile=args.compile, cuda_graphs=args.cuda_graphs, preset="veryfast")
    cold = generate_video_with_audio(args.video, args.audio, args.checkpoint, args.output, cfg, progress=False)
    warm = generate_video_with_audio(args.video, args.audio, args.checkpoint, args.output, cfg, progress=False)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB on Linux
    gpu = 0.0
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.max_memory_allocated() / 2 ** 20
    except Exception:
        pass
    print(json.dumps({"cold": cold, "warm": warm, "peak_rss_mib": rss, "peak_gpu_mib": gpu}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--durations", type=float, nargs="+", default=[10, 60])
    p.add_argument("--mouth_sizes", type=int, nargs="+", default=[64, 288])
    p.add_argument("--widths", choices=("tiny", "official"), default="official")
    p.add_argument("--frame_size", type=int, default=0, help="template frame size (0: 2x the crop width)")
    p.add_argument("--device", default="")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cuda_graphs", action="store_true")
    p.add_argument("--work_dir", default="", help="where inputs are kept (default: a temp folder)")
    p.add_argument("--json", default="")
    # child mode
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    p.add_argument("--audio", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        return child(args)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_infer_")
    os.makedirs(work, exist_ok=True)
    rows = []
    for m in args.mouth_sizes:
        size = args.frame_size or 2 * int(1.25 * m) // 2 * 2
        ckpt = make_checkpoint(work, m, args.widths)
        for d in args.durations:
            video, speech = make_inputs(work, d, size)
            cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--video", video, "--audio", speech,
                   "--checkpoint", ckpt, "--output", os.path.join(work, f"out_m{m}_{d:g}s.mp4"),
                   "--batch_size", str(args.batch_size), "--device", args.device]
            cmd += ["--compile"] if args.compile else []
            cmd += ["--cuda_graphs"] if args.cuda_graphs else []
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if r.returncode != 0:
                print(r.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"benchmark run m={m} {d}s failed")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res.update(m=m, seconds=d, frame_size=size)
            rows.append(res)
            print_row(res, header=len(rows) == 1)
    summary(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


STAGES = ("decode", "crop", "model", "paste", "encode", "audio")


def print_row(r, header=False):
    if header:
        print(f"{'m':>4s} {'len':>5s} {'frame':>6s} {'device':>7s} {'fps cold':>9s} {'fps dub':>8s} "
              f"{'landm s':>8s} " + " ".join(f"{s:>7s}" for s in STAGES) + f" {'dub s':>7s} {'gen s':>7s} "
              f"{'dub/gen':>7s} {'RSS MiB':>8s}")
    w, c = r["warm"], r["cold"]
    st = w["stage_seconds"]
    gen = st.get("model", 0.0)
    print(f"{r['m']:4d} {r['seconds']:4.0f}s {r['frame_size']:6d} {w['device']:>7s} "
          f"{c['frames'] / (c['seconds'] + c['template_seconds']):9.1f} {w['fps']:8.1f} {c['template_seconds']:8.1f} "
          + " ".join(f"{st.get(s, 0.0):7.1f}" for s in STAGES)
          + f" {w['seconds']:7.1f} {gen:7.1f} {w['seconds'] / max(gen, 1e-9):7.2f} {r['peak_rss_mib']:8.0f}",
          flush=True)


def summary(rows):
    by_m = {}
    for r in rows:
        by_m.setdefault(r["m"], []).append(r)
    for m, rs in by_m.items():
        rs = sorted(rs, key=lambda r: r["seconds"])
        if len(rs) > 1:
            ratio = rs[-1]["peak_rss_mib"] / rs[0]["peak_rss_mib"]
            print(f"m={m}: peak RSS {rs[-1]['seconds']:g}s / {rs[0]['seconds']:g}s = {ratio:.2f} (target <= 1.3)")
        worst = max(r["warm"]["seconds"] / max(r["warm"]["stage_seconds"].get("model", 0), 1e-9) for r in rs)
        print(f"m={m}: dub / generator time (worst) = {worst:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
