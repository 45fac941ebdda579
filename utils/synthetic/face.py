"""The synthetic face: skimage's astronaut with a landmark-driven mouth warp and smooth head motion."""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import skimage.data

from utils.face.landmarks import LandmarkDetector

# ---------------------------------------------------------------------------------------------- face warp

_JAW_DROP = {4: 0.15, 5: 0.4, 6: 0.7, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.7, 11: 0.4, 12: 0.15}
_ANCHORS = list(range(0, 4)) + list(range(13, 17)) + list(range(17, 48))  # points that never move


@functools.lru_cache(maxsize=1)
def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.astronaut()`` (RGB uint8) and its 68 dlib landmarks, computed once per process."""
    img = np.ascontiguousarray(skimage.data.astronaut()[:, :, :3])
    faces = LandmarkDetector().detect(img)
    if not faces:
        raise RuntimeError("no face found on skimage.data.astronaut(); check the dlib installation")
    lm = np.asarray(faces[0][1], np.float64)
    img.setflags(write=False)
    lm.setflags(write=False)
    return img, lm


class MouthWarper:
    """Moves the mouth of one still face by (openness, width) with a smooth local displacement field."""

    def __init__(self, img: np.ndarray, lm: np.ndarray, grid_step: int = 4):
        self.img, self.lm = img, lm
        self.right = (lm[45] - lm[36]) / np.linalg.norm(lm[45] - lm[36])
        self.down = np.array([-self.right[1], self.right[0]])
        if np.dot(self.down, lm[8] - lm[27]) < 0:
            self.down = -self.down
        self.mw = float(np.linalg.norm(lm[54] - lm[48]))
        self.sigma = 0.2 * self.mw
        # the region the field can touch: jaw + lips, plus the largest drop and 3 sigma of fall-off
        pts = lm[list(range(2, 15)) + list(range(48, 68))]
        lo = pts.min(0) - 3 * self.sigma
        hi = pts.max(0) + 3 * self.sigma + np.abs(self.down) * 0.6 * self.mw
        h, w = img.shape[:2]
        self.x0, self.y0 = int(max(0, math.floor(lo[0]))), int(max(0, math.floor(lo[1])))
        self.x1, self.y1 = int(min(w, math.ceil(hi[0]))), int(min(h, math.ceil(hi[1])))
        gx = np.arange(self.x0, self.x1 + grid_step, grid_step, dtype=np.float64)
        gy = np.arange(self.y0, self.y1 + grid_step, grid_step, dtype=np.float64)
        self.grid = np.stack(np.meshgrid(gx, gy), -1)  # (gh, gw, 2) coarse grid in image pixels
        xs, ys = np.meshgrid(np.arange(self.x0, self.x1, dtype=np.float32), np.arange(self.y0, self.y1, dtype=np.float32))
        self.px, self.py = xs, ys
        # coarse grid point j sits at x0 + j * grid_step: ROI pixel positions in grid-index units
        self.gx = (xs - self.x0) / np.float32(grid_step)
        self.gy = (ys - self.y0) / np.float32(grid_step)
        # taper to exactly zero at the region border so the pasted patch is seamless
        wy = np.sin(np.linspace(0, np.pi, self.y1 - self.y0)) ** 0.5
        wx = np.sin(np.linspace(0, np.pi, self.x1 - self.x0)) ** 0.5
        self.taper = (wy[:, None] * wx[None, :]).astype(np.float32)
        self.ctrl = _ANCHORS + list(_JAW_DROP) + list(range(48, 68))

    def _weights(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Normalised Gaussian weights of controls ``c`` at query points ``q``; the +eps lets the sum fall to 0."""
        g = np.exp(-((q[:, None] - c[None]) ** 2).sum(-1) / (2 * self.sigma ** 2))
        return g / (g.sum(1, keepdims=True) + 0.05)

    def displacements(self, openness: float, width: float) -> np.ndarray:
        """(68, 2) forward displacement of every landmark in image pixels."""
        o, mw = float(openness), self.mw
        d = np.zeros((68, 2))
        for i, wgt in _JAW_DROP.items():
            d[i] = self.down * o * 0.33 * mw * wgt
        for i in range(55, 60):  # lower outer lip
            d[i] = self.down * o * 0.45 * mw
        for i in range(65, 68):  # lower inner lip
            d[i] = self.down * o * 0.5 * mw
        for i in range(49, 54):  # upper outer lip lifts a little
            d[i] = -self.down * o * 0.03 * mw
        for i in range(61, 64):
            d[i] = -self.down * o * 0.05 * mw
        for i in (48, 54, 60, 64):  # corners follow the jaw part way
            d[i] = self.down * o * 0.2 * mw
        # width: corners (and the lip points next to them) move out (spread) or in (rounded)
        spread = (float(width) - 0.5) * 0.3 * mw
        for i, f in ((48, -1.0), (60, -1.0), (49, -0.5), (59, -0.5), (54, 1.0), (64, 1.0), (53, 0.5), (55, 0.5)):
            d[i] += self.right * spread * f
        return d

    def warp(self, openness: float, width: float) -> tuple[np.ndarray, np.ndarray]:
        """(warped full image uint8, moved landmarks (68, 2))."""
        d = self.displacements(openness, width)
        moved = self.lm + d
        out = np.array(self.img)  # writable copy
        if openness <= 1e-4 and abs(width - 0.5) < 1e-4:
            return out, moved
        # backward field: at each moved point, sample from where it came from (-d). A normalised Gaussian
        # (Shepard) interpolant never overshoots and fades to zero away from the controls; a few residual
        # passes bring it within ~1 px of the exact displacements at the control points.
        c = moved[self.ctrl]
        v = -d[self.ctrl]
        vv = v.copy()
        g_cc = self._weights(c, c)
        for _ in range(3):
            vv = vv + (v - g_cc @ vv)
        field = (self._weights(self.grid.reshape(-1, 2), c) @ vv).reshape(self.grid.shape).astype(np.float32)
        dense = cv2.remap(field, self.gx, self.gy, cv2.INTER_LINEAR)  # coarse grid -> every ROI pixel
        fx = dense[..., 0] * self.taper
        fy = dense[..., 1] * self.taper
        patch = cv2.remap(self.img, self.px + fx, self.py + fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        patch = self._paint_mouth(patch, moved, openness)
        out[self.y0:self.y1, self.x0:self.x1] = patch
        return out, moved

    def _paint_mouth(self, patch: np.ndarray, moved: np.ndarray, openness: float) -> np.ndarray:
        """Dark cavity inside the moved inner lips, with the photo's own (unmoved) upper teeth on top of it."""
        if openness < 0.02:
            return patch
        off = np.array([self.x0, self.y0])
        inner = [60, 61, 62, 63, 64, 65, 66, 67]
        mask = self._poly_mask(moved[inner] - off, patch.shape[:2])
        # teeth: what the rest-pose lip gap shows, kept in place (they belong to the skull, not the jaw)
        teeth = self._poly_mask(self.lm[inner] - off, patch.shape[:2]) * mask
        a = mask * min(1.0, openness * 4.0)
        # the cavity is darker towards its middle: depth cue that also scales with the opening
        depth = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * self.mw))
        cavity = np.array([62, 22, 26], np.float32)[None, None] * (1.0 - 0.6 * depth[..., None])
        original = self.img[self.y0:self.y1, self.x0:self.x1].astype(np.float32)
        p = patch.astype(np.float32)
        p = p * (1 - a[..., None]) + cavity * (a - teeth * a)[..., None] + original * (teeth * a)[..., None]
        return np.clip(p + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _poly_mask(poly: np.ndarray, shape) -> np.ndarray:
        """Anti-aliased, slightly feathered float mask of a polygon (sub-pixel vertices)."""
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
        return cv2.GaussianBlur(m, (0, 0), 0.7).astype(np.float32) / 255.0


def head_motion_track(num_frames: int, fps: float, seed: int, amount: float) -> np.ndarray:
    """(T, 4) smooth head motion: tx, ty (fraction of the crop), rotation (degrees), log-scale."""
    rng = np.random.default_rng([int(seed), 7919])
    t = np.arange(num_frames) / fps
    amp = np.array([0.025, 0.02, 3.0, 0.03]) * float(amount)
    out = np.zeros((num_frames, 4))
    for j in range(4):
        freqs = rng.uniform(0.15, 0.7, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(0.5, 1.0, 3)
        s = sum(wg * np.sin(2 * np.pi * f * t + p) for f, p, wg in zip(freqs, phases, weights)) / weights.sum()
        out[:, j] = amp[j] * s
    return out


ZOOM = 2.2  # output crop side = this many face widths (jaw to jaw)


def crop_affine(lm: np.ndarray, size: int, motion: np.ndarray, zoom: float = ZOOM) -> np.ndarray:
    """2x3 affine: source image -> output square of ``size`` centred on the face, with head motion applied."""
    center = lm.mean(0)
    face_w = float(np.linalg.norm(lm[16] - lm[0]))
    scale = size / (zoom * face_w) * math.exp(motion[3])
    a = math.radians(motion[2])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    shift = np.array([size / 2 + motion[0] * size, size / 2 + motion[1] * size]) - rot @ center
    return np.hstack([rot, shift[:, None]])

