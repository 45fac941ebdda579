"""Evaluate a generated (dubbed) video: prints a table and writes JSON.

    python evaluate.py --generated out.mp4 [--reference gt.mp4] [--audio speech.wav] \
        [--syncnet_v2 syncnet_v2.model] [--syncnet our_syncnet.pth] [--json metrics.json] [--device cpu|cuda:N]

Metrics: PSNR/SSIM (full frame and aligned mouth crop; needs --reference), LSE-D/LSE-C (syncnet_python's
syncnet_v2.model and/or our SyncNet), mouth opening vs audio energy correlation, motion in silence and the
share of silent frames with an open mouth, mouth-crop jitter, paste-back seam scores, frame accounting; against
--reference and --template: still-skin colour difference (CIEDE2000), the paste edge, mouth sharpness, flicker. Function API: ``evaluation.evaluate``.
"""
from __future__ import annotations

import argparse
import json
import math
import os

from evaluation.core import evaluate
from utils.errors import UserError, cli_main

# (key, label, better) for the table
ROWS = [
    ("psnr", "PSNR full frame (dB)", "higher"), ("ssim", "SSIM full frame", "higher"),
    ("psnr_mouth", "PSNR mouth crop (dB)", "higher"), ("ssim_mouth", "SSIM mouth crop", "higher"),
    ("lse_d", "LSE-D (syncnet_v2)", "lower"), ("lse_c", "LSE-C (syncnet_v2)", "higher"),
    ("av_offset", "AV offset (frames, syncnet_v2)", "0"),
    ("own_lse_d", "LSE-D (own SyncNet)", "lower"), ("own_lse_c", "LSE-C (own SyncNet)", "higher"),
    ("av_corr", "mouth opening vs audio energy r", "higher"),
    ("av_corr_best", "  best within +-2 frames", "higher"),
    ("opening_agreement", "mouth opening vs ref's r (landmarks)", "higher"),
    ("silence_motion", "mouth motion in silence", "lower"), ("speech_motion", "mouth motion in speech", "-"),
    ("silence_opening", "mouth opening in silence", "lower"),
    ("mouth_jitter", "mouth-crop jitter (0-255)", "lower"), ("mouth_jitter_ratio", "  jitter / reference's", "~1"),
    ("seam_paste", "seam score, paste border", "~1"), ("seam_crop", "seam score, crop border", "~1"),
    ("skin_de_mean", "still skin CIEDE2000 vs ref, mean", "lower"), ("skin_de_p99", "  99th percentile", "lower"),
    ("lower_de_mean", "lower-face median colour CIEDE2000 vs ref", "lower"),
    ("edge_de_mean", "paste edge CIEDE2000 vs ref, mean", "lower"), ("edge_de_p99", "  99th percentile", "lower"),
    ("edge_step", "paste edge step in the difference to ref", "~0"),
    ("fringe_mean", "colour fringe (new chroma) vs ref, mean", "~0"), ("fringe_p99", "  99th percentile", "lower"),
    ("mouth_sharpness", "mouth sharpness / ref's", "~1"),
    ("skin_flicker_excess", "still skin flicker beyond ref", "~0"),
    ("skin_de_mean_tpl", "still skin CIEDE2000 vs template", "lower"),
    ("skin_de_p99_tpl", "  99th percentile", "lower"),
    ("edge_de_p99_tpl", "paste edge CIEDE2000 vs template p99", "lower"),
    ("fringe_p99_tpl", "colour fringe vs template p99", "lower"),
    ("mouth_sharpness_tpl", "mouth sharpness / template's", "~1"),
    ("skin_flicker_excess_tpl", "still skin flicker beyond template", "~0"),
    ("open_in_silence", "mouth open in silence (fraction)", "lower"),
    ("frames", "frames", "-"), ("audio_frames", "audio frames", "-"), ("face_frames", "frames with a face", "-"),
]


def format_table(res: dict) -> str:
    lines = [f"{'metric':42s} {'value':>12s}  better", "-" * 62]
    for key, label, better in ROWS:
        if key in res:
            v = res[key]
            s = f"{v:12.4f}" if isinstance(v, float) and math.isfinite(v) else f"{v!s:>12s}"
            lines.append(f"{label:42s} {s}  {better}")
    return "\n".join(lines)


def _jsonable(v):
    """inf -> "inf" (identical videos), nan -> null (metric not defined)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Evaluate a dubbed video.")
    p.add_argument("--generated", required=True)
    p.add_argument("--reference", default=None, help="ground-truth video (reconstruction setting)")
    p.add_argument("--audio", default=None, help="driving audio (default: the generated video's track)")
    p.add_argument("--template", default=None, help="the template video that was dubbed (appearance metrics "
                   "against it: still-skin colour, paste edge, mouth sharpness, flicker)")
    p.add_argument("--syncnet_v2", default=None, help="syncnet_python's syncnet_v2.model")
    p.add_argument("--syncnet", default=None, help="our SyncNet checkpoint (models/syncnet.py)")
    p.add_argument("--syncnet_audio_feature", default=None)
    p.add_argument("--syncnet_audio_model_path", default="")
    p.add_argument("--mouth_size", type=int, default=128)
    p.add_argument("--vshift", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="", help="write the metrics here (default: <generated>.metrics.json)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    res = evaluate(args.generated, reference=args.reference, audio=args.audio, template=args.template,
                   syncnet_v2=args.syncnet_v2,
                   syncnet=args.syncnet, syncnet_audio_feature=args.syncnet_audio_feature,
                   syncnet_audio_model_path=args.syncnet_audio_model_path, mouth_size=args.mouth_size,
                   device=args.device, vshift=args.vshift, progress=not args.quiet)
    print(format_table(res))
    out = args.json or os.path.splitext(args.generated)[0] + ".metrics.json"
    try:
        with open(out, "w") as f:
            json.dump({k: _jsonable(v) for k, v in res.items()}, f, indent=1)
    except OSError as e:
        raise UserError(f"{out}: cannot write the metrics ({e})") from None
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    cli_main(main)
