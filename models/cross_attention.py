"""Audio-visual cross attention producing the warp code (docs/original.md, 'Generator').

Tokens are the `align_channels` feature CHANNELS: each video token carries its grid_h*grid_w spatial values,
each audio token its L temporal values. Queries come from audio, keys/values from video.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class FlattenAndLinear(nn.Module):
    """Conv1d over the feature axis (tokens as channels) -> ReLU -> MaxPool(2) -> flatten -> Linear -> ReLU."""

    def __init__(self, tokens, dim, out_dim):
        super().__init__()
        self.conv1 = nn.Conv1d(tokens, tokens // 2, 3, padding=1)
        self.pool = nn.MaxPool1d(2)
        self.fc = nn.Linear((tokens // 2) * (dim // 2), out_dim)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        return F.relu(self.fc(x.flatten(1)))


class CrossAttention(nn.Module):
    def __init__(self, tokens=128, grid=(8, 6), audio_len=2, dim=256):
        super().__init__()
        self.grid = tuple(grid)
        self.positional_encoding_video = nn.Parameter(torch.randn(tokens, *grid))
        self.positional_encoding_audio = nn.Parameter(torch.randn(tokens, audio_len))
        self.query_proj = nn.Linear(audio_len, dim)
        self.key_proj = nn.Linear(grid[0] * grid[1], dim)
        self.value_proj = nn.Linear(grid[0] * grid[1], dim)
        self.final_linear = nn.Linear(dim, dim)
        self.output_reshape = FlattenAndLinear(tokens, dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, img_para, audio_para):
        v = (img_para + self.positional_encoding_video).flatten(2)        # (B, T, gh*gw)
        a = audio_para + self.positional_encoding_audio                   # (B, T, L)
        q, k, val = self.query_proj(a), self.key_proj(v), self.value_proj(v)
        attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (B, T, T)
        z = self.final_linear(attn @ val)                                 # (B, T, dim)
        return self.output_reshape(z)                                     # (B, dim), >= 0
