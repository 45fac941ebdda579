#!/usr/bin/env python
"""One command that shows the whole toolkit working, on CPU, within a time budget:

    python demo.py [--output_dir demo_output] [--minutes 30] [--device cpu|cuda|cuda:N]
    python demo.py --data my_videos/ [--checkpoint model.pth]         # the same flow on real videos / weights

It renders a synthetic speaker (espeak-ng speech on a landmark-warped photo, with per-frame ground-truth mouth
openness; held-out sentences are never trained on), runs the data pipeline, trains a SyncNet and a tiny LawDNet
(frame stage, then clip stage), dubs a held-out sentence onto a template video of the speaker, evaluates it
against the ground-truth rendering and two baselines (the template's own mouth; the model driven by silence)
and writes <output_dir>/report.html (+ report.md, metrics.json, the mp4s and pictures). Re-running the same
command reuses everything already done. The data are synthetic and the report says so.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from utils.errors import UserError, cli_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--output_dir", default="demo_output", help="everything goes here (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the whole run (default: 30)")
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--data", default="", help="folder of real videos instead of the synthetic speaker; the last "
                                              "one (by name) is held out and dubbed with its own speech")
    p.add_argument("--checkpoint", default="", help="use this generator (ours or official) and skip training")
    p.add_argument("--syncnet", default="", help="a mel SyncNet (train_syncnet.py) for the LSE columns when "
                                                 "--checkpoint skips training (default: the one the demo trains)")
    p.add_argument("--mouth_region_size", type=int, default=0, help="official checkpoints only (e.g. 288)")
    p.add_argument("--audio_feature", default="", help="official checkpoints only (e.g. deepspeech2)")
    p.add_argument("--audio_model_path", default="", help="weights of the audio front-end (deepspeech2/hubert)")
    g = p.add_argument_group("synthetic data")
    g.add_argument("--train_sentences", type=int, default=6, help="English sentences to train on (default: 6)")
    g.add_argument("--heldout_sentences", type=int, default=2, help="English sentences held out (default: 2)")
    g.add_argument("--speeds", type=int, nargs="+", default=[140, 175, 210], help="speech rates (words/min)")
    g.add_argument("--size", type=int, default=256, help="video side in pixels (default: 256)")
    g = p.add_argument_group("model and training")
    g.add_argument("--warp_mode", default="corrected", choices=("corrected", "official"))
    g.add_argument("--mouth_size", type=int, default=32, help="mouth_region_size of the tiny model (default: 32)")
    g.add_argument("--batch_size", type=int, default=4)
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--frame_steps", type=int, default=0, help="exact frame-stage steps (default: up to 3000 "
                                                                  "within the time budget)")
    g.add_argument("--clip_steps", type=int, default=0, help="exact clip-stage steps (default: up to 300 within "
                                                                 "the time budget)")
    g.add_argument("--sync_weight", type=float, default=0.0, help="SyncNet loss weight in the clip stage (default: "
                                                                  "0: on the tiny model it lowers lip-sync quality)")
    g.add_argument("--seed", type=int, default=456)
    p.add_argument("--save_picture", default="", help="also copy the side-by-side PNG here")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> dict:
    from demo import DemoOptions, SpeakerSpec, TinyModel, run_demo

    a = build_parser().parse_args(argv)
    if a.mouth_size < 16 or a.mouth_size % 8:
        raise UserError(f"--mouth_size must be a multiple of 8 and >= 16, got {a.mouth_size}")
    if a.batch_size < 1 or a.lr <= 0 or a.frame_steps < 0 or a.clip_steps < 0 or a.sync_weight < 0:
        raise UserError("--batch_size must be >= 1, --lr > 0, --frame_steps/--clip_steps/--sync_weight >= 0")
    spec = SpeakerSpec(train_sentences=a.train_sentences, heldout_sentences=a.heldout_sentences,
                       speeds=tuple(a.speeds), size=a.size)
    model = TinyModel(mouth_region_size=a.mouth_size, batch_size=a.batch_size, lr=a.lr, warp_mode=a.warp_mode,
                      sync_weight=a.sync_weight)
    opts = DemoOptions(output_dir=a.output_dir, minutes=a.minutes, device=a.device, data=a.data,
                       checkpoint=a.checkpoint, syncnet=a.syncnet, mouth_region_size=a.mouth_region_size, audio_feature=a.audio_feature,
                       audio_model_path=a.audio_model_path, speaker=spec, model=model, frame_steps=a.frame_steps,
                       clip_steps=a.clip_steps, seed=a.seed, progress=not a.no_progress,
                       copy_picture_to=a.save_picture)
    res = run_demo(opts)
    bar = res["quality_bar"]
    print(f"report: {os.path.join(os.path.abspath(a.output_dir), 'report.html')}")
    print(f"openness r {bar['corr']}, mouth PSNR {bar['psnr_mouth']} dB vs baselines {bar['baseline_psnr_mouth']}"
          f" -> quality bar {'met' if bar['passed'] else 'not met'}")
    return res


if __name__ == "__main__":
    cli_main(main)
