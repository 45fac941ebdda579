#!/usr/bin/env python
"""The same tiny LawDNet trained with the ``official`` and the ``corrected`` Local Affine Warp on the demo's
synthetic speaker (same data, seed, SyncNet steps and training steps), quality side by side.

    python benchmarks/bench_warp_modes.py                                   # 3000 + 300 steps per mode (~14 min)
    python benchmarks/bench_warp_modes.py --frame_steps 600 --clip_steps 100 --out_dir bench_warp   # quick look

Each mode is a full demo.run_demo in <out_dir>/<mode>/ (data are rendered once and linked into both), so the
table has the same columns as the demo report: openness r on held-out sentences, mouth PSNR/SSIM against the
ground truth, final training image MSE and training time. Steps are fixed (not a time budget) so both modes
do the same work; time differs only by the warp's cost.
"""
import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config.config import WARP_MODES  # noqa: E402
from utils.errors import cli_main  # noqa: E402


def run_mode(mode, out_dir, frame_steps, clip_steps, syncnet_steps, spec, device, seed):
    from demo import DemoOptions, TinyModel, run_demo

    return run_demo(DemoOptions(output_dir=os.path.join(out_dir, mode), minutes=10 ** 4, device=device,
                                speaker=spec, model=TinyModel(warp_mode=mode), frame_steps=frame_steps,
                                clip_steps=clip_steps, syncnet_steps=syncnet_steps, seed=seed, progress=False))


def format_table(results: dict) -> str:
    def f(v, spec):
        return "n/a" if v is None else spec.format(v)

    rows = [("openness r, dubbed (held-out mean)", lambda r: f(r["mean"]["dubbed"]["openness_corr"], "{:+.3f}")),
            ("openness r, silence baseline", lambda r: f(r["mean"]["silence"]["openness_corr"], "{:+.3f}")),
            ("openness r, template baseline", lambda r: f(r["mean"]["template"]["openness_corr"], "{:+.3f}")),
            ("PSNR mouth, dubbed (dB)", lambda r: f(r["mean"]["dubbed"]["psnr_mouth"], "{:.2f}")),
            ("PSNR mouth, silence baseline (dB)", lambda r: f(r["mean"]["silence"]["psnr_mouth"], "{:.2f}")),
            ("SSIM mouth, dubbed", lambda r: f(r["mean"]["dubbed"]["ssim_mouth"], "{:.3f}")),
            ("LSE-C (demo SyncNet), dubbed", lambda r: f(r["mean"]["dubbed"].get("own_lse_c"), "{:.3f}")),
            ("LSE-C (demo SyncNet), silence baseline", lambda r: f(r["mean"]["silence"].get("own_lse_c"), "{:.3f}")),
            ("frame stage: steps / s / final image MSE",
             lambda r: "{} / {:.0f} / {:.4f}".format(r["training"]["tiny"]["steps"], r["training"]["tiny"]["seconds"],
                                                     r["training"]["tiny"]["loss_img"])),
            ("clip stage: steps / s / final image MSE",
             lambda r: "{} / {:.0f} / {:.4f}".format(r["training"]["tiny_clip"]["steps"],
                                                     r["training"]["tiny_clip"]["seconds"],
                                                     r["training"]["tiny_clip"]["loss_img"])),
            ("quality bar met", lambda r: "yes" if r["quality_bar"]["passed"] else "no")]
    lines = ["| | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for title, fn in rows:
        lines.append(f"| {title} | " + " | ".join(fn(r) for r in results.values()) + " |")
    return "\n".join(lines)


def main(argv=None):
    from demo import SpeakerSpec

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out_dir", default="bench_warp_modes")
    p.add_argument("--frame_steps", type=int, default=3000, help="the demo's cap (default: 3000)")
    p.add_argument("--clip_steps", type=int, default=300, help="the demo's cap (default: 300)")
    p.add_argument("--syncnet_steps", type=int, default=1000)
    p.add_argument("--train_sentences", type=int, default=6)
    p.add_argument("--speeds", type=int, nargs="+", default=[140, 175, 210])
    p.add_argument("--device", default="")
    p.add_argument("--seed", type=int, default=456)
    a = p.parse_args(argv)
    spec = SpeakerSpec(train_sentences=a.train_sentences, speeds=tuple(a.speeds))
    results = {}
    for mode in WARP_MODES:
        if mode != WARP_MODES[0]:        # same rendered videos and prepared data for both modes: copy, not re-render
            for sub in ("data", "prepared"):
                src, dst = os.path.join(a.out_dir, WARP_MODES[0], sub), os.path.join(a.out_dir, mode, sub)
                if os.path.isdir(src) and not os.path.exists(dst):
                    shutil.copytree(src, dst, symlinks=True)
        print(f"== warp mode {mode}: {a.frame_steps} frame + {a.clip_steps} clip steps", file=sys.stderr, flush=True)
        results[mode] = run_mode(mode, a.out_dir, a.frame_steps, a.clip_steps, a.syncnet_steps, spec, a.device,
                                 a.seed)
    print(format_table(results))
    return results


if __name__ == "__main__":
    cli_main(main)
