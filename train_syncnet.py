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
from config.config import SyncNetConfig, add_arguments, from_args  # noqa: E402
from training.syncnet_trainer import train_syncnet  # noqa: E402
from utils.errors import cli_main  # noqa: E402
from utils.threads import check_threads, prefer_passive_waiting  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_data", required=True, help="training_json.json or its data root")
    p.add_argument("--out", required=True, help="output .pth (load_syncnet format)")
    add_arguments(p, SyncNetConfig)
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the training process (0 = torch's default; see utils/threads.py)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (log files)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    threads = check_threads(a.threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return train_syncnet(a.train_data, a.out, from_args(SyncNetConfig, a), progress=not a.no_progress,
                         overwrite=a.overwrite)


if __name__ == "__main__":
    prefer_passive_waiting()   # idle OpenMP threads sleep instead of spinning (CPU per step, utils/threads.py)
    cli_main(main)
