"""Paste-back seam score (field survey 4.3): is there an edge along a paste boundary that the image does not
have just beside it? Mean gradient magnitude on the boundary band divided by the mean on two parallel bands
``offset`` px inside and outside. About 1 without a seam; a visible box gives a clearly larger value."""
from __future__ import annotations

import cv2
import numpy as np

from evaluation.colour import Histogram, delta_e


def _band(shape, box, grow: float, width: int = 1) -> np.ndarray:
    """Boolean mask of the outline of ``box`` (top, bottom, left, right in pixels) grown by ``grow`` px."""
    H, W = shape
    t, b, l, r = box[0] - grow, box[1] + grow, box[2] - grow, box[3] + grow
    ys, xs = np.mgrid[0:H, 0:W]
    inside = (ys >= t - width) & (ys <= b + width) & (xs >= l - width) & (xs <= r + width)
    core = (ys > t + width) & (ys < b - width) & (xs > l + width) & (xs < r - width)
    return inside & ~core


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float32).mean(-1) if img.ndim == 3 else img.astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


class SeamMeter:
    """Accumulates band gradients over frames for one boundary box in aligned-crop coordinates."""

    def __init__(self, shape, box, offset: int = 4):
        self.on = _band(shape, box, 0)
        self.beside = _band(shape, box, -offset) | _band(shape, box, offset)
        self.sum_on = self.sum_beside = 0.0

    def add(self, crop: np.ndarray) -> None:
        g = gradient_magnitude(crop)
        self.sum_on += float(g[self.on].mean())
        self.sum_beside += float(g[self.beside].mean())

    def score(self) -> float:
        return self.sum_on / self.sum_beside if self.sum_beside > 0 else float("nan")


class EdgeRing:
    """The paste edge (``regions.ring``: the blend mask's feathered edge): ``edge_de_mean`` / ``edge_de_p99``,
    CIEDE2000 of the video against the reference there (a band of another colour along the jaw), and
    ``edge_step``, the mean gradient magnitude (Sobel, L* units) of the lightness *difference* video - reference
    there: 0 for an untouched frame, small for a smooth change, large for a seam (a step in the difference)."""

    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.hist = Histogram()
        self.step = 0.0
        self.n = 0

    def add(self, pair) -> None:
        m = pair.regions.ring
        if not m.any():
            return
        self.hist.add(delta_e(pair.lab[m], pair.ref_lab[m]))
        diff = (pair.lab[..., 0] - pair.ref_lab[..., 0]).astype(np.float32)
        self.step += float(gradient_magnitude(diff)[m].mean()) / 8.0     # Sobel 3x3 sums 8 px-differences
        self.n += 1

    def result(self) -> dict:
        s = self.suffix
        return {f"edge_de_mean{s}": self.hist.mean(), f"edge_de_p99{s}": self.hist.percentile(99),
                f"edge_step{s}": self.step / self.n if self.n else float("nan")}
