"""The per-video stages (convert_fps, extract_audio, extract_audio_features, detect_landmarks, crop_face).

Each stage reads earlier outputs and writes its own output atomically; models are loaded once per process.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
from tqdm import tqdm

from config.config import DataConfig
from config.profile import get_profile
from dataset.prepare.layout import atomic_copy, atomic_npy
from utils.errors import UserError
from utils.media.timebase import FPS, SAMPLE_RATE

# Lazy imports below: the media, face and audio tools (av, cv2, torch, dlib behind them) load in load_tools() once a
# run starts, before the worker pool forks, so data_processing.py answers --help and option errors without them.

SILENCE_PEAK = 1e-3                      # -60 dBFS: below this the whole track counts as silent


class SkipVideo(Exception):
    """The video is fine as a file but unusable for training (too short, silent, too few faces)."""


# ---------------------------------------------------------------------------------------------- per-process caches

_CACHE: dict = {}


def frontend(name: str, model_path: str, device: str, precision: str = "fp32"):
    key = ("frontend", name, model_path if name != "mel" else "", device, precision)
    if key not in _CACHE:
        from utils.audio.features import get_frontend

        _CACHE[key] = get_frontend(name, model_path, device, precision)
    return _CACHE[key]


def _detector():
    if "detector" not in _CACHE:
        from utils.face.landmarks import LandmarkDetector

        _CACHE["detector"] = LandmarkDetector()
    return _CACHE["detector"]


def load_tools(stages, features, cfg: DataConfig, need_detector: bool) -> None:
    """Import the stage modules and load the models once per process, so stage timings measure the work."""
    import utils.media.audio_io  # noqa: F401
    import utils.media.video_io  # noqa: F401

    if "crop_face" in stages:
        import utils.face.align  # noqa: F401
    if "extract_audio_features" in stages:
        for f in features:
            frontend(f, cfg.audio_model_path, cfg.device, get_profile(cfg.profile).audio_precision)
    if "detect_landmarks" in stages and need_detector:
        _detector()


def progress_bar(it, progress: bool, **kw):
    return tqdm(it, disable=not progress, leave=False, **kw)


# ---------------------------------------------------------------------------------------------- stages

def convert_stage(src: str, dst: str, notes=None) -> bool:
    """Constant-25-fps copy of ``src`` at ``dst``; copies instead of re-encoding when it already is one (an
    upright, undamaged 25 fps mp4). The reader's warnings (truncated, damaged) go to ``notes``."""
    from utils.media.video_io import convert_to_fps, count_frames, probe

    info = probe(src)
    native = count_frames(src, None)
    cfr25 = (os.path.splitext(src)[1].lower() in (".mp4", ".m4v") and abs(info.fps - FPS) < 1e-3
             and not info.rotation and native == info.num_frames == count_frames(src, FPS))   # and not truncated
    if cfr25:
        atomic_copy(src, dst)
        return False
    convert_to_fps(src, dst, fps=FPS, notes=notes)
    return True


def audio_stage(video: str, wav: str, notes=None, resampler: str = "polyphase") -> None:
    """16 kHz mono wav of the video's audio track (``resampler``: the profile's); SkipVideo for digital silence."""
    from utils.media.audio_io import load_audio, save_wav
    from utils.media.video_io import probe

    if not probe(video).has_audio:
        raise UserError(f"{os.path.basename(video)}: the video has no audio track")
    samples = load_audio(video, SAMPLE_RATE, resampler, notes=notes)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak < SILENCE_PEAK:
        raise SkipVideo(f"the audio track is silent (peak {peak:.1e} < {SILENCE_PEAK:g})")
    save_wav(wav, samples, SAMPLE_RATE)


def features_stage(wav: str, out: str, name: str, num_frames: int, model_path: str, device: str,
                   precision: str = "fp32") -> None:
    """(num_frames, dim) float32 features of ``wav`` (exact length by the front-end's cut/pad rule)."""
    from utils.media.audio_io import load_audio

    feats = frontend(name, model_path, device, precision)(load_audio(wav, SAMPLE_RATE), num_frames)
    if feats.shape[0] != num_frames:  # the front-end contract; never store a misaligned file
        raise RuntimeError(f"{name} front-end returned {feats.shape[0]} rows for {num_frames} frames")
    atomic_npy(out, feats.astype(np.float32))


def landmark_stage(video: str, csv_path: str, num_frames: int, import_dir: str = "", progress: bool = True) -> str:
    """Write ``csv_path``: a user CSV from ``import_dir`` if there is one, else dlib tracking. Returns the origin."""
    from utils.face.landmarks import track_landmarks, write_openface_csv
    from utils.media.video_io import iter_frames

    vid = os.path.splitext(os.path.basename(csv_path))[0]
    user_csv = os.path.join(import_dir, vid + ".csv") if import_dir else ""
    if user_csv and os.path.isfile(user_csv):
        atomic_copy(user_csv, csv_path)
        return "user"
    lm, valid = track_landmarks(iter_frames(video, FPS), _detector(), progress=progress, total=num_frames)
    if len(lm) != num_frames:
        raise UserError(f"{os.path.basename(video)}: decoded {len(lm)} frames, expected {num_frames}")
    write_openface_csv(csv_path, lm, valid, fps=FPS)
    return "dlib"


def load_landmarks(csv_path: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of exactly ``num_frames`` frames from a CSV (ours or a user's OpenFace CSV).

    A user CSV may differ by a few rows (OpenFace run on a slightly different decode): extra rows are
    dropped, missing frames are invalid. A larger difference means it belongs to another frame rate or video.
    """
    from utils.face.landmarks import read_openface_csv

    lm, valid = read_openface_csv(csv_path)
    if abs(len(lm) - num_frames) > max(3, int(0.01 * num_frames)):
        raise UserError(f"{csv_path}: {len(lm)} landmark rows but the 25 fps video has {num_frames} frames "
                        "(was it made from a video at another frame rate?)")
    if len(lm) < num_frames:
        pad = num_frames - len(lm)
        lm = np.concatenate([lm, np.repeat(lm[-1:], pad, 0)])
        valid = np.concatenate([valid, np.zeros(pad, bool)])
    return lm[:num_frames], valid[:num_frames]


def crop_stage(video: str, csv_path: str, out_dir: str, num_frames: int, crop_width: int, jpeg_quality: int = 95,
               progress: bool = True, profile=None) -> list[int]:
    """Aligned crops of every valid frame into ``out_dir`` (via ``out_dir.part``), made as the preprocessing
    ``profile`` says (fill outside the frame, sample points). Returns the invalid frames."""
    import cv2

    from utils.face.align import FaceAligner
    from utils.media.video_io import iter_frames

    lm, valid = load_landmarks(csv_path, num_frames)
    aligner = FaceAligner(crop_width, profile=profile)
    mats = None
    part = out_dir + ".part"
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    n = 0
    frames = iter_frames(video, FPS, max_frames=num_frames)
    for i, frame in enumerate(progress_bar(frames, progress, total=num_frames, desc="crops", unit="frame")):
        n += 1
        if mats is None:  # the official sample points depend on the frame size
            mats = aligner.estimate(lm, frame.shape[:2])
        if not valid[i]:
            continue
        crop = aligner.crop(frame, mats[i])
        if not cv2.imwrite(os.path.join(part, f"{i:06d}.jpg"), np.ascontiguousarray(crop[..., ::-1]), params):
            raise OSError(f"cannot write {part}/{i:06d}.jpg")
    if n != num_frames:
        shutil.rmtree(part, ignore_errors=True)
        raise UserError(f"{os.path.basename(video)}: decoded {n} frames, expected {num_frames}")
    if os.path.isdir(out_dir):  # an older crop set (other crop_width): replace it
        shutil.rmtree(out_dir)
    os.replace(part, out_dir)
    return [int(i) for i in np.flatnonzero(~valid)]


def crops_ok(out_dir: str, crop_width: int) -> bool:
    """A finished crop dir of the right width (only finished dirs exist under the final name)."""
    import cv2

    if not os.path.isdir(out_dir):
        return False
    names = sorted(n for n in os.listdir(out_dir) if n.endswith(".jpg"))
    if not names:
        return False
    img = cv2.imread(os.path.join(out_dir, names[0]), cv2.IMREAD_UNCHANGED)
    return img is not None and img.shape[:2] == (int(1.3 * crop_width), crop_width)

