"""Network-free lip metrics (field survey 4.3): mouth opening vs audio energy, stillness in silence, jitter."""
from __future__ import annotations

import numpy as np

from utils.media.timebase import FRAME_SAMPLES

INNER_UPPER = (61, 62, 63)
INNER_LOWER = (67, 66, 65)
SILENCE_DB = 35.0   # frames this far below the loud (95th percentile) level count as silence


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,68,2) -> (T,) inner-lip gap (mean of 3 upper/lower pairs) divided by the outer eye-corner distance."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, INNER_UPPER] - lm[:, INNER_LOWER], axis=-1).mean(-1)
    eyes = np.linalg.norm(lm[:, 36] - lm[:, 45], axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def opening_agreement(landmarks: np.ndarray, valid: np.ndarray, ref_landmarks: np.ndarray,
                      ref_valid: np.ndarray) -> float:
    """Pearson r of two videos' mouth openings (``mouth_opening``) over the frames with a face in both, silences
    included: a mouth that opens when the reference's is shut lowers it. Needs no synthetic ground truth, so it
    scores a reconstruction of real footage (validation during training); nan for fewer than 3 frames or a
    constant track."""
    n = min(len(landmarks), len(ref_landmarks))
    both = np.asarray(valid[:n], bool) & np.asarray(ref_valid[:n], bool)
    if both.sum() < 3:
        return float("nan")
    a, b = mouth_opening(landmarks[:n][both]), mouth_opening(ref_landmarks[:n][both])
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def audio_energy_db(samples_16k: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) RMS level in dBFS of each 40 ms frame (640 samples), floor -100 dB."""
    x = np.asarray(samples_16k, np.float64)
    n = num_frames * FRAME_SAMPLES
    x = np.pad(x, (0, max(0, n - len(x))))[:n].reshape(num_frames, FRAME_SAMPLES)
    rms = np.sqrt((x ** 2).mean(1))
    return 20 * np.log10(np.maximum(rms, 1e-5))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def opening_energy_stats(opening: np.ndarray, energy_db: np.ndarray, max_lag: int = 2) -> dict:
    """Correlation of mouth opening with audio level (lag 0 and the best lag within +-max_lag frames, positive =
    mouth after audio) and how much the mouth moves during silence compared with speech."""
    T = min(len(opening), len(energy_db))
    o, e = np.asarray(opening[:T], np.float64), np.asarray(energy_db[:T], np.float64)
    out = {"av_corr": _corr(o, e)}
    best, lag = -np.inf, 0
    for k in range(-max_lag, max_lag + 1):
        c = _corr(o[max(0, k):T + min(0, k)], e[max(0, -k):T - max(0, k)])
        if np.isfinite(c) and c > best:
            best, lag = c, k
    out["av_corr_best"], out["av_lag"] = (float(best) if np.isfinite(best) else float("nan")), lag
    loud = np.percentile(e, 95) if T else 0.0
    silent = e < loud - SILENCE_DB
    d = np.abs(np.diff(o))
    both_silent, both_speech = silent[1:] & silent[:-1], ~silent[1:] & ~silent[:-1]
    out["silence_frames"] = int(silent.sum())
    out["silence_motion"] = float(d[both_silent].mean()) if both_silent.any() else float("nan")
    out["speech_motion"] = float(d[both_speech].mean()) if both_speech.any() else float("nan")
    out["silence_opening"] = float(o[silent].mean()) if silent.any() else float("nan")
    out["speech_opening"] = float(o[~silent].mean()) if (~silent).any() else float("nan")
    return out


def temporal_jitter(prev: np.ndarray, cur: np.ndarray) -> float:
    """Mean absolute difference (0-255) between consecutive aligned mouth crops."""
    return float(np.abs(cur.astype(np.float32) - prev.astype(np.float32)).mean())


CLOSED_MARGIN = 0.05   # opening above the closed-mouth level that counts as open (inner-lip gap / eye distance)


def silent_frames(energy_db: np.ndarray) -> np.ndarray:
    """(T,) bool: frames ``SILENCE_DB`` below the loud (95th percentile) level."""
    e = np.asarray(energy_db, np.float64)
    return e < (np.percentile(e, 95) if len(e) else 0.0) - SILENCE_DB


def closed_mouth_level(opening: np.ndarray, silent: np.ndarray) -> float:
    """A video's closed-mouth opening: its median opening over the silent frames (its 10th percentile when the
    audio has no silence)."""
    o = np.asarray(opening, np.float64)
    s = np.asarray(silent, bool)[: len(o)]
    return float(np.median(o[s])) if s.any() else float(np.percentile(o, 10)) if len(o) else float("nan")


def open_in_silence(opening: np.ndarray, silent: np.ndarray, closed_level: float,
                    margin: float = CLOSED_MARGIN) -> float:
    """Fraction of the audio's silent frames whose mouth opening is above ``closed_level + margin`` (NaN when the
    audio has no silence)."""
    o = np.asarray(opening, np.float64)
    n = min(len(o), len(silent))
    s = np.asarray(silent, bool)[:n]
    return float((o[:n][s] > closed_level + margin).mean()) if s.any() else float("nan")
