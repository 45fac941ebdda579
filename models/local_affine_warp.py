"""Local Affine Warping (docs/original.md, 'Warp layout'): per-channel keypoint similarity fields on a coarse grid.

For each of C feature channels the warp code predicts N keypoints k, radii rho and similarity parameters
(scale 1+s0, angle pi*s1, translation t). On a coarse H0 x W0 grid of pixel-centre points p every keypoint
proposes p'_n = (1 + s0 w) R(pi s1 w) (p - k) + t w + k with influence w = exp(-|p - k| / rho); the proposals
are blended with softmax(w) over keypoints. The field is then brought to the feature resolution and each
channel samples only itself.

Two modes:
* ``official`` reproduces the released function exactly, including its grid-layout quirk (docs/original.md: the
  (C, H0, W0, 2) positions are reinterpreted in memory as (2C, H0, W0) planes after swapping H0 and W0, so the
  sampling field is an interleaved x/y pattern). Released checkpoints only work in this mode.
* ``corrected`` is the intended warp: the displacement field is laid out as x/y planes, resized smoothly and
  added to the exact fine-resolution identity grid, so identity parameters give an identity warp.

Speed (vs the official op): the 3-D trilinear grid_sample over a (C, H, W) volume becomes a per-channel 2-D
bilinear sample (identical: the pixel-centre depth coordinate hits each channel exactly), the redundant
same-size second resize is dropped, and the coarse field is evaluated channel-chunk by channel-chunk so that
its ~15 intermediate fields stay in cache instead of materialising ~0.5 GB per sample. In inference the field
is evaluated one keypoint at a time with in-place ops, with distances from separable (column, row) offsets,
and written straight into the layout the resize reads (official: the scrambled x-major order with the grid
added), so no full-size shift, transpose or copy follows. Sampling happens in the wider of the feature and
grid dtypes, so under bf16/fp16 autocast the float32 positions are not rounded to half precision.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from config.config import WARP_MODES


def standard_grid(height, width, device=None, dtype=torch.float32):
    """(height, width, 2) pixel-centre coordinates in [-1, 1], last axis (x, y) as grid_sample expects."""
    ys = (torch.arange(height, device=device, dtype=torch.float64) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=torch.float64) * 2 + 1) / width - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).to(dtype)


def _field_chunk(gx, gy, kx, ky, inv_rho, s0, s1, tx, ty):
    """Blended displacement p' - p for a chunk of channels. Params (B, c, N, 1), grid (1, 1, 1, P) -> 2x (B, c, P)."""
    dx = gx - kx
    dy = gy - ky
    w = torch.exp(-torch.sqrt(dx * dx + dy * dy) * inv_rho)
    ang = w * s1
    ca, sa = torch.cos(ang), torch.sin(ang)
    sc = 1 + s0 * w
    # candidate displacement = scale * R * d + t * w - d  (p' - p, since p' = ... + k and p = d + k)
    ex = sc * (ca * dx + sa * dy) + tx * w - dx
    ey = sc * (ca * dy - sa * dx) + ty * w - dy
    e = torch.exp(w)  # softmax over keypoints of the influences themselves (official blending)
    den = e.sum(2)
    return (e * ex).sum(2) / den, (e * ey).sum(2) / den


_compiled_planes = None


def use_compiled_warp(enabled=True):
    """Evaluate the coarse field with a torch.compile'd kernel in inference (one fused loop, ~2x faster on CPU).

    The first call per input shape compiles (tens of seconds on CPU; cached on disk by inductor), so it is
    opt-in: inference and benchmarks switch it on, tests and training stay eager.
    """
    global _compiled_planes
    if not enabled:
        _compiled_planes = None
    elif _compiled_planes is None:   # keep an existing wrapper: its compiled shapes stay valid
        _compiled_planes = torch.compile(_planes_fused, dynamic=False)


def _planes_fused(grid, kpoints, radius, similarity, mode):
    """The whole field and its layout as one expression, for torch.compile to fuse into one loop."""
    disp = displacement_chunked(grid, kpoints, radius, similarity, kpoints.shape[2], checkpointed=False)
    return planes_from_displacement(disp, grid, mode)


def planes_from_displacement(disp, grid, mode):
    """(B, C, H0, W0, 2) displacement -> the (B, 2C, H0, W0) planes that get resized."""
    B, C, H0, W0, _ = disp.shape
    if mode == "official":
        # The released layout: swap H0/W0, then reinterpret memory as 2C planes (docs/original.md, 'Warp layout').
        return (disp + grid).transpose(2, 3).reshape(B, 2 * C, H0, W0)
    return disp.permute(0, 1, 4, 2, 3).reshape(B, 2 * C, H0, W0)


def _field_rows_inplace(xs, ys, kp, nir, sim, transposed=False):
    """Inference-only version of _field_chunk over rows r = (b, c): one keypoint at a time, in-place ops.

    The coarse grid is a tensor product, so dx depends only on the column and dy only on the row: they are
    (R, W0) / (R, H0) vectors broadcast against each other, and |p - k| is sqrt(dx^2 + dy^2) over that
    broadcast (cheaper than hypot on full fields). xs (1, W0), ys (1, H0); kp (N, R, 2, 1), nir = -1/rho
    (N, R, 1, 1), sim (N, R, 4, 1, 1) with sim[:, :, 1] already times pi. Returns the softmax numerators and
    denominator, (R, H0, W0) each, or (R, W0, H0) with ``transposed`` (points in x-major order).
    Accumulating the numerators per keypoint keeps ~6 live (R, P) tensors instead of ~15 (N, R, P) ones.
    """
    one = torch.ones((), dtype=xs.dtype, device=xs.device)
    nx = ny = den = None
    for n in range(kp.shape[0]):
        dx = xs - kp[n, :, 0]                                   # (R, W0)
        dy = ys - kp[n, :, 1]                                   # (R, H0)
        dx, dy = (dx[:, :, None], dy[:, None, :]) if transposed else (dx[:, None, :], dy[:, :, None])
        w = torch.add(dx * dx, dy * dy).sqrt_().mul_(nir[n]).exp_()
        s = sim[n]
        sc = torch.addcmul(one, w, s[:, 0])                     # 1 + s0 w
        ang = w * s[:, 1]
        a = torch.cos(ang)
        a = torch.addcmul(-one, a, sc, out=a)                   # scale*cos - 1
        b = torch.sin(ang, out=ang).mul_(sc)                    # scale*sin
        # candidate displacement = scale * R * d + t * w - d  (p' - p, since p' = ... + k and p = d + k)
        ex = (a * dx).addcmul_(b, dy).addcmul_(w, s[:, 2].expand_as(w))
        ey = a.mul_(dy).addcmul_(b, dx, value=-1).addcmul_(w, s[:, 3].expand_as(w))
        e = w.exp_()
        if nx is None:
            nx, ny, den = ex.mul_(e), ey.mul_(e), e
        else:
            nx.addcmul_(ex, e)
            ny.addcmul_(ey, e)
            den.add_(e)
    return nx, ny, den


def planes_eager(grid, kpoints, radius, similarity, mode):
    """_planes_fused computed block of rows by block of rows (no autograd), written straight into the layout.

    ``official``: positions (grid + displacement) in the released x-major, x/y-interleaved order, so nothing is
    shifted, transposed or copied afterwards; ``corrected``: x / y displacement planes.
    """
    H0, W0, _ = grid.shape
    B, N, C, _ = kpoints.shape
    R = B * C
    kp = kpoints.permute(1, 0, 2, 3).reshape(N, R, 2, 1)
    sim = similarity.permute(1, 0, 2, 3).reshape(N, R, 4, 1, 1).clone()
    sim[:, :, 1] *= math.pi
    nir = radius.permute(1, 0, 2).reshape(N, R, 1, 1).reciprocal().neg()
    xs, ys = grid[0, :, 0].reshape(1, W0), grid[:, 0, 1].reshape(1, H0)
    official = mode == "official"
    shape = (R, W0, H0, 2) if official else (R, 2, H0, W0)
    out = torch.empty(shape, dtype=kpoints.dtype, device=kpoints.device)
    rows = max(1, (32 * 3600) // (H0 * W0))   # each (rows, H0*W0) field ~0.5 MB: the live ones stay in cache
    for r0 in range(0, R, rows):
        sl = slice(r0, r0 + rows)
        nx, ny, den = _field_rows_inplace(xs, ys, kp[:, sl], nir[:, sl], sim[:, sl], transposed=official)
        if official:
            torch.addcdiv(xs.reshape(1, W0, 1), nx, den, out=out[sl, ..., 0])
            torch.addcdiv(ys.reshape(1, 1, H0), ny, den, out=out[sl, ..., 1])
        else:
            torch.div(nx, den, out=out[sl, 0])
            torch.div(ny, den, out=out[sl, 1])
    return out.view(B, 2 * C, H0, W0)


def coarse_planes(grid, kpoints, radius, similarity, mode, chunk=16):
    """The coarse field as the (B, 2C, H0, W0) planes that get resized (``mode`` official / corrected).

    grid (H0, W0, 2); kpoints (B, N, C, 2); radius (B, N, C); similarity (B, N, C, 4).
    """
    if torch.is_grad_enabled() and (kpoints.requires_grad or similarity.requires_grad or radius.requires_grad):
        return planes_from_displacement(displacement_chunked(grid, kpoints, radius, similarity, chunk), grid, mode)
    if _compiled_planes is not None:
        return _compiled_planes(grid, kpoints, radius, similarity, mode)
    return planes_eager(grid, kpoints, radius, similarity, mode)


def displacement_chunked(grid, kpoints, radius, similarity, chunk, checkpointed=True):
    """Differentiable field, ``chunk`` channels at a time (each chunk recomputed in backward when checkpointed)."""
    H0, W0, _ = grid.shape
    B, N, C, _ = kpoints.shape
    gx = grid[..., 0].reshape(1, 1, 1, -1)
    gy = grid[..., 1].reshape(1, 1, 1, -1)
    kp = kpoints.permute(0, 2, 1, 3).unsqueeze(-1)           # (B, C, N, 2, 1)
    sim = similarity.permute(0, 2, 1, 3).unsqueeze(-1)       # (B, C, N, 4, 1)
    inv_rho = radius.permute(0, 2, 1).unsqueeze(-1).reciprocal()  # (B, C, N, 1)
    xs, ys = [], []
    for c0 in range(0, C, chunk):
        sl = slice(c0, c0 + chunk)
        args = (gx, gy, kp[:, sl, :, 0], kp[:, sl, :, 1], inv_rho[:, sl],
                sim[:, sl, :, 0], sim[:, sl, :, 1] * math.pi, sim[:, sl, :, 2], sim[:, sl, :, 3])
        # In training, recompute each chunk in backward instead of storing its intermediates (memory / C).
        ex, ey = checkpoint(_field_chunk, *args, use_reentrant=False) if checkpointed else _field_chunk(*args)
        xs.append(ex)
        ys.append(ey)
    return torch.stack((torch.cat(xs, 1), torch.cat(ys, 1)), dim=-1).view(B, C, H0, W0, 2)


class LocalAffineWarp(nn.Module):
    def __init__(self, channels=256, code_dim=256, num_kpoints=5, grid_size=60, mode="official",
                 antialias=True, chunk=16):
        super().__init__()
        if mode not in WARP_MODES:
            raise ValueError(f"warp mode must be one of {WARP_MODES}, got {mode!r}")
        self.channels, self.num_kpoints, self.mode = channels, num_kpoints, mode
        self.antialias = antialias  # official: torchvision>=0.17 tensor Resize antialiases when down-sampling
        self.chunk = chunk
        self.commn_linear = nn.Sequential(nn.Linear(code_dim, code_dim), nn.ReLU())
        self.kpoints_normalized_layer = nn.Sequential(nn.Linear(code_dim, 2 * num_kpoints * channels), nn.Tanh())
        self.similarity_params_layer = nn.Sequential(nn.Linear(code_dim, 4 * num_kpoints * channels), nn.Tanh())
        self.radius_layer = nn.Sequential(nn.Linear(code_dim, num_kpoints * channels), nn.Sigmoid())
        # A buffer (not a plain attribute) so it follows .to(device); non-persistent keeps official keys.
        self.register_buffer("coarse_grid", standard_grid(grid_size, grid_size), persistent=False)

    def parameters_from_code(self, code):
        B, N, C = code.shape[0], self.num_kpoints, self.channels
        h = self.commn_linear(code)
        kp = self.kpoints_normalized_layer(h).view(B, N, C, 2)
        sim = self.similarity_params_layer(h).view(B, N, C, 4)
        rho = self.radius_layer(h).view(B, N, C)
        return kp, rho, sim

    def sampling_grid(self, code, size):
        """(B, C, H, W, 2) grid_sample coordinates for feature maps of spatial ``size``."""
        # The field is computed in at least float32 even under autocast: bf16 positions would be off by
        # ~1/256 of the image, a visible misregistration.
        kp, rho, sim = (t.float() if t.element_size() < 4 else t for t in self.parameters_from_code(code))
        with torch.autocast(device_type=kp.device.type, enabled=False):
            return self._grid_from_params(kp, rho, sim, size)

    def _grid_from_params(self, kp, rho, sim, size):
        grid = self.coarse_grid.to(kp.dtype)
        planes = coarse_planes(grid, kp, rho, sim, self.mode, self.chunk)     # (B, 2C, H0, W0)
        B, C2, H0, W0 = planes.shape
        H, W = size
        if self.mode == "official":
            planes = F.interpolate(planes, size=(H, W), mode="bilinear", align_corners=False,
                                   antialias=self.antialias and (H < H0 or W < W0))
            return planes.view(B, C2 // 2, 2, H, W).permute(0, 1, 3, 4, 2)
        planes = F.interpolate(planes, size=(H, W), mode="bilinear", align_corners=False)
        fine = standard_grid(H, W, device=planes.device, dtype=planes.dtype)
        return planes.view(B, C2 // 2, 2, H, W).permute(0, 1, 3, 4, 2) + fine

    def forward(self, feature, code):
        B, C, H, W = feature.shape
        grid = self.sampling_grid(code, (H, W))
        # Sample in the wider of the two dtypes: under autocast the features are bf16/fp16 but the positions
        # stay float32 (a bf16 grid would misplace samples by up to ~1/256 of the image).
        dtype = torch.promote_types(feature.dtype, grid.dtype)
        # Each channel samples only itself: a per-channel 2-D bilinear sample (= the official 3-D trilinear one).
        out = F.grid_sample(feature.reshape(B * C, 1, H, W).to(dtype), grid.reshape(B * C, H, W, 2).to(dtype),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(B, C, H, W).to(feature.dtype)
