"""Paste-back seam score (field survey 4.3): is there an edge along a paste boundary that the image does not
have just beside it? Mean gradient magnitude on the boundary band divided by the mean on two parallel bands
``offset`` px inside and outside. About 1 without a seam; a visible box gives a clearly larger value."""
from __future__ import annotations

import numpy as np


def _band(shape, box, grow: float, width: int = 1) -> np.ndarray:
    """Boolean mask of the outline of ``box`` (top, bottom, left, right in pixels) grown by ``grow`` px."""
    H, W = shape
    t, b, l, r = box[0] - grow, box[1] + grow, box[2] - grow, box[3] + grow
    ys, xs = np.mgrid[0:H, 0:W]
    inside = (ys >= t - width) & (ys <= b + width) & (xs >= l - width) & (xs <= r + width)
    core = (ys > t + width) & (ys < b - width) & (xs > l + width) & (xs < r - width)
    return inside & ~core


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    import cv2

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
    """The paste edge (``regions.ring``: a band along the blend mask's edge): ``edge_de_mean`` / ``edge_de_p99``,
    CIEDE2000 of the video against the reference there (a band of another colour along the jaw), and
    ``edge_grad_ratio``, the mean gradient magnitude there over the reference's (about 1 without a seam; a
    visible edge gives clearly more)."""

    def __init__(self, suffix: str = ""):
        from evaluation.colour import Histogram

        self.suffix = suffix
        self.hist = Histogram()
        self.grad = self.grad_ref = 0.0

    def add(self, pair) -> None:
        from evaluation.colour import delta_e

        m = pair.regions.ring
        if not m.any():
            return
        self.hist.add(delta_e(pair.lab[m], pair.ref_lab[m]))
        self.grad += float(gradient_magnitude(pair.frame)[m].mean())
        self.grad_ref += float(gradient_magnitude(pair.ref)[m].mean())

    def result(self) -> dict:
        s = self.suffix
        return {f"edge_de_mean{s}": self.hist.mean(), f"edge_de_p99{s}": self.hist.percentile(99),
                f"edge_grad_ratio{s}": self.grad / self.grad_ref if self.grad_ref > 0 else float("nan")}
