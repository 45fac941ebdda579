"""One interface for the four audio front-ends: per-video-frame feature rows with an exact length.

Every front-end is an :class:`AudioFrontEnd`: ``frontend(samples_16k, num_frames)`` returns a float32 array of
shape ``(num_frames, frontend.dim)``, EXACTLY one row per 25 fps video frame, row ``i`` describing the audio
around ``[i*40 ms, (i+1)*40 ms)`` (640 samples at 16 kHz).

Length rule (replaces the original's "+3 frames" mismatch and the dp1/dp2 off-by-one, docs/original.md):

* ``num_frames=None`` means ``utils.media.timebase.num_video_frames(len(samples))`` (duration rounded half-up).
* Audio shorter than ``num_frames * 640`` samples is padded with digital silence BEFORE feature extraction, so
  the missing frames get the features the front-end gives for silence (not zeros, not repeated rows).
* Audio longer than that is cut to ``num_frames * 640`` samples plus a small look-ahead (``context_samples``, so
  recurrent / attention models still see a little real audio after the last frame); the surplus features are
  dropped. Row ``i`` is therefore always paired with video frame ``i`` (offset 0).

Front-ends (``utils.audio.features.get_frontend(name, model_path, device)``):

* ``mel`` (dim 80, no weights): log-mel at 16 kHz (``utils/audio/mel.py``).
* ``deepspeech`` (dim 29): TF DeepSpeech v0.1 ``output_graph.pb`` run in PyTorch (``utils/audio/deepspeech_tf.py``).
* ``deepspeech2`` (dim 29): deepspeech.pytorch ``LibriSpeech_Pretrained_v3.ckpt`` (``utils/audio/deepspeech2.py``).
* ``hubert`` (dim = hidden size): local Hugging Face HuBERT / wav2vec2 folder (``utils/audio/hubert.py``).

The generator sees a window of rows per frame: ``frontend.windows(samples_16k, num_frames, window)`` (as the original,
:func:`make_windows` over the front-end's rows). DeepSpeech2 follows the original extraction instead of the cut /
pad rule (``utils/audio/deepspeech2.py``).
"""
from __future__ import annotations

import numpy as np

from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE, num_video_frames


class AudioFrontEnd:
    """Base class: turns 16 kHz mono samples into exactly one feature row per 25 fps video frame.

    Subclasses set ``name``, ``dim`` and ``context_samples`` and implement :meth:`compute`, which receives audio
    already cut/padded to at least ``num_frames * 640`` samples and must return at least ``num_frames`` rows
    (or replace :meth:`rows`, the cut / pad step, as DeepSpeech2 does). The length rule is documented in the
    module docstring; :meth:`windows` gives the generator's per-frame windows.
    """

    name: str = ""
    dim: int = 0
    context_samples: int = 0  # real audio after the last frame that the model may still look at
    window_rows_past_end: bool = False  # windows() may use rows past num_frames (see there)

    def __call__(self, samples_16k: np.ndarray, num_frames: int | None = None) -> np.ndarray:
        x, num_frames = self._input(samples_16k, num_frames)
        if num_frames == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(self.rows(x, num_frames)[:num_frames])

    def windows(self, samples_16k: np.ndarray, num_frames: int | None = None, window: int = 5) -> np.ndarray:
        """(num_frames, dim, window) generator inputs: frame i gets rows i-w//2 .. i+w//2 (as the original), clamped to
        the first ``num_frames`` rows, or, for a front-end with ``window_rows_past_end`` (DeepSpeech2, whose
        original windows were built over all its rows), to every row it gives."""
        x, num_frames = self._input(samples_16k, num_frames)
        if num_frames == 0:
            return np.zeros((0, self.dim, window), np.float32)
        feats = self.rows(x, num_frames)
        return make_windows(feats if self.window_rows_past_end else feats[:num_frames], window)[:num_frames]

    def rows(self, x: np.ndarray, num_frames: int) -> np.ndarray:
        """All rows (at least ``num_frames``) for float64 mono ``x``: the cut / pad rule above, then compute."""
        need = num_frames * FRAME_SAMPLES
        x = x[: need + self.context_samples]
        if len(x) < need:
            x = np.pad(x, (0, need - len(x)))  # silence-equivalent features for the missing frames
        return self._checked(self.compute(x, num_frames), num_frames)

    def _input(self, samples_16k, num_frames):
        x = _as_mono_float(samples_16k)
        if num_frames is None:
            num_frames = num_video_frames(len(x), SAMPLE_RATE, FPS)
        num_frames = int(num_frames)
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        return x, num_frames

    def _checked(self, feats, num_frames: int) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim or feats.shape[0] < num_frames:
            raise RuntimeError(f"{self.name} front-end returned shape {feats.shape}, "
                               f"expected at least ({num_frames}, {self.dim})")
        return feats

    def compute(self, samples: np.ndarray, num_frames: int) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _as_mono_float(samples) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"audio front-ends take mono 1-D samples at 16 kHz, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):  # int16 PCM given directly: scale to [-1, 1]
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio samples contain NaN or infinite values")
    return x


def make_windows(features: np.ndarray, window: int = 5) -> np.ndarray:
    """(T, D) -> (T, D, window): frame i gets rows i-w//2 .. i+w//2, clamped to [0, T-1] (edge padding)."""
    f = np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"make_windows expects (T, D) features, got shape {f.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    t = f.shape[0]
    if t == 0:
        return np.zeros((0, f.shape[1], window), f.dtype)
    half = window // 2
    idx = np.clip(np.arange(t)[:, None] + np.arange(-half, half + 1)[None, :], 0, t - 1)
    return np.ascontiguousarray(f[idx].transpose(0, 2, 1))
