"""Crop geometry shared by data preparation, training, inference and evaluation (pure functions).

The aligned face crop for a mouth size m is W = int(1.25 m) wide and int(1.3 W) high; the generator's m x m
mouth box sits at rows [m/2, 3m/2), cols [m/8, 9m/8) of it. ``utils/face/align.py`` builds its crops with
these numbers; everything else imports them from here.
"""
from __future__ import annotations


def crop_size(mouth_region_size: int) -> tuple[int, int]:
    """Aligned face crop (H, W) for mouth size m: W = 1.25 m, H = int(1.3 W) (spec 1.4: 288 -> 468x360)."""
    w = int(1.25 * mouth_region_size)
    return int(1.3 * w), w


def mouth_box(mouth_region_size: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the m x m mouth box inside the crop: rows [m/2, 3m/2), cols [m/8, 9m/8)."""
    m = mouth_region_size
    return m // 2, m // 2 + m, m // 8, m // 8 + m
