"""Audio loading and saving for every front-end, plus THE rule that ties an audio length to video frames.

``load_audio`` decodes any file FFmpeg can read (wav int16/int32/float, mp3, flac, ogg, m4a/aac, the audio track
of an mp4/mov, ...) through PyAV, averages the channels to mono and resamples to the requested rate with a
polyphase filter. The input file is only read, never rewritten (the original's ``check_and_resample_audio``
overwrote the caller's wav and turned float wavs into silence, spec 3.6 / bugs 15-18).

Frame-count rule (used by every audio front-end, the dataset builder and inference)::

    num_video_frames(n, sr, fps) = 0                                 if n == 0
                                 = max(1, floor(n / sr * fps + 0.5))  otherwise

i.e. the duration in video frames rounded half-up, and at least one frame for any non-empty audio. At 16 kHz and
25 fps one frame is exactly 640 samples (40 ms), so an audio of F*640 samples covers exactly F frames, and a
24 kHz file of the same duration gives the same F after resampling (the ChatTTS bug, spec 3.6).
"""
from __future__ import annotations

import math
import os
import warnings
import wave

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError

# Decoded sample formats (PyAV names without the planar "p") -> scale that maps them to [-1, 1].
_INT_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def num_video_frames(num_samples: int, sample_rate: int, fps: float = 25.0) -> int:
    """Number of video frames an audio of ``num_samples`` at ``sample_rate`` covers (rule in the module doc)."""
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate}, {fps}")
    n = int(num_samples)
    if n <= 0:
        return 0
    # The tiny epsilon keeps exact multiples (e.g. 640 samples -> 1.0 frame) safe from float error.
    return max(1, int(math.floor(n * float(fps) / float(sample_rate) + 0.5 + 1e-9)))


def samples_per_frame(sample_rate: int = 16000, fps: float = 25.0) -> float:
    """Audio samples in one video frame (640 at 16 kHz / 25 fps)."""
    return sample_rate / fps


def _frame_to_float(frame) -> np.ndarray:
    """One decoded PyAV AudioFrame -> (channels, samples) float64 in [-1, 1]."""
    fmt = frame.format.name
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    planar = fmt.endswith("p")
    base = fmt[:-1] if planar else fmt
    if planar:
        data = data.reshape(channels, -1)
    else:  # packed formats come back as (1, samples * channels), interleaved
        data = data.reshape(-1, channels).T
    if base in ("flt", "dbl"):
        return data.astype(np.float64)
    if base == "u8":
        return (data.astype(np.float64) - 128.0) / 128.0
    if base in _INT_SCALE:
        return data.astype(np.float64) / _INT_SCALE[base]
    raise ValueError(f"unsupported decoded sample format {fmt!r}")


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited polyphase resampling; output length ceil(len * sr_out / sr_in)."""
    if sr_in == sr_out or len(x) == 0:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, int(sr_out) // g, int(sr_in) // g)


def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate`` (see module doc).

    Channels are averaged; integer PCM is scaled by its full range; float data louder than full scale is
    scaled down to peak 1 (with a warning) rather than clipped. Raises UserError for a missing file, a file
    that is not media, a file without an audio stream, and an empty or undecodable stream.
    """
    import av

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: audio file not found")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a file")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    chunks: list[np.ndarray] = []
    rate = None
    duration_s = None
    try:
        with av.open(path, mode="r") as container:
            if not container.streams.audio:
                raise UserError(f"{path}: the file has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                duration_s = float(stream.duration * stream.time_base)
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if rate is None:
                    rate = int(frame.sample_rate)
                elif int(frame.sample_rate) != rate:
                    raise UserError(f"{path}: the audio sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz)")
                chunks.append(_frame_to_float(frame).mean(axis=0))  # downmix by averaging the channels
    except UserError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from None
    if not chunks or rate is None:
        raise UserError(f"{path}: the audio stream is empty (no samples decoded)")
    x = np.concatenate(chunks)
    if duration_s is not None and 0 < round(duration_s * rate) < len(x):
        # AAC decodes whole 1024-sample frames: drop the encoder's padding after the stream's stated end
        x = x[:round(duration_s * rate)]
    if not np.all(np.isfinite(x)):
        raise UserError(f"{path}: the audio contains NaN or infinite samples")
    x = _resample(x, rate, sample_rate)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 1.0 + 1e-3:
        warnings.warn(f"{path}: samples exceed full scale (peak {peak:.3f}); scaled down to peak 1.0")
        x = x / peak
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def audio_duration(path: str) -> float:
    """Duration in seconds of the decoded audio of ``path`` (decodes the file; exact, not the container header)."""
    return len(load_audio(path, 16000)) / 16000.0


def save_wav(path: str, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono 16-bit PCM ``path`` atomically (temp file in the same folder + os.replace).

    Float input is taken as [-1, 1] (clipped), int16 input is written as is.
    """
    path = os.fspath(path)
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"save_wav expects mono 1-D samples, got shape {x.shape}")
    if x.dtype == np.int16:
        pcm = x
    elif np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"save_wav takes float samples in [-1, 1] or int16, got {x.dtype}")
    else:
        if not np.all(np.isfinite(x)):
            raise ValueError("save_wav: samples contain NaN or infinite values")
        pcm = np.round(np.clip(x.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)
    with atomic_write(path, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.astype("<i2").tobytes())
