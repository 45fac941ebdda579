"""Patch discriminator of LawDNet / DINet (docs/original.md, 'Discriminators').

The same class serves as the spatial discriminator (3 channels, one frame) and the temporal one (15 channels, 5
frames stacked on channels); DISCRIMINATORS below is their one alias table. Parameter names follow the official checkpoints
(``down_blocks.{i}.conv.*``, ``conv.*``) so their state dicts load strictly once the DDP ``module.`` prefix is
removed. There is no autocast in here (the original had one): the caller picks the precision.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.checkpoint import strip_module_prefix


class DiscriminatorName(NamedTuple):
    checkpoint_key: str              # the official checkpoints' key in ``state_dict`` (kept as it is)
    channels: int                    # input channels
    aliases: tuple                   # what the spec, the original code and earlier versions called it


# One name per discriminator, used in code (``self.d_<name>``), flags (``--lamb_g_<name>``) and logs
# (``loss/d_<name>``, ``loss/g_<name>``); checkpoints keep the official keys.
DISCRIMINATORS = {
    "spatial": DiscriminatorName("net_dI", 3, ("D_I", "D_S", "dS", "d_s", "lamb_g_di", "image discriminator")),
    "temporal": DiscriminatorName("net_dV", 15, ("D_V", "D_T", "dT", "d_t", "lamb_g_dv", "video discriminator")),
}


def discriminator_name(alias: str) -> str:
    """The name (spatial | temporal) of a discriminator given any of its names or its checkpoint key."""
    for name, d in DISCRIMINATORS.items():
        if alias == name or alias == d.checkpoint_key or alias in d.aliases:
            return name
    raise KeyError(f"no discriminator is called {alias!r}")


class DownBlock(nn.Module):
    """Conv2d(k4, stride 1, no padding) -> LeakyReLU(0.2) -> optional 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, pool: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(x), 0.2)
        return F.avg_pool2d(x, 2) if self.pool else x


def discriminator_channels(num_blocks: int = 4, block_expansion: int = 64, max_features: int = 256) -> list[int]:
    """Output width of each down block: min(max_features, block_expansion * 2**(i+1)) (64/256 -> 128,256,256,256)."""
    return [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]


class Discriminator(nn.Module):
    """PatchGAN-style discriminator; forward returns (list of block features, patch logits (B,1,h,w))."""

    def __init__(self, num_channels: int, block_expansion: int = 64, num_blocks: int = 4, max_features: int = 256):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        widths = discriminator_channels(num_blocks, block_expansion, max_features)
        ins = [num_channels] + widths[:-1]
        # every block but the last halves the resolution
        self.down_blocks = nn.ModuleList(
            DownBlock(i, o, pool=(k != num_blocks - 1)) for k, (i, o) in enumerate(zip(ins, widths)))
        self.conv = nn.Conv2d(widths[-1], 1, kernel_size=1)
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(f"Discriminator expects (B,{self.num_channels},H,W), got {tuple(x.shape)}")
        features = []
        for block in self.down_blocks:
            x = block(x)
            features.append(x)
        return features, self.conv(x)

    @staticmethod
    def patch_size(height: int, width: int, num_blocks: int = 4) -> tuple[int, int]:
        """Spatial size of the patch map for an input of (height, width): each block is -3 (k4), then //2 (pool)."""
        h, w = height, width
        for k in range(num_blocks):
            h, w = h - 3, w - 3
            if k != num_blocks - 1:
                h, w = h // 2, w // 2
        return h, w

    def load_official_state_dict(self, state_dict: dict) -> None:
        """Strictly load an official ``net_dI``/``net_dV`` state dict (DDP ``module.`` prefix accepted)."""
        self.load_state_dict(strip_module_prefix(state_dict), strict=True)
