#!/usr/bin/env python
"""Train the mouth/audio SyncNet (models/syncnet.py) on a prepared data root (the original has no such code).

    python train_syncnet.py --train_data DATA/training_json.json --out syncnet.pth            # m 256, 256 px
    python train_syncnet.py --train_data DATA --out sync_tiny.pth --mouth_region_size 32 --face_size 32 \
        --hidden 32 --steps 300 --lr 1e-3

The trainer (data, loss, held-out accuracy, saved file) is training/syncnet_trainer.py; this is its CLI.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Lazy import below (main): torch loads only to set --threads, after --help and option errors were answered.
from training.syncnet_trainer import LOSSES, train_syncnet  # noqa: E402
from utils.errors import cli_main  # noqa: E402
from utils.threads import check_threads, prefer_passive_waiting  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_data", required=True, help="training_json.json or its data root")
    p.add_argument("--out", required=True, help="output .pth (load_syncnet format)")
    p.add_argument("--mouth_region_size", type=int, default=256, help="crop scale the mouth boxes are cut at")
    p.add_argument("--face_size", type=int, default=256, help="SyncNet input size (multiple of 32)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--audio_feature", default="", help="feature name in the index (default: its first)")
    p.add_argument("--sync_window", type=int, default=9)
    p.add_argument("--min_offset", type=int, default=5, help="negatives are at least this many frames off")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--loss", default="contrastive", choices=LOSSES,
                   help="contrastive: all-pairs cross-entropy + calibration MSE (default); mse/bce: per-pair labels")
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--val_items", type=int, default=512)
    p.add_argument("--eval_every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="")
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the training process (0 = torch's default; see utils/threads.py)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (log files)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def main(argv=None):
    a = vars(build_parser().parse_args(argv))
    threads = check_threads(a.pop("threads"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    out = a.pop("out")
    a["progress"] = not a.pop("no_progress")
    return train_syncnet(a.pop("train_data"), out, **a)


if __name__ == "__main__":
    prefer_passive_waiting()   # idle OpenMP threads sleep instead of spinning (CPU per step, utils/threads.py)
    cli_main(main)
