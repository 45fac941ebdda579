"""LSE-D / LSE-C (Wav2Lip's evaluation on top of syncnet_python; field survey 4.1), streaming over the video.

For every start frame i the lip embedding of frames i..i+4 is compared with the audio embedding of MFCC steps
4(i+k)..4(i+k)+19 for every offset k in [-vshift, vshift] (audio zero-padded by vshift windows at both ends);
D(k) = mean over frames of the distance. LSE-D = min_k D(k), LSE-C = median_k D(k) - min_k D(k), AV offset =
the minimising k. With our own SyncNet (models/syncnet.py), which scores a pair instead of embedding it, the
distance of a pair is 1 - its mean score, aggregated the same way.
"""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np
import torch

from utils.audio.base import make_windows

# Lazy import below: python_speech_features (scipy behind it, about 1.3 s) loads only for the SyncNet v2 MFCCs.

SYNC_SIZE = 224
CROP_SCALE = 0.40   # syncnet_python's face-track crop: box scaled like its run_pipeline


def mfcc_16k(samples_16k: np.ndarray) -> np.ndarray:
    """(13, steps) MFCCs at 100 steps/s, computed on int16-scaled samples like the original."""
    import python_speech_features

    x = np.asarray(samples_16k, np.float64) * 32768.0
    return python_speech_features.mfcc(x, 16000).T.astype(np.float32)


def sync_face_crop(frame_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """224x224 BGR face crop in syncnet_python's geometry, from the 68 landmarks' bounding box: half-size
    bs = max(w, h)/2 around the box centre, rows [cy - bs, cy + bs(1 + 2 s)), cols cx +- bs(1 + s), s = 0.4,
    outside the frame filled with grey 110."""
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    bs = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    top, bottom = cy - bs, cy + bs * (1 + 2 * CROP_SCALE)
    left, right = cx - bs * (1 + CROP_SCALE), cx + bs * (1 + CROP_SCALE)
    # affine map crop -> frame, sampled with a constant border
    sx, sy = (right - left) / SYNC_SIZE, (bottom - top) / SYNC_SIZE
    A = np.array([[1 / sx, 0, -left / sx], [0, 1 / sy, -top / sy]], np.float64)
    crop = cv2.warpAffine(frame_rgb, A, (SYNC_SIZE, SYNC_SIZE), flags=cv2.INTER_AREA if sx > 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110))
    return crop[..., ::-1]  # RGB -> BGR: the network was trained on cv2-read frames


def offsets_summary(dist: np.ndarray, vshift: int) -> dict:
    """dist (frames, 2 vshift + 1) with NaN for missing pairs -> LSE-D, LSE-C, AV offset."""
    D = np.nanmean(dist, axis=0)
    k = int(np.nanargmin(D))
    return {"lse_d": float(D[k]), "lse_c": float(np.nanmedian(D) - D[k]), "av_offset": k - vshift,
            "lse_frames": int(dist.shape[0])}


class LipEmbedder:
    """Accumulates face crops and embeds every 5-frame window as soon as it is complete (bounded memory)."""

    def __init__(self, model, device, batch: int = 20):
        self.model, self.device, self.batch = model, device, batch
        self.buf: deque = deque()
        self.out: list = []
        self.pending: list = []

    def add(self, crop_bgr: np.ndarray):
        self.buf.append(torch.from_numpy(np.ascontiguousarray(crop_bgr)).permute(2, 0, 1).float())
        if len(self.buf) >= 5:
            self.pending.append(torch.stack(list(self.buf)[-5:], dim=1))   # (3, 5, 224, 224)
            self.buf.popleft()
        if len(self.pending) >= self.batch:
            self._flush()

    @torch.inference_mode()
    def _flush(self):
        if self.pending:
            x = torch.stack(self.pending).to(self.device)
            self.out.append(self.model.forward_lip(x).float().cpu())
            self.pending = []

    def result(self) -> torch.Tensor:
        self._flush()
        return torch.cat(self.out) if self.out else torch.zeros(0, 1024)


@torch.inference_mode()
def lse_syncnet_v2(model, lip_emb: torch.Tensor, samples_16k: np.ndarray, device="cpu", vshift: int = 15) -> dict:
    """LSE from lip embeddings (one per 5-frame window) and the audio (16 kHz)."""
    mfcc = mfcc_16k(samples_16k)
    # as syncnet_python: windows 0 .. min(#frames, #samples // 640) - 6 (the last frame is never a start)
    n_win = min(len(lip_emb) + 4, len(samples_16k) // 640) - 5
    n_win = min(n_win, (mfcc.shape[1] - 20) // 4 + 1)
    if n_win < 1:
        return {"lse_d": float("nan"), "lse_c": float("nan"), "av_offset": 0, "lse_frames": 0}
    wins = torch.stack([torch.from_numpy(mfcc[:, 4 * i:4 * i + 20]) for i in range(n_win)])[:, None]
    aud = torch.cat([model.forward_aud(wins[i:i + 64].to(device)).float().cpu() for i in range(0, n_win, 64)])
    lip = lip_emb[:n_win]
    dist = np.full((n_win, 2 * vshift + 1), np.nan)
    for j, k in enumerate(range(-vshift, vshift + 1)):
        a = np.arange(n_win) + k
        ok = (a >= 0) & (a < n_win)
        # zero padding of the original: a missing audio window has a zero embedding
        other = torch.zeros_like(lip)
        other[ok] = aud[a[ok]]
        dist[:, j] = torch.nn.functional.pairwise_distance(lip, other).numpy()
    return offsets_summary(dist, vshift)


@torch.inference_mode()
def lse_own_syncnet(model, mouths: torch.Tensor, feats: np.ndarray, device="cpu", vshift: int = 15) -> dict:
    """LSE with models/syncnet.SyncNet: mouths (T, 3, S, S) in [0, 1] (aligned mouth boxes), feats (T, D) rows of
    the audio front-end it was trained on. Pair (window at frames i..i+4, audio window centred on i+2+k)."""
    T = min(len(mouths), len(feats))
    n_win = T - 4
    if n_win < 1:
        return {"lse_d": float("nan"), "lse_c": float("nan"), "av_offset": 0, "lse_frames": 0}
    aw = torch.from_numpy(make_windows(np.asarray(feats[:T]), model.audio_window)).float()  # (T, D, W)
    s = model.face_size
    fm = []
    for i in range(0, n_win, 16):
        x = torch.stack([mouths[j:j + 5].reshape(-1, *mouths.shape[-2:]) for j in range(i, min(n_win, i + 16))])
        x = torch.nn.functional.interpolate(x.to(device), size=(s, s), mode="bilinear", align_corners=False)
        fm.append(model.encode_face(x))          # encode_face applies the SyncNet's face_offset
    fm = torch.cat(fm)                                                       # (n_win, h, s/32, s/32)
    av = torch.cat([model.audio_encoder(aw[i:i + 256].to(device)) for i in range(0, T, 256)])   # (T, h)
    dist = np.full((n_win, 2 * vshift + 1), np.nan)
    for j, k in enumerate(range(-vshift, vshift + 1)):
        c = np.arange(n_win) + 2 + k
        ok = np.flatnonzero((c >= 0) & (c < T))
        if not len(ok):
            continue
        score = model.merge(fm[ok], av[c[ok]]).mean(dim=(1, 2, 3))
        dist[ok, j] = (1 - score).float().cpu().numpy()
    return offsets_summary(dist, vshift)
