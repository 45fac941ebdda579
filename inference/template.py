"""A template video prepared for dubbing: per-frame landmarks of the main face (or the chosen one), cached on disk.

Only per-frame geometry is kept (landmarks (N,68,2), a face-found flag, the track (one person in one shot, a new
number at every scene cut), frame size and count) and the reader's warnings (truncated file, damaged packets),
never frames. A still image is a one-frame template (a static head that speaks).
The cache file is keyed by a SHA-256 of the video's bytes plus every setting that changes the landmarks
(detector, smoothing, frame rate, format version, the face choice), so a changed video or setting is a different
key and a stale cache can never be used (the original keyed its caches by file name only, docs/original.md). Cache
files are written atomically and checked on load; a damaged one is ignored and rewritten.

Limits (the server's): ``max_seconds`` refuses a longer template from its header and again while decoding;
``face_search_seconds`` gives up when no face was found in that many first seconds; ``cancel`` (an Event) stops
an analysis nobody waits for any more.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.face.landmarks import LandmarkDetector, find_predictor, parse_face, track_landmarks
from utils.media.container import MediaTooLong
from utils.media.timebase import FPS
from utils.media.video_io import count_frames, iter_frames, probe

CACHE_VERSION = 2
CACHE_DIRNAME = ".lawdnet_cache"


@dataclass
class Template:
    """Geometry of a template video at 25 fps; ``references`` is filled by the Dubber (small crops)."""

    path: str
    key: str
    num_frames: int
    height: int
    width: int
    landmarks: np.ndarray          # (N, 68, 2) float32, smoothed; interpolated where no face
    valid: np.ndarray              # (N,) bool: a face was found
    tracks: Optional[np.ndarray] = None   # (N,) int32: one person in one shot (references come from the same)
    warnings: list = field(default_factory=list)   # what the reader found suspicious (truncated file, ...)
    from_cache: bool = False
    cache_file: str = ""
    seconds: float = 0.0           # time spent preparing (0 when read from the cache)
    extra: dict = field(default_factory=dict)
    face: str = ""                 # the face choice ("x,y" or an index; "" = the largest face)

    @property
    def num_faceless(self) -> int:
        return int((~self.valid).sum())

    @property
    def num_tracks(self) -> int:
        return int(len(np.unique(self.tracks[self.valid]))) if self.tracks is not None and self.valid.any() else 1


class AnalysisCancelled(Exception):
    """Raised inside ``prepare_template`` when its ``cancel`` event is set."""


def file_digest(path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def settings_key(**settings) -> str:
    return json.dumps({"version": CACHE_VERSION, "fps": FPS, **settings}, sort_keys=True)


def default_cache_dir(video_path) -> str:
    """``.lawdnet_cache`` next to the video, or ``~/.cache/lawdnet`` when that folder is not writable."""
    here = os.path.join(os.path.dirname(os.path.abspath(video_path)), CACHE_DIRNAME)
    try:
        os.makedirs(here, exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    user = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lawdnet")
    os.makedirs(user, exist_ok=True)
    return user


def _cache_file(cache_dir: str, video_path: str, key: str) -> str:
    stem = os.path.splitext(os.path.basename(video_path))[0][:40]
    return os.path.join(cache_dir, f"{stem}-{key[:24]}.npz")


def load_cached(cache_file: str, key: str, video_path: str, face: str = "") -> Optional[Template]:
    """The cached template if the file exists and matches ``key`` exactly; None otherwise."""
    if not os.path.isfile(cache_file):
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            lm, valid = z["landmarks"].astype(np.float32), z["valid"].astype(bool)
            tracks = z["tracks"].astype(np.int32)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # damaged or foreign: recompute and overwrite
    n = int(meta.get("num_frames", -1))
    if (meta.get("key") != key or lm.shape != (n, 68, 2) or valid.shape != (n,) or tracks.shape != (n,)
            or not np.isfinite(lm).all()):
        return None
    return Template(os.fspath(video_path), key, n, int(meta["height"]), int(meta["width"]), lm, valid, tracks,
                    warnings=[str(w) for w in meta.get("warnings", [])], from_cache=True, cache_file=cache_file,
                    face=face)


def save_cached(cache_file: str, t: Template) -> None:
    meta = json.dumps({"key": t.key, "num_frames": t.num_frames, "height": t.height, "width": t.width,
                       "video": os.path.basename(t.path), "created": time.time(), "warnings": list(t.warnings)})
    with atomic_write(cache_file, "wb") as f:
        np.savez(f, landmarks=t.landmarks, valid=t.valid, tracks=t.tracks, meta=np.array(meta))


def prepare_template(video_path, cache_dir: Optional[str] = None, use_cache: bool = True, detector=None,
                     smooth: float = 1.5, progress: bool = True, max_seconds: Optional[float] = None,
                     face_search_seconds: Optional[float] = None, cancel=None, face=None) -> Template:
    """Landmarks of the main face of every 25 fps frame of ``video_path`` (from the cache when valid).

    ``face``: which person to dub in a template showing several (``"x,y"`` in the first frame with a face, an
    index counted left to right, or a ``FaceChoice``); None = the largest face (a warning when there are more).

    ``cache_dir`` None -> :func:`default_cache_dir`. Raises UserError when the file is missing, is not a video
    or still image, or shows no face in any frame; ``MediaTooLong`` past ``max_seconds``; UserError when no
    face shows in the first ``face_search_seconds``; ``AnalysisCancelled`` once ``cancel`` is set (limits: see
    the module doc).
    """
    video_path = os.fspath(video_path)
    choice = parse_face(face)
    info = probe(video_path)  # UserError for missing / not-a-video files
    if max_seconds and info.duration > max_seconds + 0.5:
        raise MediaTooLong(f"{video_path}: the video lasts {info.duration:.1f} s; the limit is {max_seconds:g} s",
                           info.duration, max_seconds)
    # The cache key needs only the detector's settings; loading dlib's 100 MB predictor waits for a cache miss.
    if detector is not None:
        det_settings = (detector.upsample, detector.max_side, detector.min_face, detector.predictor_path)
    else:
        defaults = inspect.signature(LandmarkDetector).parameters
        det_settings = (defaults["upsample"].default, defaults["max_side"].default, defaults["min_face"].default,
                        find_predictor())
    settings = {"detector": "dlib-hog", "upsample": det_settings[0], "max_side": det_settings[1],
                "min_face": det_settings[2], "predictor": os.path.basename(det_settings[3]), "smooth": smooth}
    if choice is not None:         # absent without a choice: the caches written before the choice stay valid
        settings["face"] = str(choice)
    key = hashlib.sha256((file_digest(video_path) + settings_key(**settings)).encode()).hexdigest()
    cache_file = ""
    if use_cache:
        cache_file = _cache_file(cache_dir or default_cache_dir(video_path), video_path, key)
        cached = load_cached(cache_file, key, video_path, str(choice or ""))
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    # under a limit, no exact progress total: counting may decode a (hostile) file once more before the analysis
    total = count_frames(video_path, FPS) if max_seconds is None else None
    det = detector or LandmarkDetector()
    max_frames = int(math.ceil(max_seconds * FPS)) + 1 if max_seconds else None
    search = int(math.ceil(face_search_seconds * FPS)) if face_search_seconds else None
    found = [False]

    def on_frame(i, face):
        found[0] = found[0] or face
        if cancel is not None and cancel.is_set():
            raise AnalysisCancelled(video_path)
        if max_frames is not None and i + 1 >= max_frames:
            raise MediaTooLong(f"{video_path}: the video lasts more than {max_seconds:g} s (the limit)",
                               (i + 1) / FPS, max_seconds)
        if search is not None and i + 1 >= search and not found[0]:
            raise UserError(f"{video_path}: no face found in the first {face_search_seconds:g} s")

    notes: list = []
    lm, valid, tracks = track_landmarks(iter_frames(video_path, fps=FPS, notes=notes), det, smooth=smooth,
                                        progress=progress, total=total, on_frame=on_frame, return_tracks=True,
                                        face=choice, notes=notes)
    if len(lm) == 0:
        raise UserError(f"{video_path}: the video has no frames")
    if not valid.any():
        raise UserError(f"{video_path}: no face found in any of its {len(lm)} frames")
    t = Template(video_path, key, len(lm), info.height, info.width, lm.astype(np.float32), valid, tracks,
                 warnings=notes, cache_file=cache_file, seconds=time.perf_counter() - t0, face=str(choice or ""))
    if use_cache:
        try:
            save_cached(cache_file, t)
        except OSError:  # a read-only cache folder must not stop the dubbing
            t.cache_file = ""
    return t
