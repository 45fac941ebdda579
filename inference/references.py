"""Deterministic choice of the 5 reference frames (the original drew them with torch.randint: duplicates and a
different set every run, spec bug 52).

The valid (face found) frames are split into ``n`` consecutive, equally long parts and one frame is drawn from
each part with a seeded generator: the references are spread over the video (different head poses and mouth
shapes), never duplicated when there are at least ``n`` valid frames, and identical for the same seed.
"""
from __future__ import annotations

import numpy as np

from utils.errors import UserError


def select_reference_indices(valid: np.ndarray, num: int = 5, seed: int = 456) -> list[int]:
    """``num`` template frame indices among the valid frames (sorted by part; repeats only if too few)."""
    idx = np.flatnonzero(np.asarray(valid, bool))
    if len(idx) == 0:
        raise UserError("no frame of the template video shows a face; cannot choose reference frames")
    rng = np.random.default_rng(int(seed))
    if len(idx) < num:  # fewer valid frames than references: use all, then repeat in order
        return [int(idx[i % len(idx)]) for i in range(num)]
    parts = np.array_split(idx, num)
    return [int(p[rng.integers(len(p))]) for p in parts]
