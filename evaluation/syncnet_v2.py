"""The SyncNet of syncnet_python ("Out of time", Chung & Zisserman 2016) for LSE-D / LSE-C, in plain PyTorch.

Parameter names are the original's (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``) so that
``syncnet_v2.model`` (a bare state dict) loads as is. Inputs as in the original evaluation: lip stream
(B, 3, 5, 224, 224) BGR face crops with raw 0-255 values; audio stream (B, 1, 13, 20) MFCCs of 16 kHz int16-scaled
audio (python_speech_features defaults, 100 steps/s). Each stream gives a 1024-d embedding.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from utils.errors import UserError


def _conv_bn(conv, bn):
    return [conv, bn, nn.ReLU(inplace=True)]


class SyncNetV2(nn.Module):
    def __init__(self, embedding: int = 1024):
        super().__init__()
        # audio: (1, 13, 20) -> (512, 1, 1); sequential indices follow the original module list
        self.netcnnaud = nn.Sequential(
            *_conv_bn(nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64)), nn.MaxPool2d(1, 1),
            *_conv_bn(nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)), nn.MaxPool2d(3, (1, 2)),
            *_conv_bn(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384)),
            *_conv_bn(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256)),
            *_conv_bn(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256)), nn.MaxPool2d(3, 2),
            *_conv_bn(nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d(512)),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))
        # lips: (3, 5, 224, 224) -> (512, 1, 1, 1)
        self.netcnnlip = nn.Sequential(
            *_conv_bn(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d(512)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet_v2(path, device="cpu") -> SyncNetV2:
    """syncnet_python's ``syncnet_v2.model`` (a state dict, possibly from an old torch without
    ``num_batches_tracked``) -> eval-mode SyncNetV2. UserError for a missing or foreign file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"syncnet_v2 model not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a state dict"
        raise UserError(f"{path}: not a readable syncnet_v2 state dict ({type(e).__name__})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"{path}: not a syncnet_v2 state dict")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    model = SyncNetV2()
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                else f"wrong shape of {bad[0]}")
        raise UserError(f"{path}: does not match the syncnet_v2 architecture ({what})")
    model.load_state_dict(sd, strict=False)
    return model.to(device).eval()
