"""A/V offset of a recording without a SyncNet: when does the mouth region move relative to the sound?

``v_k`` = mean |frame_k - frame_(k-1)| over the mouth box, ``u_k`` = mean |mel_k - mel_(k-1)| of the audio
track (utils/audio/mel.py rows, one per frame) summed over the 5 frames k-2..k+2 the generator's window sees. A generator driven by a symmetric audio window changes the mouth
when the features in its window change, so ``v`` is ``u`` blurred symmetrically and their cross-correlation
peaks at the true offset. The best lag (parabola-refined) is the offset in frames: positive = the picture comes
after the sound. Used on the recordings of ``client_LawDNet.py stream``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from utils.audio.mel import MelFrontEnd


def activity_signals(frames: np.ndarray, audio_16k: np.ndarray, box: Optional[Sequence[int]] = None):
    """(v, u): per-frame mouth motion and audio-feature change, same length (frames[1:] vs rows[1:])."""
    f = np.asarray(frames)
    if box is not None:
        x0, y0, x1, y1 = (int(b) for b in box)
        f = f[:, y0:y1, x0:x1]
    f = f.astype(np.float32)
    v = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    rows = MelFrontEnd()(np.asarray(audio_16k, np.float32), len(frames))
    u = np.abs(np.diff(rows, axis=0)).mean(axis=1)
    # matched filter: a 5-frame window sees the changes of frames k-2..k+2 (symmetric, so no lag is added)
    u = np.convolve(u, np.ones(5), mode="same")
    return v, u


def av_offset(frames: np.ndarray, audio_16k: np.ndarray, box: Optional[Sequence[int]] = None,
              max_lag: int = 10, repeated: Optional[Sequence[bool]] = None) -> dict:
    """``{"offset_frames", "correlation", "lags", "curve"}`` from the cross-correlation of v and u.

    ``repeated[k]`` marks frames known to repeat the previous picture (a live stream's dropped frames): the
    motion into and out of them is not the model's response to the sound, so those steps are left out."""
    v, u = activity_signals(frames, audio_16k, box)
    n = min(len(v), len(u))
    if n < 2 * max_lag + 5:
        return {"offset_frames": None, "correlation": None, "reason": "recording too short"}
    v, u = v[:n], u[:n]
    ok = np.ones(n, bool)
    if repeated is not None:
        r = np.asarray(repeated, bool)[:n + 1]
        r = np.pad(r, (0, max(0, n + 1 - len(r))))
        ok = ~(r[1:] | r[:-1])            # step k-1 -> k involves no repeated frame
    if ok.sum() < 2 * max_lag + 5:
        return {"offset_frames": None, "correlation": None, "reason": "too few rendered frames"}
    v = (v - v[ok].mean()) / (v[ok].std() or 1.0)
    u = (u - u.mean()) / (u.std() or 1.0)
    lags = list(range(-max_lag, max_lag + 1))
    curve = []
    for lag in lags:   # corr(v_(k+lag), u_k): the picture reacts `lag` frames after the sound
        if lag >= 0:
            a, b, m = v[lag:], u[:n - lag], ok[lag:]
        else:
            a, b, m = v[:n + lag], u[-lag:], ok[:n + lag]
        curve.append(float(np.mean(a[m] * b[m])) if m.any() else 0.0)
    i = int(np.argmax(curve))
    off = float(lags[i])
    if 0 < i < len(curve) - 1:
        y0, y1, y2 = curve[i - 1], curve[i], curve[i + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            off += 0.5 * (y0 - y2) / den
    return {"offset_frames": round(off, 2), "correlation": round(curve[i], 3), "lags": lags,
            "curve": [round(c, 3) for c in curve]}
