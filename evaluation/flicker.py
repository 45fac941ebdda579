"""Temporal flicker of the still skin beyond the reference's own: mean colour change (CIE76 ΔE, the Euclidean
Lab distance) between consecutive frames on the still skin (of the later frame), of the video and of the
reference; the excess is their difference (about 0 for a dub that leaves the still skin alone: head motion is in
both)."""
from __future__ import annotations

import numpy as np

from evaluation.colour import to_lab


class SkinFlicker:
    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.prev = None
        self.gen = self.ref = 0.0
        self.n = 0

    def add(self, pair) -> None:
        prev, self.prev = self.prev, (pair.full, pair.ref_full)
        m = pair.regions.still
        if prev is None or not m.any():
            return
        y0, y1, x0, x1 = pair.box
        lab_prev, ref_prev = to_lab(prev[0][y0:y1, x0:x1][m]), to_lab(prev[1][y0:y1, x0:x1][m])
        self.gen += float(np.linalg.norm(pair.lab[m] - lab_prev, axis=-1).mean())
        self.ref += float(np.linalg.norm(pair.ref_lab[m] - ref_prev, axis=-1).mean())
        self.n += 1

    def reset(self) -> None:
        """A frame without a face breaks the sequence."""
        self.prev = None

    def result(self) -> dict:
        s = self.suffix
        if not self.n:
            return {f"skin_flicker{s}": float("nan"), f"skin_flicker_excess{s}": float("nan")}
        return {f"skin_flicker{s}": self.gen / self.n, f"skin_flicker_excess{s}": (self.gen - self.ref) / self.n}
