"""A tiny random LawDNet checkpoint (our format, m = 64, mel features) for tests and benchmarks.

Plain random weights give a generator whose output barely depends on its inputs (activations shrink layer by
layer: speech vs silence changes the crop by ~1e-5 grey levels), which cannot show that a stream reacts to the
speech. ``audio_sensitive=True`` rescales each convolution / linear layer, in forward order, so that its output
has unit standard deviation on random inputs (layer-sequential unit-variance initialisation); then speech and
silence give visibly different mouths (tens of grey levels) at the same cost per frame.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from config.config import ModelConfig
from models.checkpoint import save_lawdnet
from models.lawdnet import LawDNet
from utils.face.geometry import crop_size


def tiny_lawdnet(seed: int = 0, audio_sensitive: bool = True) -> LawDNet:
    """The tiny random generator (eval mode) used by tests and benchmarks."""
    torch.manual_seed(seed)
    cfg = ModelConfig(audio_channel=80, encoder_channels=(8, 16, 32), align_channels=16, attn_dim=32,
                      decoder_channels=16, warp_mode="corrected", coarse_grid_size=16)
    model = LawDNet(cfg).eval()
    if not audio_sensitive:
        return model
    g = torch.Generator().manual_seed(seed + 1)
    H, W = crop_size(64)
    src, ref = torch.rand(2, 3, H, W, generator=g), torch.rand(2, 15, H, W, generator=g)
    audio = torch.cat([torch.rand(1, 80, 5, generator=g) * 1.2 - 0.6, -torch.ones(1, 80, 5)])
    done = set()

    def rescale(layer, inputs, out):   # one pass: layers are reached in forward order, each scaled once
        std = float(out.std())
        if layer in done or std < 1e-8:
            return None
        done.add(layer)
        layer.weight.data.div_(std)
        if layer.bias is not None:
            layer.bias.data.div_(std)
        return out / std                # what the rescaled layer gives: later layers see unit-variance inputs

    hooks = [m.register_forward_hook(rescale) for m in model.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(src, ref, audio)
    finally:
        for h in hooks:
            h.remove()
    return model


def write_tiny_checkpoint(path, seed: int = 0, audio_sensitive: bool = True) -> str:
    """Save ``tiny_lawdnet(...)`` as one of our checkpoints (m = 64, mel); returns the path."""
    path = os.fspath(path)
    save_lawdnet(path, tiny_lawdnet(seed, audio_sensitive), audio_feature="mel", mouth_region_size=64)
    return path
