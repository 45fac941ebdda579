"""Preprocessing profiles: how a face crop, its source mask and the audio features are made for the generator.

A generator only works well on inputs made the way its training inputs were. The released LawDNet weights were
trained on the original code's preprocessing (``official``); models trained here default to ours (``lawdnet``).
The profile is stored in our checkpoints (``models/checkpoint.py``) and official checkpoints, which store
nothing, always mean ``official``, so inference picks the right one by itself; ``--profile`` overrides it.

=================  ==================================================  ==============================================
step               official (the released weights; docs/original.md)     lawdnet (ours)
=================  ==================================================  ==============================================
source mask        SmoothSqMask: 103x80 canvas, ones on rows [32, 96) x  analytic box rows [0.4W, 1.2W) x cols [0.1W,
                   cols [8, 72), 5x5 Gaussian (sigma 1) without          0.9W), Gaussian-feathered edges, 50 % exactly
                   padding -> 99x76, bilinear resize                     on the box edges (no 2 px shift)
crop fill          black outside the frame (zero padding)                the frame's edge pixels repeated
crop sampling      the original's sample points: align-corners           the exact inverse of the similarity
                   normalisation with align_corners=False sampling,
                   0.06-0.31 px off the exact map
resampling         resampy ``kaiser_best`` to 16 kHz                     scipy polyphase (``resample_poly``)
GPU precision      fp16 autocast for the generator and DeepSpeech2       bf16 autocast for the generator, DeepSpeech2
                                                                         in fp32
=================  ==================================================  ==============================================

Everything else is the same in both (and better than the original where the weights do not care): the exact
25 fps schedule, landmark smoothing, deterministic references, feathered paste-back, ping-pong, and the
DeepSpeech2 extraction itself (spectrogram normalised over the real samples, the original's row count).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from utils.errors import UserError

OFFICIAL = "official"
LAWDNET = "lawdnet"
DEFAULT_PROFILE = LAWDNET            # new data preparation and training runs


@dataclass(frozen=True)
class Profile:
    name: str
    source_mask: str                 # "smoothsq" (the original's SmoothSqMask) | "box" (analytic)
    crop_fill: str                   # "zeros" | "border"
    crop_sampler: str                # "official" (the original's sample points) | "exact"
    resampler: str                   # "kaiser_best" (resampy) | "polyphase" (scipy)
    gpu_precision: str               # generator autocast dtype on GPU: "fp16" | "bf16"
    audio_precision: str             # learned audio front-ends on GPU: "fp16" (autocast) | "fp32"


PROFILES = {
    OFFICIAL: Profile(OFFICIAL, source_mask="smoothsq", crop_fill="zeros", crop_sampler="official",
                      resampler="kaiser_best", gpu_precision="fp16", audio_precision="fp16"),
    LAWDNET: Profile(LAWDNET, source_mask="box", crop_fill="border", crop_sampler="exact",
                     resampler="polyphase", gpu_precision="bf16", audio_precision="fp32"),
}


def get_profile(profile: Union[str, Profile, None] = None) -> Profile:
    """The Profile for a name (case-insensitive) or a Profile; None or "" gives the default (lawdnet)."""
    if isinstance(profile, Profile):
        return profile
    key = str(profile or DEFAULT_PROFILE).strip().lower()
    if key not in PROFILES:
        raise UserError(f"unknown preprocessing profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[key]


def resolve_profile(requested: Union[str, Profile, None], stored: Optional[str] = None) -> Profile:
    """What a run uses: the profile asked for, else the one a checkpoint stores, else the default."""
    return get_profile(requested or stored or DEFAULT_PROFILE)
