"""68-point face landmarks (dlib, iBUG order = OpenFace order), temporal tracking and the OpenFace CSV.

The original pipeline used per-frame PIPNet landmarks with no temporal smoothing (crop jitter)
and rounded the training landmarks to int32 (docs/original.md). Here every frame goes through one detector, the
main face is tracked (a second face never takes over), landmarks stay float and are smoothed over time. The main
face is the largest one unless a ``FaceChoice`` (``--face x,y`` or an index counted left to right) picks another.
"""
from __future__ import annotations

import csv
import math
import os
import threading
from typing import Callable, Iterable, Optional

import cv2
import dlib
import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.media.timebase import FPS

# Lazy imports below: face_recognition_models (optional: only to find a shape predictor) and scipy.ndimage (about
# 0.7 s of start-up, only for smoothing).

NUM_LANDMARKS = 68
DEBIAN_PREDICTOR = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"
PREDICTOR_ENV = "LAWDNET_DLIB_PREDICTOR"
CSV_META = ("frame", "face_id", "timestamp", "confidence", "success")


# ---------------------------------------------------------------- predictor file

def find_predictor(path: str = "") -> str:
    """Locate dlib's 68-point shape predictor: ``path``, $LAWDNET_DLIB_PREDICTOR, Debian's libdlib-data file,
    then the copy inside the ``face_recognition_models`` package. An explicit path or env value that does not
    exist is an error (never silently replaced by another model)."""
    if path:
        if os.path.isfile(path):
            return path
        raise UserError(f"dlib shape predictor not found: {path}")
    env = os.environ.get(PREDICTOR_ENV, "")
    if env:
        if os.path.isfile(env):
            return env
        raise UserError(f"${PREDICTOR_ENV} points to a missing file: {env}")
    tried = [f"${PREDICTOR_ENV} (unset)", DEBIAN_PREDICTOR]
    if os.path.isfile(DEBIAN_PREDICTOR):
        return DEBIAN_PREDICTOR
    try:
        import face_recognition_models  # type: ignore

        candidate = face_recognition_models.pose_predictor_model_location()
        if os.path.isfile(candidate):
            return candidate
        tried.append(candidate)
    except ImportError:
        tried.append("face_recognition_models (not installed)")
    raise UserError("dlib 68-point shape predictor not found; tried " + ", ".join(tried)
                    + " (apt-get install libdlib-data, or pass its path)")


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise UserError(f"expected an RGB uint8 frame of shape (H, W, 3), got {desc}")
    return np.ascontiguousarray(frame)


# ---------------------------------------------------------------- detector

_PREDICTORS: dict = {}
_PREDICTOR_LOCK = threading.Lock()


def _shape_predictor(path: str):
    """dlib's shape predictor, loaded once per process and file (100 MB; prediction is read-only, so detectors in
    several threads can share it; each detector keeps its own HOG scanner)."""
    with _PREDICTOR_LOCK:
        if path not in _PREDICTORS:
            try:
                _PREDICTORS[path] = dlib.shape_predictor(path)
            except RuntimeError as e:
                raise UserError(f"cannot load dlib shape predictor {path}: {e}") from None
        return _PREDICTORS[path]


class LandmarkDetector:
    """dlib HOG face detector + 68-point shape predictor.

    Detection runs on a copy whose longer side is at most ``max_side`` (HOG cost grows with the pixel count);
    if that finds nothing and the frame was shrunk, it retries at twice that resolution (small faces).
    Landmarks are always predicted on the full-resolution frame; faces narrower than ``min_face`` px are
    predicted on an upscaled patch, because dlib returns integer pixel positions and the rounding would
    otherwise be a visible fraction of a small face.
    """

    def __init__(self, predictor_path: str = "", upsample: int = 0, max_side: int = 640, min_face: int = 160):
        self.predictor_path = find_predictor(predictor_path)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = _shape_predictor(self.predictor_path)
        self._dlib = dlib
        self.upsample = int(upsample)
        self.max_side = int(max_side)
        self.min_face = int(min_face)

    # boxes are (x0, y0, x1, y1) in full-frame pixel coordinates (pixel centres at integers)
    def _detect_boxes(self, img: np.ndarray, x0: int, y0: int, scale: float) -> list[tuple[np.ndarray, float]]:
        if scale != 1.0:
            h, w = img.shape[:2]
            size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            sx, sy = size[0] / w, size[1] / h
        else:
            sx = sy = 1.0
        rects, scores, _ = self._detector.run(np.ascontiguousarray(img), self.upsample, 0.0)
        out = []
        for r, s in zip(rects, scores):
            box = np.array([(r.left() + 0.5) / sx - 0.5 + x0, (r.top() + 0.5) / sy - 0.5 + y0,
                            (r.right() + 0.5) / sx - 0.5 + x0, (r.bottom() + 0.5) / sy - 0.5 + y0], np.float32)
            out.append((box, float(s)))
        return out

    def _predict(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        dlib = self._dlib
        h, w = frame.shape[:2]
        bw = float(box[2] - box[0])
        k = 1 if bw >= self.min_face or bw <= 0 else min(4, int(math.ceil(self.min_face / bw)))
        if k == 1:
            rect = dlib.rectangle(*[int(round(float(v))) for v in box])
            shape = self._predictor(frame, rect)
            return np.array([[p.x, p.y] for p in shape.parts()], np.float32)
        # upscaled patch around the box (30 % margin) -> landmarks with 1/k px resolution
        mx, my = 0.3 * bw, 0.3 * float(box[3] - box[1])
        rx0, ry0 = max(0, int(box[0] - mx)), max(0, int(box[1] - my))
        rx1, ry1 = min(w, int(box[2] + mx) + 1), min(h, int(box[3] + my) + 1)
        patch = frame[ry0:ry1, rx0:rx1]
        patch = np.ascontiguousarray(cv2.resize(patch, ((rx1 - rx0) * k, (ry1 - ry0) * k),
                                                interpolation=cv2.INTER_LINEAR))
        b = (box - np.array([rx0, ry0, rx0, ry0], np.float32) + 0.5) * k - 0.5
        rect = dlib.rectangle(*[int(round(float(v))) for v in b])
        shape = self._predictor(patch, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        pts = (pts + 0.5) / k - 0.5 + np.array([rx0, ry0])
        return pts.astype(np.float32)

    def detect(self, frame_rgb: np.ndarray, near: Optional[np.ndarray] = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Faces in an RGB uint8 frame as ``[(box (4,) x0,y0,x1,y1, landmarks (68,2) float32), ...]``,
        best detection score first. With ``near`` (a previous box) only a window around it is searched
        (faster, and at a resolution suited to that face); an empty list means nothing there."""
        frame = _check_frame(frame_rgb)
        h, w = frame.shape[:2]
        if near is not None:
            x0, y0, x1, y1 = [float(v) for v in near]
            side = max(x1 - x0, y1 - y0, 1.0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            wx0, wy0 = max(0, int(cx - 1.1 * side)), max(0, int(cy - 1.1 * side))
            wx1, wy1 = min(w, int(cx + 1.1 * side) + 1), min(h, int(cy + 1.1 * side) + 1)
            if wx1 - wx0 < 16 or wy1 - wy0 < 16:
                return []
            # HOG's window is 80 px: bring the expected face to ~100 px (less work, small faces found)
            scale = min(2.0, 100.0 / side)
            found = self._detect_boxes(frame[wy0:wy1, wx0:wx1], wx0, wy0, scale)
        else:
            scale = min(1.0, self.max_side / max(h, w))
            found = self._detect_boxes(frame, 0, 0, scale)
            if not found and scale < 1.0:
                found = self._detect_boxes(frame, 0, 0, min(1.0, 2 * scale))
        found.sort(key=lambda bs: -bs[1])
        return [(box, self._predict(frame, box)) for box, _ in found]


# ---------------------------------------------------------------- tracking

def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _area(b: np.ndarray) -> float:
    return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))


def _centre(b: np.ndarray) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], np.float64)


class FaceChoice:
    """Which person of a template to dub: ``point`` (x, y) in the first frame with a face (the face whose box holds
    it, else the nearest), or ``index`` counted left to right there. Written back as ``"x,y"`` / ``"i"``."""

    def __init__(self, point: Optional[tuple] = None, index: Optional[int] = None):
        if (point is None) == (index is None):
            raise ValueError("a FaceChoice is a point or an index")
        self.point = None if point is None else (float(point[0]), float(point[1]))
        self.index = None if index is None else int(index)

    def __str__(self) -> str:
        if self.index is not None:
            return str(self.index)
        return f"{self.point[0]:g},{self.point[1]:g}"

    def __repr__(self) -> str:
        return f"FaceChoice({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, FaceChoice) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def pick(self, dets: list) -> tuple:
        """The chosen detection among ``dets`` [(box, landmarks)] of one frame (UserError if the index is out of
        range)."""
        if self.index is not None:
            order = sorted(dets, key=lambda d: _centre(d[0])[0])
            if not 0 <= self.index < len(order):
                raise UserError(f"face index {self.index} chosen but the first frame with a face shows "
                                f"{len(order)} face(s) (0 = leftmost)")
            return order[self.index]
        x, y = self.point
        inside = [d for d in dets if d[0][0] <= x <= d[0][2] and d[0][1] <= y <= d[0][3]]
        if inside:
            return min(inside, key=lambda d: _area(d[0]))
        return min(dets, key=lambda d: float(np.hypot(*(_centre(d[0]) - (x, y)))))


def parse_face(spec) -> Optional[FaceChoice]:
    """``"x,y"`` (a point in pixels) or ``"i"`` (an index left to right) -> FaceChoice; None / "" -> None."""
    if spec is None or isinstance(spec, FaceChoice):
        return spec
    text = str(spec).strip()
    if not text:
        return None
    try:
        if "," in text:
            x, y = (float(v) for v in text.split(","))
            if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
                raise ValueError
            return FaceChoice(point=(x, y))
        i = int(text)
        if i < 0:
            raise ValueError
        return FaceChoice(index=i)
    except ValueError:
        raise UserError(f"face must be a point 'x,y' (pixels, in the first frame) or an index 0, 1, ... counted "
                        f"left to right, got {text[:40]!r}") from None


def _nearest(dets: list, point: np.ndarray) -> tuple:
    return min(dets, key=lambda d: float(np.hypot(*(_centre(d[0]) - point))))


class ShotDetector:
    """Hard cuts between consecutive frames, from 8x6 colour thumbnails (each cell the mean colour of 1/48 of the
    frame): a cut when the thumbnail changes by more than ``min_diff`` grey levels on average AND by more than
    ``ratio`` times the recent typical change. So coarse layout changes count, while blur, noise, mouth and head
    motion (small at this scale) and steady fast motion (a high typical change) do not. Gradual transitions
    (fades, dissolves) are not cuts; a missed cut is still caught by the face tracker when the face jumps (a
    new track starts)."""

    def __init__(self, min_diff: float = 30.0, ratio: float = 4.0, history: int = 8):
        self.min_diff, self.ratio = float(min_diff), float(ratio)
        self._prev = None
        self._recent: list[float] = []
        self._history = int(history)

    def __call__(self, frame: np.ndarray) -> bool:
        thumb = cv2.resize(frame, (8, 6), interpolation=cv2.INTER_AREA).astype(np.float32)
        prev, self._prev = self._prev, thumb
        if prev is None:
            return False
        diff = float(np.abs(thumb - prev).mean())
        typical = float(np.mean(self._recent)) if self._recent else 0.0
        cut = diff > self.min_diff and diff > self.ratio * (typical + 1.0)
        self._recent = [] if cut else (self._recent + [diff])[-self._history:]
        return cut


def track_landmarks(frames: Iterable[np.ndarray], detector: Optional[LandmarkDetector] = None,
                    smooth: float = 1.5, progress: bool = True, total: Optional[int] = None,
                    min_iou: float = 0.1, min_area_ratio: float = 0.5, cuts: bool = True,
                    on_frame: Optional[Callable[[int, bool], None]] = None, return_tracks: bool = False,
                    face: Optional[FaceChoice] = None, notes: Optional[list] = None):
    """Landmarks of the main face over a frame sequence -> (landmarks (T,68,2) float32, valid (T,) bool)
    (plus ``tracks`` (T,) int32 with ``return_tracks``).

    The main face is the largest one in the first frame with a face; afterwards the detection overlapping
    the previous box best (IoU >= ``min_iou``) continues the track. If none overlaps (the face moved during
    a gap), the largest face is taken only if its area is at least ``min_area_ratio`` times the
    last one, so a smaller second face never steals the track. With ``cuts`` a scene cut (``ShotDetector``)
    ends the track and the new shot's largest face starts the next one. Frames without the face are
    valid=False; their landmarks are interpolated from the neighbouring valid frames (held at the ends). Runs of
    valid frames are smoothed separately (``smooth`` = Gaussian sigma in frames, 0 = off): smoothing never
    crosses a cut, a gap or a re-acquisition without overlap. ``tracks`` numbers the stretches that show one
    person in one shot (a new number at every cut and every re-acquisition without overlap): the frames a
    reference for that person may come from. ``on_frame(index, face_found)`` is called after every frame (it
    may raise to stop). Frames are consumed one at a time and not kept.

    ``face`` (a FaceChoice) replaces "the largest face": the chosen one starts the track; a re-acquisition within a
    shot takes the face nearest the last position (within 1.5 face widths: never the other person), and a new
    shot the face nearest the chosen position. Without a choice, a first frame showing several faces adds a
    note to ``notes`` (the largest is dubbed).
    """
    detector = detector or LandmarkDetector()
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    lms: list[np.ndarray] = []
    valid: list[bool] = []
    segment: list[int] = []
    tracks: list[int] = []
    seg = track = 0
    prev_box: Optional[np.ndarray] = None
    prev_valid = False
    is_cut = ShotDetector() if cuts else None
    anchor: Optional[np.ndarray] = None     # the chosen position (with ``face``)
    warned = False
    for t, frame in enumerate(tqdm(frames, total=total, desc="landmarks", unit="frame", disable=not progress)):
        pick = None
        if is_cut is not None and is_cut(_check_frame(frame)):
            prev_box = None   # a new shot: its own main face
            seg += 1
            track += 1
        if prev_box is not None:
            for near in (prev_box, None):  # cheap window search first, then the whole frame
                dets = detector.detect(frame, near=near)
                ious = [_iou(b, prev_box) for b, _ in dets]
                if ious and max(ious) >= min_iou:
                    pick = dets[int(np.argmax(ious))]
                    break
            if pick is None and dets:
                if face is not None:     # the chosen person, where it was last seen: never the other one
                    near = _nearest(dets, _centre(prev_box))
                    limit = 1.5 * max(1.0, float(prev_box[2] - prev_box[0]))
                    cand = near if np.hypot(*(_centre(near[0]) - _centre(prev_box))) <= limit else None
                else:
                    big = max(dets, key=lambda d: _area(d[0]))
                    cand = big if _area(big[0]) >= min_area_ratio * _area(prev_box) else None
                if cand is not None:
                    pick = cand
                    seg += 1  # re-acquired somewhere else: do not smooth across, maybe another person
                    track += 1
        else:
            dets = detector.detect(frame)
            if dets and face is not None:
                if anchor is None:       # the first frame with faces: the choice decides
                    pick = face.pick(dets)
                    anchor = _centre(pick[0]) if face.point is None else np.array(face.point, np.float64)
                else:                    # a new shot: the face nearest the chosen position
                    pick = _nearest(dets, anchor)
            elif dets:
                pick = max(dets, key=lambda d: _area(d[0]))
                if not warned and len(dets) > 1:
                    warned = True
                    if notes is not None:
                        notes.append(f"the template shows {len(dets)} faces; the largest is dubbed (choose "
                                     f"another with --face x,y or an index counted left to right)")
        if pick is None:
            lms.append(np.full((NUM_LANDMARKS, 2), np.nan, np.float32))
            valid.append(False)
            if prev_valid:
                seg += 1
        else:
            prev_box = pick[0]
            lms.append(pick[1])
            valid.append(True)
        prev_valid = valid[-1]
        segment.append(seg)
        tracks.append(track)
        if on_frame is not None:
            on_frame(t, pick is not None)
    if not lms:
        empty = (np.zeros((0, NUM_LANDMARKS, 2), np.float32), np.zeros(0, bool))
        return empty + (np.zeros(0, np.int32),) if return_tracks else empty
    landmarks = np.stack(lms)
    valid_arr = np.array(valid, bool)
    landmarks = smooth_landmarks(landmarks, valid_arr, smooth, segments=np.array(segment))
    if return_tracks:
        return landmarks, valid_arr, np.array(tracks, np.int32)
    return landmarks, valid_arr


def _runs(valid: np.ndarray, segments: Optional[np.ndarray]) -> list[tuple[int, int]]:
    """[start, end) of maximal stretches of valid frames sharing one segment id."""
    runs, start = [], None
    for t in range(len(valid) + 1):
        same = (t < len(valid) and valid[t] and start is not None
                and (segments is None or segments[t] == segments[start]))
        if start is not None and not same:
            runs.append((start, t))
            start = None
        if start is None and t < len(valid) and valid[t]:
            start = t
    return runs


def interpolate_invalid(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid frames linearly from the nearest valid frames (held at the ends); all-invalid -> zeros."""
    lm = np.array(landmarks, np.float64)
    valid = np.asarray(valid, bool)
    if not valid.any():
        return np.zeros(lm.shape, np.float32)
    t = np.arange(len(lm))
    flat = lm.reshape(len(lm), -1)
    for c in range(flat.shape[1]):
        flat[~valid, c] = np.interp(t[~valid], t[valid], flat[valid, c])
    return flat.reshape(lm.shape).astype(np.float32)


def smooth_landmarks(landmarks: np.ndarray, valid: np.ndarray, sigma: float,
                     segments: Optional[np.ndarray] = None) -> np.ndarray:
    """Zero-phase temporal smoothing of (T,68,2) landmarks over each run of valid frames.

    A Gaussian-weighted local linear fit: inside a run it equals a Gaussian filter of std ``sigma`` frames,
    at run ends it stays unbiased for steady motion (a plain Gaussian would pull the ends toward the
    run's interior). Invalid frames are never used; they are filled by interpolation afterwards.
    """
    from scipy.ndimage import correlate1d

    lm = np.array(landmarks, np.float64)
    valid = np.asarray(valid, bool)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2) or len(valid) != len(lm):
        raise UserError(f"expected landmarks (T,68,2) and valid (T,), got {lm.shape} and {valid.shape}")
    out = lm.copy()
    if sigma > 0:
        r = max(1, int(math.ceil(4 * sigma)))
        d = np.arange(-r, r + 1, dtype=np.float64)
        w = np.exp(-0.5 * (d / sigma) ** 2)
        for a, b in _runs(valid, segments):
            n = b - a
            if n < 3:
                continue
            x = lm[a:b].reshape(n, -1)
            ones = np.ones(n)
            s0 = correlate1d(ones, w, mode="constant")
            s1 = correlate1d(ones, w * d, mode="constant")
            s2 = correlate1d(ones, w * d * d, mode="constant")
            t0 = correlate1d(x, w, axis=0, mode="constant")
            t1 = correlate1d(x, w * d, axis=0, mode="constant")
            den = s0 * s2 - s1 * s1
            est = (s2[:, None] * t0 - s1[:, None] * t1) / np.where(den > 1e-12, den, 1.0)[:, None]
            est = np.where((den > 1e-12)[:, None], est, x)
            out[a:b] = est.reshape(n, NUM_LANDMARKS, 2)
    out[~valid] = np.nan
    return interpolate_invalid(out, valid)


# ---------------------------------------------------------------- OpenFace CSV

def _csv_header() -> list[str]:
    return list(CSV_META) + [f"x_{i}" for i in range(NUM_LANDMARKS)] + [f"y_{i}" for i in range(NUM_LANDMARKS)]


def write_openface_csv(path: str, landmarks: np.ndarray, valid: Optional[np.ndarray] = None,
                       fps: float = FPS) -> None:
    """Write (T,68,2) landmarks as OpenFace's 2D-landmark CSV (frame is 1-based; success = valid; invalid
    frames keep their interpolated landmarks). Written to a temporary file and renamed (atomic)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 2):
        raise UserError(f"{path}: landmarks must have shape (T, 68, 2), got {lm.shape}")
    valid = np.ones(len(lm), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (len(lm),):
        raise UserError(f"{path}: valid must have shape ({len(lm)},), got {valid.shape}")
    lm = np.nan_to_num(lm)
    with atomic_write(path, "w", newline="") as f:
        # OpenFace separates with ", " in the header and the rows
        f.write(", ".join(_csv_header()) + "\n")
        for t in range(len(lm)):
            meta = [str(t + 1), "0", f"{t / fps:.3f}", "0.98" if valid[t] else "0", "1" if valid[t] else "0"]
            coords = [f"{v:.3f}" for v in lm[t, :, 0]] + [f"{v:.3f}" for v in lm[t, :, 1]]
            f.write(", ".join(meta + coords) + "\n")


def read_openface_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an OpenFace-style CSV (2D-landmark export or full output; header with or without spaces)
    -> (landmarks (T,68,2) float32, valid (T,) bool). T is the largest frame number; missing frames or
    success=0 rows are invalid (interpolated). With several faces per frame the first successful row wins."""
    if not os.path.isfile(path):
        raise UserError(f"landmark CSV not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise UserError(f"{path}: empty landmark CSV")
    header = [h.strip() for h in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    need = ["frame"] + [f"x_{i}" for i in range(NUM_LANDMARKS)] + [f"y_{i}" for i in range(NUM_LANDMARKS)]
    missing = [n for n in need if n not in col]
    if missing:
        raise UserError(f"{path}: not an OpenFace landmark CSV, header lacks {', '.join(missing[:4])}"
                        + (" ..." if len(missing) > 4 else ""))
    xi = [col[f"x_{i}"] for i in range(NUM_LANDMARKS)]
    yi = [col[f"y_{i}"] for i in range(NUM_LANDMARKS)]
    si = col.get("success")
    entries: dict[int, tuple[np.ndarray, bool]] = {}
    n_data = 0
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        n_data += 1
        if len(row) != len(header):
            raise UserError(f"{path}: row {line_no} has {len(row)} columns, the header has {len(header)}")
        try:
            frame_f = float(row[col["frame"]])
            pts = np.array([[float(row[a]), float(row[b])] for a, b in zip(xi, yi)], np.float64)
            ok = True if si is None else float(row[si]) >= 0.5
        except ValueError as e:
            raise UserError(f"{path}: row {line_no} has a non-numeric value ({e})") from None
        if frame_f != int(frame_f) or frame_f < 1:
            raise UserError(f"{path}: row {line_no} has frame {row[col['frame']].strip()} "
                            "(expected a 1-based integer)")
        frame = int(frame_f)
        if frame > 100 * (len(rows) + 10):
            raise UserError(f"{path}: row {line_no} has an implausible frame number {frame}")
        ok = ok and bool(np.isfinite(pts).all())
        if frame not in entries or (ok and not entries[frame][1]):
            entries[frame] = (pts, ok)
    if not n_data:
        raise UserError(f"{path}: landmark CSV has a header but no data rows")
    T = max(entries)
    lm = np.full((T, NUM_LANDMARKS, 2), np.nan)
    valid = np.zeros(T, bool)
    for frame, (pts, ok) in entries.items():
        lm[frame - 1] = pts
        valid[frame - 1] = ok
    return interpolate_invalid(lm, valid), valid
