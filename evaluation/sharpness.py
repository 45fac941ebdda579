"""Mouth sharpness relative to a reference: the variance of the Laplacian of the grey mouth box (``regions.mouth``),
summed over frames, divided by the reference's. About 1 as sharp as the reference; a blurred mouth is well
below (a 5x5 Gaussian blur of sigma 1.5 gives ~0.1-0.3 on a face)."""
from __future__ import annotations

import cv2
import numpy as np


def laplacian_variance(rgb: np.ndarray) -> float:
    g = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(g, cv2.CV_32F, ksize=3).var())


class MouthSharpness:
    def __init__(self, suffix: str = ""):
        self.suffix = suffix
        self.gen = self.ref = 0.0

    def add(self, pair) -> None:
        y0, y1, x0, x1 = pair.regions.mouth
        self.gen += laplacian_variance(pair.frame[y0:y1, x0:x1])
        self.ref += laplacian_variance(pair.ref[y0:y1, x0:x1])

    def result(self) -> dict:
        return {f"mouth_sharpness{self.suffix}": self.gen / self.ref if self.ref > 0 else float("nan")}
