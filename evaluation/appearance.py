"""What a viewer sees, against one other video (the ground truth or the template): the appearance meters
(still-skin colour, paste edge, colour fringes, mouth sharpness, still-skin flicker), fed frame by frame.

Each meter is a small class with ``add(pair)`` and ``result()`` (evaluation/colour.py, seam.py, fringe.py,
sharpness.py, flicker.py); a ``Comparison`` streams the other video next to the generated one, cuts both to the
face regions of the other video's landmarks (the regions of what the dub should look like) and feeds its meters.
"""
from __future__ import annotations

import numpy as np

from evaluation.colour import LowerFaceCast, StillSkinColour
from evaluation.flicker import SkinFlicker
from evaluation.fringe import ColourFringe
from evaluation.regions import FramePair, face_regions
from evaluation.seam import EdgeRing
from evaluation.sharpness import MouthSharpness
from utils.errors import UserError
from utils.media.timebase import FPS
from utils.media.video_io import iter_frames


def default_meters(suffix: str) -> list:
    return [StillSkinColour(suffix), LowerFaceCast(suffix), EdgeRing(suffix), ColourFringe(suffix),
            MouthSharpness(suffix), SkinFlicker(suffix)]


class Comparison:
    """The generated video against ``path`` (frames in step), with landmarks ``landmarks`` / ``valid`` of that
    video. Result keys end in ``suffix``."""

    def __init__(self, path: str, landmarks: np.ndarray, valid: np.ndarray, suffix: str = "", meters=None,
                 fps: float = FPS):
        self.path, self.lm, self.valid, self.suffix = path, landmarks, valid, suffix
        self.frames = iter_frames(path, fps=fps)
        self.meters = default_meters(suffix) if meters is None else meters
        self.compared = 0

    def feed(self, k: int, frame: np.ndarray):
        """Feed frame ``k`` of the generated video; returns the other video's frame k (None past its end)."""
        other = next(self.frames, None)
        if other is None:
            return None
        if other.shape != frame.shape:
            raise UserError(f"{self.path}: frames are {other.shape[1]}x{other.shape[0]}, the generated video's are "
                            f"{frame.shape[1]}x{frame.shape[0]}")
        if k >= len(self.valid) or not self.valid[k]:
            for m in self.meters:
                getattr(m, "reset", lambda: None)()
            return other
        pair = FramePair(frame, other, face_regions(self.lm[k], frame.shape[:2]))
        for m in self.meters:
            m.add(pair)
        self.compared += 1
        return other

    def result(self) -> dict:
        out = {f"appearance_frames{self.suffix}": self.compared}
        for m in self.meters:
            out.update(m.result())
        return out
