"""Quality figures of one video against the ground truth: mouth openness over time (measured with the project's
dlib landmarks) and its correlation with the ground-truth openness, plus the evaluation package's metrics
(PSNR/SSIM of the frame and of the aligned mouth crop, jitter, seams, opening-vs-audio correlation, and what a
viewer sees: still-skin colour, the paste edge, mouth sharpness, flicker, an open mouth in silence)."""
from __future__ import annotations

import math
import sys

import numpy as np

from utils.errors import UserError
from utils.media.timebase import FPS
from utils.media.video_io import count_frames, iter_frames

# Lazy imports below: the evaluation package (torch) and the landmark detector (cv2, dlib) load only when a video is
# measured (start-up time of demo.py).


def measured_openness(video: str, detector=None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(opening per frame: inner-lip gap / eye distance, valid mask) from dlib landmarks tracked over ``video``."""
    from evaluation.mouth_motion import mouth_opening
    from utils.face.landmarks import LandmarkDetector, track_landmarks

    lm, valid = track_landmarks(iter_frames(video, fps=FPS), detector or LandmarkDetector(), smooth=0.0,
                                progress=progress, total=count_frames(video, FPS))
    return mouth_opening(lm), valid


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the common length; 0 when either side does not move at all (no linear relation)."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    if n < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def speech_span(gt_openness: np.ndarray, thresh: float = 0.05) -> tuple[int, int]:
    """[first, last + 1) frames of the spoken part (ground-truth openness above ``thresh``). Openness r is taken
    there only: the silent lead-in and tail, closed in every video, would otherwise make any two videos agree."""
    idx = np.flatnonzero(np.asarray(gt_openness) > thresh)
    return (int(idx[0]), int(idx[-1]) + 1) if len(idx) >= 3 else (0, len(gt_openness))


# evaluate(...) figures the report and the quality bar use (appearance ones against the truth and the template)
APPEARANCE = ("skin_de_mean", "skin_de_p99", "lower_de_mean", "lower_de_max", "edge_de_mean", "edge_de_p99",
              "edge_step", "fringe_mean", "fringe_p99", "mouth_sharpness", "skin_flicker_excess")
KEPT = ("psnr", "ssim", "psnr_mouth", "ssim_mouth", "mouth_jitter", "seam_paste", "av_corr", "opening_agreement",
        "own_lse_d", "own_lse_c",
        "own_av_offset", "open_in_silence") + APPEARANCE + tuple(k + "_tpl" for k in APPEARANCE)


def video_metrics(video: str, reference: str, gt_openness: np.ndarray, detector=None, mouth_size: int = 64,
                  device: str = "cpu", progress: bool = False, syncnet: str = "", audio: str | None = None,
                  template: str | None = None, landmark_cache: dict | None = None) -> dict:
    """Everything the report shows for one video: openness track + correlation, evaluate(...) metrics (the
    appearance ones against ``reference`` and ``template``); with ``syncnet`` (a mel SyncNet) also LSE-D/LSE-C of
    the video against ``audio`` (default: its own track). ``landmark_cache``: see ``evaluation.evaluate``."""
    from evaluation import evaluate

    opening, valid = measured_openness(video, detector, progress)
    lo, hi = speech_span(gt_openness)
    hi = min(hi, len(opening))
    # frames without a detected face keep the tracker's interpolated landmarks: a generator that destroys the
    # face is not rewarded by dropping its worst frames
    res = {"openness": opening.tolist(), "openness_valid": valid.tolist(), "frames": int(len(opening)),
           "openness_corr": correlation(opening[lo:hi], gt_openness[lo:hi]), "speech_span": [int(lo), int(hi)],
           "openness_std": float(opening[valid].std()) if valid.any() else 0.0,
           "face_frames": int(valid.sum())}
    try:
        ev = evaluate(video, reference=reference, audio=audio, template=template, syncnet=syncnet or None,
                      mouth_size=mouth_size, device=device, progress=progress, detector=detector,
                      landmark_cache=landmark_cache)
    except UserError as e:          # e.g. an untrained generator that paints no face: a result, not a crash
        print(f"warning: {e}: its figures are n/a", file=sys.stderr)
        ev = {}
    for k in KEPT:
        if k in ev:
            v = ev[k]
            res[k] = float(v) if v is not None and math.isfinite(float(v)) else None
    res["evaluate"] = {k: _finite(v) for k, v in ev.items()}
    return res


def _finite(v):
    """JSON-safe value: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v


def finite_tree(x):
    """``_finite`` applied through dicts and lists."""
    if isinstance(x, dict):
        return {str(k): finite_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_tree(v) for v in x]
    if isinstance(x, np.ndarray):
        return finite_tree(x.tolist())
    return _finite(x)
