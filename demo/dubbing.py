"""Dub the held-out speech onto the template, and make the two baselines the dub is compared with:
the template with its original mouth, and the same model driven by silence."""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from config.config import InferenceConfig
from utils.media.audio_io import load_audio, save_wav
from utils.media.timebase import FPS, SAMPLE_RATE
from utils.media.video_io import VideoWriter, iter_frames

# Lazy import below: the Dubber (torch, the model stack) loads only when the demo reaches its dubbing step.


def _fresh(out: str, *inputs: str) -> bool:
    """``out`` exists and is newer than every input (a re-run can reuse it)."""
    return os.path.isfile(out) and all(os.path.getmtime(out) >= os.path.getmtime(i) for i in inputs if i)


def make_dubber(checkpoint: str, cfg: InferenceConfig, device: str, cache_dir: str, progress: bool = True):
    """A Dubber with the demo's settings ``cfg`` on the run's ``device``, caching templates in ``cache_dir``."""
    from inference import Dubber

    return Dubber(checkpoint, dataclasses.replace(cfg, device=device, cache_dir=cache_dir), progress=progress)


def silence_like(audio_source: str, out_wav: str) -> str:
    """A silent 16 kHz wav exactly as long as ``audio_source``'s audio (so the dub has the same frame count)."""
    if not _fresh(out_wav, audio_source):
        n = len(load_audio(audio_source, SAMPLE_RATE))
        save_wav(out_wav, np.zeros(n, np.float32), SAMPLE_RATE)
    return out_wav


def template_baseline(template: str, audio_source: str, out_path: str, num_frames: int) -> str:
    """The template's first ``num_frames`` frames with ``audio_source``'s speech: what you get without dubbing."""
    if _fresh(out_path, template, audio_source):
        return out_path
    frames = list(iter_frames(template, fps=FPS, max_frames=num_frames))
    while len(frames) < num_frames:            # a shorter template plays back and forth, as the dubber does
        frames += frames[::-1][: num_frames - len(frames)]
    with VideoWriter(out_path, fps=FPS, audio=load_audio(audio_source, SAMPLE_RATE), sample_rate=SAMPLE_RATE,
                     preset="fast") as w:
        for f in frames:
            w.write(f)
    return out_path


def dub(dubber, prepared_template, audio: str, out_path: str, checkpoint: str, template: str) -> dict:
    """One dub (reused when ``out_path`` is newer than the checkpoint, template and audio)."""
    if _fresh(out_path, checkpoint, template, audio):
        return {"reused": True}
    return dubber.dub(prepared_template, audio, out_path)
