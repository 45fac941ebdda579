"""Mouth/audio SyncNet used for the clip-stage sync loss (DINet's architecture; docs/original.md, 'SyncNet').

Module and parameter names follow the released ``syncnet_256mouth.pth`` (``face_encoder.face_conv.{i}``,
``audio_encoder.audio_conv.{i}``, ``merge_encoder.{i}``) so that file loads strictly. There is no autocast in
here (the original had one): the caller picks the precision. Note: the released SyncNet was trained on DINet's
landmark crops, not on LawDNet's frontalized crops, and on TF DeepSpeech ("dp1") features.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import DownBlock1d, SameBlock1d, SameBlock2d
from models.checkpoint import read_checkpoint, save_checkpoint, strip_module_prefix
from utils.errors import UserError
from utils.face.geometry import mouth_box

# ---------------------------------------------------------------- blocks (no normalization anywhere)
# conv -> ReLU (SameBlock2d / SameBlock1d) and stride-2 conv -> ReLU (DownBlock1d) are models/blocks.py's; the
# three below differ from the generator's blocks of similar names, so they carry their own names. The state_dict
# keys come from the attribute names (conv, conv1, conv2), which stay those of the released file.


class PreActResBlock2d(nn.Module):
    """Pre-activated residual block: x + conv2(ReLU(conv1(ReLU(x)))) (blocks.ResBlock2d is post-activated)."""

    def __init__(self, channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=padding)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ConvPoolBlock2d(nn.Module):
    """stride-1 conv -> ReLU -> 2x2 average pool, halving the resolution (blocks.DownBlock2d is a strided conv)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)

    def forward(self, x):
        return F.avg_pool2d(F.relu(self.conv(x)), 2)


class PreActResBlock1d(nn.Module):
    """Pre-activated residual block over time (blocks.ResBlock1d is post-activated, with unused norms)."""

    def __init__(self, channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=padding)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=padding)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


# ---------------------------------------------------------------- encoders


class FaceEncoder(nn.Module):
    """(B, C, S, S) mouth stack -> (B, hidden, S/32, S/32). Widths: hidden/2 for the first stage, then hidden."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        half = hidden // 2
        layers = [SameBlock2d(in_channels, half, 7, 3), PreActResBlock2d(half), ConvPoolBlock2d(half, half)]
        cin = half
        for _ in range(4):                       # four more conv/residual/pool stages: 5 halvings in all
            layers += [SameBlock2d(cin, hidden), PreActResBlock2d(hidden), ConvPoolBlock2d(hidden, hidden)]
            cin = hidden
        layers.append(SameBlock2d(hidden, hidden, 1, 0))
        self.face_conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.face_conv(x)


class AudioEncoder(nn.Module):
    """(B, C, T) audio window -> (B, hidden): conv k7, 3 x (residual, strided conv), conv k3, then a global average
    over time."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        layers = [SameBlock1d(in_channels, hidden, 7, 3)]
        for _ in range(3):
            layers += [PreActResBlock1d(hidden), DownBlock1d(hidden, hidden)]
        layers.append(SameBlock1d(hidden, hidden, 3, 1))
        self.audio_conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.audio_conv(x).mean(dim=2)


class SyncNet(nn.Module):
    """Scores how well 5 stacked mouth crops match an audio window: (B,1,S/32,S/32) map, 1 = in sync.

    face: (B, face_channels, S, S) RGB in [0, 1] (S = face_size, 256 for the released model, any multiple of 32
    works since the face encoder is fully convolutional); audio: (B, audio_channels, T) (T = audio_window, 9).
    ``face_offset`` is subtracted from the face first: 0 for the released model; SyncNets trained here use 0.5,
    since zero-centred mouths let the face branch learn (see training/syncnet_trainer.py).
    """

    def __init__(self, face_channels: int = 15, audio_channels: int = 29, hidden: int = 128,
                 face_size: int = 256, audio_window: int = 9, face_offset: float = 0.0):
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ValueError(f"hidden must be an even number >= 2, got {hidden}")
        if face_size < 32 or face_size % 32:
            raise ValueError(f"face_size must be a positive multiple of 32, got {face_size}")
        self.config = dict(face_channels=int(face_channels), audio_channels=int(audio_channels), hidden=int(hidden),
                           face_size=int(face_size), audio_window=int(audio_window), face_offset=float(face_offset))
        self.face_size = int(face_size)
        self.audio_window = int(audio_window)
        self.face_encoder = FaceEncoder(face_channels, hidden)
        self.audio_encoder = AudioEncoder(audio_channels, hidden)
        self.merge_encoder = nn.Sequential(
            nn.Conv2d(2 * hidden, hidden, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, face: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        c = self.config
        if face.dim() != 4 or face.shape[1] != c["face_channels"]:
            raise ValueError(f"SyncNet face input must be (B,{c['face_channels']},S,S), got {tuple(face.shape)}")
        if audio.dim() != 3 or audio.shape[1] != c["audio_channels"] or audio.shape[0] != face.shape[0]:
            raise ValueError(f"SyncNet audio input must be (B,{c['audio_channels']},T) with B={face.shape[0]}, "
                             f"got {tuple(audio.shape)}")
        return self.merge(self.encode_face(face), self.audio_encoder(audio))

    def encode_face(self, face: torch.Tensor) -> torch.Tensor:
        offset = self.config["face_offset"]
        return self.face_encoder(face - offset if offset else face)

    def merge(self, face_map: torch.Tensor, audio_vec: torch.Tensor) -> torch.Tensor:
        """Score map of face maps (B, h, s, s) against audio embeddings (B, h)."""
        audio_map = audio_vec[:, :, None, None].expand(-1, -1, face_map.shape[2], face_map.shape[3])
        return self.merge_encoder(torch.cat([face_map, audio_map], dim=1))


# ---------------------------------------------------------------- checkpoints

_FACE0 = "face_encoder.face_conv.0.conv.weight"
_AUDIO0 = "audio_encoder.audio_conv.0.conv.weight"
_FACE_LAST = "face_encoder.face_conv.15.conv.weight"


def _extract(obj, path: str) -> tuple[dict, dict]:
    """(state_dict without ``module.``, config) from any of the accepted checkpoint layouts."""
    config: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("syncnet"), dict):          # ours
        sd, config = obj["syncnet"], dict(obj.get("config") or {})
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) \
            and isinstance(obj["state_dict"].get("net"), dict):                 # DINet release
        sd = obj["state_dict"]["net"]
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):  # bare state dict
        sd = obj
    else:
        raise UserError(f"'{path}' is not a SyncNet checkpoint (expected {{'state_dict': {{'net': ...}}}} "
                        "or {'syncnet': ..., 'config': ...})")
    sd = strip_module_prefix(sd)
    for key in (_FACE0, _AUDIO0, _FACE_LAST):
        if key not in sd or not torch.is_tensor(sd[key]) or sd[key].dim() < 3:
            raise UserError(f"'{path}' is not a SyncNet checkpoint (no usable {key})")
    # the released file stores no config: read the widths off the weights
    config.setdefault("face_channels", sd[_FACE0].shape[1])
    config.setdefault("audio_channels", sd[_AUDIO0].shape[1])
    config.setdefault("hidden", sd[_FACE_LAST].shape[0])
    return sd, config


def load_syncnet(path: str, device: str | torch.device = "cpu") -> SyncNet:
    """Frozen SyncNet in eval mode from the released ``syncnet_256mouth.pth`` or our own trainer's file."""
    if not path:
        raise UserError("the sync loss needs a SyncNet checkpoint: pass --syncnet_path (e.g. DINet's "
                        "syncnet_256mouth.pth or one trained with this toolkit)")
    if not os.path.isfile(path):
        raise UserError(f"SyncNet checkpoint not found: '{path}'")
    obj = read_checkpoint(path)
    sd, config = _extract(obj, path)
    try:
        model = SyncNet(**{k: config[k] for k in ("face_channels", "audio_channels", "hidden", "face_size",
                                                  "audio_window", "face_offset") if k in config})
    except (TypeError, ValueError) as e:
        raise UserError(f"'{path}' has an invalid SyncNet config: {e}") from None
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"'{path}' does not match the SyncNet architecture ({what})")
    for k, v in own.items():
        if not torch.is_tensor(sd[k]) or tuple(sd[k].shape) != tuple(v.shape):
            shape = tuple(sd[k].shape) if torch.is_tensor(sd[k]) else type(sd[k]).__name__
            raise UserError(f"'{path}' has {k} of shape {shape}, expected {tuple(v.shape)} (not a matching SyncNet)")
    model.load_state_dict(sd, strict=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def save_syncnet(model: SyncNet, path: str, **extra) -> None:
    """Write ``{'syncnet': state_dict, 'config': {...}, **extra}`` (the layout ``load_syncnet`` reads back)."""
    save_checkpoint({"syncnet": model.state_dict(), "config": dict(model.config), **extra}, path)


# ---------------------------------------------------------------- loss helpers


def mouth_crops(frames5: torch.Tensor, mouth_region_size: int) -> torch.Tensor:
    """(B, 5, 3, Hc, Wc) aligned face crops -> (B, 15, m, m) mouth boxes, frame after frame on channels."""
    if frames5.dim() != 5 or frames5.shape[2] != 3:
        raise ValueError(f"mouth_crops expects (B,T,3,H,W), got {tuple(frames5.shape)}")
    top, bottom, left, right = mouth_box(mouth_region_size)
    if bottom > frames5.shape[3] or right > frames5.shape[4]:
        raise ValueError(f"mouth box {mouth_box(mouth_region_size)} for m={mouth_region_size} does not fit in "
                         f"crops of {tuple(frames5.shape[3:])}")
    mouths = frames5[:, :, :, top:bottom, left:right]
    return mouths.reshape(frames5.shape[0], -1, mouths.shape[-2], mouths.shape[-1])


def sync_loss(syncnet: SyncNet, mouth_frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """MSE of the SyncNet score map to 1 ("in sync"), mouths resized to the SyncNet input size."""
    s = syncnet.face_size
    if mouth_frames.shape[-2:] != (s, s):
        mouth_frames = F.interpolate(mouth_frames, size=(s, s), mode="bilinear", align_corners=False)
    score = syncnet(mouth_frames, audio)
    return F.mse_loss(score, torch.ones_like(score))
