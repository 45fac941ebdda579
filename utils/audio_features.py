"""One interface for the four audio front-ends: per-video-frame feature rows with an exact length.

Every front-end is an :class:`AudioFrontEnd`: ``frontend(samples_16k, num_frames)`` returns a float32 array of
shape ``(num_frames, frontend.dim)``, EXACTLY one row per 25 fps video frame, row ``i`` describing the audio
around ``[i*40 ms, (i+1)*40 ms)`` (640 samples at 16 kHz).

Length rule (replaces the original's "+3 frames" mismatch and the dp1/dp2 off-by-one, spec 3.3 / bugs 12-13):

* ``num_frames=None`` means ``utils.audio_io.num_video_frames(len(samples), 16000)`` (duration rounded half-up).
* Audio shorter than ``num_frames * 640`` samples is padded with digital silence BEFORE feature extraction, so
  the missing frames get the features the front-end gives for silence (not zeros, not repeated rows).
* Audio longer than that is cut to ``num_frames * 640`` samples plus a small look-ahead (``context_samples``, so
  recurrent / attention models still see a little real audio after the last frame); the surplus features are
  dropped. Row ``i`` is therefore always paired with video frame ``i`` (offset 0).

Front-ends (``get_frontend(name, model_path, device)``):

* ``mel`` (dim 80, no weights): log-mel at 16 kHz, see :class:`MelFrontEnd` for the layout.
* ``deepspeech`` (dim 29): TF DeepSpeech v0.1 ``output_graph.pb`` run in PyTorch (``utils/deepspeech_tf.py``).
* ``deepspeech2`` (dim 29): deepspeech.pytorch ``LibriSpeech_Pretrained_v3.ckpt`` (``utils/deepspeech2.py``).
* ``hubert`` (dim = hidden size): local Hugging Face HuBERT / wav2vec2 folder (``utils/hubert_features.py``).

The generator sees a window of rows per frame: :func:`make_windows` (spec 3.2).
"""
from __future__ import annotations

import os

import numpy as np

from config.config import AUDIO_FEATURES
from utils.audio_io import load_audio, num_video_frames
from utils.errors import UserError

SAMPLE_RATE = 16000
FPS = 25.0
FRAME_SAMPLES = 640  # 16000 / 25: audio samples per video frame

# Which weights each learned front-end needs (used in error messages).
MODEL_HELP = {
    "deepspeech": "the TF DeepSpeech v0.1 frozen graph output_graph.pb",
    "deepspeech2": "deepspeech.pytorch's LibriSpeech_Pretrained_v3.ckpt (PyTorch-Lightning checkpoint)",
    "hubert": "a local Hugging Face HuBERT or wav2vec2 model folder (config.json + weights)",
}


class AudioFrontEnd:
    """Base class: turns 16 kHz mono samples into exactly one feature row per 25 fps video frame.

    Subclasses set ``name``, ``dim`` and ``context_samples`` and implement :meth:`compute`, which receives audio
    already cut/padded to at least ``num_frames * 640`` samples and must return at least ``num_frames`` rows.
    The length rule is documented in the module docstring.
    """

    name: str = ""
    dim: int = 0
    context_samples: int = 0  # real audio after the last frame that the model may still look at

    def __call__(self, samples_16k: np.ndarray, num_frames: int | None = None) -> np.ndarray:
        x = _as_mono_float(samples_16k)
        if num_frames is None:
            num_frames = num_video_frames(len(x), SAMPLE_RATE, FPS)
        num_frames = int(num_frames)
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        if num_frames == 0:
            return np.zeros((0, self.dim), np.float32)
        need = num_frames * FRAME_SAMPLES
        x = x[: need + self.context_samples]
        if len(x) < need:
            x = np.pad(x, (0, need - len(x)))  # silence-equivalent features for the missing frames
        feats = np.asarray(self.compute(x, num_frames), dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim or feats.shape[0] < num_frames:
            raise RuntimeError(f"{self.name} front-end returned shape {feats.shape}, "
                               f"expected at least ({num_frames}, {self.dim})")
        return np.ascontiguousarray(feats[:num_frames])

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


# ----------------------------------------------------------------------------------------------- mel


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


def torch_device(device: str):
    """``torch.device`` for a user-given string; UserError when CUDA (or that GPU index) is not there."""
    import torch

    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, ValueError) as e:
        raise UserError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev


def _require_model_path(name: str, model_path: str, want_dir: bool) -> str:
    kind = "folder" if want_dir else "file"
    hint = f"'{name}' audio features need {MODEL_HELP[name]}; pass it with --audio_model_path"
    if not model_path:
        raise UserError(f"no model given: {hint}")
    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise UserError(f"{path}: not found; {hint}")
    if want_dir and not os.path.isdir(path):
        raise UserError(f"{path}: expected a model {kind}; {hint}")
    if not want_dir and not os.path.isfile(path):
        raise UserError(f"{path}: expected a model {kind}; {hint}")
    return path


def get_frontend(name: str, model_path: str = "", device: str = "cpu") -> AudioFrontEnd:
    """Build the front-end ``name`` (one of config.AUDIO_FEATURES); ``model_path`` holds its weights."""
    key = str(name).strip().lower()
    if key not in AUDIO_FEATURES:
        raise UserError(f"unknown audio feature {name!r}; choose one of {', '.join(AUDIO_FEATURES)}")
    if key == "mel":
        return MelFrontEnd()
    if key == "deepspeech":
        from utils.deepspeech_tf import DeepSpeechFrontEnd

        return DeepSpeechFrontEnd(_require_model_path(key, model_path, want_dir=False), device=device)
    if key == "deepspeech2":
        from utils.deepspeech2 import DeepSpeech2FrontEnd

        return DeepSpeech2FrontEnd(_require_model_path(key, model_path, want_dir=False), device=device)
    from utils.hubert_features import HubertFrontEnd

    return HubertFrontEnd(_require_model_path(key, model_path, want_dir=True), device=device)


def make_windows(features: np.ndarray, window: int = 5) -> np.ndarray:
    """(T, D) -> (T, D, window): frame i gets rows i-w//2 .. i+w//2, clamped to [0, T-1] (edge padding, spec 3.2)."""
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


def extract_features(audio_path: str, name: str = "mel", model_path: str = "", num_frames: int | None = None,
                     device: str = "cpu") -> np.ndarray:
    """Load ``audio_path`` (any format, resampled to 16 kHz) and return its (num_frames, dim) features.

    Builds the front-end on every call; to process many files keep one ``get_frontend(...)`` object instead.
    """
    frontend = get_frontend(name, model_path, device)
    return frontend(load_audio(audio_path, SAMPLE_RATE), num_frames)
