"""Colour harmonisation of a generated crop to its template (issue 25: no colour cast).

The generator is asked to copy every pixel outside the source mask and to invent the mouth inside it; a small or
undertrained one copies with a cast (a green-yellow lower face, a pink nose) that paste-back carries into the
frame. ``harmonize`` fits, per frame and channel, a smooth multiplicative gain field that maps the generated
crop onto the template's crop on the pixels the model was asked to copy (source mask below ``COPY_LEVEL``) and
applies it to the whole crop: a normalised convolution (local means of template and output over the copied
pixels, Gaussian ``SIGMA`` crop widths, on a coarse grid) interpolates the gain smoothly into the mouth region,
so a cast that varies over the face is taken out where it is and the mouth's own detail is kept. Dark template
pixels (below ``DARK``) are left out of the fit: a ratio of two near-black values says nothing about a cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

COPY_LEVEL = 0.05     # source-mask weight below which a pixel was given to the model to copy
SIGMA = 0.35          # Gaussian of the local means, in crop widths
GRID = 24             # the local means are taken on a grid about this many cells across
GAIN_RANGE = (0.6, 1.6)
EPS = 0.05            # keeps the gain of dark pixels (the mouth cavity) near 1
DARK = (0.12, 0.3)    # template luma below the first gives a pixel no say in the fit, above the second a full one
FLOOR = 1e-3          # weight of the frame-wide means where no copied pixel is near


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def harmonize(out: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``out`` (n,3,H,W) generated crops in [0, 1]; ``source`` (n,3,H,W) the template crops (unmasked, [0, 1]);
    ``mask`` (1,1,H,W) the source mask. Returns ``out`` with its colours matched to ``source`` (new tensor)."""
    n, c, H, W = out.shape
    dt = torch.float32
    o, s = out.to(dt), source.to(dt)
    # the copied pixels, dark ones (collar, hair, shadows) left out: their ratios are noise and turned a dark
    # collar under the chin into a pink chin
    luma = (0.299 * s[:, 0:1] + 0.587 * s[:, 1:2] + 0.114 * s[:, 2:3])
    bright = ((luma - DARK[0]) / (DARK[1] - DARK[0])).clamp(0.0, 1.0)
    w = (mask.to(dt) < COPY_LEVEL).to(dt) * bright
    f = max(1, min(H, W) // GRID)
    pool = lambda x: F.avg_pool2d(x, f, ceil_mode=True) if f > 1 else x  # noqa: E731
    pw, ps, po = pool(w), pool(w * s), pool(w * o)
    sig = SIGMA * W / f
    bw, bs, bo = _gauss_blur(pw, sig), _gauss_blur(ps, sig), _gauss_blur(po, sig)
    total = w.sum((2, 3), keepdim=True).clamp_min(1.0)
    gs, go = (w * s).sum((2, 3), keepdim=True) / total, (w * o).sum((2, 3), keepdim=True) / total
    ms = (bs + FLOOR * gs) / (bw + FLOOR)
    mo = (bo + FLOOR * go) / (bw + FLOOR)
    gain = ((ms + EPS) / (mo + EPS)).clamp(*GAIN_RANGE)
    if f > 1:
        gain = F.interpolate(gain, size=(H, W), mode="bilinear", align_corners=False)
    return (o * gain).clamp(0.0, 1.0).to(out.dtype)


SHARPEN_SIGMA = 0.8   # crop pixels


def sharpen(out: torch.Tensor, amount: float, sigma: float = SHARPEN_SIGMA) -> torch.Tensor:
    """Unsharp mask ``out + amount (out - blur(out))`` of generated crops (n,3,H,W) in [0, 1], clamped.

    It compensates the two bilinear resamplings a generated mouth goes through (frame -> crop for the model's
    input and target, crop -> frame at paste-back): on the demo's held-out frames a perfect generator (the crop
    itself pasted back) keeps only 0.52 (m = 32) / 0.62 (m = 64) of the truth's mouth sharpness; amount 0.7 at
    sigma 0.8 brings that round trip back to about 1 (evaluation/sharpness.py)."""
    if amount <= 0:
        return out
    x = out.float()
    return (x + amount * (x - _gauss_blur(x, sigma))).clamp(0.0, 1.0).to(out.dtype)
