"""Audio features of a live 16 kHz stream, computed a few frames at a time (live dubbing, server/live.py).

Offline, a front-end sees the whole file. Live, feature rows for frames [a, a+n) must be computed as soon as
the audio up to frame a+n (plus the generator's look-ahead) has arrived, from a slice of the stream with some
context on each side:

* left context: whole frames before ``a`` (rows stay aligned to 640-sample frames);
* right context: samples after the last frame, i.e. extra latency on top of the generator's 2-frame look-ahead.

``mel`` is nearly causal: each row's two 25 ms windows reach 40 samples (2.5 ms) past its frame on either side,
so one left frame and 40 right samples give exactly the offline rows. ``deepspeech``/``deepspeech2`` (recurrent,
DeepSpeech2's LSTMs are bidirectional, its spectrogram is normalised by the statistics of the whole input) and
``hubert`` (self-attention over the whole input) differ from their offline rows by an amount that shrinks with
the context: :func:`feature_difference` measures it (docs/benchmarks.md, 'Live: streaming audio features').
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from utils.audio.base import AudioFrontEnd
from utils.media.timebase import FRAME_SAMPLES

# (left context in frames, right context in samples) per front-end.
DEFAULT_CONTEXT = {
    "mel": (1, 40),
    "deepspeech": (25, 4 * FRAME_SAMPLES),      # 1 s left, 160 ms right
    "deepspeech2": (25, 4 * FRAME_SAMPLES),
    "hubert": (50, 4 * FRAME_SAMPLES),          # 2 s left, 160 ms right
}


class StreamingFeatures:
    """Feature rows of a stream from slices of it: ``rows(signal, n)`` with ``signal`` starting ``left`` frames
    before the first wanted row and holding ``(left + n) * 640 + right`` samples (zero-padded if shorter)."""

    def __init__(self, frontend: AudioFrontEnd, left_frames: Optional[int] = None,
                 right_samples: Optional[int] = None):
        dl, dr = DEFAULT_CONTEXT.get(frontend.name, (25, 4 * FRAME_SAMPLES))
        self.frontend = frontend
        self.left = int(dl if left_frames is None else left_frames)
        self.right = int(dr if right_samples is None else right_samples)
        if self.left < 0 or self.right < 0:
            raise ValueError("streaming feature context must be >= 0")
        # the front-end looks at most context_samples past its last frame: more right context is only latency
        self.right = min(self.right, int(frontend.context_samples))

    @property
    def dim(self) -> int:
        return self.frontend.dim

    @property
    def right_ms(self) -> float:
        return self.right / 16.0

    def signal_length(self, n: int) -> int:
        return (self.left + n) * FRAME_SAMPLES + self.right

    def rows(self, signal: np.ndarray, n: int) -> np.ndarray:
        """(n, dim) rows for the n frames that follow the ``left`` context frames of ``signal``."""
        need = self.signal_length(n)
        x = np.asarray(signal, np.float32)[:need]
        if len(x) < need:
            x = np.pad(x, (0, need - len(x)))
        return self.frontend(x, self.left + n)[self.left:]


def stream_rows(features: StreamingFeatures, samples: np.ndarray, chunk: int, lookahead_frames: int = 0
                ) -> np.ndarray:
    """All rows of ``samples`` computed live, ``chunk`` frames at a time, as the server does (for measurements).

    Each chunk of rows [a, a+chunk) is computed once the stream holds frames up to a+chunk+lookahead_frames
    plus the right context; the stream is silence before its start and after its end.
    """
    x = np.asarray(samples, np.float32)
    total = -(-len(x) // FRAME_SAMPLES)
    out = []
    L = features.left
    for a in range(0, total, chunk):
        n = min(chunk, total - a)
        s0 = (a - L) * FRAME_SAMPLES
        s1 = s0 + features.signal_length(n)
        sig = np.zeros(s1 - s0, np.float32)
        lo, hi = max(0, s0), min(len(x), s1)
        if hi > lo:
            sig[lo - s0:hi - s0] = x[lo:hi]
        out.append(features.rows(sig, n))
    return np.concatenate(out) if out else np.zeros((0, features.dim), np.float32)


def feature_difference(frontend: AudioFrontEnd, samples: np.ndarray, chunk: int = 4,
                       left_frames: Optional[int] = None, right_samples: Optional[int] = None) -> dict:
    """How far live rows are from the offline rows of the same audio: max / mean |diff| and the relative
    error ``mean|diff| / mean|offline|``."""
    sf = StreamingFeatures(frontend, left_frames, right_samples)
    live = stream_rows(sf, samples, chunk)
    offline = frontend(np.asarray(samples, np.float32), live.shape[0])
    d = np.abs(live - offline)
    scale = float(np.abs(offline).mean()) or 1.0
    return {"max_abs": float(d.max()) if d.size else 0.0, "mean_abs": float(d.mean()) if d.size else 0.0,
            "relative": float(d.mean() / scale) if d.size else 0.0, "left_frames": sf.left,
            "right_ms": sf.right_ms, "frames": int(live.shape[0])}
