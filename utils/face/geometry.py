"""Crop geometry shared by data preparation, training, inference and evaluation (pure functions).

The aligned face crop for a mouth size m is W = int(1.25 m) wide and int(1.3 W) high; the generator's m x m
mouth box sits at rows [m/2, 3m/2), cols [m/8, 9m/8) of it. ``utils/face/align.py`` builds its crops with
these numbers; everything else imports them from here.
"""
from __future__ import annotations

from utils.errors import UserError

# the generator's encoders halve the crop twice and its decoder doubles it twice: both crop sides must divide by
# 4, which with W = int(1.25 m), H = int(1.3 W) holds exactly when m is a multiple of 32 (official: 288)
GENERATOR_STRIDE = 4


def crop_size(mouth_region_size: int) -> tuple[int, int]:
    """Aligned face crop (H, W) for mouth size m: W = 1.25 m, H = int(1.3 W) (spec 1.4: 288 -> 468x360)."""
    w = int(1.25 * mouth_region_size)
    return int(1.3 * w), w


def mouth_box(mouth_region_size: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the m x m mouth box inside the crop: rows [m/2, 3m/2), cols [m/8, 9m/8)."""
    m = mouth_region_size
    return m // 2, m // 2 + m, m // 8, m // 8 + m


def check_mouth_region_size(m: int, flag: str = "--mouth_region_size") -> int:
    """``m`` if a generator can take its crop; else one ``error:`` naming the nearest sizes that work."""
    H, W = crop_size(m) if m > 0 else (0, 0)
    if m <= 0 or m % 32 or H % GENERATOR_STRIDE or W % GENERATOR_STRIDE:
        lo = max(32, m // 32 * 32)
        raise UserError(f"{flag} must be a positive multiple of 32 (m = {m} gives a {H}x{W} face crop; both sides "
                        f"must divide by the generator's stride {GENERATOR_STRIDE}); try {lo} or {lo + 32}")
    return m
