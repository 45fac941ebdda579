"""Log-mel front-end (no weights): 80 values per 40 ms video frame with a fixed normalisation."""
from __future__ import annotations

import numpy as np

from utils.audio.base import AudioFrontEnd
from utils.media.timebase import SAMPLE_RATE


def hz_to_mel(f):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters on the HTK mel scale, each with peak 1.

    Peak-1 (not area-normalised) filters keep a full-scale sine at a band centre at ~0 dB in its band.
    """
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


class MelFrontEnd(AudioFrontEnd):
    """Log-mel features, 80 values per 40 ms video frame, with a FIXED normalisation.

    Layout of row i (frame i = samples [640 i, 640 (i+1))): two 20 ms sub-steps x 40 mel bands,
    ``row[0:40]`` = sub-step 0, ``row[40:80]`` = sub-step 1. Sub-step k of frame i is a 25 ms Hann window
    (400 samples, 512-point FFT) centred on the middle of its 20 ms slot, i.e. at sample 640 i + 320 k + 160.
    Bands: 40 triangular HTK-mel filters between 55 Hz and 7600 Hz.

    Values: band power relative to a full-scale sine (0 dB), floored at -100 dB, mapped linearly
    ``dB / 50 + 1``: digital silence is exactly -1 in every file, a full-scale tone in its band ~ +1, speech at
    normal levels lies in between. No per-utterance statistics, so a quiet file stays quiet.
    """

    name = "mel"
    dim = 80
    n_mels = 40
    substeps = 2
    hop = 320
    win = 400
    n_fft = 512
    fmin = 55.0
    fmax = 7600.0
    min_db = -100.0
    context_samples = 200  # half a window: the last sub-step's window reaches 200 samples past the frame

    def __init__(self):
        self._window = np.hanning(self.win + 2)[1:-1]  # symmetric Hann without the zero end points
        # Scale so a full-scale sine gives power 1 in its peak bin.
        self._power_norm = (self._window.sum() / 2.0) ** 2
        self._fb = mel_filterbank(self.n_mels, self.n_fft, SAMPLE_RATE, self.fmin, self.fmax)

    def compute(self, samples: np.ndarray, num_frames: int) -> np.ndarray:
        n_steps = num_frames * self.substeps
        half = self.win // 2
        starts = np.arange(n_steps) * self.hop + self.hop // 2  # window centres; in the left-padded signal = starts
        need = starts[-1] + self.win
        xp = np.pad(samples, (half, max(0, need - len(samples) - half)))
        frames = np.lib.stride_tricks.sliding_window_view(xp, self.win)[starts]
        spec = np.abs(np.fft.rfft(frames * self._window, n=self.n_fft, axis=1)) ** 2 / self._power_norm
        mel = spec @ self._fb.T
        db = 10.0 * np.log10(np.maximum(mel, 10.0 ** (self.min_db / 10.0)))
        feats = db / (-self.min_db / 2.0) + 1.0
        return feats.reshape(num_frames, self.substeps * self.n_mels)


# --------------------------------------------------------------------------------------------- API
