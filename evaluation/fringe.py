"""Colour fringes: colours the dub shows that the reference has nowhere near (``fringe_mean`` / ``fringe_p99``).

A generated jaw contour often carries a thin green, cyan or pink line where skin meets a dark collar. It is a few
pixels wide, so the region-wide colour figures (still skin, lower-face median, the paste-edge ring) barely move,
but the eye finds it at once because the colour is *new*: neither the skin nor the collar has it. So this meter
asks, for every pixel of ``regions.moved`` (what the blend mask can touch, lips left out), how far its chroma
(a*, b*) lies outside the range of chroma the reference shows within ``RADIUS`` eye distances of it (per-channel
min/max filters). Unchanged pixels score exactly 0, a chin that moves over the collar scores ~0 (skin and collar
colours are both near), a jaw that is softer than the truth scores ~0 (a mix of two near colours lies between
them), a green line scores its distance from the nearest colour that belongs there. Units: Δa*b* (CIE76 chroma
distance); about 2 is invisible, 5 and more is a visible tint on a thin line.
"""
from __future__ import annotations

import cv2
import numpy as np

from evaluation.colour import Histogram
from utils.face.blend import JAW_DROP

RADIUS = JAW_DROP        # eye distances: as far as a chin may move from the reference's (utils/face/blend.py)


def novel_chroma(lab: np.ndarray, ref_lab: np.ndarray, mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Distance of each masked pixel's (a*, b*) in ``lab`` outside the box of (a*, b*) ``ref_lab`` shows within
    ``radius_px`` (a square window); returns the distances of the masked pixels (float32)."""
    k = np.ones((2 * radius_px + 1, 2 * radius_px + 1), np.uint8)
    out = np.zeros(int(mask.sum()), np.float32)
    for c in (1, 2):
        r = np.ascontiguousarray(ref_lab[..., c], np.float32)
        hi, lo = cv2.dilate(r, k)[mask], cv2.erode(r, k)[mask]
        v = lab[..., c][mask].astype(np.float32)
        out += np.maximum(0.0, np.maximum(v - hi, lo - v)) ** 2
    return np.sqrt(out)


class ColourFringe:
    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.hist = Histogram()

    def add(self, pair) -> None:
        m = pair.regions.moved
        if not m.any():
            return
        radius = max(1, int(round(RADIUS * pair.regions.eye_distance)))
        self.hist.add(novel_chroma(pair.lab, pair.ref_lab, m, radius))

    def result(self) -> dict:
        s = self.suffix
        return {f"fringe_mean{s}": self.hist.mean(), f"fringe_p99{s}": self.hist.percentile(99)}
