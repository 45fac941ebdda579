"""Dub a template video with new speech using a LawDNet checkpoint.

    python inference_function.py --video in.mp4 --audio speech.wav --checkpoint model.pth --output out.mp4 \
        [--device cpu|cuda:N] [--batch_size 8] [--mouth_region_size 288 --audio_feature deepspeech2 \
         --audio_model_path LibriSpeech_Pretrained_v3.ckpt] [--cache_dir DIR] [--compile] [--cuda_graphs] \
        [--threads N] [--crf 18] [--preset fast]

Every option is a field of ``config.config.InferenceConfig`` (``--help`` lists them); the function API takes that
one object: ``generate_video_with_audio(video, audio, checkpoint, output, InferenceConfig(device="cpu"))``.

The audio front-end, mouth size and preprocessing profile come from our checkpoints; official checkpoints store
none of them (defaults m=288, deepspeech2, which needs --audio_model_path, and the official profile).
``--profile official|lawdnet`` and ``--amp_dtype fp16|bf16`` override the profile and its GPU precision.
Output: H.264 + AAC at 25 fps with the audio's duration (a shorter template is played forward/backward). Template
landmarks are cached (see inference/template.py). For many dubs with one model, use ``inference.Dubber``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Callable, Optional

from config.config import InferenceConfig, add_arguments, from_args
from utils.errors import UserError, cli_main, warn

# Lazy imports below: inference.dubber (torch) loads only when a dub starts, so --help and option errors answer
# fast.


def generate_video_with_audio(video_path, audio_path, checkpoint, output_path,
                              cfg: Optional[InferenceConfig] = None, *, progress: bool = True,
                              progress_callback: Optional[Callable] = None,
                              frame_callback: Optional[Callable] = None, infer_fn=None, face=None) -> dict:
    """Dub ``video_path`` with ``audio_path`` into ``output_path`` with the settings ``cfg`` (defaults when
    None); returns the statistics dict of ``Dubber.dub`` (frames, faceless_frames, fps, stage_seconds, warnings,
    ...). Bad inputs raise UserError; suspicious ones (truncated, damaged) print ``warning: ...`` lines and are
    listed in ``warnings``. ``face``: which person of a template showing several to dub (``"x,y"`` in the first
    frame with a face, or an index counted left to right; None = the largest face)."""
    from inference.dubber import Dubber, check_output_path, load_dub_audio
    from utils.face.landmarks import parse_face
    from utils.media.video_io import probe

    # cheap checks first, so a typo fails before the model and the landmarks are loaded
    cfg = (cfg or InferenceConfig()).validate()
    face = parse_face(face)
    check_output_path(output_path)
    for p, what in ((video_path, "video"), (audio_path, "audio"), (checkpoint, "checkpoint")):
        if not os.path.isfile(os.fspath(p)):
            raise UserError(f"{p}: {what} file not found")
    if os.path.abspath(os.fspath(output_path)) in (os.path.abspath(os.fspath(video_path)),
                                                    os.path.abspath(os.fspath(audio_path))):
        raise UserError(f"{output_path}: the output would overwrite an input")
    probe(video_path)
    audio = load_dub_audio(audio_path)
    for msg in audio.warnings:
        warn(msg)
    dubber = Dubber(checkpoint, cfg, infer_fn=infer_fn, progress=progress)
    template = dubber.prepare_template(video_path, face=face)
    for msg in template.template.warnings:
        warn(msg)
    return dubber.dub(template, audio, output_path, progress_callback=progress_callback,
                      frame_callback=frame_callback)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Dub a video with new speech (LawDNet).")
    p.add_argument("--video", required=True, help="template video (any fps; converted to 25 fps on the fly) or a "
                   "still photo (PNG/JPEG: a static head that speaks)")
    p.add_argument("--audio", required=True, help="speech (wav/mp3/flac/... or a video's audio track)")
    p.add_argument("--checkpoint", required=True, help="LawDNet checkpoint (ours or official)")
    p.add_argument("--output", required=True, help="output video (.mp4/.mov/.mkv)")
    add_arguments(p, InferenceConfig)
    p.add_argument("--face", default=None, help="the person to dub when the video shows several: a point x,y "
                   "(pixels) in the first frame where that person is, or an index counted left to right "
                   "(0 = leftmost); default: the largest face")
    p.add_argument("--no_cache", dest="use_cache", action="store_false", default=None,
                   help="do not read or write the template cache (same as --no-use_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--stats_json", default="", help="also write the statistics to this JSON file")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = from_args(InferenceConfig, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    stats = generate_video_with_audio(args.video, args.audio, args.checkpoint, args.output, cfg,
                                      progress=not args.quiet, face=args.face)
    st = stats["stage_seconds"]
    print(f"wrote {stats['output']}: {stats['frames']} frames ({stats['video_seconds']:.2f} s) in "
          f"{stats['seconds']:.1f} s ({stats['fps']:.1f} frames/s); face-less frames passed through: "
          f"{stats['faceless_frames']}; template {'from cache' if stats['template_cached'] else 'analysed'}; "
          + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(st.items())))
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump(stats, f, indent=1)
    return stats


if __name__ == "__main__":
    from utils.threads import prefer_passive_waiting

    prefer_passive_waiting()   # before torch is imported
    cli_main(main)
