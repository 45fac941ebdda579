"""``evaluate``: every metric of the project for one generated video, in two streaming passes over it.

Pass 1 tracks the face (dlib landmarks). Pass 2 reads the generated video (and the reference, if given) frame
by frame and feeds each metric. Frames are never all held in memory; the one exception is our own SyncNet's
mouth crops (uint8, its input size), which are small.
"""
from __future__ import annotations

import os
from typing import Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from evaluation.appearance import Comparison
from evaluation.image_metrics import psnr_from_mse, ssim
from evaluation.lse import LipEmbedder, lse_own_syncnet, lse_syncnet_v2, sync_face_crop
from evaluation.mouth_motion import (audio_energy_db, closed_mouth_level, mouth_opening, open_in_silence,
                                     opening_agreement, opening_energy_stats, silent_frames, temporal_jitter)
from evaluation.seam import SeamMeter
from evaluation.syncnet_v2 import load_syncnet_v2
from models.syncnet import load_syncnet
from utils.audio.features import get_frontend
from utils.errors import UserError
from utils.face.align import PASTE_OUTER, FaceAligner
from utils.face.geometry import mouth_box
from utils.face.landmarks import LandmarkDetector, track_landmarks
from utils.media.audio_io import load_audio
from utils.media.timebase import FPS, SAMPLE_RATE, num_video_frames
from utils.media.video_io import count_frames, iter_frames, probe


def _tracked(path: str, detector, progress: bool, cache: Optional[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks, valid) of every frame of ``path``; with ``cache`` (a dict the caller keeps) a video already
    tracked and unchanged since (same size and modification time) is not tracked again."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if cache is not None and key in cache:
        return cache[key]
    got = track_landmarks(iter_frames(path, fps=FPS), detector, smooth=0.5, progress=progress,
                          total=count_frames(path, FPS))
    if cache is not None:
        cache[key] = got
    return got


def _padded_crop(aligner, frame, M, pad):
    A = np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1]], np.float64) @ M
    return cv2.warpAffine(frame, A[:2], (aligner.out_W + 2 * pad, aligner.out_H + 2 * pad), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def evaluate(generated, reference=None, audio=None, template=None, syncnet_v2: Optional[str] = None,
             syncnet: Optional[str] = None, syncnet_audio_feature: Optional[str] = None,
             syncnet_audio_model_path: str = "",
             mouth_size: int = 128, device: str = "cpu", vshift: int = 15, progress: bool = True,
             detector=None, landmark_cache: Optional[dict] = None) -> dict:
    """Metrics of ``generated`` (a video). ``reference``: ground-truth video for PSNR/SSIM (reconstruction
    setting); ``audio``: the driving speech (default: the generated video's own audio track); ``syncnet_v2``:
    syncnet_python's ``syncnet_v2.model`` for LSE-D/LSE-C; ``syncnet``: our SyncNet checkpoint for
    LSE-D/LSE-C (own), fed with ``syncnet_audio_feature`` features (default: mel for an 80-channel SyncNet).
    ``mouth_size`` sets the aligned crop used for the mouth metrics (crop width 1.25 x mouth_size). ``template``:
    the video that was dubbed (frames in step with ``generated``); the appearance metrics (still-skin colour,
    paste edge, mouth sharpness, flicker; evaluation/appearance.py) are computed against the reference and
    against the template (keys ending in ``_tpl``), on regions from that video's landmarks. ``landmark_cache``: a
    dict kept across calls that score several videos against the same reference and template (each video is
    tracked once)."""
    generated = os.fspath(generated)
    info = probe(generated)
    for other in (reference, template):
        if other is not None:
            probe(other)
    dev = torch.device(device)
    # audio
    samples = None
    if audio is not None:
        samples = load_audio(audio, SAMPLE_RATE)
    elif info.has_audio:
        samples = load_audio(generated, SAMPLE_RATE)
    # models (load before the long passes so a bad path fails fast)
    v2 = own = None
    own_frontend = None
    if syncnet_v2:
        v2 = load_syncnet_v2(syncnet_v2, dev)
    if syncnet:
        own = load_syncnet(syncnet, dev)
        feat = syncnet_audio_feature or ("mel" if own.config["audio_channels"] == 80 else "")
        if not feat:
            raise UserError(f"{syncnet}: takes {own.config['audio_channels']}-dim audio features; pass "
                            "--syncnet_audio_feature (and --syncnet_audio_model_path)")
        own_frontend = get_frontend(feat, syncnet_audio_model_path, str(dev))
        if own_frontend.dim != own.config["audio_channels"]:
            raise UserError(f"{syncnet}: takes {own.config['audio_channels']}-dim audio features, {feat!r} gives "
                            f"{own_frontend.dim}")
    if (v2 is not None or own is not None) and samples is None:
        raise UserError(f"{generated}: no audio track; pass --audio for the LSE metrics")

    # pass 1: landmarks
    detector = detector or LandmarkDetector()
    lm, valid = _tracked(generated, detector, progress, landmark_cache)
    T = len(lm)
    others = {}                 # suffix -> (path, landmarks, valid) of the videos the appearance is compared with
    for suffix, other in (("", reference), ("_tpl", template)):
        if other is not None:
            olm, ovalid = _tracked(os.fspath(other), detector, progress, landmark_cache)
            others[suffix] = (other, olm, ovalid)
    if T == 0:
        raise UserError(f"{generated}: the video has no frames")
    if not valid.any():
        raise UserError(f"{generated}: no face found in any frame; the lip metrics need a face")

    aligner = FaceAligner.for_mouth_size(mouth_size)
    M = aligner.estimate(lm)
    pad = max(8, aligner.out_W // 16)
    top, bottom, left, right = [v + pad for v in mouth_box(mouth_size)]
    shape = (aligner.out_H + 2 * pad, aligner.out_W + 2 * pad)
    W = aligner.out_W
    paste_box = tuple(pad + f * W for f in PASTE_OUTER)
    crop_box = (pad, pad + aligner.out_H - 1, pad, pad + aligner.out_W - 1)
    seams = {"seam_paste": SeamMeter(shape, paste_box), "seam_crop": SeamMeter(shape, crop_box)}
    embedder = LipEmbedder(v2, dev) if v2 is not None else None
    own_aligner = FaceAligner.for_mouth_size(own.face_size) if own is not None else None
    own_mouths = []
    res: dict = {"frames": T, "face_frames": int(valid.sum())}
    sums = {"mse": 0.0, "mse_mouth": 0.0, "ssim": 0.0, "ssim_mouth": 0.0, "n": 0, "n_mouth": 0,
            "jit": 0.0, "jit_ref": 0.0, "n_jit": 0}
    comparisons = {s: Comparison(path, olm, ovalid, s) for s, (path, olm, ovalid) in others.items()}
    prev = prev_ref = None

    for k, frame in enumerate(tqdm(iter_frames(generated, fps=FPS), total=T, desc="metrics", unit="frame",
                                   disable=not progress)):
        seen = {s: c.feed(k, frame) for s, c in comparisons.items()}
        ref = seen.get("")
        if ref is not None:
            sums["mse"] += float(np.mean((frame.astype(np.float64) - ref) ** 2))
            sums["ssim"] += ssim(frame, ref)
            sums["n"] += 1
        if not valid[k]:
            prev = prev_ref = None
            if embedder is not None:
                embedder.add(np.full((224, 224, 3), 110, np.uint8))
            if own is not None:
                own_mouths.append(np.zeros((own.face_size, own.face_size, 3), np.uint8))
            continue
        crop = _padded_crop(aligner, frame, M[k], pad)
        mouth = crop[top:bottom, left:right]
        for meter in seams.values():
            meter.add(crop)
        if ref is not None:
            rmouth = _padded_crop(aligner, ref, M[k], pad)[top:bottom, left:right]
            sums["mse_mouth"] += float(np.mean((mouth.astype(np.float64) - rmouth) ** 2))
            sums["ssim_mouth"] += ssim(mouth, rmouth)
            sums["n_mouth"] += 1
        if prev is not None:
            sums["jit"] += temporal_jitter(prev, mouth)
            sums["n_jit"] += 1
            if ref is not None and prev_ref is not None:
                sums["jit_ref"] += temporal_jitter(prev_ref, rmouth)
        prev = mouth
        prev_ref = rmouth if ref is not None else None
        if embedder is not None:
            embedder.add(sync_face_crop(frame, lm[k]))
        if own is not None:
            t, b, l, r = mouth_box(own.face_size)
            own_mouths.append(own_aligner.crop(frame, own_aligner.estimate(lm[k]))[t:b, l:r])
    if reference is not None:
        res["psnr"] = psnr_from_mse(sums["mse"] / max(sums["n"], 1))
        res["ssim"] = sums["ssim"] / max(sums["n"], 1)
        res["psnr_mouth"] = psnr_from_mse(sums["mse_mouth"] / max(sums["n_mouth"], 1))
        res["ssim_mouth"] = sums["ssim_mouth"] / max(sums["n_mouth"], 1)
        res["compared_frames"] = sums["n"]
    res["mouth_jitter"] = sums["jit"] / sums["n_jit"] if sums["n_jit"] else float("nan")
    if reference is not None and sums["n_jit"]:
        res["mouth_jitter_ref"] = sums["jit_ref"] / sums["n_jit"]
        res["mouth_jitter_ratio"] = (res["mouth_jitter"] / res["mouth_jitter_ref"]
                                     if res["mouth_jitter_ref"] > 0 else float("nan"))
    for name, meter in seams.items():
        res[name] = meter.score()
    for c in comparisons.values():
        res.update(c.result())
    for suffix, (_, olm, ovalid) in others.items():
        res["opening_agreement" + suffix] = opening_agreement(lm, valid, olm, ovalid)
    if samples is not None:
        A = num_video_frames(len(samples), SAMPLE_RATE, FPS)
        res["audio_frames"] = A
        res["frame_count_diff"] = T - A
        # audio shorter than the video counts as silence; face-less frames are left out
        energy = audio_energy_db(samples, T)
        res.update(opening_energy_stats(mouth_opening(lm)[valid], energy[valid]))
        # mouth open in silence: above the closed-mouth level of the reference (else the template, else its own)
        silent = silent_frames(energy)
        _, olm, ovalid = others.get("", others.get("_tpl", (None, lm, valid)))
        n = min(len(olm), T)
        res["closed_level"] = closed_mouth_level(mouth_opening(olm[:n])[ovalid[:n]], silent[:n][ovalid[:n]])
        res["open_in_silence"] = open_in_silence(mouth_opening(lm)[valid], silent[valid], res["closed_level"])
        if v2 is not None:
            res.update(lse_syncnet_v2(v2, embedder.result(), samples, dev, vshift))
        if own is not None:
            feats = own_frontend(samples, T)
            mouths = torch.from_numpy(np.stack(own_mouths)).permute(0, 3, 1, 2).float().div_(255)
            r = lse_own_syncnet(own, mouths, feats, dev, vshift)
            res.update({"own_" + k: v for k, v in r.items()})
    return res

