"""Frontalised face crop, the generator's source mask and paste-back (docs/original.md has the original's).

One pixel convention everywhere: pixel (row i, col j) has its centre at (x, y) = (j, i), the convention of
dlib landmarks and of cv2.warpAffine; torch sampling uses ``grid_sample(align_corners=True)``, which is the
same convention. M (3x3, float64) maps frame pixels to crop pixels, and every crop is the exact inverse warp
of M, so paste-back (which samples the crop at M p) registers exactly with what was cropped.

What the generator is fed follows a preprocessing profile (``config/profile.py``; the caller resolves the name
and passes the Profile, the default being the lawdnet one): ``official`` reproduces the
original (``SmoothSqMask`` built on its 103x80 canvas, black outside the frame, the original's sample points,
applied by folding them into M), ``lawdnet`` is ours (analytic mask without the blur shift, edge pixels repeated
outside the frame, the exact inverse map). Fixes in both (docs/original.md, 'Paste-back'): the similarity fit takes any
number of points; paste-back samples the generated crop for every frame pixel (no holes), blends it with a
feathered mask, leaves every pixel outside the mask bit-identical and never wraps around borders.
"""
from __future__ import annotations

import math
from functools import lru_cache
from types import SimpleNamespace
from typing import Optional, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.face.geometry import crop_size

# iBUG-68 indices of the 25 template points and their normalized template coordinates (the original's).
TEMPLATE_INDICES = tuple(range(17, 36)) + (36, 39, 42, 45, 48, 54)
_TEMPLATE_RAW = np.array([
    (0.000213, 0.106454), (0.075262, 0.038915), (0.181130, 0.018748), (0.290770, 0.034489),
    (0.393397, 0.077391), (0.586856, 0.077391), (0.689483, 0.034489), (0.799124, 0.018748),
    (0.904991, 0.038915), (0.980040, 0.106454),                                   # 17-26 brows
    (0.490127, 0.203352), (0.490127, 0.307009), (0.490127, 0.409805), (0.490127, 0.515625),  # 27-30
    (0.366880, 0.587326), (0.426036, 0.609345), (0.490127, 0.628106), (0.554217, 0.609345),
    (0.613373, 0.587326),                                                         # 31-35 nose base
    (0.121737, 0.216423), (0.334606, 0.231733), (0.645647, 0.231733), (0.858516, 0.216423),  # eye corners
    (0.254149, 0.780233), (0.726104, 0.780233),                                   # mouth corners
], np.float64)
RATIO = 1.6

# The face settings of the default preprocessing profile (lawdnet), used when a caller passes no profile. The
# profile table is config/profile.py, a layer above utils: callers resolve a name there and pass the Profile
# (tests/test_profile.py checks that these are its lawdnet row).
DEFAULT_FACE_PROFILE = SimpleNamespace(name="lawdnet", crop_fill="border", crop_sampler="exact", source_mask="box")


def face_profile(profile=None):
    """The profile's face settings: a config.profile.Profile (or any object with crop_fill, crop_sampler and
    source_mask), or None for DEFAULT_FACE_PROFILE."""
    if profile is None:
        return DEFAULT_FACE_PROFILE
    if isinstance(profile, str):
        raise TypeError(f"pass a Profile (config.profile.get_profile({profile!r})), not its name")
    return profile

# Paste-back blend region in units of the crop width W (crop height 1.3 W): weight 1 inside the inner box,
# a smooth ramp to exactly 0 at the outer box, which stays inside the crop (0.04 W from the bottom edge).
# It covers the generator's mouth box (rows 0.4-1.2 W, cols 0.1-0.9 W) where the face actually changes.
PASTE_INNER = (0.50, 1.12, 0.20, 0.80)   # top, bottom, left, right
PASTE_OUTER = (0.38, 1.26, 0.06, 0.94)


def normalized_template(ratio: float = RATIO) -> np.ndarray:
    """(25, 2) template centred between nose base and mouth, scaled by ratio x (brow-to-nose-bridge height)."""
    t = _TEMPLATE_RAW
    up = (t[2] + t[7]) / 2          # landmarks 19, 24 (brow tops)
    mark = t[12]                    # landmark 29 (nose bridge)
    s = mark[1] - up[1]
    c = up + 1.625 * (mark - up)
    c[0] = mark[0]
    return (t - c) / (ratio * s)


def fit_similarity(src, dst, weights=None) -> np.ndarray:
    """Least-squares 4-DOF similarity (scale, rotation, translation) mapping src -> dst.

    src (..., N, 2), dst (N, 2) or (..., N, 2), any N >= 2; returns (..., 3, 3) float64 (closed form of the
    linear least-squares problem on dst residuals)."""
    src = np.asarray(src, np.float64)
    dst = np.broadcast_to(np.asarray(dst, np.float64), src.shape)
    if src.shape[-1] != 2 or src.shape[-2] < 2:
        raise UserError(f"need at least 2 points of shape (N, 2) to fit a similarity, got {src.shape}")
    if not np.isfinite(src).all():
        raise UserError("landmarks contain NaN/inf; cannot fit the face alignment")
    w = np.ones(src.shape[:-1]) if weights is None else np.broadcast_to(np.asarray(weights, np.float64),
                                                                        src.shape[:-1])
    wsum = w.sum(-1, keepdims=True)[..., None]
    ms = (w[..., None] * src).sum(-2, keepdims=True) / wsum
    md = (w[..., None] * dst).sum(-2, keepdims=True) / wsum
    s, d = src - ms, dst - md
    norm = (w * (s ** 2).sum(-1)).sum(-1)
    if np.any(norm <= 1e-12):
        raise UserError("landmarks are degenerate (all points coincide); cannot fit the face alignment")
    a = (w * (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1])).sum(-1) / norm
    b = (w * (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0])).sum(-1) / norm
    M = np.zeros(src.shape[:-2] + (3, 3))
    M[..., 0, 0], M[..., 0, 1] = a, -b
    M[..., 1, 0], M[..., 1, 1] = b, a
    M[..., 2, 2] = 1.0
    t = md[..., 0, :] - np.einsum("...ij,...j->...i", M[..., :2, :2], ms[..., 0, :])
    M[..., :2, 2] = t
    return M


def apply_transform(points, M) -> np.ndarray:
    """Apply 3x3 affine M (or a batch (B,3,3)) to points (..., N, 2)."""
    p = np.asarray(points, np.float64)
    M = np.asarray(M, np.float64)
    return np.einsum("...ij,...nj->...ni", M[..., :2, :2], p) + M[..., None, :2, 2]


class FaceAligner:
    """Aligned crop of width ``out_W`` and height int(1.3 out_W) (for mouth size m, out_W = int(1.25 m)).

    ``profile`` (a ``config.profile.Profile``; default lawdnet) sets the fill outside the frame and the
    sample points (see the module doc)."""

    def __init__(self, out_W: int, ratio: float = RATIO, profile=None):
        if int(out_W) < 8:
            raise UserError(f"crop width must be >= 8, got {out_W}")
        self.profile = face_profile(profile)
        self.out_W = int(out_W)
        self.out_H = int(1.3 * self.out_W)       # same expression as geometry.crop_size
        self.crop_hw = (self.out_H, self.out_W)
        self.target = normalized_template(ratio) * self.out_W / 2 + np.array([self.out_W / 2, 1.3 * self.out_W / 2])
        self.zero_fill = self.profile.crop_fill == "zeros"

    @classmethod
    def for_mouth_size(cls, mouth_region_size: int, profile=None) -> "FaceAligner":
        aligner = cls(int(1.25 * mouth_region_size), profile=profile)
        assert aligner.crop_hw == crop_size(mouth_region_size)
        return aligner

    def estimate(self, landmarks68, frame_hw: Optional[tuple[int, int]] = None) -> np.ndarray:
        """Frame -> crop matrix from (68,2) or (B,68,2) landmarks: (3,3) or (B,3,3) float64.

        The official profile needs the frame size ``frame_hw`` = (H, W): its sample points depend on it."""
        lm = np.asarray(landmarks68, np.float64)
        if lm.ndim not in (2, 3) or lm.shape[-2:] != (68, 2):
            raise UserError(f"expected 68 landmarks of shape (68, 2) or (B, 68, 2), got {lm.shape}")
        M = fit_similarity(lm[..., TEMPLATE_INDICES, :], self.target)
        if self.profile.crop_sampler == "official":
            if frame_hw is None:
                raise ValueError("the official crop sampler needs the frame size (frame_hw)")
            M = original_sample_points(M, frame_hw, self.crop_hw)
        return M

    def crop(self, frame_rgb: np.ndarray, M) -> np.ndarray:
        """(Hc, Wc, C) crop of an (H, W, C) uint8/float32 frame; bilinear; outside the frame black or the
        edge pixels repeated (profile)."""
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3:
            raise UserError(f"expected an (H, W, C) frame, got shape {frame.shape}")
        M = np.asarray(M, np.float64)
        border = cv2.BORDER_CONSTANT if self.zero_fill else cv2.BORDER_REPLICATE
        return cv2.warpAffine(frame, M[:2], (self.out_W, self.out_H), flags=cv2.INTER_LINEAR, borderMode=border,
                              borderValue=0)

    @staticmethod
    def crop_landmarks(landmarks, M) -> np.ndarray:
        """Landmarks (..., N, 2) in crop pixels (float32)."""
        return apply_transform(landmarks, M).astype(np.float32)

    def crop_torch(self, frames: torch.Tensor, M) -> torch.Tensor:
        """Batch crop on the frames' device: frames (B,3,H,W) float (or uint8) -> (B,3,Hc,Wc) float32."""
        return warp_torch(frames, M, self.crop_hw, padding_mode="zeros" if self.zero_fill else "border")

    def source_mask(self, device: Union[str, torch.device] = "cpu", dtype=torch.float32) -> torch.Tensor:
        """(1,1,Hc,Wc) source mask of this crop size and profile (see ``mouth_mask``)."""
        return mouth_mask(self.out_H, self.out_W, device, dtype, profile=self.profile)


def original_sample_points(M, frame_hw: tuple[int, int], crop_hw: tuple[int, int]) -> np.ndarray:
    """The frame -> crop matrix whose exact inverse warp samples the original crop's points (docs/original.md).

    The original conjugates M into normalised coordinates with the align-corners formula 2x/(n-1) - 1 for
    both images, but ``affine_grid`` / ``grid_sample`` use align_corners=False. Worked through, crop pixel c
    samples the frame at Ds M^-1 Dc c with Dc(c) = (c + 1/2)(n_crop - 1)/n_crop and Ds(p) = p n_frame /
    (n_frame - 1) - 1/2 per axis; this returns (Ds M^-1 Dc)^-1 = Dc^-1 M Ds^-1, so crop and paste-back both
    use the same points."""
    (H, W), (Hc, Wc) = (int(frame_hw[0]), int(frame_hw[1])), (int(crop_hw[0]), int(crop_hw[1]))
    if min(H, W, Hc, Wc) < 2:
        raise UserError(f"frame {H}x{W} or crop {Hc}x{Wc} too small to align")
    sc = np.array([(Wc - 1) / Wc, (Hc - 1) / Hc])
    Dc = np.array([[sc[0], 0, 0.5 * sc[0]], [0, sc[1], 0.5 * sc[1]], [0, 0, 1.0]])
    Ds = np.array([[W / (W - 1), 0, -0.5], [0, H / (H - 1), -0.5], [0, 0, 1.0]])
    return np.linalg.inv(Dc) @ np.asarray(M, np.float64) @ np.linalg.inv(Ds)


# ---------------------------------------------------------------- torch warping

def _as_batch_matrix(M, B: int, device) -> torch.Tensor:
    M = torch.as_tensor(np.asarray(M.detach().cpu() if torch.is_tensor(M) else M, np.float64))
    if M.ndim == 2:
        M = M.expand(B, 3, 3)
    if M.shape != (B, 3, 3):
        raise UserError(f"expected M of shape ({B}, 3, 3), got {tuple(M.shape)}")
    return M.to(device)


def _sample_grid(A: torch.Tensor, out_hw: tuple[int, int], src_hw: tuple[int, int], x0: int = 0, y0: int = 0,
                 dtype=torch.float32) -> torch.Tensor:
    """grid_sample grid (align_corners=True) for output pixels (x0.., y0..) mapped by A (B,3,3) into a source
    of size src_hw."""
    h, w = out_hw
    sh, sw = src_hw
    dev = A.device
    ys = torch.arange(y0, y0 + h, device=dev, dtype=torch.float64)
    xs = torch.arange(x0, x0 + w, device=dev, dtype=torch.float64)
    A = A.to(torch.float64)
    # float64 on the (small) axis vectors, float32 for the per-pixel sum
    u = (A[:, 0, 0, None] * xs)[:, None, :].float() + (A[:, 0, 1, None] * ys + A[:, 0, 2, None])[:, :, None].float()
    v = (A[:, 1, 0, None] * xs)[:, None, :].float() + (A[:, 1, 1, None] * ys + A[:, 1, 2, None])[:, :, None].float()
    gx = u * (2.0 / max(sw - 1, 1)) - 1.0
    gy = v * (2.0 / max(sh - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1).to(dtype)


def warp_torch(frames: torch.Tensor, M, out_hw: tuple[int, int], padding_mode: str = "border") -> torch.Tensor:
    """out(p) = frames(M^-1 p) for a batch (B,C,H,W), M frame -> output (B,3,3); bilinear, float32 result."""
    if frames.ndim != 4:
        raise UserError(f"expected frames of shape (B, C, H, W), got {tuple(frames.shape)}")
    x = frames.float() if not frames.is_floating_point() else frames
    B = x.shape[0]
    Minv = torch.linalg.inv(_as_batch_matrix(M, B, x.device))
    grid = _sample_grid(Minv, out_hw, x.shape[-2:], dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


# ---------------------------------------------------------------- masks

def _soft_interval(n: int, lo: float, hi: float, sigma: float) -> np.ndarray:
    """Pixel indices [lo, hi) convolved with a Gaussian: 0.5 exactly at the interval's edges."""
    x = np.arange(n, dtype=np.float64)
    e0, e1 = lo - 0.5, hi - 0.5
    erf = np.vectorize(math.erf)
    return 0.5 * (erf((x - e0) / (sigma * math.sqrt(2))) - erf((x - e1) / (sigma * math.sqrt(2))))


@lru_cache(maxsize=16)
def _box_mask_np(H: int, W: int) -> np.ndarray:
    sigma = W / 80.0                     # the original's sigma-1 blur on an 80-px-wide canvas, at crop scale
    rows = _soft_interval(H, 0.4 * W, 1.2 * W, sigma)
    cols = _soft_interval(W, 0.1 * W, 0.9 * W, sigma)
    return (rows[:, None] * cols[None, :]).astype(np.float32)


# The original's SmoothSqMask (docs/original.md, 'Source mask'): its canvas, box and blur.
SMOOTHSQ_CANVAS = (103, 80)
SMOOTHSQ_BOX = (32, 96, 8, 72)           # rows [32, 96), cols [8, 72)


@lru_cache(maxsize=16)
def _smoothsq_mask_np(H: int, W: int) -> np.ndarray:
    canvas = torch.zeros(1, 1, *SMOOTHSQ_CANVAS)
    t, b, l, r = SMOOTHSQ_BOX
    canvas[..., t:b, l:r] = 1
    g = torch.exp(-(torch.arange(5, dtype=torch.float32) - 2) ** 2 / 2)   # 5 taps, sigma 1
    g = g / g.sum()
    blurred = F.conv2d(canvas, (g[:, None] * g[None, :])[None, None])      # no padding: 99 x 76
    mask = F.interpolate(blurred, size=(H, W), mode="bilinear", align_corners=False)
    return mask[0, 0].numpy()


def mouth_mask(H: int, W: int, device: Union[str, torch.device] = "cpu", dtype=torch.float32,
               profile=None) -> torch.Tensor:
    """(1,1,H,W) soft source mask; the generator sees source * (1 - mask) (``mask_source``).

    lawdnet profile (default): the mouth box (rows [0.4W, 1.2W), cols [0.1W, 0.9W)) with Gaussian-feathered
    edges, 50 % exactly on the box edges. official: the original's SmoothSqMask, exactly: ones on
    rows [32, 96) x cols [8, 72) of a 103x80 canvas, a 5x5 sigma-1 Gaussian blur without padding (99x76, the box
    shifted ~2 px down/right), bilinearly resized to H x W (50 % contour at 468x360: rows 142-443, cols 28-331).
    """
    build = _smoothsq_mask_np if face_profile(profile).source_mask == "smoothsq" else _box_mask_np
    m = torch.from_numpy(build(int(H), int(W))).to(device=device, dtype=dtype)
    return m.clone()[None, None] if m.device.type == "cpu" else m[None, None]   # never alias the cache


def mask_source(crop: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Black out the mouth region of a source crop (B,3,H,W) with a soft mask (1,1,H,W)."""
    return crop * (1 - mask)


def _ramp(n: int, lo0: float, lo1: float, hi1: float, hi0: float) -> np.ndarray:
    """0 outside [lo0, hi0], 1 inside [lo1, hi1], smoothstep in between (pixel-centre coordinates)."""
    x = np.arange(n, dtype=np.float64)
    up = np.clip((x - lo0) / max(lo1 - lo0, 1e-9), 0, 1)
    down = np.clip((hi0 - x) / max(hi0 - hi1, 1e-9), 0, 1)
    r = np.minimum(up, down)
    return r * r * (3 - 2 * r)


@lru_cache(maxsize=16)
def _paste_mask_np(H: int, W: int) -> np.ndarray:
    (it, ib, il, ir), (ot, ob, ol, orr) = [tuple(f * W for f in box) for box in (PASTE_INNER, PASTE_OUTER)]
    ob = min(ob, H - 3)                  # keep the zero border inside the crop for any aspect
    ib = min(ib, ob - 1)
    rows = _ramp(H, ot, it, ib, ob)
    cols = _ramp(W, ol, il, ir, orr)
    m = (rows[:, None] * cols[None, :]).astype(np.float32)
    m.setflags(write=False)          # shared cache: callers get copies
    return m


def paste_mask(H: int, W: int) -> np.ndarray:
    """(H, W) float32 paste-back weight: 1 over the mouth / lower face, smooth falloff to exactly 0 inside
    the crop border."""
    return _paste_mask_np(int(H), int(W)).copy()


# ---------------------------------------------------------------- paste-back

def _footprint(M: np.ndarray, mask: np.ndarray, H: int, W: int) -> Optional[tuple[int, int, int, int]]:
    """Frame bounding box (x0, y0, x1, y1), end-exclusive and clipped, of the crop's non-zero mask."""
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    if len(ys) == 0:
        return None
    # one pixel of margin for the bilinear support
    cx = np.array([xs.min() - 1, xs.max() + 1, xs.min() - 1, xs.max() + 1], np.float64)
    cy = np.array([ys.min() - 1, ys.min() - 1, ys.max() + 1, ys.max() + 1], np.float64)
    Minv = np.linalg.inv(M)
    p = apply_transform(np.stack([cx, cy], -1), Minv)
    x0, y0 = max(0, int(np.floor(p[:, 0].min())) - 1), max(0, int(np.floor(p[:, 1].min())) - 1)
    x1, y1 = min(W, int(np.ceil(p[:, 0].max())) + 2), min(H, int(np.ceil(p[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_back(frame_rgb: np.ndarray, generated_crop: np.ndarray, M, mask: Optional[np.ndarray] = None
               ) -> np.ndarray:
    """Blend a generated crop back into its frame -> new uint8 frame (the input is not modified).

    Every frame pixel p in the crop's footprint samples the crop bilinearly at M p (inverse warp: no holes
    however large the face is) and is blended with the warped ``mask`` (default ``paste_mask``). Pixels whose
    warped weight is 0, and everything outside the frame-clipped footprint, are copied unchanged. Crops are
    uint8 or float on the 0-255 scale.
    """
    frame = np.asarray(frame_rgb)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise UserError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    crop = np.asarray(generated_crop)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise UserError(f"expected a generated crop (Hc, Wc, 3), got {crop.shape}")
    Hc, Wc = crop.shape[:2]
    mask = _paste_mask_np(Hc, Wc) if mask is None else np.asarray(mask, np.float32)
    if mask.shape != (Hc, Wc):
        raise UserError(f"paste mask shape {mask.shape} does not match the crop {(Hc, Wc)}")
    M = np.asarray(M, np.float64)
    H, W = frame.shape[:2]
    out = frame.copy()
    box = _footprint(M, mask, H, W)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    # maps ROI pixel (x, y) -> crop pixel M (x + x0, y + y0)
    A = (M @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64))[:2]
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    gen = cv2.warpAffine(np.ascontiguousarray(crop, dtype=np.float32), A, size, flags=flags,
                         borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(np.ascontiguousarray(mask), A, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    blended = np.clip(roi + a * (np.clip(gen, 0, 255) - roi) + 0.5, 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(a > 0, blended, frame[y0:y1, x0:x1])
    return out


def paste_back_torch(frames: torch.Tensor, crops: torch.Tensor, M, mask=None) -> torch.Tensor:
    """Batched paste-back on the frames' device: frames (B,3,H,W) uint8 or float, crops (B,3,Hc,Wc) on the
    same 0-255 scale, M (B,3,3) frame -> crop, mask (Hc,Wc) / (1|B,1,Hc,Wc) or None (``paste_mask``).
    Returns a new tensor of the frames' dtype; pixels with zero warped weight are bit-identical."""
    if frames.ndim != 4 or crops.ndim != 4 or frames.shape[0] != crops.shape[0]:
        raise UserError(f"expected frames (B,3,H,W) and crops (B,3,Hc,Wc), got {tuple(frames.shape)} "
                        f"and {tuple(crops.shape)}")
    B, C, H, W = frames.shape
    Hc, Wc = crops.shape[-2:]
    dev = frames.device
    if mask is None:
        mask_np = _paste_mask_np(Hc, Wc)
        mask_t = torch.from_numpy(mask_np.copy())[None, None]
    else:
        mask_t = torch.as_tensor(mask) if not torch.is_tensor(mask) else mask
        mask_np = mask_t.detach().float().cpu().numpy().reshape(-1, Hc, Wc).max(0)
        mask_t = mask_t.reshape(-1, 1, Hc, Wc)
    mask_t = mask_t.to(device=dev, dtype=torch.float32).expand(B, 1, Hc, Wc)
    Mb = _as_batch_matrix(M, B, "cpu")
    boxes = [_footprint(Mb[i].numpy(), mask_np, H, W) for i in range(B)]
    boxes = [b for b in boxes if b is not None]
    out = frames.clone()
    if not boxes:
        return out
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    grid = _sample_grid(Mb.to(dev), (y1 - y0, x1 - x0), (Hc, Wc), x0, y0)
    gen = F.grid_sample(crops.to(dev).float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    alpha = F.grid_sample(mask_t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    roi = frames[:, :, y0:y1, x0:x1]
    rf = roi.float()
    blended = rf + alpha * (gen - rf)
    if not frames.is_floating_point():
        blended = (blended.clamp(0, 255) + 0.5).floor().to(frames.dtype)
    else:
        blended = blended.to(frames.dtype)
    out[:, :, y0:y1, x0:x1] = torch.where(alpha > 0, blended, roi)
    return out
