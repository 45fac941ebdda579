#!/usr/bin/env python
"""One command that shows the whole toolkit working, on CPU, within a time budget:

    python demo.py [--output_dir demo_output] [--minutes 30] [--device cpu|cuda|cuda:N]
    python demo.py --data my_videos/ --output_dir my_model            # a model of YOUR presenter (see below)
    python demo.py --data my_videos/ [--checkpoint model.pth]         # the same flow on real videos / weights

It renders a synthetic speaker (espeak-ng speech on a landmark-warped photo, with per-frame ground-truth mouth
openness; held-out sentences are never trained on), runs the data pipeline, trains a SyncNet and a tiny LawDNet
(frame stage, then clip stage), dubs a held-out sentence onto a template video of the speaker, evaluates it
against the ground-truth rendering and two baselines (the template's own mouth; the model driven by silence)
and writes <output_dir>/report.html (+ report.md, metrics.json, the mp4s and pictures). Re-running the same
command reuses everything already done. The data are synthetic and the report says so.

Person-specific model (--data: one or a few videos of one person, a folder or one file): the last video's last
--holdout_s seconds (one video: 20 %, 3-20 s; several: the whole last video) are held out; the rest is prepared
and trains the model, from scratch or --init_from any LawDNet checkpoint (official ones included). Every
--val_every steps the model dubs the held-out segment with its own speech and is scored (mouth PSNR/SSIM,
mouth opening vs audio energy, LSE with the run's own SyncNet); the best checkpoint (--select_by) is kept as
<output_dir>/validation/best.pth and makes the report's videos.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils.errors import UserError, cli_main  # noqa: E402
from utils.face.geometry import check_mouth_region_size  # noqa: E402


# Better help than the dataclasses' field comments, where a flag needs more words.
_HELP = {
    "minutes": "wall-clock budget of the whole run",
    "holdout_s": "seconds held out at the end of the last video (default: 20% of a single video, 3-20 s; the "
                 "whole last one of several; 0 = the whole last video)",
    "template": "dub the held-out speech onto this video (default: the held-out footage itself, i.e. "
                "reconstruction)",
    "init_from": "start training from this LawDNet checkpoint (ours or official; official ones need "
                 "--audio_feature/--audio_model_path data)",
    "mouth_region_size": "mouth size m of the generator: the tiny model trained here, or an official --checkpoint / "
                         "--init_from (which do not store it; default 288 there)",
    "audio_feature": "audio front-end of an official --checkpoint / --init_from (default deepspeech2)",
    "frame_steps": "exact frame-stage steps (default: up to 3000 within the time budget)",
    "clip_steps": "exact clip-stage steps (default: up to 300 within the time budget)",
    "syncnet_steps": "exact SyncNet steps (default: its share of the time budget)",
    "sync_weight": "SyncNet loss weight in the clip stage (0: on the tiny model it lowers lip-sync quality)",
    "speeds": "speech rates (words/min)",
}
# Which fields of each dataclass are flags (the rest are the demo's own choices; see the dataclasses).
_RUN_SKIP = ("speaker", "model", "inference", "min_corr")
_SPEAKER_FLAGS = ("train_sentences", "heldout_sentences", "speeds", "size")
_MODEL_FLAGS = ("mouth_region_size", "batch_size", "lr", "warp_mode", "sync_weight")
_INFERENCE_FLAGS = ("audio_feature", "audio_model_path", "color_match", "defringe", "blend_mask", "sharpen")


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from the demo's dataclasses (DemoOptions, SpeakerSpec, TinyModel, InferenceConfig)."""
    from config.config import InferenceConfig, add_arguments
    from demo import DemoOptions, SpeakerSpec, TinyModel

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(p, DemoOptions, skip=_RUN_SKIP, help=_HELP)
    add_arguments(p.add_argument_group("synthetic data"), SpeakerSpec, only=_SPEAKER_FLAGS, help=_HELP)
    add_arguments(p.add_argument_group("model and training"), TinyModel, only=_MODEL_FLAGS, help=_HELP)
    add_arguments(p.add_argument_group("official checkpoints, audio front-ends, paste-back"), InferenceConfig,
                  only=_INFERENCE_FLAGS, help=_HELP)
    return p


def main(argv=None) -> dict:
    from config.config import InferenceConfig, from_args
    from demo import DemoOptions, SpeakerSpec, TinyModel, run_demo

    a = build_parser().parse_args(argv)
    model = from_args(TinyModel, a)
    check_mouth_region_size(model.mouth_region_size)
    if model.batch_size < 1 or model.lr <= 0 or model.sync_weight < 0:
        raise UserError("--batch_size must be >= 1, --lr > 0, --sync_weight >= 0")
    # --mouth_region_size is the generator's, whether trained here or loaded (official files do not store it)
    inference = from_args(InferenceConfig, a, only=_INFERENCE_FLAGS, mouth_region_size=a.mouth_region_size)
    opts = from_args(DemoOptions, a, speaker=from_args(SpeakerSpec, a, only=_SPEAKER_FLAGS), model=model,
                     inference=inference)
    if min(opts.frame_steps, opts.clip_steps, opts.syncnet_steps) < 0:
        raise UserError("--frame_steps/--clip_steps/--syncnet_steps must be >= 0")
    res = run_demo(opts)
    from demo.report import bar_line

    bar = res["quality_bar"]
    print(f"report: {os.path.join(os.path.abspath(opts.output_dir), 'report.html')}")
    print(bar_line(bar))
    if not bar["passed"]:
        print("warning: the quality bar was not met: this model is not a useful one (more --minutes train longer)",
              file=sys.stderr)
    return res


if __name__ == "__main__":
    cli_main(main)
