"""One training stage (frame or clip) on one or many processes: ``train(...)`` / ``train_stage(stage, ...)``.

Per step (docs/original.md): G makes x^ from the masked source, references and audio; the discriminators take one
LSGAN step on (x, x^.detach()) - the spatial one per frame, in the clip stage also the temporal one on the 5 frames
stacked on channels (models.discriminator.DISCRIMINATORS: names and checkpoint keys);
then G takes one step on pixel MSE + multi-scale VGG19 perceptual + adversarial (+ temporal adversarial + ramped
SyncNet loss in the clip stage). One GradScaler (fp16) serves all optimisers; bf16 needs none; CPU runs fp32.
LR: AdamW; the rate is set before every step from the position alone (training.losses: per epoch, or per step
when --max_steps makes training step-based), times the optional warm-up ramp.

The result folder holds one run (training.run_folder): a new run without --resume in a folder with an earlier
run's checkpoints is refused, every input is checked before the folder is touched, and config.json is written
only once the run starts.
"""
import dataclasses
import json
import math
import os
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from config.config import ModelConfig, TrainConfig
from config.profile import resolve_profile
from dataset.clip_dataset import ClipDataset
from dataset.frame_dataset import FrameDataset, worker_init
from models.checkpoint import checkpoint_info, key_diff, lawdnet_checkpoint, read_checkpoint, save_checkpoint
from models.discriminator import DISCRIMINATORS, Discriminator
from models.lawdnet import LawDNet
from models.syncnet import load_syncnet, mouth_crops, sync_loss
from models.vgg19 import load_vgg19, perceptual_loss
from sync_batchnorm import convert_model
from training import checkpoints as ckpts
from training import run_folder
from training.distributed import (barrier, broadcast_object, gather_objects, init_distributed, mean_over_ranks,
                                  parameter_hash, rng_state, seed_everything, set_rng_state)
from training.loggers import TrainLogger, image_grid
from training.losses import frames_on_channels, lr_factor, lsgan_d_loss, lsgan_g_loss, ramp, step_lr_factor
from training.options import RunOptions, check, resolve
from training.sampler import ResumableSampler
from utils.atomic import atomic_write
from utils.errors import UserError
from utils.face.align import mask_source, mouth_mask
from utils.face.geometry import crop_size

SPATIAL_KEY = DISCRIMINATORS["spatial"].checkpoint_key       # net_dI
TEMPORAL_KEY = DISCRIMINATORS["temporal"].checkpoint_key     # net_dV
# Model fields that define the architecture: an init_from checkpoint must agree on them.
_ARCH_FIELDS = ("source_channel", "ref_channel", "audio_channel", "audio_window", "warp_layer_num", "num_kpoints",
                "encoder_channels", "align_channels", "attn_dim", "decoder_channels", "attn_grid")


def train_stage(stage, on_save=None, **overrides):
    """Function API: run ``stage`` (a config/experiment name) with TrainConfig/RunOptions keyword overrides and
    ``model=dict(...)``, ``discriminator=dict(...)``. Returns the summary dict of ``train``."""
    cfg, model, opts, disc = resolve(stage, **overrides)
    return train(cfg, model, opts, disc, on_save=on_save)


def train(cfg: TrainConfig, model: dict = None, options: RunOptions = None, discriminator: dict = None,
          on_save=None) -> dict:
    """Run one stage. In a torchrun job every process calls this; alone it trains in one process.

    ``on_save(path, step)`` (function API only) runs on rank 0 after every numbered checkpoint is written, the
    last one included, e.g. a validation (its time counts towards --time_limit_s); when it returns "stop" the
    stage ends after the next step (early stopping).
    Returns {"result_dir", "final", "global_step", "epoch", "param_hash", "history": [per-step loss dicts]}.
    """
    t_start = time.monotonic()
    opts = options or RunOptions()
    check(cfg, opts)
    run_folder.check(result_folder(cfg), cfg.resume, cfg.overwrite)
    info = init_distributed(cfg.device, opts.dist_timeout_min)
    stage = None
    try:
        stage = StageRun(cfg, dict(model or {}), opts, dict(discriminator or {}), info)
        stage.t_start, stage.on_save = t_start, on_save
        return stage.run()
    finally:
        if stage is not None and stage.claim is not None:
            stage.claim.close()
        info.close()


def result_folder(cfg: TrainConfig) -> str:
    return os.path.join(cfg.result_root, cfg.name, cfg.stage)


class StageRun:
    def __init__(self, cfg, model_overrides, opts, disc_kwargs, info):
        self.cfg, self.opts, self.info = cfg, opts, info
        self.device = info.device
        self.claim, self.on_save, self.t_start = None, None, time.monotonic()
        self.stop_requested = False      # on_save returned "stop" (e.g. validation stopped improving)
        self.result_dir = result_folder(cfg)
        self.log(f"stage {cfg.stage}: {info.world_size} process(es) on {self.device}, results in {self.result_dir}")
        seed_everything(cfg.seed, info.rank)

        # frozen helper networks first: their errors are the cheapest to hit
        self.vgg = None
        if cfg.no_perception:
            self.log("running without the perceptual loss (--no_perception)")
        else:
            self.vgg = load_vgg19(cfg.vgg_path, self.device)
        self.syncnet = None
        if cfg.clip_stage and cfg.lamb_sync > 0:
            self.syncnet = load_syncnet(cfg.syncnet_path, self.device)

        # data
        ds_args = dict(index_path=cfg.train_data, mouth_region_size=cfg.mouth_region_size,
                       augment_num=cfg.augment_num, audio_feature=opts.audio_feature,
                       audio_window=opts.audio_window, clip_length=opts.clip_length, seed=cfg.seed)
        self.dataset = (ClipDataset(sync_window=opts.sync_window, **ds_args) if cfg.clip_stage
                        else FrameDataset(**ds_args))
        store = self.dataset.store
        if store.skipped:
            self.log(f"skipping {len(store.skipped)} video(s) with too few valid frames: {', '.join(store.skipped[:5])}")
        self.audio_feature = store.feature
        dim = store.feature_dim
        self.sampler = ResumableSampler(len(self.dataset), cfg.batch_size, info.rank, info.world_size, cfg.seed)
        g = torch.Generator()
        g.manual_seed(cfg.seed * 1000 + info.rank)
        self.loader = DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.num_workers, worker_init_fn=worker_init if cfg.num_workers else None,
                                 generator=g, pin_memory=self.device.type == "cuda", drop_last=True,
                                 persistent_workers=cfg.num_workers > 0)   # short epochs of small data sets
        if self.syncnet is not None:
            sc = self.syncnet.config
            if sc["audio_channels"] != dim or sc["face_channels"] != 15:
                raise UserError(f"{cfg.syncnet_path}: SyncNet takes {sc['audio_channels']}-wide audio and "
                                f"{sc['face_channels']} face channels, but the data's '{self.audio_feature}' "
                                f"features are {dim} wide (train one with train_syncnet.py on this data)")

        # networks
        self.model_config = ModelConfig(**{**model_overrides, "audio_channel": dim, "audio_window": opts.audio_window,
                                           "warp_mode": opts.warp_mode})
        torch.manual_seed(cfg.seed)                          # identical initial weights on every rank
        gen = LawDNet(self.model_config)
        self.d_spatial = Discriminator(DISCRIMINATORS["spatial"].channels, **disc_kwargs)
        if cfg.init_from:
            self._init_from(gen, cfg.init_from)
        self.gen = convert_model(gen.to(self.device))
        self.d_spatial = self.d_spatial.to(self.device)
        self.d_temporal = Discriminator(DISCRIMINATORS["temporal"].channels, **disc_kwargs).to(self.device) if cfg.clip_stage else None
        self.disc_kwargs = disc_kwargs
        H, W = crop_size(cfg.mouth_region_size)
        self._check_patch(H, W, disc_kwargs)
        # the source mask of the run's preprocessing profile (stored in its checkpoints, used again at inference)
        self.profile = resolve_profile(cfg.profile, getattr(self, "_init_profile", None))
        self.mask = mouth_mask(H, W, self.device, profile=self.profile)
        self.log(f"preprocessing profile {self.profile.name} ({self.profile.source_mask} source mask)")
        if info.distributed:
            dev_ids = [self.device.index] if self.device.type == "cuda" else None
            # the official forward computes only the last warp branch: branch 0's parameters get no gradient
            self.gen_ddp = DDP(self.gen, device_ids=dev_ids, find_unused_parameters=True)
            self.d_spatialpatial_ddp = DDP(self.d_spatial, device_ids=dev_ids)
            self.d_temporalemporal_ddp = DDP(self.d_temporal, device_ids=dev_ids) if self.d_temporal is not None else None
        else:
            self.gen_ddp, self.d_spatialpatial_ddp, self.d_temporalemporal_ddp = self.gen, self.d_spatial, self.d_temporal

        # optimisation
        self.opt_g = torch.optim.AdamW(self.gen.parameters(), lr=cfg.lr_g)
        self.opt_d = [torch.optim.AdamW(d.parameters(), lr=cfg.lr_d) for d in self._discs()]
        self.epoch_factor = lr_factor(cfg.epochs_non_decay, cfg.epochs_decay)
        self.amp_dtype = None
        if self.device.type == "cuda" and cfg.amp != "none":
            self.amp_dtype = torch.bfloat16 if cfg.amp == "bf16" and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.total_epochs = cfg.epochs_non_decay + cfg.epochs_decay
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.history = []
        # every input is good: only now is the result folder touched
        self._claim_folder()
        if cfg.resume:
            self._resume()

    # ------------------------------------------------------------------ set-up helpers

    def log(self, msg):
        if self.info.is_main:
            print(f"[{self.cfg.stage}] {msg}", file=sys.stderr, flush=True)

    def _discs(self):
        return [d for d in (self.d_spatial, self.d_temporal) if d is not None]

    @staticmethod
    def _check_patch(H, W, disc_kwargs):
        h, w = Discriminator.patch_size(H, W, disc_kwargs.get("num_blocks", 4))
        if h < 1 or w < 1:
            raise UserError(f"crops of {H}x{W} are too small for a {disc_kwargs.get('num_blocks', 4)}-block "
                            "discriminator: raise --mouth_region_size")

    def _init_from(self, gen, path):
        """Coarse-to-fine: load the previous stage's generator (any mismatch is an error, not a fresh start) and its
        spatial discriminator when it has one of the same shape."""
        ck = read_checkpoint(path)
        ckpt_info = checkpoint_info(ck, path)
        theirs = ckpt_info["model_config"].to_dict()
        ours = self.model_config.to_dict()
        diff = [f"{k} {theirs[k]} vs {ours[k]}" for k in _ARCH_FIELDS if theirs[k] != ours[k]]
        if diff:
            raise UserError(f"--init_from {path}: its generator differs from this stage's ({'; '.join(diff)})")
        # official files record no feature name (only its width, compared above): ours must match by name
        if not ckpt_info["official"] and ckpt_info["audio_feature"] and ckpt_info["audio_feature"] != self.audio_feature:
            raise UserError(f"--init_from {path} was trained on '{ckpt_info['audio_feature']}' features, the "
                            f"data gives '{self.audio_feature}' (pass --audio_feature)")
        try:
            gen.load_state_dict(ckpt_info["state_dict"], strict=True)
        except RuntimeError:
            raise UserError(f"--init_from {path}: its generator does not fit this stage's "
                            f"({key_diff(gen.state_dict(), ckpt_info['state_dict'])})") from None
        self._init_profile = ckpt_info["profile"]
        self.log(f"initialised the generator from {path}" + (" (official checkpoint)" if ckpt_info["official"] else ""))
        if ckpt_info["official"] and self.model_config.warp_mode != "official":
            self.log(f"warning: {path} holds official weights, which were trained with the official warp; this stage "
                     f"trains them with the {self.model_config.warp_mode} warp (pass --warp_mode official to keep it)")
        # the spatial discriminator is fully convolutional: the previous stage's one fits any crop size, and
        # starting it trained spares the generator a fresh discriminator's noisy gradients
        d_sd = ck.get("state_dict", {}).get(SPATIAL_KEY) if isinstance(ck.get("state_dict"), dict) else None
        if isinstance(d_sd, dict):
            ours = self.d_spatial.state_dict()
            if d_sd.keys() == ours.keys() and all(d_sd[k].shape == ours[k].shape for k in ours):
                self.d_spatial.load_state_dict(d_sd)
                self.log(f"initialised the spatial discriminator from {path}")
            else:
                self.log(f"{path}: its spatial discriminator has another shape; this stage trains a new one")

    def _claim_folder(self):
        """Rank 0 creates and locks the result folder; its verdict reaches every rank (so none waits forever)."""
        err = None
        if self.info.is_main:
            try:
                self.claim = run_folder.Claim(self.result_dir, self.cfg.overwrite, self.log)
            except UserError as e:
                err = str(e)
        err = broadcast_object(err, self.info)
        if err:
            raise UserError(err)

    def _resume(self):
        folder = self.result_dir
        chosen = None
        if self.info.is_main:
            path, _ = ckpts.newest_readable(folder, log=self.log, set_aside=True)
            chosen = path
        chosen = broadcast_object(chosen, self.info)
        if chosen is None:
            self.log(f"--resume: no checkpoint in {folder} yet, starting this stage from the beginning")
            return
        ck = read_checkpoint(chosen)
        if "optimizer" not in ck or SPATIAL_KEY not in ck.get("state_dict", {}):
            raise UserError(f"{chosen} is not a training checkpoint of this trainer (no optimiser state)")
        sd = ck["state_dict"]
        stored = ck.get("profile")
        if stored and stored != self.profile.name:   # never switch the source mask in the middle of a run
            if self.cfg.profile:
                raise UserError(f"--resume: {chosen} was trained with the '{stored}' preprocessing profile, "
                                f"not '{self.cfg.profile}'")
            self.profile = resolve_profile(stored)
            self.mask = mouth_mask(*self.mask.shape[-2:], self.device, profile=self.profile)
        _load(self.gen, checkpoint_info(ck, chosen)["state_dict"], "generator", chosen)
        _load(self.d_spatial, sd[SPATIAL_KEY], "spatial discriminator", chosen)
        if self.d_temporal is not None:
            if TEMPORAL_KEY not in sd:
                raise UserError(f"{chosen} is a frame-stage checkpoint; this stage trains clips")
            _load(self.d_temporal, sd[TEMPORAL_KEY], "temporal discriminator", chosen)
        self.opt_g.load_state_dict(ck["optimizer"]["g"])
        for o, s in zip(self.opt_d, ck["optimizer"]["d"]):
            o.load_state_dict(s)
        planned = (ck.get("train_config") or {}).get("max_steps", self.cfg.max_steps)
        if planned != self.cfg.max_steps:
            self.log(f"warning: {chosen} was written by a run of --max_steps {planned}; this one has "
                     f"{self.cfg.max_steps}, so the learning-rate schedule follows the new plan from here")
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        rng = ck.get("rng") or []
        if len(rng) == self.info.world_size:
            set_rng_state(rng[self.info.rank])
        else:
            self.log(f"warning: {chosen} was written by {len(rng)} process(es), this run has "
                     f"{self.info.world_size}: RNG streams restart")
        self.epoch, self.step_in_epoch, self.global_step = ck["epoch"], ck["step_in_epoch"], ck["global_step"]
        if ck.get("batches_per_epoch") not in (None, self.sampler.batches_per_epoch) and self.step_in_epoch:
            self.log("warning: batches per epoch changed since the checkpoint (other batch size or process "
                     "count): the current epoch restarts")
            self.step_in_epoch = 0
        self.log(f"resumed from {chosen} (epoch {self.epoch + 1}, step {self.global_step})")

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self):
        rng = gather_objects(rng_state(), self.info)         # collective: every rank calls it
        if not self.info.is_main:
            return None
        state = {SPATIAL_KEY: {k: v.detach().cpu() for k, v in self.d_spatial.state_dict().items()}}
        if self.d_temporal is not None:
            state[TEMPORAL_KEY] = {k: v.detach().cpu() for k, v in self.d_temporal.state_dict().items()}
        return lawdnet_checkpoint(
            self.gen, self.audio_feature, self.cfg.mouth_region_size, self.profile.name, state_dict=state,
            optimizer={"g": self.opt_g.state_dict(), "d": [o.state_dict() for o in self.opt_d]},
            scaler=self.scaler.state_dict(), rng=rng,
            epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
            batches_per_epoch=self.sampler.batches_per_epoch, world_size=self.info.world_size,
            stage=self.cfg.stage, train_config=dataclasses.asdict(self.cfg), run_options=dataclasses.asdict(self.opts),
            discriminator=dict(self.disc_kwargs))

    def save(self, final=False):
        ck = self._checkpoint()
        if ck is not None:
            path = ckpts.save_numbered(ck, self.result_dir, self.global_step, self.cfg.keep_last)
            if final:
                save_checkpoint(ck, os.path.join(self.result_dir, ckpts.FINAL))
            self.log(f"saved {path}" + (" and final.pth" if final else ""))
            if self.on_save is not None and self.on_save(path, self.global_step) == "stop":
                self.stop_requested = True
        barrier(self.info)
        self.stop_requested = bool(broadcast_object(self.stop_requested, self.info))

    @property
    def step_based(self):
        return self.cfg.max_steps > 0

    def finished(self):
        if self.step_based:
            return self.global_step >= self.cfg.max_steps
        return self.epoch >= self.total_epochs

    def out_of_time(self, step_s):
        """--time_limit_s: would one more step (``step_s`` seconds) end past the limit? Rank 0 decides for all."""
        limit = self.opts.time_limit_s
        if limit <= 0:
            return False
        return bool(broadcast_object(time.monotonic() - self.t_start + step_s > limit, self.info))

    # ------------------------------------------------------------------ one step

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def step(self, batch):
        cfg, dev = self.cfg, self.device
        src = batch["source"].to(dev, non_blocking=True)
        refs = batch["refs"].to(dev, non_blocking=True)
        audio = batch["audio"].to(dev, non_blocking=True)
        clips = src.shape[0]
        if cfg.clip_stage:                                   # (B,5,...) -> (B*5,...), clip after clip
            src, refs, audio = src.flatten(0, 1), refs.flatten(0, 1), audio.flatten(0, 1)
        masked = mask_source(src, self.mask)
        self._set_lr()
        self.gen_ddp.train()
        with self._autocast():
            fake = self.gen_ddp(masked, refs, audio)

        # discriminators
        for d in self._discs():
            d.requires_grad_(True)
        with self._autocast():
            loss_d_spatial = lsgan_d_loss(self.d_spatialpatial_ddp, src, fake)
            loss_d = loss_d_spatial
            if self.d_temporal is not None:
                loss_d_temporal = lsgan_d_loss(self.d_temporalemporal_ddp, frames_on_channels(src, clips), frames_on_channels(fake, clips))
                loss_d = loss_d + loss_d_temporal
        for o in self.opt_d:
            o.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        for o in self.opt_d:
            self.scaler.step(o)

        # generator
        for d in self._discs():
            d.requires_grad_(False)
        logs = {"lr/g": self.opt_g.param_groups[0]["lr"]}
        with self._autocast():
            loss_img = cfg.lamb_img * F.mse_loss(fake.float(), src)
            w_adv = ramp(1.0, self.global_step, cfg.adv_warmup_steps)
            loss_g_spatial = w_adv * cfg.lamb_g_spatial * lsgan_g_loss(self.d_spatial, fake)
            loss_g = loss_img + loss_g_spatial
            logs["weight/adv"] = w_adv
            if self.vgg is not None:
                loss_perc = cfg.lamb_perception * perceptual_loss(self.vgg, fake, src)
                loss_g = loss_g + loss_perc
                logs["loss/g_perception"] = loss_perc.item()
            if self.d_temporal is not None:
                loss_g_temporal = w_adv * cfg.lamb_g_temporal * lsgan_g_loss(self.d_temporal, frames_on_channels(fake, clips))
                loss_g = loss_g + loss_g_temporal
                logs["loss/g_temporal"] = loss_g_temporal.item()
                logs["loss/d_temporal"] = loss_d_temporal.item()
            if self.syncnet is not None:
                w = ramp(cfg.lamb_sync, self.global_step, cfg.sync_warmup_steps)
                mouths = mouth_crops(fake.reshape(clips, -1, *fake.shape[1:]), cfg.mouth_region_size)
                raw_sync = sync_loss(self.syncnet, mouths, batch["sync_audio"].to(dev, non_blocking=True)).float()
                loss_g = loss_g + w * raw_sync
                logs["loss/sync"] = raw_sync.item()
                logs["weight/sync"] = w
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        if not math.isfinite(loss_g.item()) and self.amp_dtype != torch.float16:
            raise RuntimeError(f"generator loss is {loss_g.item()} at step {self.global_step + 1}: lower the "
                               "learning rates or check the data")
        logs.update({"loss/g": loss_g.item(), "loss/img": loss_img.item(), "loss/g_spatial": loss_g_spatial.item(),
                     "loss/d_spatial": loss_d_spatial.item()})
        self._last = (masked, fake.detach(), src)
        return logs

    def lr_factor(self):
        """Schedule factor of the coming step (per step when step-based, else per epoch) times the warm-up ramp
        min(1, (step + 1) / lr_warmup_steps): a function of the position only, so a resumed run follows it."""
        cfg = self.cfg
        if self.step_based:
            f = step_lr_factor(self.global_step, cfg.max_steps, cfg.epochs_non_decay, cfg.epochs_decay)
        else:
            f = self.epoch_factor(self.epoch)
        if cfg.lr_warmup_steps > 0:
            f *= min(1.0, (self.global_step + 1) / cfg.lr_warmup_steps)
        return f

    def _set_lr(self):
        f = self.lr_factor()
        for opt, base in zip([self.opt_g] + self.opt_d, [self.cfg.lr_g] + [self.cfg.lr_d] * len(self.opt_d)):
            for group in opt.param_groups:
                group["lr"] = base * f

    # ------------------------------------------------------------------ loop

    def run(self):
        cfg, info = self.cfg, self.info
        if info.is_main:
            with atomic_write(os.path.join(self.result_dir, "config.json"), "w", encoding="utf-8") as f:
                json.dump({"train": dataclasses.asdict(cfg), "model": self.model_config.to_dict(),
                           "options": dataclasses.asdict(self.opts), "discriminator": self.disc_kwargs,
                           "audio_feature": self.audio_feature, "world_size": info.world_size}, f, indent=1)
        barrier(info)
        logger = TrainLogger(cfg.logger, self.result_dir, cfg.name, cfg.stage,
                             {"train": dataclasses.asdict(cfg), "model": self.model_config.to_dict()}, info.is_main)
        per_epoch = self.sampler.batches_per_epoch
        # step-based (--max_steps): N steps whatever the data size, ~10 checkpoints unless --save_every_steps
        planned = cfg.max_steps if self.step_based else self.total_epochs * per_epoch
        save_every = cfg.save_every_steps or (math.ceil(cfg.max_steps / 10) if self.step_based else 0)
        try:
            bar = tqdm(total=planned, initial=min(self.global_step, planned), desc=cfg.stage, unit="step",
                       disable=not (info.is_main and self.opts.progress), dynamic_ncols=True, mininterval=1.0)
        except ImportError:
            bar = None
        items = cfg.batch_size * info.world_size
        frames = items * (5 if cfg.clip_stage else 1)
        t_last, n_last = time.perf_counter(), 0
        t_first, first_step = None, self.global_step     # speed is measured after the first (warm-up) step
        t_prev, step_s, timed_out = time.perf_counter(), 0.0, False
        if self.finished():
            self.log(f"already trained to step {self.global_step}; writing final.pth")
        while not self.finished() and not timed_out:
            self.sampler.set_position(self.epoch, self.step_in_epoch)
            for batch in self.loader:
                logs = self.step(batch)
                self.step_in_epoch += 1
                self.global_step += 1
                n_last += 1
                self.history.append(logs)
                t_end = time.perf_counter()
                step_s, t_prev = t_end - t_prev, t_end
                if t_first is None:
                    t_first, first_step = t_end, self.global_step
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(g=f"{logs['loss/g']:.3f}", img=f"{logs['loss/img']:.4f}", refresh=False)
                if self.global_step % cfg.log_every == 0:
                    dt = time.perf_counter() - t_last
                    vals = mean_over_ranks(logs, info)
                    vals.update({"lr/g": self.opt_g.param_groups[0]["lr"], "lr/d": self.opt_d[0].param_groups[0]["lr"],
                                 "speed/samples_per_s": n_last * items / dt, "speed/frames_per_s": n_last * frames / dt,
                                 "epoch": self.epoch + self.step_in_epoch / per_epoch})
                    logger.scalars(vals, self.global_step)
                    t_last, n_last = time.perf_counter(), 0
                if cfg.image_every and self.global_step % cfg.image_every == 0 and info.is_main:
                    logger.image("samples/masked|generated|target", image_grid(*self._last), self.global_step)
                epoch_end = self.step_in_epoch == per_epoch
                if epoch_end:
                    self.epoch += 1
                    self.step_in_epoch = 0
                timed_out = self.out_of_time(step_s)
                if self.finished() or timed_out or self.stop_requested:   # the final checkpoint is written below
                    if self.stop_requested:
                        self.log(f"stopping at step {self.global_step}: asked to after the last checkpoint")
                    if timed_out:
                        self.log(f"--time_limit_s {self.opts.time_limit_s:g} reached at step {self.global_step}")
                    break
                if (self.global_step % save_every == 0) if save_every else epoch_end:
                    self.save(final=False)
                    t_prev = time.perf_counter()              # the next step's time excludes the save
                if epoch_end:
                    break
        if bar is not None:
            bar.close()
        speed = 0.0
        if t_first is not None and self.global_step > first_step:
            speed = (self.global_step - first_step) * items / max(1e-9, t_end - t_first)
            self.log(f"speed: {speed:.2f} samples/s ({speed * frames / items:.2f} frames/s) over "
                     f"{self.global_step - first_step} steps after warm-up")
        self.save(final=True)
        logger.close()
        phash = parameter_hash(self.gen, self.d_spatial)
        print(f"[{cfg.stage}] rank {info.rank}/{info.world_size} done at step {self.global_step}: "
              f"parameter sha1 {phash}", file=sys.stderr, flush=True)
        return {"result_dir": self.result_dir, "final": os.path.join(self.result_dir, ckpts.FINAL),
                "global_step": self.global_step, "epoch": self.epoch, "param_hash": phash,
                "history": self.history, "model_config": self.model_config, "samples_per_s": speed}


def _load(module, state_dict, what, path):
    """load_state_dict(strict) with a one-line error when the file was written with other settings."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError:
        detail = key_diff(module.state_dict(), state_dict)
        raise UserError(f"--resume: the {what} in {path} does not fit this run ({detail}): resume with the options "
                        "of the run that wrote it, or start over with --overwrite (or another --name)") from None
