"""Synthetic talking-head videos with ground truth, for tests, demos and benchmarks (no real data is downloadable).

Pipeline of ``make_talking_head``:

1. Speech: libespeak-ng through ctypes in synchronous mode with phoneme events, which gives the 22.05 kHz samples
   AND the start time (ms) of every phoneme (run in a fresh worker process per synthesis: the library keeps state
   between calls, which would break determinism). Mandarin uses espeak-ng's pinyin voice (``cmn-latn-pinyin``): the
   Debian 1.51 ``cmn`` voice reads Hanzi as pinyin whose tone digits it speaks as English numbers, so the built-in
   Mandarin sentences carry their pinyin and ``voice="cmn..."`` speaks that (or any pinyin text you pass).
2. Visemes: each phoneme maps to a mouth (openness, width) target (open vowels ~0.9, bilabials p/b/m 0, f/v
   almost closed, rounded vowels narrow, pauses closed); the target signal is Gaussian-smoothed (coarticulation)
   and averaged over each video frame's display interval -> per-frame ground-truth openness in [0, 1].
3. Face: ``skimage.data.astronaut()`` and its dlib 68 landmarks. Per frame the lower lip / jaw / chin points move
   down by openness and the mouth corners in/out by width; a dense backward displacement field is fitted to the
   moved points (Gaussian RBF on a coarse grid, upsampled) and applied with ``cv2.remap`` to a region around
   the mouth only. The inner-lip polygon is then painted as a dark mouth cavity with a band of upper teeth, so an
   open mouth is clearly visible. Mild head motion (translation, rotation, scale: smooth sums of sinusoids drawn
   from ``seed``) goes into the one affine warp that also crops and resizes the face to ``size``.
4. Output: H.264 + AAC mp4 (utils.media.video_io.VideoWriter) and, next to it, ``<stem>.mouth.npy`` (openness per
   frame), ``<stem>.gt.npz`` (openness, width, phoneme, 68 landmarks in output pixels, face flag, affine per
   frame) and ``<stem>.json`` (text, voice, phoneme timings, sizes).

Everything is deterministic for a given call (espeak is deterministic, the motion comes from ``seed``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError, cli_main
from utils.media.timebase import FPS
from utils.media.video_io import VideoWriter
from utils.synthetic.face import ZOOM, MouthWarper, astronaut_face, crop_affine, head_motion_track
from utils.synthetic.speech import (
    DEFAULT_SPEEDS,
    DEFAULT_VOICES,
    LANGUAGES,
    SENTENCES,
    mouth_tracks,
    synthesize_speech,
    text_and_voice,
)

# Lazy import below: tqdm is optional here (progress bars only).

# ---------------------------------------------------------------------------------------------- videos

def make_talking_head(out_path, text: str, voice: str = "en", seed: int = 0, size: int = 256, fps: float = FPS,
                      extra_audio_s: float = 0.0, faceless_frames: Iterable[int] = (), head_motion: float = 1.0,
                      speed: int = 175, lead_s: float = 0.3, tail_s: float = 0.3, crf: int = 18,
                      preset: str = "medium") -> dict:
    """Write a synthetic talking-head mp4 (H.264 + AAC) plus its ground truth; return paths and metadata.

    The video lasts ``lead_s`` of silence + the speech + ``tail_s`` of silence (rounded up to whole frames); the
    audio track has the same length plus ``extra_audio_s`` seconds of silence. Frames listed in
    ``faceless_frames`` show a heavily blurred image with no detectable face (``has_face`` False in the ground
    truth). ``head_motion`` scales the head movement (0 = still head). Returned keys: video, mouth, gt, meta
    (paths), num_frames, fps, size, sample_rate, video_seconds, audio_seconds, text, voice, language, speed,
    seed, head_motion, lead_s, tail_s.
    """
    if size < 32:
        raise UserError(f"size must be at least 32 pixels, got {size}")
    if not fps or fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    if extra_audio_s < 0 or lead_s < 0 or tail_s < 0:
        raise UserError("extra_audio_s, lead_s and tail_s must be >= 0")
    out_path = os.fspath(out_path)
    stem = os.path.splitext(out_path)[0]
    language, _, _ = text_and_voice(text, voice)

    speech, sr, phonemes = synthesize_speech(text, voice, speed)
    lead = int(round(lead_s * sr))
    phonemes = [(t0 + lead / sr, t1 + lead / sr, ph) for t0, t1, ph in phonemes]
    spoken_len = lead + len(speech) + int(round(tail_s * sr))
    num_frames = int(math.ceil(spoken_len / sr * fps - 1e-9))
    video_len = int(round(num_frames / fps * sr))
    audio = np.zeros(video_len + int(round(extra_audio_s * sr)), np.float32)
    audio[lead:lead + len(speech)] = speech

    openness, width, labels = mouth_tracks(phonemes, num_frames, fps)
    faceless = np.zeros(num_frames, bool)
    for i in faceless_frames:
        if not 0 <= int(i) < num_frames:
            raise UserError(f"faceless frame {i} is outside the video (0..{num_frames - 1})")
        faceless[int(i)] = True

    img, lm = astronaut_face()
    shrink = size / (ZOOM * float(np.linalg.norm(lm[16] - lm[0])))
    if shrink < 1.0:  # small outputs: area-downscale the photo once so the per-frame affine does not alias
        img = cv2.resize(img, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        lm = (lm + 0.5) * shrink - 0.5
    warper = MouthWarper(img, lm)
    motion = head_motion_track(num_frames, fps, seed, head_motion)
    landmarks = np.zeros((num_frames, 68, 2), np.float32)
    affines = np.zeros((num_frames, 2, 3), np.float32)
    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        def tqdm(x, **_):
            return x
    with VideoWriter(out_path, fps=fps, audio=audio, sample_rate=sr, crf=crf, preset=preset) as writer:
        for k in tqdm(range(num_frames), desc=os.path.basename(out_path), unit="frame", leave=False, disable=None):
            face, moved = warper.warp(float(openness[k]), float(width[k]))
            m = crop_affine(lm, size, motion[k])
            frame = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            if faceless[k]:
                frame = cv2.GaussianBlur(frame, (0, 0), size / 12.0)
            affines[k] = m
            landmarks[k] = moved @ m[:, :2].T + m[:, 2]
            writer.write(frame)

    mouth_path, gt_path, meta_path = stem + ".mouth.npy", stem + ".gt.npz", stem + ".json"
    np.save(mouth_path, openness)
    np.savez_compressed(gt_path, openness=openness, width=width, phoneme=np.array(labels, dtype="U8"),
                        landmarks=landmarks, has_face=~faceless, affine=affines)
    meta = {
        "video": out_path, "mouth": mouth_path, "gt": gt_path, "meta": meta_path,
        "num_frames": int(num_frames), "fps": float(fps), "size": int(size), "sample_rate": int(sr),
        "video_seconds": num_frames / fps, "audio_seconds": len(audio) / sr,
        "text": text, "voice": voice, "language": language, "speed": int(speed), "seed": int(seed),
        "head_motion": float(head_motion), "lead_s": float(lead_s), "tail_s": float(tail_s), "faceless_frames": [int(i) for i in np.flatnonzero(faceless)],
        "phonemes": [[round(t0, 4), round(t1, 4), ph] for t0, t1, ph in phonemes],
    }
    with atomic_write(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    return meta


def _voices_for(language: str, voices) -> tuple[str, ...]:
    if voices is None:
        return DEFAULT_VOICES[language]
    if isinstance(voices, dict):
        chosen = tuple(voices.get(language, ()))
    else:
        chosen = tuple(v for v in voices if text_and_voice("x", v)[0] == language)
    if not chosen:
        raise UserError(f"no voice given for language {language!r} (voices: {list(voices)})")
    return chosen


def make_dataset(out_dir, num_videos: int, seed: int = 0, languages: Sequence[str] = ("en",), voices=None,
                 speeds: Sequence[int] = DEFAULT_SPEEDS, **kw) -> list[dict]:
    """``num_videos`` deterministic talking heads in ``out_dir`` cycling over ``languages``.

    Each video gets a sentence of its language (a seed-shuffled cycle, so neighbours differ), a voice (from
    ``voices``: a dict language -> voices, or a flat list like ["en+m3", "cmn+f2"]; default DEFAULT_VOICES) and a
    speed; ``**kw`` goes to make_talking_head. Files are ``<language>_<index>.mp4``.
    """
    if num_videos < 1:
        raise UserError(f"num_videos must be >= 1, got {num_videos}")
    languages = tuple(languages)
    for lang in languages:
        if lang not in LANGUAGES:
            raise UserError(f"unknown language {lang!r} (choose from {list(LANGUAGES)})")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([int(seed), 104729])
    orders = {lang: rng.permutation([i for i, (l, _) in enumerate(SENTENCES) if l == lang]) for lang in languages}
    try:
        from tqdm import tqdm
    except ImportError:
        def tqdm(x, **_):
            return x
    out = []
    for i in tqdm(range(num_videos), desc="synthetic videos", unit="video", disable=None):
        lang = languages[i % len(languages)]
        order = orders[lang]
        text = SENTENCES[order[(i // len(languages)) % len(order)]][1]
        vrng = np.random.default_rng([int(seed), i])
        vs = _voices_for(lang, voices)
        voice = vs[int(vrng.integers(len(vs)))]
        speed = int(speeds[int(vrng.integers(len(speeds)))])
        path = os.path.join(out_dir, f"{lang}_{i:04d}.mp4")
        out.append(make_talking_head(path, text, voice=voice, seed=int(seed) * 100003 + i, speed=speed, **kw))
    return out


def main(argv: Optional[list[str]] = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m utils.synthetic",
                                description="Generate synthetic talking-head videos (espeak-ng speech, warped "
                                            "astronaut face) with per-frame mouth ground truth.")
    p.add_argument("--out_dir", required=True, help="folder for <lang>_<i>.mp4 and their ground-truth files")
    p.add_argument("--num_videos", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--languages", nargs="+", default=["en"], choices=list(LANGUAGES))
    p.add_argument("--size", type=int, default=256, help="output frame side in pixels")
    p.add_argument("--fps", type=float, default=FPS)
    p.add_argument("--head_motion", type=float, default=1.0, help="head movement scale (0 = still)")
    p.add_argument("--extra_audio_s", type=float, default=0.0, help="make the audio this much longer than the video")
    a = p.parse_args(argv)
    res = make_dataset(a.out_dir, a.num_videos, seed=a.seed, languages=a.languages, size=a.size, fps=a.fps,
                       head_motion=a.head_motion, extra_audio_s=a.extra_audio_s)
    for r in res:
        print(f"{r['video']}  {r['num_frames']} frames  {r['voice']}  {r['text']}")
    return res


if __name__ == "__main__":
    cli_main(main)

