#!/usr/bin/env python
"""Train one LawDNet stage, alone or under torchrun (one process per GPU, any number of nodes).

    python train_sequence_distributed.py --stage frame_64 --name exp1 --train_data DATA/training_json.json \
        --vgg_path vgg19-dcbb9e9d.pth
    torchrun --nproc_per_node 4 train_sequence_distributed.py --stage frame_128 --name exp1 ... \
        --init_from output/training_model_weight/exp1/frame_64/final.pth
    python train_sequence_distributed.py --stage tiny --name demo --train_data DATA --no_perception   # CPU demo

Every TrainConfig field is a flag (stage values from config/experiment/<stage>.py are the defaults), plus the
RunOptions (--audio_feature, --warp_mode, --sync_window, ...) and --model_<field> for the generator widths.
Results: <result_root>/<name>/<stage>/ (checkpoints, final.pth, config.json, tensorboard/), one run per folder:
--resume continues the run there, --overwrite starts it over, without either an earlier run is an error. The
whole coarse-to-fine sequence: train_sequence_distributed.sh.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from training.options import add_training_arguments, resolve  # noqa: E402
from utils.errors import cli_main  # noqa: E402

# Lazy import below: training.trainer (torch) loads in main, after --help and option errors were answered.


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(p)
    return p


def main(argv=None):
    from training.trainer import train

    args = build_parser().parse_args(argv)
    stage = args.stage or "frame_64"
    cfg, model, opts, disc = resolve(stage, args)
    return train(cfg, model, opts, disc)


if __name__ == "__main__":
    from utils.threads import prefer_passive_waiting

    prefer_passive_waiting()   # idle OpenMP threads sleep instead of spinning (utils/threads.py)
    cli_main(main)
