"""Face regions of one frame from its 68 landmarks, for the appearance metrics (docs/evaluation.md).

- ``still``: the skin speech does not move: the face hull (cheeks, nose, eyes) minus the speech region (the
  dilated hull of the lips and the lower jaw, ``utils/face/blend.py``, plus a margin). A dub should leave it as
  the template has it: colour casts, blotches and flicker show there.
- ``ring``: the blend mask's feathered edge, where a pasted crop is mixed with the frame (``GROW`` to
  ``GROW + FEATHER`` eye distances off the speech hull) plus ``RING_HALF`` either side: seams show there.
- ``lower``: the skin speech moves but does not open: the hull of the lips and the lower jaw (without the
  lowered jaw) minus the lips grown by ``LIPS_MARGIN``: chin and the cheeks beside the mouth. A cast of the
  generated face shows there (its median colour is compared, so a jaw that opens differently does not count).
- ``moved``: everything the blend mask can touch (the speech hull grown by ``GROW + FEATHER``) except the lips
  grown by ``LIPS_MARGIN``: chin, jaw line, the cheeks beside the mouth and the collar or neck below the jaw.
  Colour fringes along the generated jaw contour show there (evaluation/fringe.py).
- ``mouth``: the box around the lips: sharpness is measured there.
Each is given with the bounding box (y0, y1, x0, x1) of all of them, so meters convert only that part of a frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.colour import to_lab
from utils.face.blend import FEATHER, GROW, eye_distance, face_hull_mask, hull_fill, outside_distance, speech_hull

STILL_MARGIN = 0.06      # eye distances kept between the speech region and the still skin
RING_HALF = 0.04         # the ring reaches this far either side of the blend mask's ramp, eye distances
LIPS_MARGIN = 0.12       # the lips grown by this much are left out of ``lower``


@dataclass
class FaceRegions:
    box: tuple            # (y0, y1, x0, x1) in the frame, every mask below is relative to it
    still: np.ndarray     # bool
    ring: np.ndarray      # bool
    lower: np.ndarray     # bool
    moved: np.ndarray     # bool
    mouth: tuple          # (y0, y1, x0, x1) relative to box
    eye_distance: float   # pixels, the unit of every margin above


def face_regions(lm68: np.ndarray, hw: tuple[int, int]) -> FaceRegions:
    lm = np.asarray(lm68, np.float64)
    H, W = int(hw[0]), int(hw[1])
    d = eye_distance(lm)
    hull = speech_hull(lm)
    pts = np.concatenate([lm, hull])
    pad = int(np.ceil((GROW + FEATHER + RING_HALF + 0.1) * d)) + 2
    x0, y0 = max(0, int(np.floor(pts[:, 0].min())) - pad), max(0, int(np.floor(pts[:, 1].min())) - pad)
    x1, y1 = min(W, int(np.ceil(pts[:, 0].max())) + pad), min(H, int(np.ceil(pts[:, 1].max())) + pad)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    off = np.array([x0, y0], np.float64)
    shape = (y1 - y0, x1 - x0)
    dist = outside_distance(hull - off, shape)
    edge = (GROW + FEATHER) * d
    still = face_hull_mask(lm - off, shape) & (dist > edge + STILL_MARGIN * d)
    ring = (dist > GROW * d - RING_HALF * d) & (dist <= edge + RING_HALF * d)
    jaw = hull_fill(np.concatenate([lm[48:68], lm[4:13]]) - off, shape)
    near_lips = outside_distance(lm[48:60] - off, shape) <= LIPS_MARGIN * d
    lower = (jaw > 0) & ~near_lips
    moved = (dist <= edge) & ~near_lips
    lips = lm[48:60] - off
    g = 0.15 * d
    my0, mx0 = max(0, int(lips[:, 1].min() - g)), max(0, int(lips[:, 0].min() - g))
    my1, mx1 = min(shape[0], int(np.ceil(lips[:, 1].max() + g))), min(shape[1], int(np.ceil(lips[:, 0].max() + g)))
    mouth = (my0, max(my1, my0 + 3), mx0, max(mx1, mx0 + 3))
    return FaceRegions((y0, y1, x0, x1), still, ring, lower, moved, mouth, d)


class FramePair:
    """One frame of a video and the same frame of a reference, cut to the regions' box, with their Lab
    (computed once and shared by the meters)."""

    def __init__(self, frame: np.ndarray, ref: np.ndarray, regions: FaceRegions):
        y0, y1, x0, x1 = regions.box
        self.full, self.ref_full = frame, ref
        self.box, self.regions = regions.box, regions
        self.frame, self.ref = frame[y0:y1, x0:x1], ref[y0:y1, x0:x1]
        self.lab, self.ref_lab = to_lab(self.frame), to_lab(self.ref)
