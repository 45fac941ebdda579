"""Typed options for every part of the toolkit.

Each option group is a small dataclass. ``add_arguments`` exposes its fields as ``--field`` CLI flags and
``from_args`` builds the dataclass back from the parsed namespace, so every CLI and every function API share
one definition of each option and its default. No paths are hard-coded: path defaults are relative to the
current directory or empty (meaning "not given").
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from config.profile import get_profile
from utils.errors import UserError
from utils.face.geometry import check_mouth_region_size
from utils.threads import check_threads

# Lazy import below: the audio front-end registry (numpy, PyAV) loads only when an InferenceConfig is validated,
# so every CLI's --help and option errors stay fast.

# The generator's local-warp modes (models/local_affine_warp.py implements them; this is their one list).
WARP_MODES = ("official", "corrected")
AMP_DTYPES = ("fp16", "bf16")         # GPU autocast dtypes
BLEND_MASKS = ("landmarks", "box")    # paste-back weights (inference/dubber.py)


@dataclass
class ModelConfig:
    """Generator hyper-parameters. Defaults are the official LawDNet configuration."""

    source_channel: int = 3
    ref_channel: int = 15
    audio_channel: int = 29          # width of one audio feature vector (29 DeepSpeech logits, 80 mel, ...)
    audio_window: int = 5            # audio feature vectors per video frame fed to the generator
    warp_layer_num: int = 2
    num_kpoints: int = 5
    coarse_grid_size: int = 60
    warp_mode: str = "official"      # "official" (checkpoint-compatible) or "corrected" (smooth local warp)
    # widths (official values; the tiny config shrinks them)
    encoder_channels: tuple = (64, 128, 256)   # source/ref encoders; last one = feature channels C
    align_channels: int = 128        # trans_conv / audio encoder width = number of attention tokens
    attn_dim: int = 256              # attention projection width = width of the warp code
    decoder_channels: int = 128
    attn_grid: tuple = (8, 6)        # image grid the cross attention is tied to

    def __post_init__(self):
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        self.attn_grid = tuple(int(c) for c in self.attn_grid)
        if self.warp_mode not in WARP_MODES:
            raise ValueError(f"warp_mode must be one of {WARP_MODES}, got {self.warp_mode!r}")
        if self.ref_channel % 3:
            raise ValueError(f"ref_channel must be a multiple of 3, got {self.ref_channel}")
        if self.audio_window < 1 or self.warp_layer_num < 1 or self.num_kpoints < 1:
            raise ValueError("audio_window, warp_layer_num and num_kpoints must be >= 1")

    @property
    def feature_channels(self) -> int:
        return self.encoder_channels[-1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class DataConfig:
    """Data preparation options (flag names follow the original data_processing script)."""

    source_video_dir: str = ""
    data_root: str = "./training_data"
    audio_feature: str = "mel"
    audio_model_path: str = ""       # weights of deepspeech / deepspeech2 / hubert front-ends
    clip_length: int = 9
    crop_width: int = 360            # out_W of the stored aligned crops (stages resize from it)
    workers: int = 1
    shard: str = ""                  # "K/N": process only share K of N
    device: str = "cpu"              # where the learned audio front-ends run (cpu, cuda, cuda:N)
    openface_landmark_dir: str = ""  # optional folder of user OpenFace CSVs (<video>.csv) used instead of dlib
    jpeg_quality: int = 95           # quality of the stored aligned crops
    profile: str = "lawdnet"         # preprocessing profile (config/profile.py): crop fill/sampling, resampler


@dataclass
class TrainConfig:
    """Training options; a stage file in config/experiment/ overrides some of them."""

    name: str = "lawdnet"
    stage: str = "frame_64"
    train_data: str = "./training_data/training_json.json"
    result_root: str = "./output/training_model_weight"
    mouth_region_size: int = 64
    batch_size: int = 16
    augment_num: int = 32
    clip_stage: bool = False
    epochs_non_decay: int = 5
    epochs_decay: int = 5
    # 0 = train epochs_non_decay + epochs_decay epochs; N > 0 = step-based: exactly N steps whatever the data
    # size, the learning-rate schedule spread over those N steps (same non-decay/decay proportion)
    max_steps: int = 0
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    # linear learning-rate ramp at the start of a stage: a fresh Adam state moves every weight of an --init_from
    # generator by ~lr on its first steps (on the demo's clip stage it did not help; adv_warmup_steps did)
    lr_warmup_steps: int = 0
    # ramp of the generator's adversarial weights over a stage's first steps: a fresh discriminator's early
    # gradients are noise that drags an --init_from generator away from what it learnt (the discriminators train
    # at full rate meanwhile)
    adv_warmup_steps: int = 0
    lamb_perception: float = 10.0
    lamb_img: float = 1.0
    lamb_g_spatial: float = 1.0      # adversarial weights of the two discriminators (models/discriminator.py)
    lamb_g_temporal: float = 1.0
    lamb_sync: float = 0.1
    sync_warmup_steps: int = 1000
    init_from: str = ""              # previous stage's checkpoint (coarse-to-fine)
    syncnet_path: str = ""
    vgg_path: str = ""
    no_perception: bool = False
    resume: bool = False             # continue the run in the result folder
    overwrite: bool = False          # remove the run in the result folder and start over
    keep_last: int = 3
    save_every_steps: int = 0        # 0 = once per epoch
    log_every: int = 50
    image_every: int = 500
    logger: str = "tensorboard"      # tensorboard | wandb | none
    seed: int = 456
    num_workers: int = 2
    device: str = ""                 # "" = cuda if available else cpu
    amp: str = "bf16"                # bf16 | fp16 | none (GPU only; CPU is always fp32)
    # preprocessing profile (config/profile.py: source mask); "" = the --init_from checkpoint's, else lawdnet
    profile: str = ""


@dataclass
class InferenceConfig:
    """Every setting of a dub (``inference.Dubber``): the CLI, the server, live sessions and the demo all make
    one of these. ``None`` means "from the checkpoint" (mouth size, audio front-end, profile: official checkpoints
    store none of them and get m=288, deepspeech2 and the official profile) or "automatic" (device, threads)."""

    device: Optional[str] = None             # cpu, cuda or cuda:N (unset: cuda if available, else cpu)
    batch_size: int = 8                      # frames per model call
    mouth_region_size: Optional[int] = None  # mouth size m (unset: the checkpoint's; official checkpoints 288)
    audio_feature: Optional[str] = None      # mel | deepspeech | deepspeech2 | hubert (unset: the checkpoint's)
    audio_model_path: Optional[str] = None   # weights of a learned audio front-end (deepspeech2, hubert, ...)
    profile: Optional[str] = None            # preprocessing profile official | lawdnet (unset: the checkpoint's)
    reference_seed: int = 456                # picks the reference frames (deterministic)
    cache_dir: Optional[str] = None          # folder of the template landmark cache (unset: next to the video)
    use_cache: bool = True                   # read / write the template cache
    threads: Optional[int] = None            # CPU cores for decode + model + encode (unset or 0: all)
    amp: bool = True                         # GPU autocast (CPU is always fp32)
    amp_dtype: Optional[str] = None          # GPU autocast fp16 | bf16 (unset: the profile's)
    channels_last: bool = True               # GPU memory layout of the generator
    cuda_graphs: bool = False                # replay the generator as a CUDA graph (GPU; fixed batch shape)
    compile: bool = False                    # torch.compile the warp field (slow first call)
    cache_references: bool = True            # keep the generator's reference features per template
    crf: int = 18                            # x264 quality of the output (lower = better)
    preset: str = "fast"                     # x264 preset
    queue_batches: int = 3                   # batches in flight between decode, model and encode
    color_match: bool = True                 # match the generated crop's colours to the template's before paste-back
    defringe: bool = True                    # keep the crop's colours within those the template shows nearby
    blend_mask: str = "landmarks"            # paste-back weight: landmarks (lips and jaw only) | box (the mouth box)
    sharpen: float = 0.7                     # unsharp amount on the crop's lightness against resampling blur (0: off)

    def validate(self) -> "InferenceConfig":
        """Cheap checks, so a typo fails before a model or a video is loaded (UserError)."""
        from utils.audio.features import AUDIO_FEATURES

        if int(self.batch_size) < 1:
            raise UserError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.mouth_region_size is not None:
            check_mouth_region_size(self.mouth_region_size)
        if self.audio_feature is not None and self.audio_feature not in AUDIO_FEATURES:
            raise UserError(f"--audio_feature must be one of {', '.join(AUDIO_FEATURES)}, got {self.audio_feature!r}")
        if self.amp_dtype is not None and self.amp_dtype not in AMP_DTYPES:
            raise UserError(f"--amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {self.amp_dtype!r}")
        check_threads(self.threads)
        if not 0 <= int(self.crf) <= 51:
            raise UserError(f"--crf must be 0-51, got {self.crf}")
        if not 0 <= float(self.sharpen) <= 3:
            raise UserError(f"--sharpen must be 0-3 (0 = off), got {self.sharpen}")
        if self.blend_mask not in BLEND_MASKS:
            raise UserError(f"--blend_mask must be one of {', '.join(BLEND_MASKS)}, got {self.blend_mask!r}")
        if int(self.queue_batches) < 1:
            raise UserError(f"--queue_batches must be >= 1, got {self.queue_batches}")
        get_profile(self.profile)
        return self


@dataclass
class SyncNetConfig:
    """Options of the mouth/audio SyncNet trainer (training/syncnet_trainer.py, train_syncnet.py)."""

    mouth_region_size: int = 256     # crop scale the mouth boxes are cut at
    face_size: int = 256             # SyncNet input size (multiple of 32)
    hidden: int = 128                # width of the SyncNet (even)
    audio_feature: str = ""          # feature name in the index (unset: its first)
    sync_window: int = 9             # frames per sample (odd)
    min_offset: int = 5              # negatives are at least this many frames off
    batch_size: int = 16
    steps: int = 20000
    lr: float = 1e-4
    loss: str = "contrastive"        # contrastive (all-pairs cross-entropy + calibration MSE) | mse | bce
    val_fraction: float = 0.2        # share of the videos (or of each video's end) held out
    val_items: int = 512             # held-out pairs per evaluation
    eval_every: int = 1000           # evaluate every N steps (0: only at the end)
    seed: int = 0
    device: str = ""                 # cpu, cuda or cuda:N (unset: cuda if available, else cpu)
    num_workers: int = 2             # data loader processes


# ---------------------------------------------------------------- CLI plumbing

def _base_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def field_help(cls) -> dict:
    """``{field: help}`` from the comment after each field in the dataclass's source (its documentation)."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def add_arguments(parser, cls, prefix: str = "", skip: tuple = (), only: Optional[tuple] = None,
                  help: Optional[dict] = None) -> None:
    """Add one ``--<prefix><field>`` flag per dataclass field (``only``: just these; ``skip``: not these).

    Bools become on/off switches (``--x`` / ``--no-x``, and ``--no_x``); ``None`` defaults mean "not given".
    The help text is ``help[field]``, else the comment after the field in the dataclass."""
    hints = typing.get_type_hints(cls)
    texts = {**field_help(cls), **(help or {})}
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        flag = f"--{prefix}{f.name}"
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = texts.get(f.name, "")
        if default not in (None, "") and "default" not in text:
            text = f"{text} (default: {default})".strip()
        text = text.replace("%", "%%")
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
            parser.add_argument(f"--no_{prefix}{f.name}", dest=prefix + f.name, action="store_false",
                                default=None, help=argparse.SUPPRESS)
        elif tp is tuple or typing.get_origin(tp) is tuple:
            parser.add_argument(flag, type=int, nargs="+", default=None, help=text)
        else:
            parser.add_argument(flag, type=tp, default=None, help=text)


def from_args(cls, args: argparse.Namespace, prefix: str = "", base: Optional[Any] = None,
              only: Optional[tuple] = None, **overrides):
    """Build ``cls`` from ``base`` (or defaults), then stage/overrides, then the flags
    the user actually gave (``only``: read just these fields' flags)."""
    obj = base if base is not None else cls()
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)}   # shallow: nested configs stay objects
    values.update({k: v for k, v in overrides.items() if k in values})
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        v = getattr(args, prefix + f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)
