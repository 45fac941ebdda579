"""Options of a training run beyond TrainConfig, and how a stage file, the CLI and function overrides combine.

Precedence (lowest first): dataclass defaults -> stage file (config/experiment/<stage>.py) -> explicit flags or
keyword overrides. ModelConfig.audio_channel is never set here: it comes from the data's feature width.
"""
import argparse
import dataclasses
import math
from dataclasses import dataclass

from config.config import WARP_MODES, ModelConfig, TrainConfig, add_arguments, from_args
from config.experiment import load_stage
from utils.errors import UserError
from utils.face.geometry import check_mouth_region_size


@dataclass
class RunOptions:
    audio_feature: str = ""          # "" = the first feature the training index lists
    warp_mode: str = "corrected"     # new training uses the corrected warp; "official" for the released math
    audio_window: int = 5            # generator audio rows per frame
    sync_window: int = 9             # audio rows fed to the SyncNet with 5 frames
    clip_length: int = 9             # references avoid the source's clip of this many frames
    dist_timeout_min: int = 30
    progress: bool = True            # tqdm bar on the main process (--no-progress for log files)
    # > 0: stop after the step that reaches this many seconds since the stage started (set-up included) and
    # write the checkpoints as at the end; for time-boxed runs (demo.py). Resuming continues the plan.
    time_limit_s: float = 0.0


MODEL_PREFIX = "model_"
# set by the data or by RunOptions, not by a model flag
_MODEL_SKIP = ("audio_channel", "audio_window", "warp_mode")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, TrainConfig)
    add_arguments(parser, RunOptions)
    add_arguments(parser, ModelConfig, prefix=MODEL_PREFIX, skip=_MODEL_SKIP)


def resolve(stage: str, args: argparse.Namespace = None, **overrides):
    """(TrainConfig, model overrides dict, RunOptions, discriminator kwargs) for ``stage``.

    ``overrides`` may hold TrainConfig or RunOptions fields and ``model=dict(...)`` / ``discriminator=dict(...)``.
    """
    st = load_stage(stage)
    args = args if args is not None else argparse.Namespace()
    model = {**st.model, **overrides.pop("model", {})}
    disc = {**st.discriminator, **overrides.pop("discriminator", {})}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    run_names = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = set(overrides) - train_names - run_names
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    cfg = from_args(TrainConfig, args, **{**st.train, **{k: v for k, v in overrides.items() if k in train_names}})
    cfg.stage = stage
    opts = from_args(RunOptions, args, **{k: v for k, v in overrides.items() if k in run_names})
    for f in dataclasses.fields(ModelConfig):
        v = getattr(args, MODEL_PREFIX + f.name, None)
        if v is not None and f.name not in _MODEL_SKIP:
            model[f.name] = tuple(v) if isinstance(v, list) else v
    check(cfg, opts)
    return cfg, model, opts, disc


def check(cfg: TrainConfig, opts: RunOptions) -> None:
    """One-line errors for option values that cannot work."""
    if opts.warp_mode not in WARP_MODES:
        raise UserError(f"--warp_mode must be one of {', '.join(WARP_MODES)}, got '{opts.warp_mode}'")
    if cfg.amp not in ("bf16", "fp16", "none"):
        raise UserError(f"--amp must be bf16, fp16 or none, got '{cfg.amp}'")
    if cfg.logger not in ("tensorboard", "wandb", "none"):
        raise UserError(f"--logger must be tensorboard, wandb or none, got '{cfg.logger}'")
    for name in ("batch_size", "augment_num", "mouth_region_size", "keep_last", "log_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    check_mouth_region_size(cfg.mouth_region_size)
    for name in ("max_steps", "save_every_steps", "sync_warmup_steps", "adv_warmup_steps", "lr_warmup_steps",
                 "image_every"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name} must be >= 0 (0 = off), got {getattr(cfg, name)}")
    if cfg.num_workers < 0:
        raise UserError(f"--num_workers must be >= 0 (0 = load data in the training process), got {cfg.num_workers}")
    if cfg.seed < 0:
        raise UserError(f"--seed must be >= 0, got {cfg.seed}")
    if not (math.isfinite(cfg.lr_g) and cfg.lr_g > 0):
        raise UserError(f"--lr_g must be a positive number, got {cfg.lr_g}")
    for name in ("lr_d", "lamb_perception", "lamb_img", "lamb_g_spatial", "lamb_g_temporal", "lamb_sync"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            raise UserError(f"--{name} must be a number >= 0, got {v}")
    if not (math.isfinite(opts.time_limit_s) and opts.time_limit_s >= 0):
        raise UserError(f"--time_limit_s must be >= 0 (0 = none), got {opts.time_limit_s}")
    if opts.dist_timeout_min < 1 or opts.clip_length < 1:
        raise UserError("--dist_timeout_min and --clip_length must be >= 1")
    if cfg.epochs_non_decay < 0 or cfg.epochs_decay < 0 or cfg.epochs_non_decay + cfg.epochs_decay < 1:
        raise UserError("--epochs_non_decay and --epochs_decay must be >= 0 with at least one epoch in all")
    for name in ("audio_window", "sync_window"):
        v = getattr(opts, name)
        if v < 1 or v % 2 == 0:
            raise UserError(f"--{name} must be a positive odd number, got {v}")
