#!/usr/bin/env python
"""Quality bar of the demo model on held-out sentences of the synthetic speaker, printed as a table.

    python benchmarks/bench_quality.py                               # a full default demo run (30 min budget)
    python benchmarks/bench_quality.py --output_dir demo_output      # re-evaluate an existing demo run
    python benchmarks/bench_quality.py --minutes 10 --strict         # exit 1 when the bar is not met

The bar: on held-out sentences, the correlation of the generated mouth openness (dlib landmarks on the dubbed
frames) with the ground-truth openness of the rendering is >= 0.6 while both baselines (the template's own
mouth, the model driven by silence) stay near 0, and the PSNR of the aligned mouth crop against the
ground-truth video is above both baselines'. The numbers come from demo.run_demo (same code as demo.py).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import cli_main  # noqa: E402

ROWS = (("dubbed", "LawDNet + held-out speech"), ("template", "template, original mouth"),
        ("silence", "LawDNet + silence"), ("ground_truth", "ground-truth video (ceiling)"))


def format_tables(res: dict) -> str:
    def f(v, spec):
        return "n/a" if v is None else spec.format(v)

    head = ("| sentence | video | openness r | PSNR mouth (dB) | SSIM mouth | PSNR frame (dB) | LSE-C | LSE-D |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for item in res["heldout"] + [{"name": "mean", "videos": res["mean"]}]:
        for key, title in ROWS:
            v = item["videos"].get(key)
            if v is None:
                continue
            lines.append(f"| {item['name']} | {title} | {f(v.get('openness_corr'), '{:+.3f}')} | "
                         f"{f(v.get('psnr_mouth'), '{:.2f}')} | {f(v.get('ssim_mouth'), '{:.3f}')} | "
                         f"{f(v.get('psnr'), '{:.2f}')} | {f(v.get('own_lse_c'), '{:.3f}')} | "
                         f"{f(v.get('own_lse_d'), '{:.3f}')} |")
    bar = res["quality_bar"]
    lines.append("")
    lines.append(f"openness r {f(bar['corr'], '{:+.3f}')} (needs >= {bar['min_corr']}): "
                 f"{'ok' if bar['corr_ok'] else 'NOT met'}")
    lines.append(f"mouth PSNR {f(bar['psnr_mouth'], '{:.2f}')} dB vs baselines "
                 f"{', '.join(f(b, '{:.2f}') for b in bar['baseline_psnr_mouth'])} dB: "
                 f"{'above both' if bar['psnr_ok'] else 'NOT above both'}")
    lines.append(f"quality bar: {'MET' if bar['passed'] else 'NOT MET'}")
    return "\n".join(lines)


def main(argv=None):
    from demo import DemoOptions, SpeakerSpec, TinyModel, run_demo

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", default="demo_output", help="demo folder (an existing run is reused)")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--device", default="")
    p.add_argument("--min_corr", type=float, default=0.6)
    p.add_argument("--json", default="", help="also write the numbers here")
    p.add_argument("--strict", action="store_true", help="exit status 1 when the bar is not met")
    a = p.parse_args(argv)
    res = run_demo(DemoOptions(output_dir=a.output_dir, minutes=a.minutes, device=a.device, speaker=SpeakerSpec(),
                               model=TinyModel(), min_corr=a.min_corr, progress=False))
    print(format_tables(res))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump({"mean": res["mean"], "quality_bar": res["quality_bar"], "setup": res["setup"]}, fh, indent=1)
    if a.strict and not res["quality_bar"]["passed"]:
        sys.exit(1)
    return res


if __name__ == "__main__":
    cli_main(main)
