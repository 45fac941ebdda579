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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--output_dir", default="demo_output", help="everything goes here (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the whole run (default: 30)")
    p.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--data", default="", help="your videos of one person (a folder, or one video) instead of the "
                                              "synthetic speaker: trains a model of that person")
    p.add_argument("--checkpoint", default="", help="use this generator (ours or official) and skip training")
    p.add_argument("--syncnet", default="", help="a mel SyncNet (train_syncnet.py) for the LSE columns when "
                                                 "--checkpoint skips training (default: the one the demo trains)")
    p.add_argument("--mouth_region_size", type=int, default=0, help="official checkpoints only (e.g. 288)")
    p.add_argument("--audio_feature", default="", help="official checkpoints only (e.g. deepspeech2)")
    p.add_argument("--audio_model_path", default="", help="weights of the audio front-end (deepspeech2/hubert)")
    g = p.add_argument_group("your videos (--data)")
    g.add_argument("--holdout_s", type=float, default=None,
                   help="seconds held out at the end of the last video (default: 20%% of a single video, 3-20 s; "
                        "the whole last one of several; 0 = the whole last video)")
    g.add_argument("--template", default="", help="dub the held-out speech onto this video (default: the held-out "
                                                  "footage itself, i.e. reconstruction)")
    g.add_argument("--init_from", default="", help="start training from this LawDNet checkpoint (ours or official; "
                                                   "official ones need --audio_feature/--audio_model_path data)")
    g.add_argument("--val_every", type=int, default=1000, help="validate every N steps and at the end of each "
                                                               "stage (default: 1000; 0 = no validation)")
    g.add_argument("--select_by", default="psnr_mouth", help="validation figure that picks the best checkpoint: "
                   "psnr_mouth (default), ssim_mouth, av_corr, own_lse_c or own_lse_d")
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
    g.add_argument("--syncnet_steps", type=int, default=0, help="exact SyncNet steps (default: its share of the "
                                                                    "time budget)")
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
    if a.batch_size < 1 or a.lr <= 0 or min(a.frame_steps, a.clip_steps, a.syncnet_steps, a.sync_weight) < 0:
        raise UserError("--batch_size must be >= 1, --lr > 0, --frame_steps/--clip_steps/--syncnet_steps/"
                        "--sync_weight >= 0")
    spec = SpeakerSpec(train_sentences=a.train_sentences, heldout_sentences=a.heldout_sentences,
                       speeds=tuple(a.speeds), size=a.size)
    model = TinyModel(mouth_region_size=a.mouth_size, batch_size=a.batch_size, lr=a.lr, warp_mode=a.warp_mode,
                      sync_weight=a.sync_weight)
    opts = DemoOptions(output_dir=a.output_dir, minutes=a.minutes, device=a.device, data=a.data,
                       checkpoint=a.checkpoint, syncnet=a.syncnet, mouth_region_size=a.mouth_region_size, audio_feature=a.audio_feature,
                       audio_model_path=a.audio_model_path, speaker=spec, model=model, frame_steps=a.frame_steps,
                       clip_steps=a.clip_steps, syncnet_steps=a.syncnet_steps, seed=a.seed,
                       progress=not a.no_progress, copy_picture_to=a.save_picture, holdout_s=a.holdout_s,
                       template=a.template, init_from=a.init_from, val_every=a.val_every, select_by=a.select_by)
    res = run_demo(opts)
    bar = res["quality_bar"]
    print(f"report: {os.path.join(os.path.abspath(a.output_dir), 'report.html')}")
    print(f"openness r {bar['corr']}, mouth PSNR {bar['psnr_mouth']} dB vs baselines {bar['baseline_psnr_mouth']}"
          f" -> quality bar {'met' if bar['passed'] else 'not met'}")
    if not bar["passed"]:
        print("warning: the quality bar was not met: this model is not a useful one (more --minutes train longer)",
              file=sys.stderr)
    return res


if __name__ == "__main__":
    cli_main(main)
