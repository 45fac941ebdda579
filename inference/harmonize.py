"""Colour harmonisation of a generated crop to its template (issue 25: no colour cast, no fringe).

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


def gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
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
    bw, bs, bo = gauss_blur(pw, sig), gauss_blur(ps, sig), gauss_blur(po, sig)
    total = w.sum((2, 3), keepdim=True).clamp_min(1.0)
    gs, go = (w * s).sum((2, 3), keepdim=True) / total, (w * o).sum((2, 3), keepdim=True) / total
    ms = (bs + FLOOR * gs) / (bw + FLOOR)
    mo = (bo + FLOOR * go) / (bw + FLOOR)
    gain = ((ms + EPS) / (mo + EPS)).clamp(*GAIN_RANGE)
    if f > 1:
        gain = F.interpolate(gain, size=(H, W), mode="bilinear", align_corners=False)
    return (o * gain).clamp(0.0, 1.0).to(out.dtype)


SHARPEN_SIGMA = 0.8   # crop pixels
LUMA = (0.299, 0.587, 0.114)
# the chroma a generated pixel may take: what the template crop shows within this many crop widths of it (a
# quarter of the eye distance, which is 0.59 crop widths: as far as a chin moves, utils/face/blend.JAW_DROP)
FRINGE_RADIUS = 0.15
FRINGE_BANDS = 4      # lightness bands the chroma range is taken in
FRINGE_OVERLAP = 0.5  # each band also takes template pixels this far (in band widths) into its neighbours
_R2 = 0.5 ** 0.5


def luma(x: torch.Tensor) -> torch.Tensor:
    return LUMA[0] * x[:, 0:1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:3]


def sharpen(out: torch.Tensor, amount: float, sigma: float = SHARPEN_SIGMA) -> torch.Tensor:
    """Unsharp mask of the *lightness* of generated crops (n,3,H,W) in [0, 1]: ``amount (Y - blur(Y))`` added to
    all three channels, clamped.

    It compensates the two bilinear resamplings a generated mouth goes through (frame -> crop for the model's
    input and target, crop -> frame at paste-back): on the demo's held-out frames a perfect generator (the crop
    itself pasted back) keeps only 0.52 (m = 32) / 0.62 (m = 64) of the truth's mouth sharpness; amount 0.7 at
    sigma 0.8 brings that round trip back to about 1 (evaluation/sharpness.py). Lightness only: sharpening each
    channel amplifies wherever the model's channels disagree (a red edge softer than the green one) into a
    coloured line along the jaw (evaluation/fringe.py)."""
    if amount <= 0:
        return out
    x = out.float()
    y = luma(x)
    return (x + amount * (y - gauss_blur(y, sigma))).clamp(0.0, 1.0).to(out.dtype)


def _local_max(x: torch.Tensor, r: int) -> torch.Tensor:
    """Per-channel max of ``x`` (n,c,H,W) over a (2r+1)^2 window (separable max filters; for large r on a grid of
    cells of r/4 px, a window up to that much wider)."""
    H, W = x.shape[-2:]
    f = max(1, r // 4)
    v = F.max_pool2d(x, f, ceil_mode=True) if f > 1 else x
    k = -(-r // f)
    v = F.max_pool2d(v, (1, 2 * k + 1), stride=1, padding=(0, k))
    v = F.max_pool2d(v, (2 * k + 1, 1), stride=1, padding=(k, 0))
    return F.interpolate(v, scale_factor=f, mode="nearest")[..., :H, :W] if f > 1 else v


def defringe(out: torch.Tensor, source: torch.Tensor, radius: float = FRINGE_RADIUS) -> torch.Tensor:
    """Generated crops ``out`` (n,3,H,W) in [0, 1] with each pixel's chroma (B - Y, R - Y) clamped into the range
    the template crops ``source`` show within ``radius`` crop widths of it *at a similar lightness*; lightness
    untouched.

    A generated jaw contour often carries a thin green or pink line over a dark collar, a colour neither the skin
    nor the collar has. Its shape is in the lightness, its error in the chroma: a colour the template has nowhere
    near is replaced by the nearest one it has. The range is taken per lightness band (``FRINGE_BANDS``, each
    reaching into its neighbours), so a dark pixel gets the chroma of the template's dark pixels near it (the
    collar, not the skin: no pink shadow under the chin), a chin that moves keeps its skin colour (skin of that
    lightness is near), and the mouth's own colours pass (the template's lips and teeth are near); a lightness
    the template has nowhere near (a darker mouth cavity) falls back to the range of all its nearby pixels."""
    o, s = out.float(), source.float()
    r = max(1, int(round(radius * o.shape[-1])))

    def chroma(x):
        """Lightness and four chroma projections: (B - Y, R - Y) and their sum and difference. Clamping all four
        bounds the colour by an octagon around the template's colours rather than a box: a box around skin
        (R - Y high, B - Y low) and grey (both ~0) would also admit the yellow-green corner neither has."""
        y = luma(x)
        cb, cr = x[:, 2:3] - y, x[:, 0:1] - y
        return y, torch.cat([cb, cr, (cb + cr) * _R2, (cr - cb) * _R2], 1)

    y, c = chroma(o)
    ys, cs = chroma(s)
    lo, hi = -_local_max(-cs, r), _local_max(cs, r)                # every lightness: the fallback
    edges = torch.linspace(0, 1, FRINGE_BANDS + 1).tolist()
    band = (y * FRINGE_BANDS).long().clamp(0, FRINGE_BANDS - 1)    # each output pixel's band
    big = 4.0
    for b in range(FRINGE_BANDS):
        w = (edges[1] - edges[0]) * FRINGE_OVERLAP
        inb = (ys >= edges[b] - w) & (ys <= edges[b + 1] + w)
        blo, bhi = -_local_max(torch.where(inb, -cs, -big), r), _local_max(torch.where(inb, cs, -big), r)
        ok = (blo[:, :1] < big / 2) & (band == b)                   # template pixels of this band are near
        lo, hi = torch.where(ok, blo, lo), torch.where(ok, bhi, hi)
    cb, cr = c[:, 0:1], c[:, 1:2]
    for _ in range(3):              # alternate projections onto the two boxes: converges onto the octagon
        cb, cr = cb.clamp(lo[:, 0:1], hi[:, 0:1]), cr.clamp(lo[:, 1:2], hi[:, 1:2])
        p, q = ((cb + cr) * _R2).clamp(lo[:, 2:3], hi[:, 2:3]), ((cr - cb) * _R2).clamp(lo[:, 3:4], hi[:, 3:4])
        cb, cr = (p - q) * _R2, (p + q) * _R2
    cb, cr = cb.clamp(lo[:, 0:1], hi[:, 0:1]), cr.clamp(lo[:, 1:2], hi[:, 1:2])
    b_, red = cb + y, cr + y
    g = (y - LUMA[0] * red - LUMA[2] * b_) / LUMA[1]
    return torch.cat([red, g, b_], 1).clamp(0.0, 1.0).to(out.dtype)
