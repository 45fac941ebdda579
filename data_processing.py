"""Prepare a training set from a folder of raw videos (one command: ``--all``); stages live in dataset/prepare/.

    python data_processing.py --all --source_video_dir RAW --data_root OUT [--workers 4] [--shard K/N]
    python data_processing.py --generate_training_json --data_root OUT        # after all shards finished
    python data_processing.py --merge ROOT_A ROOT_B --data_root MERGED        # one index over several roots

Flag names follow the original ``data_processing_正脸化.py``; ``--X_multithreading`` = ``--X`` with
``--workers`` (default: all cores). ``--extract_video_frame`` does not write full-frame JPEGs (frames are decoded
on the fly from videos_25fps/<vid>.mp4): it is an alias of ``--convert_fps`` that makes sure that video exists.
``--extract_deep_speech`` = ``--extract_audio_features --audio_feature deepspeech``.
"""
from __future__ import annotations

import argparse
import os

from config.config import DataConfig, add_arguments, from_args
from dataset.prepare.indexing import generate_training_json, merge_data_roots
from dataset.prepare.pipeline import VIDEO_STAGES, parse_features, parse_shard, prepare_dataset
from dataset.prepare.report import merge_shard_reports, print_report
from utils.audio.features import AUDIO_FEATURES
from utils.errors import UserError, cli_main

STAGE_FLAGS = {  # flag -> stage it selects (None: handled separately)
    "convert_fps": "convert_fps",
    "extract_video_frame": "convert_fps",
    "detect_landmarks": "detect_landmarks",
    "extract_audio": "extract_audio",
    "extract_audio_features": "extract_audio_features",
    "extract_deep_speech": "extract_audio_features",
    "crop_face": "crop_face",
}
MULTI = ("extract_video_frame", "extract_deep_speech", "crop_face", "detect_landmarks", "extract_audio_features")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, DataConfig)
    g = p.add_argument_group("stages (any combination; each also runs the stages it reads from when needed)")
    g.add_argument("--all", action="store_true", help="every stage, then --generate_training_json")
    g.add_argument("--convert_fps", action="store_true", help="any frame rate -> videos_25fps/<vid>.mp4 (25 fps, audio kept)")
    g.add_argument("--extract_video_frame", action="store_true",
                   help="alias of --convert_fps (frames are not stored as JPEGs in this layout)")
    g.add_argument("--detect_landmarks", action="store_true", help="dlib 68 points -> landmarks/<vid>.csv (OpenFace layout)")
    g.add_argument("--extract_audio", action="store_true", help="audio/<vid>.wav, 16 kHz mono")
    g.add_argument("--extract_audio_features", action="store_true",
                   help=f"features/<feature>/<vid>.npy for --audio_feature ({', '.join(AUDIO_FEATURES)}; comma list ok)")
    g.add_argument("--extract_deep_speech", action="store_true", help="= --extract_audio_features --audio_feature deepspeech")
    g.add_argument("--crop_face", action="store_true", help="frontalised crops -> crops/<vid>/<frame>.jpg")
    g.add_argument("--generate_training_json", action="store_true", help="index every finished video of --data_root")
    for name in MULTI:
        g.add_argument(f"--{name}_multithreading", action="store_true", help=f"--{name} with --workers (default: all cores)")
    g.add_argument("--merge", nargs="+", metavar="ROOT", help="join prepared data roots into --data_root (no copies)")
    g.add_argument("--retry_failed", action="store_true", help="retry videos that failed or were skipped before")
    g.add_argument("--deep_speech_model", help="alias of --audio_model_path (original flag name)")
    g.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deep_speech_model and not args.audio_model_path:
        args.audio_model_path = args.deep_speech_model
    multi = any(getattr(args, f"{n}_multithreading") for n in MULTI)
    for n in MULTI:
        if getattr(args, f"{n}_multithreading"):
            setattr(args, n, True)
    if multi and args.workers is None:
        args.workers = os.cpu_count() or 1
    if args.extract_deep_speech:
        if args.audio_feature and "deepspeech" not in args.audio_feature.split(","):
            raise UserError("--extract_deep_speech means --audio_feature deepspeech; "
                            f"it conflicts with --audio_feature {args.audio_feature}")
        args.audio_feature = args.audio_feature or "deepspeech"
    cfg = from_args(DataConfig, args)

    if args.merge:
        path, renames = merge_data_roots(args.merge, cfg.data_root)
        print(f"merged {len(args.merge)} data roots into {path}" + (f"; renamed {len(renames)} colliding ids:" if renames else ""))
        for old, new in renames.items():
            print(f"  {old} -> {new}")
        return {"index": path, "renamed": renames}

    stages = {s for f, s in STAGE_FLAGS.items() if getattr(args, f)}
    if args.all:
        stages |= set(VIDEO_STAGES)
    make_index = args.all or args.generate_training_json
    if not stages and not make_index:
        parser.error("nothing to do: give --all, stage flags (--convert_fps, --crop_face, ...), "
                     "--generate_training_json or --merge")
    if args.extract_video_frame:
        print("note: --extract_video_frame only makes sure videos_25fps/<vid>.mp4 exists; frames are decoded on the fly")
    out: dict = {}
    shard = parse_shard(cfg.shard)
    if stages:
        report = prepare_dataset(cfg, stages, retry_failed=args.retry_failed, progress=not args.no_progress)
        print_report(report)
        out["report"] = report
    if make_index:
        if shard is not None and stages:
            print(f"shard {cfg.shard} done; once every shard has finished run: "
                  f"python data_processing.py --generate_training_json --data_root {cfg.data_root}")
            return out
        if not stages:
            merged = merge_shard_reports(cfg.data_root)
            if merged is not None:
                print_report(merged)
                out["report"] = merged
        feats = parse_features(args.audio_feature) if args.audio_feature else None
        path, summary = generate_training_json(cfg.data_root, feats, args.crop_width)
        for vid, why in summary["excluded"].items():
            print(f"not indexed: {vid}: {why}")
        print(f"wrote {path}: {summary['videos']} videos, features {', '.join(summary['audio_features'])}, "
              f"crop width {summary['crop_width']}")
        out["index"] = path
    return out


if __name__ == "__main__":
    cli_main(main)
