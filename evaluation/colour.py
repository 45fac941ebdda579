"""Colour difference (CIEDE2000) between a video and a reference on the still skin (``regions.still``): mean and
99th percentile over every pixel of every compared frame. A ΔE about 1 is invisible, above 3 it is seen; a high
99th percentile with a low mean is a blotch or a band. Percentiles come from a fixed histogram (streaming)."""
from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

BIN = 0.02
BINS = 5000               # 0-100 ΔE


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> CIELAB float64 (D65)."""
    return rgb2lab(np.asarray(rgb))


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    return deltaE_ciede2000(lab1, lab2)


class Histogram:
    """Streaming mean and percentiles of non-negative values (resolution ``BIN``, values above the range count
    in the last bin)."""

    def __init__(self):
        self.counts = np.zeros(BINS, np.int64)
        self.total = 0.0
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float64).ravel()
        if v.size:
            self.counts += np.bincount(np.minimum((v / BIN).astype(np.int64), BINS - 1), minlength=BINS)
            self.total += float(v.sum())
            self.n += v.size

    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def percentile(self, q: float) -> float:
        if not self.n:
            return float("nan")
        c = np.cumsum(self.counts)
        k = int(np.searchsorted(c, q / 100.0 * self.n))
        return (k + 0.5) * BIN


class StillSkinColour:
    """``skin_de_mean`` / ``skin_de_p99``: CIEDE2000 of the video against the reference on the still skin."""

    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.hist = Histogram()

    def add(self, pair) -> None:
        m = pair.regions.still
        if m.any():
            self.hist.add(delta_e(pair.lab[m], pair.ref_lab[m]))

    def result(self) -> dict:
        s = self.suffix
        return {f"skin_de_mean{s}": self.hist.mean(), f"skin_de_p99{s}": self.hist.percentile(99)}


class LowerFaceCast:
    """``lower_de_mean`` / ``lower_de_max``: CIEDE2000 between the median Lab colour of the lower face (chin and
    the cheeks beside the mouth, ``regions.lower``) in the video and in the reference, per frame; mean and
    maximum over frames. A green-yellow or pink face around a well-timed mouth scores high; a jaw that opens
    differently moves few pixels and barely moves the median."""

    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.values = []

    def add(self, pair) -> None:
        m = pair.regions.lower
        if m.sum() >= 20:
            a = np.median(pair.lab[m], axis=0)
            b = np.median(pair.ref_lab[m], axis=0)
            self.values.append(float(delta_e(a[None], b[None])[0]))

    def result(self) -> dict:
        s, v = self.suffix, self.values
        return {f"lower_de_mean{s}": float(np.mean(v)) if v else float("nan"),
                f"lower_de_max{s}": float(np.max(v)) if v else float("nan")}
