#!/usr/bin/env python
"""Person-specific training on ONE video of the synthetic speaker, scored on its held-out segment.

    python benchmarks/bench_person.py [--out_dir bench_person] [--minutes 40] [--device cpu]

Renders the synthetic speaker (utils/synthetic) as one 60-90 s video - six sentences at three speech rates, then
two held-out sentences - plus a template whose frames line up with the held-out part (same head-motion seed),
and runs the documented person-specific command on it:

    python demo.py --data <video> --holdout_s <held-out part> --template <template> --output_dir <out>/run

(demo.run_demo, the same code). The held-out segment is never trained on; during training it is dubbed with its
own speech every --val_every steps and the best checkpoint (mouth PSNR) makes the final videos. Prints the
held-out figures of that model against the two baselines (the template's original mouth; the model driven by
silence), with the appearance metrics (still-skin colour, paste edge, mouth sharpness, open mouth in silence), the
quality bar, how much of the budget training used, and the validation history. Re-running reuses what is done.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import cli_main  # noqa: E402
from utils.media.timebase import FPS  # noqa: E402

ROWS = (("dubbed", "LawDNet (best checkpoint) + held-out speech"), ("template", "template, original mouth"),
        ("silence", "LawDNet + silence"), ("ground_truth", "held-out footage (measurement ceiling)"))


def format_tables(res: dict, video_seconds: float, holdout_s: float, budget_min: float = 0.0) -> str:
    from demo.report import bar_line

    train_s = sum(v for k, v in res["timings"].items() if k.startswith("train"))

    def f(v, spec):
        return "n/a" if v is None else spec.format(v)

    lines = [f"one video of {video_seconds:.1f} s, the last {holdout_s:.1f} s held out", "",
             "| video | openness r vs truth | PSNR mouth (dB) | SSIM mouth | opening vs audio r | LSE-C | LSE-D | "
             "still-skin ΔE mean | p99 | paste-edge ΔE p99 | colour fringe p99 | mouth sharpness | open in silence |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, title in ROWS:
        v = res["mean"].get(key)
        if v is not None:
            lines.append(f"| {title} | {f(v.get('openness_corr'), '{:+.3f}')} | {f(v.get('psnr_mouth'), '{:.2f}')} | "
                         f"{f(v.get('ssim_mouth'), '{:.3f}')} | {f(v.get('av_corr'), '{:+.3f}')} | "
                         f"{f(v.get('own_lse_c'), '{:.3f}')} | {f(v.get('own_lse_d'), '{:.3f}')} | "
                         f"{f(v.get('skin_de_mean'), '{:.2f}')} | {f(v.get('skin_de_p99'), '{:.1f}')} | "
                         f"{f(v.get('edge_de_p99'), '{:.1f}')} | {f(v.get('fringe_p99'), '{:.1f}')} | "
                         f"{f(v.get('mouth_sharpness'), '{:.2f}')} | "
                         f"{f(v.get('open_in_silence'), '{:.2f}')} |")
    lines += ["", "validation on the held-out segment during training (reconstruction):", "",
              "| stage | step | PSNR mouth | SSIM mouth | opening vs audio r | opening vs footage r | LSE-C | LSE-D | "
              "best so far |",
              "|---|---|---|---|---|---|---|---|---|"]
    for h in res.get("validation") or []:
        lines.append(f"| {h['stage']} | {h['step']} | {f(h.get('psnr_mouth'), '{:.2f}')} | "
                     f"{f(h.get('ssim_mouth'), '{:.3f}')} | {f(h.get('av_corr'), '{:+.3f}')} | "
                     f"{f(h.get('opening_agreement'), '{:+.3f}')} | "
                     f"{f(h.get('own_lse_c'), '{:.3f}')} | {f(h.get('own_lse_d'), '{:.3f}')} | "
                     f"{'yes' if h.get('best') else ''} |")
    m = res["mean"]
    above = all(m["dubbed"].get(k) is not None and all(m[b].get(k) is not None and
                                                       m["dubbed"][k] > m[b][k] for b in ("template", "silence"))
                for k in ("openness_corr", "psnr_mouth", "ssim_mouth"))
    lines += ["", f"training: {json.dumps({k: v['steps'] for k, v in res['training'].items()})} steps, SyncNet "
              f"{res['syncnet']['steps']} steps (held-out accuracy {res['syncnet']['val_accuracy']:.3f}); total "
              f"{res['timings']['total'] / 60:.1f} min",
              f"held-out openness r, mouth PSNR and SSIM above both baselines: {'YES' if above else 'NO'}",
              f"training took {train_s / 60:.1f} min of the run's {res['timings']['total'] / 60:.1f} min (budget "
              f"{budget_min:g} min; a stage ends on its time share or when validation stops improving)",
              bar_line(res["quality_bar"])]
    return "\n".join(lines)


def main(argv=None):
    from demo import DemoOptions, SpeakerSpec, run_demo
    from demo.speaker import make_one_video_speaker
    from demo.validation import METRICS
    from utils.media.video_io import count_frames

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out_dir", default="bench_person")
    p.add_argument("--minutes", type=float, default=40.0, help="budget of the person-specific run")
    p.add_argument("--device", default="")
    p.add_argument("--val_every", type=int, default=1000)
    p.add_argument("--select_by", default="psnr_mouth", choices=METRICS,   # checked before the speaker is rendered
                   help="validation figure that picks the best checkpoint")
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    out = os.path.abspath(a.out_dir)
    spec = SpeakerSpec()
    video, template, holdout_s = make_one_video_speaker(os.path.join(out, "speaker"), spec,
                                                        lambda m: print(f"[bench] {m}", file=sys.stderr))
    res = run_demo(DemoOptions(output_dir=os.path.join(out, "run"), minutes=a.minutes, device=a.device, data=video,
                               template=template, holdout_s=holdout_s, val_every=a.val_every, select_by=a.select_by,
                               progress=not a.no_progress))
    print(format_tables(res, count_frames(video, FPS) / FPS, holdout_s, a.minutes))
    return res


if __name__ == "__main__":
    cli_main(main)
