"""Dub a template video with new speech using a LawDNet checkpoint.

    python inference_function.py --video in.mp4 --audio speech.wav --checkpoint model.pth --output out.mp4 \
        [--device cpu|cuda:N] [--batch_size 8] [--mouth_region_size 288 --audio_feature deepspeech2 \
         --audio_model_path LibriSpeech_Pretrained_v3.ckpt] [--cache_dir DIR] [--compile] [--cuda_graphs] \
        [--threads N]

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


def generate_video_with_audio(video_path, audio_path, checkpoint, output_path, batch_size: int = 8,
                              device: Optional[str] = None, mouth_region_size: Optional[int] = None,
                              audio_feature: Optional[str] = None, audio_model_path: str = "",
                              reference_seed: int = 456, cache_dir: Optional[str] = None, progress: bool = True,
                              use_cache: bool = True, amp: bool = True, cuda_graphs: bool = False,
                              compile: bool = False, crf: int = 18, preset: str = "fast", threads: int = 0,
                              progress_callback: Optional[Callable] = None,
                              frame_callback: Optional[Callable] = None, infer_fn=None,
                              profile: Optional[str] = None, amp_dtype: Optional[str] = None) -> dict:
    """Dub ``video_path`` with ``audio_path`` into ``output_path``; returns the statistics dict of
    ``Dubber.dub`` (frames, faceless_frames, fps, stage_seconds, warnings, ...). Bad inputs raise UserError;
    suspicious ones (truncated, damaged) print ``warning: ...`` lines and are listed in ``warnings``."""
    from config.profile import get_profile
    from inference.dubber import Dubber, check_output_path, load_dub_audio
    from utils.media.video_io import probe
    from utils.threads import check_threads

    # cheap checks first, so a typo fails before the model and the landmarks are loaded
    check_output_path(output_path)
    check_threads(threads)
    get_profile(profile)
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
    dubber = Dubber(checkpoint, device=device, mouth_region_size=mouth_region_size or None,
                    audio_feature=audio_feature or None, audio_model_path=audio_model_path,
                    batch_size=batch_size, reference_seed=reference_seed, cache_dir=cache_dir or None, amp=amp,
                    cuda_graphs=cuda_graphs, compile=compile, infer_fn=infer_fn, progress=progress, crf=crf,
                    preset=preset, threads=threads, profile=profile or None, amp_dtype=amp_dtype or None)
    template = dubber.prepare_template(video_path, use_cache=use_cache)
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
    p.add_argument("--no_cache", action="store_true", help="do not read or write the template cache")
    p.add_argument("--compile", action="store_true", help="torch.compile the warp field (slow first call)")
    p.add_argument("--cuda_graphs", action="store_true", help="replay the generator as a CUDA graph (GPU)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality (lower = better, default 18)")
    p.add_argument("--preset", default="fast", help="x264 preset (default fast)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--stats_json", default="", help="also write the statistics to this JSON file")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = from_args(InferenceConfig, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    stats = generate_video_with_audio(
        args.video, args.audio, args.checkpoint, args.output, batch_size=cfg.batch_size, device=cfg.device or None,
        mouth_region_size=cfg.mouth_region_size or None, audio_feature=cfg.audio_feature or None,
        audio_model_path=cfg.audio_model_path, reference_seed=cfg.reference_seed, cache_dir=cfg.cache_dir or None,
        progress=not args.quiet, use_cache=not args.no_cache, amp=cfg.amp, cuda_graphs=args.cuda_graphs,
        compile=args.compile, crf=args.crf, preset=args.preset, threads=cfg.threads,
        profile=cfg.profile or None, amp_dtype=cfg.amp_dtype or None)
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
