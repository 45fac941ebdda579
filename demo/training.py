"""Time-boxed demo training: data pipeline, SyncNet, tiny LawDNet frame stage then clip stage.

Every step leaves its result on disk and is skipped when that result is already there, so a re-run resumes.
Time boxing: both trainers take a time limit (train_syncnet's max_seconds, the stage trainer's --time_limit_s)
next to a step cap; a stage runs with ``resume=True``, so an interrupted demo continues where it stopped.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from config.config import DataConfig, SyncNetConfig
from dataset.prepare.indexing import generate_training_json
from dataset.prepare.pipeline import VIDEO_STAGES, prepare_dataset
from training.syncnet_trainer import train_syncnet
from utils.atomic import atomic_write
from utils.errors import UserError

# Lazy import below: training.trainer (torch) loads only when a stage is trained (start-up time of demo.py).

# mouth size 32 (52 x 40 crops) and a 20-point coarse warp grid: one batch-4 training step of the tiny
# generator takes ~0.3 s on 2 CPU cores (m=64 with the official 60-point grid: ~4 s), so a 30-minute budget
# buys a few thousand steps
MOUTH = 32


@dataclass
class TinyModel:
    """Widths and training settings of the demo's LawDNet (ours to choose; see config/experiment/tiny.py)."""

    mouth_region_size: int = MOUTH
    coarse_grid_size: int = 20
    encoder_channels: tuple = (16, 32, 64)
    align_channels: int = 32
    attn_dim: int = 64
    decoder_channels: int = 32
    batch_size: int = 4
    clip_batch_size: int = 1
    lr: float = 3e-4
    img_weight: float = 10.0        # pixel MSE weight: stands in for the perceptual loss (no VGG weights offline)
    warp_mode: str = "corrected"
    # clip stage: the 32-px demo SyncNet is easy to fool, and any sync weight we tried lowered held-out openness r
    # (400-step clip stages: 0 -> r 0.67, 0.003 -> 0.63, 0.01 -> 0.51), so by default it only measures sync
    sync_weight: float = 0.0
    # fresh temporal discriminator: ramp the adversarial terms in (the spatial one comes from the frame stage)
    adv_warmup_steps: int = 300
    # training stops here even when the budget allows more: longer runs fit the 18 training videos and lose
    # held-out openness r (3000 + 300 steps: 0.87; 14835 + 1891 steps: 0.67, same data)
    frame_steps_cap: int = 3000
    clip_steps_cap: int = 300

    def model_overrides(self) -> dict:
        return dict(encoder_channels=tuple(self.encoder_channels), align_channels=self.align_channels,
                    coarse_grid_size=self.coarse_grid_size,
                    attn_dim=self.attn_dim, decoder_channels=self.decoder_channels)


def _done(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _mark(path: str, info: dict) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)


def prepare_data(train_dir: str, data_root: str, crop_width: int, workers: int = 1, progress: bool = True,
                 log=print, features: tuple = ("mel",), audio_model_path: str = "", profile: str = "lawdnet") -> str:
    """Run the project's data pipeline (``features``, crops ``crop_width`` wide, preprocessing ``profile``) and
    write the index; its path."""
    cfg = DataConfig(source_video_dir=train_dir, data_root=data_root, audio_feature=",".join(features),
                     crop_width=int(crop_width), workers=max(1, int(workers)), audio_model_path=audio_model_path,
                     profile=profile)
    report = prepare_dataset(cfg, VIDEO_STAGES, progress=progress)
    counts = report["counts"]
    bad = {v: r.get("reason", "") for v, r in report["videos"].items() if r.get("status") != "processed"}
    for v, why in bad.items():
        log(f"data: {v} not used: {why}")
    path, summary = generate_training_json(data_root, list(features), int(crop_width))
    if summary["videos"] < 1:
        raise UserError(f"no usable training video in {train_dir} ({counts})")
    log(f"data: {summary['videos']} training video(s) indexed in {path}")
    return path


def train_syncnet_timed(index: str, out_path: str, seconds: float, mouth_region_size: int = MOUTH, device: str = "",
                        log=print, hidden: int = 32, face_size: int = 32, max_steps: int = 4000, steps: int = 0,
                        progress: bool = True) -> dict:
    """A mel SyncNet on the demo data within about ``seconds`` (at most ``max_steps`` steps), or exactly ``steps``
    steps when > 0; skipped when ``out_path`` is done already."""
    marker = out_path + ".done.json"
    info = _done(marker)
    if info and os.path.isfile(out_path):
        log(f"SyncNet: reusing {out_path} (held-out accuracy {info['val_accuracy']:.3f}, {info['steps']} steps)")
        return info
    cfg = SyncNetConfig(mouth_region_size=mouth_region_size, face_size=face_size, hidden=hidden, audio_feature="mel",
                        batch_size=16, lr=1e-3, val_items=64, eval_every=0, device=device, num_workers=0,
                        steps=steps or max_steps)
    res = train_syncnet(index, out_path, cfg, progress=progress, overwrite=True, log=log,
                        max_seconds=0.0 if steps else max(1.0, seconds))
    info = {"path": out_path, "val_accuracy": res["val_accuracy"], "steps": res["steps"], "split": res["split"],
            "final_loss": float(sum(res["history"][-20:]) / max(1, len(res["history"][-20:])))}
    _mark(marker, info)
    return info


def train_stage_timed(stage: str, index: str, result_root: str, name: str, seconds: float, model: TinyModel,
                      device: str = "", init_from: str = "", syncnet_path: str = "", seed: int = 456,
                      max_steps: int = 0, cap_steps: int = 0, log=print, progress: bool = True,
                      model_overrides: dict | None = None, audio_feature: str = "", warp_mode: str = "",
                      val_every: int = 0, validate=None, adv_warmup_steps: int | None = None) -> dict:
    """Train ``stage`` (tiny / tiny_clip) for about ``seconds`` (the trainer's --time_limit_s) but at most
    ``cap_steps`` steps, or exactly ``max_steps`` when > 0. ``validate(checkpoint, step)`` runs after every
    ``val_every`` steps and at the end. Returns {"final", "steps", "seconds", "samples_per_s", "loss_img"};
    skipped when already done, resumed when a run was interrupted."""
    from training.trainer import train_stage

    result_dir = os.path.join(result_root, name, stage)
    marker = os.path.join(result_dir, "demo_done.json")
    info = _done(marker)
    if info and os.path.isfile(info.get("final", "")):
        log(f"{stage}: reusing {info['final']} ({info['steps']} steps)")
        return info
    clip = stage.endswith("clip")
    batch = model.clip_batch_size if clip else model.batch_size
    target = max_steps or cap_steps or 10 ** 6
    # step-based with a constant learning rate (1 flat epoch, no decay): stopping on time is stopping on plan
    kw = dict(name=name, train_data=index, result_root=result_root, mouth_region_size=model.mouth_region_size,
              batch_size=batch, augment_num=100000, epochs_non_decay=1, epochs_decay=0, no_perception=True,
              logger="none", num_workers=0, image_every=0, log_every=10 ** 9, keep_last=2, resume=True, seed=seed,
              lr_g=model.lr, lr_d=model.lr, warp_mode=warp_mode or model.warp_mode,
              model=model_overrides or model.model_overrides(), lamb_img=model.img_weight, init_from=init_from,
              syncnet_path=syncnet_path, device=device, progress=progress, audio_feature=audio_feature,
              max_steps=target, save_every_steps=val_every or target, time_limit_s=0.0 if max_steps else max(1.0, seconds))
    if clip:
        kw.update(sync_warmup_steps=300, lamb_sync=model.sync_weight if syncnet_path else 0.0,
                  adv_warmup_steps=model.adv_warmup_steps)
    if adv_warmup_steps is not None:
        kw["adv_warmup_steps"] = adv_warmup_steps
    t_start = time.monotonic()
    res = train_stage(stage, on_save=(lambda path, step: validate(path, step)) if validate else None, **kw)
    elapsed = time.monotonic() - t_start
    tail = [h["loss/img"] for h in res["history"][-20:]]
    info = {"final": res["final"], "steps": res["global_step"], "seconds": round(elapsed, 1),
            "samples_per_s": res["samples_per_s"], "stage": stage,
            "loss_img": float(sum(tail) / len(tail)) if tail else float("nan")}
    log(f"{stage}: {info['steps']} steps in {elapsed:.0f} s ({info['samples_per_s']:.1f} samples/s), final image MSE "
        f"{info['loss_img']:.4f}")
    _mark(marker, info)
    return info
