"""Deterministic choice of the 5 reference frames (the original drew them with torch.randint: duplicates and a
different set every run; docs/original.md, 'Reference frames').

The valid (face found) frames are split into ``n`` consecutive, equally long parts and one frame is drawn from
each part with a seeded generator: the references are spread over the video (different head poses and mouth
shapes), never duplicated when there are at least ``n`` valid frames, and identical for the same seed.
A template with scene cuts or several people gets one such set per track (one person in one shot,
``reference_sets``), and every frame is generated from the set of its own track.
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


def reference_sets(valid: np.ndarray, tracks: np.ndarray | None = None, num: int = 5, seed: int = 456
                   ) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """References per shot/person: ``(sets, set_of_frame)``.

    ``tracks`` (N,) numbers the stretches of the template that show one person in one shot (see
    ``utils.face.landmarks.track_landmarks``); every track with a face gets its own ``num`` references drawn from
    its own frames by ``select_reference_indices``, so a frame is never generated from another shot or another
    person's face. ``sets`` is a list of index tuples (the key a reference cache uses); ``set_of_frame[i]`` is the
    position in ``sets`` of the set for template frame i (the nearest track with a face for frames whose own
    track has none). Without ``tracks`` there is one set over the whole template.
    """
    valid = np.asarray(valid, bool)
    tracks = np.zeros(len(valid), np.int64) if tracks is None else np.asarray(tracks, np.int64)
    if tracks.shape != valid.shape:
        raise ValueError(f"tracks {tracks.shape} and valid {valid.shape} differ")
    if not valid.any():
        raise UserError("no frame of the template video shows a face; cannot choose reference frames")
    sets: list[tuple[int, ...]] = []
    set_of_track: dict[int, int] = {}
    for tr in np.unique(tracks[valid]):
        key = tuple(select_reference_indices(valid & (tracks == tr), num, seed))
        if key not in sets:
            sets.append(key)
        set_of_track[int(tr)] = sets.index(key)
    # frames of a track without any face (a face-less shot) borrow the nearest track with one; they are passed
    # through unchanged anyway
    with_face = np.flatnonzero(valid)
    nearest = with_face[np.clip(np.searchsorted(with_face, np.arange(len(valid))), 0, len(with_face) - 1)]
    set_of_frame = np.array([set_of_track.get(int(tracks[i]), set_of_track[int(tracks[nearest[i]])])
                             for i in range(len(valid))], np.int32)
    return sets, set_of_frame
