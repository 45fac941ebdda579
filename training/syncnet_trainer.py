"""Train the mouth/audio SyncNet (models/syncnet.py) on a prepared data root (the original has no such code).
CLI: train_syncnet.py.

Inputs: the mouth boxes (utils.face.geometry.mouth_box) of 5 consecutive aligned crops at mouth size m, resized to
face_size, stacked on channels; with them the audio window of sync_window rows centred on the middle frame
(positive, label 1) or a window >= min_offset frames away / from another video (negative, label 0). Loss
(default "contrastive"): every in-sync face picks its own window among all windows of the batch, plus an MSE
keeping scores at the scale the clip stage's sync loss expects (1 = in sync, 0 = not); "mse"/"bce" use the
per-pair labels alone. Mouths are zero-centred (SyncNet face_offset 0.5).
Held-out accuracy: on held-out videos when there are >= 2, else on the last val_fraction of every video.
The result loads with models.syncnet.load_syncnet, so the clip stage takes it as --syncnet_path.
"""
# Lazy imports below: torch, the data set and the model load only when training starts, so train_syncnet.py
# answers --help and every option error (check_options) without loading torch.
import dataclasses
import math
import os
import time
from typing import Optional

from config.config import SyncNetConfig
from utils.atomic import remove_stale_temps
from utils.errors import UserError


def init_weights(model):
    """He init for every conv and zero for the second conv of each residual block (blocks start as identity).

    PyTorch's default init attenuates the 15-channel mouth stack through the five conv/pool stages so much that the
    face branch starts with ~1e-6 of the gradient the audio branch gets and the net settles on a constant score."""
    import torch.nn as nn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            nn.init.zeros_(mod.bias)
            if name.endswith("conv2"):
                nn.init.zeros_(mod.weight)


LOSSES = ("contrastive", "mse", "bce")


def pair_scores(model, face, audio):
    """(B, B) mean score of every face i against every audio window j; each input is encoded once."""
    face_map = model.encode_face(face)                      # (B, h, s, s)
    audio_vec = model.audio_encoder(audio)                  # (B, h)
    B, h, s, _ = face_map.shape
    faces = face_map[:, None].expand(B, B, h, s, s).reshape(B * B, h, s, s)
    audios = audio_vec[None].expand(B, B, h).reshape(B * B, h)
    return model.merge(faces, audios).mean(dim=(1, 2, 3)).view(B, B)


def contrastive_sync_loss(model, face, audio, label):
    """Each in-sync face must pick its own window among all windows of the batch (cross-entropy over the B x B
    score matrix), plus an MSE keeping scores calibrated (1 in sync, 0 otherwise) for the clip stage's sync loss.

    Why: with independent yes/no labels neither input predicts the label on its own, and the network sits at a
    constant score for thousands of steps (held-out accuracy ~0.52 on synthetic data); comparing alternatives
    gives a signal from the first step (~0.75 after 200 steps on the same data)."""
    import torch
    import torch.nn.functional as F

    scores = pair_scores(model, face, audio)
    pos = (label > 0.5).nonzero().flatten()
    target = torch.zeros_like(scores)
    target[pos, pos] = 1.0
    calib = F.mse_loss(scores, target)
    return calib if len(pos) == 0 else F.cross_entropy(scores[pos], pos) + calib


def split_videos(names, val_fraction):
    """(train names, val names, segment mode): held-out videos when possible, else held-out segments."""
    names = sorted(names)
    n_val = int(math.ceil(len(names) * val_fraction)) if val_fraction > 0 else 0
    if len(names) >= 2 and 0 < n_val < len(names):
        return names[:-n_val], names[-n_val:], False
    return names, names, True


def accuracy(model, loader, device, loss):
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            score = model(batch["face"].to(device), batch["audio"].to(device)).float().mean(dim=(1, 2, 3))
            pred = score > (0.0 if loss == "bce" else 0.5)
            correct += (pred == (batch["label"].to(device) > 0.5)).sum().item()
            total += len(pred)
    model.train()
    return correct / max(1, total)


def check_options(out_path, overwrite, **o):
    """One-line errors for every option that cannot work, before any data is read or any step trained."""
    if o["loss"] not in LOSSES:
        raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got '{o['loss']}'")
    if o["face_size"] < 32 or o["face_size"] % 32:
        raise UserError(f"--face_size must be a positive multiple of 32, got {o['face_size']}")
    if o["sync_window"] < 1 or o["sync_window"] % 2 == 0:
        raise UserError(f"--sync_window must be a positive odd number, got {o['sync_window']}")
    if o["hidden"] < 2 or o["hidden"] % 2:
        raise UserError(f"--hidden must be an even number >= 2, got {o['hidden']}")
    least = 2 if o["loss"] == "contrastive" else 1        # the contrastive loss compares the items of a batch
    if o["batch_size"] < least:
        raise UserError(f"--batch_size must be >= {least} with --loss {o['loss']}, got {o['batch_size']}")
    for name in ("steps", "val_items", "min_offset", "mouth_region_size"):
        if o[name] < 1:
            raise UserError(f"--{name} must be >= 1, got {o[name]}")
    for name in ("eval_every", "num_workers"):
        if o[name] < 0:
            raise UserError(f"--{name} must be >= 0, got {o[name]}")
    if not (math.isfinite(o["lr"]) and o["lr"] > 0):
        raise UserError(f"--lr must be a positive number, got {o['lr']}")
    if not 0 <= o["val_fraction"] < 1:
        raise UserError(f"--val_fraction must be in [0, 1), got {o['val_fraction']}")
    out_path = os.fspath(out_path)
    if os.path.isdir(out_path):
        raise UserError(f"--out {out_path} is a folder: give the path of the .pth file to write")
    if os.path.exists(out_path) and not overwrite:
        raise UserError(f"--out {out_path} exists: pass --overwrite to replace it, or choose another path")
    ancestor = os.path.dirname(os.path.abspath(out_path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor) or not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"--out {out_path}: cannot write there ({ancestor} is "
                        f"{'a file' if not os.path.isdir(ancestor) else 'not writable'})")
    remove_stale_temps(out_path)                          # left by a run killed while saving


def train_syncnet(train_data, out_path, cfg: Optional[SyncNetConfig] = None, *, log=print, progress=True,
                  overwrite=False, max_seconds=0.0):
    """Train and save a SyncNet with the options ``cfg`` (config.config.SyncNetConfig; defaults when None); returns
    {"path", "val_accuracy", "history" (per-step losses), "split", "steps"}. An existing ``out_path`` is an error
    unless ``overwrite``; ``max_seconds`` > 0 stops earlier than ``cfg.steps`` when that much time has passed since
    the call (time-boxed runs; the last evaluation and the save follow)."""
    t_start = time.monotonic()
    c = cfg or SyncNetConfig()
    check_options(out_path, overwrite, **dataclasses.asdict(c))
    steps = c.steps                     # lowered when max_seconds ends the run early
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from dataset.clip_dataset import SyncPairDataset
    from dataset.index import load_index
    from models.syncnet import SyncNet, save_syncnet
    from training.distributed import pick_device
    from training.sampler import ResumableSampler

    dev = pick_device(c.device, 0, 1)
    index = load_index(train_data)
    train_names, val_names, segments = split_videos(index.videos, c.val_fraction)
    common = dict(index_path=train_data, mouth_region_size=c.mouth_region_size, face_size=c.face_size,
                  audio_feature=c.audio_feature, sync_window=c.sync_window, min_offset=c.min_offset)
    cut = 1.0 - c.val_fraction if segments else 1.0
    train_ds = SyncPairDataset(videos=train_names, segment=(0.0, cut), augment_num=64, seed=c.seed, **common)
    val_ds = SyncPairDataset(videos=val_names, segment=(cut, 1.0) if segments else (0.0, 1.0), augment_num=1,
                             seed=c.seed + 1, **common)
    split = ("held-out segments (last {:.0%} of each video)".format(c.val_fraction) if segments
             else f"held-out videos: {', '.join(val_names)}")
    log(f"SyncNet: {len(train_ds.store.videos)} training video(s), {split}")
    # a fixed validation set: the same keys every evaluation
    n_val = max(c.batch_size, int(c.val_items))
    val_keys = [(0, i % len(val_ds)) if i < len(val_ds) else (i // len(val_ds), i % len(val_ds)) for i in range(n_val)]
    val_loader = DataLoader(torch.utils.data.Subset(val_ds, val_keys), batch_size=c.batch_size, num_workers=0)

    torch.manual_seed(c.seed)
    model = SyncNet(15, train_ds.store.feature_dim, c.hidden, c.face_size, c.sync_window, face_offset=0.5)
    init_weights(model)
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr)
    sampler = ResumableSampler(len(train_ds), c.batch_size, seed=c.seed)
    # persistent workers: small data sets have short epochs, and re-starting the workers every epoch cost more
    # than the training steps
    loader = DataLoader(train_ds, batch_size=c.batch_size, sampler=sampler, num_workers=c.num_workers,
                        drop_last=True, persistent_workers=c.num_workers > 0)
    history, step, epoch = [], 0, 0
    acc = accuracy(model, val_loader, dev, c.loss)
    log(f"SyncNet held-out accuracy before training: {acc:.3f}")
    bar = tqdm(total=steps, desc="syncnet", unit="step", mininterval=1.0, disable=not progress)
    while step < steps:
        sampler.set_position(epoch)
        for batch in loader:
            face, audio, label = batch["face"].to(dev), batch["audio"].to(dev), batch["label"].to(dev).float()
            if c.loss == "contrastive":
                l = contrastive_sync_loss(model, face, audio, label)
            else:
                score = model(face, audio)
                target = label[:, None, None, None].expand_as(score)
                l = (F.mse_loss(score, target) if c.loss == "mse"
                     else F.binary_cross_entropy_with_logits(score, target))
            opt.zero_grad(set_to_none=True)
            l.backward()
            opt.step()
            history.append(l.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{l.item():.4f}", refresh=False)
            if c.eval_every and step % c.eval_every == 0 and step < steps:
                acc = accuracy(model, val_loader, dev, c.loss)
                log(f"step {step}: held-out sync accuracy {acc:.3f}")
            if step >= steps:
                break
            if max_seconds and time.monotonic() - t_start > max_seconds:
                log(f"SyncNet: time limit of {max_seconds:.0f} s reached after {step} steps")
                steps = step
                break
        epoch += 1
    bar.close()
    acc = accuracy(model, val_loader, dev, c.loss)
    log(f"SyncNet held-out sync accuracy: {acc:.3f} (chance 0.5), {split}")
    save_syncnet(model.cpu(), out_path, val_accuracy=acc, audio_feature=train_ds.store.feature,
                 mouth_region_size=int(c.mouth_region_size), loss=c.loss, steps=step)
    log(f"saved {out_path}")
    return {"path": out_path, "val_accuracy": acc, "history": history, "split": split, "steps": step}
