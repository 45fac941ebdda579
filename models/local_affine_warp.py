"""Local Affine Warping (spec section 2): per-channel keypoint similarity fields on a coarse grid.

For each of C feature channels the warp code predicts N keypoints k, radii rho and similarity parameters
(scale 1+s0, angle pi*s1, translation t). On a coarse H0 x W0 grid of pixel-centre points p every keypoint
proposes p'_n = (1 + s0 w) R(pi s1 w) (p - k) + t w + k with influence w = exp(-|p - k| / rho); the proposals
are blended with softmax(w) over keypoints. The field is then brought to the feature resolution and each
channel samples only itself.

Two modes:
* ``official`` reproduces the released function exactly, including its grid-layout quirk (spec 2.5: the
  (C, H0, W0, 2) positions are reinterpreted in memory as (2C, H0, W0) planes after swapping H0 and W0, so the
  sampling field is an interleaved x/y pattern). Released checkpoints only work in this mode.
* ``corrected`` is the intended warp: the displacement field is laid out as x/y planes, resized smoothly and
  added to the exact fine-resolution identity grid, so identity parameters give an identity warp.

Speed (vs the official op): the 3-D trilinear grid_sample over a (C, H, W) volume becomes a per-channel 2-D
bilinear sample (identical: the pixel-centre depth coordinate hits each channel exactly), the redundant
same-size second resize is dropped, and the coarse field is evaluated channel-chunk by channel-chunk so that
its ~15 intermediate fields stay in cache instead of materialising ~0.5 GB per sample.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

WARP_MODES = ("official", "corrected")


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


_compiled_field = None


def use_compiled_warp(enabled=True):
    """Evaluate the coarse field with a torch.compile'd kernel in inference (one fused loop, ~3x faster on CPU).

    The first call per input shape compiles (tens of seconds on CPU; cached on disk by inductor), so it is
    opt-in: inference and benchmarks switch it on, tests and training stay eager.
    """
    global _compiled_field
    _compiled_field = torch.compile(_whole_field, dynamic=False) if enabled else None


def _whole_field(grid, kpoints, radius, similarity):
    return coarse_displacement(grid, kpoints, radius, similarity, chunk=kpoints.shape[2], _allow_compiled=False)


def _field_rows_inplace(gx, gy, kp, nir, sim):
    """Inference-only version of _field_chunk over rows r = (b, c): one keypoint at a time, in-place ops.

    kp (N, R, 2, 1), nir = -1/rho (N, R, 1), sim (N, R, 4, 1) with sim[:, :, 1] already times pi; grid (1, P).
    Accumulating the softmax numerators per keypoint keeps ~6 live (R, P) tensors instead of ~15 (N, R, P) ones.
    """
    nx = ny = den = None
    for n in range(kp.shape[0]):
        dx = gx - kp[n, :, 0]
        dy = gy - kp[n, :, 1]
        w = torch.hypot(dx, dy).mul_(nir[n]).exp_()
        sc = (w * sim[n, :, 0]).add_(1)
        ang = w * sim[n, :, 1]
        a = torch.cos(ang).mul_(sc).sub_(1)          # scale*cos - 1
        b = torch.sin(ang).mul_(sc)                  # scale*sin
        ex = (a * dx).addcmul_(b, dy).addcmul_(w, sim[n, :, 2].expand_as(w))
        ey = (a * dy).addcmul_(b, dx, value=-1).addcmul_(w, sim[n, :, 3].expand_as(w))
        e = w.exp_()
        if nx is None:
            nx, ny, den = ex.mul_(e), ey.mul_(e), e
        else:
            nx.addcmul_(ex, e)
            ny.addcmul_(ey, e)
            den.add_(e)
    return nx.div_(den), ny.div_(den)


def coarse_displacement(grid, kpoints, radius, similarity, chunk=16, _allow_compiled=True):
    """Blended displacement field on the coarse grid.

    grid (H0, W0, 2); kpoints (B, N, C, 2); radius (B, N, C); similarity (B, N, C, 4) -> (B, C, H0, W0, 2).
    """
    if _allow_compiled and _compiled_field is not None and not torch.is_grad_enabled():
        return _compiled_field(grid, kpoints, radius, similarity)
    H0, W0, _ = grid.shape
    B, N, C, _ = kpoints.shape
    needs_grad = torch.is_grad_enabled() and (kpoints.requires_grad or similarity.requires_grad
                                              or radius.requires_grad)
    if not needs_grad:
        # rows = (b, c) pairs, processed in blocks of ~64 rows so each (rows, P) field stays in L2 cache
        gx, gy = grid[..., 0].reshape(1, -1), grid[..., 1].reshape(1, -1)
        kp = kpoints.permute(1, 0, 2, 3).reshape(N, B * C, 2, 1)
        sim = similarity.permute(1, 0, 2, 3).reshape(N, B * C, 4, 1).clone()
        sim[:, :, 1] *= math.pi
        nir = radius.permute(1, 0, 2).reshape(N, B * C, 1).reciprocal().neg()
        rows = max(1, (64 * 3600) // (H0 * W0))
        out = torch.empty(B * C, H0 * W0, 2, dtype=kpoints.dtype, device=kpoints.device)
        for r0 in range(0, B * C, rows):
            sl = slice(r0, r0 + rows)
            ex, ey = _field_rows_inplace(gx, gy, kp[:, sl], nir[:, sl], sim[:, sl])
            out[sl, :, 0] = ex
            out[sl, :, 1] = ey
        return out.view(B, C, H0, W0, 2)
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
        ex, ey = checkpoint(_field_chunk, *args, use_reentrant=False)
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
        disp = coarse_displacement(grid, kp, rho, sim, self.chunk)        # (B, C, H0, W0, 2)
        B, C, H0, W0, _ = disp.shape
        H, W = size
        if self.mode == "official":
            pos = disp + grid
            # The released layout: swap H0/W0, then reinterpret memory as 2C planes (spec 2.5 step 1).
            planes = pos.transpose(2, 3).reshape(B, 2 * C, H0, W0)
            planes = F.interpolate(planes, size=(H, W), mode="bilinear", align_corners=False,
                                   antialias=self.antialias and (H < H0 or W < W0))
            return planes.view(B, C, 2, H, W).permute(0, 1, 3, 4, 2)
        planes = disp.permute(0, 1, 4, 2, 3).reshape(B, 2 * C, H0, W0)
        planes = F.interpolate(planes, size=(H, W), mode="bilinear", align_corners=False)
        fine = standard_grid(H, W, device=planes.device, dtype=planes.dtype)
        return planes.view(B, C, 2, H, W).permute(0, 1, 3, 4, 2) + fine

    def forward(self, feature, code):
        B, C, H, W = feature.shape
        grid = self.sampling_grid(code, (H, W)).to(feature.dtype)
        # Each channel samples only itself: a per-channel 2-D bilinear sample (= the official 3-D trilinear one).
        out = F.grid_sample(feature.reshape(B * C, 1, H, W), grid.reshape(B * C, H, W, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(B, C, H, W)
