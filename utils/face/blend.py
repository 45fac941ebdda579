"""The region speech moves, from 68 landmarks: the paste-back blend mask of a dub and the regions its metrics use.

Speech moves the lips and the lower jaw, nothing above the nose base or outside the jaw line. The *speech hull*
is the convex hull of the lips (48-67), the lower jaw (4-12) and the same jaw points lowered by ``JAW_DROP`` eye
distances (room for a chin that drops further than the template's when the mouth opens wider). The blend mask is
1 on that hull grown by ``GROW``, ramps smoothly to exactly 0 over the next ``FEATHER`` (all in units of the
outer eye-corner distance, so one definition fits every crop and frame size), and is exactly 0 everywhere else:
paste-back keeps those pixels bit-identical to the template (``utils/face/align.py:paste_back``).

Works in any pixel coordinates (frame or aligned crop): pass the landmarks in those coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np

LIPS = tuple(range(48, 68))
LOWER_JAW = tuple(range(4, 13))
JAW_DROP = 0.25      # eye distances the lowered jaw points sit below the template's jaw
GROW = 0.06          # full weight this far beyond the hull
FEATHER = 0.12       # then a smooth ramp to 0 over this distance


def eye_distance(lm68: np.ndarray) -> float:
    lm = np.asarray(lm68, np.float64)
    return float(max(np.linalg.norm(lm[36] - lm[45]), 1e-6))


def speech_hull(lm68: np.ndarray, jaw_drop: float = JAW_DROP) -> np.ndarray:
    """(K, 2) float64 convex hull (cv2 order) of the lips, the lower jaw and the lowered jaw."""
    lm = np.asarray(lm68, np.float64)
    d = eye_distance(lm)
    up = lm[27] - lm[8]                       # face 'up' direction: chin -> nose bridge
    up = up / max(np.linalg.norm(up), 1e-6)
    jaw = lm[list(LOWER_JAW)]
    pts = np.concatenate([lm[list(LIPS)], jaw, jaw - jaw_drop * d * up])
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def hull_fill(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8: 1 inside the convex hull of ``points`` (any (K, 2) pixel coordinates, 1/16 px precision)."""
    H, W = int(hw[0]), int(hw[1])
    inside = np.zeros((H, W), np.uint8)
    hull = cv2.convexHull(np.asarray(points, np.float32)).reshape(-1, 2)
    cv2.fillConvexPoly(inside, np.round(hull * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return inside


def outside_distance(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 distance in pixels from each pixel to the convex hull of ``points`` (0 inside)."""
    return cv2.distanceTransform(1 - hull_fill(points, hw), cv2.DIST_L2, 5)


def speech_mask(lm68: np.ndarray, hw: tuple[int, int], grow: float = GROW, feather: float = FEATHER) -> np.ndarray:
    """(H, W) float32 blend weight: 1 on the speech hull grown by ``grow`` eye distances, smoothstep to exactly 0
    at ``grow + feather``, 0 beyond."""
    d = eye_distance(lm68)
    dist = outside_distance(speech_hull(lm68), hw)
    r = np.clip((grow * d + feather * d - dist) / max(feather * d, 1e-6), 0.0, 1.0)
    return (r * r * (3 - 2 * r)).astype(np.float32)


def speech_region(lm68: np.ndarray, hw: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """(H, W) bool: where ``speech_mask`` can be non-zero, grown by ``margin`` eye distances."""
    d = eye_distance(lm68)
    return outside_distance(speech_hull(lm68), hw) < (GROW + FEATHER + margin) * d


def face_hull_mask(lm68: np.ndarray, hw: tuple[int, int], shrink: float = 0.05) -> np.ndarray:
    """(H, W) bool: the convex hull of the 68 points, shrunk by ``shrink`` eye distances (off the hair line and
    the background)."""
    dist = cv2.distanceTransform(hull_fill(lm68, hw), cv2.DIST_L2, 5)
    return dist > shrink * eye_distance(lm68)
