"""Audio loading and saving for every front-end, plus THE rule that ties an audio length to video frames.

``decode_audio`` decodes the audio of any media file (wav int16/int32/float, mu-law, mp3, flac, ogg/opus, m4a/aac,
ac3, the audio track of an mp4/mov/mkv/avi, ...; opened by ``utils.media.container.open_media``) at its native
rate and channels; ``load_audio`` downmixes that to mono (``downmix``) and resamples to the requested rate with
scipy's polyphase filter or, for the official preprocessing profile, resampy's ``kaiser_best`` filter as the
original did (docs/original.md; config/profile.py). With several audio streams the default one is used. Damaged packets
(an incomplete last AC-3 frame, a truncated download) are skipped: what decodes is kept and a warning says what
was lost. With ``max_seconds`` decoding stops as soon as the limit is passed (``MediaTooLong``), so memory stays
bounded by the limit whatever the file's header claims. The input file is only read, never rewritten (the
original's ``check_and_resample_audio`` overwrote the caller's wav and turned float wavs into silence, see
docs/original.md).

The frame-count rule and the time base (25 fps, 16 kHz) live in ``utils/media/timebase.py``.
"""
from __future__ import annotations

import math
import os
import wave
from typing import Optional

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError, warn
from utils.media.container import MediaTooLong, audio_stream, av_message, header_seconds, open_media
from utils.media.timebase import SAMPLE_RATE

# Lazy imports below: av when a file is decoded, resampy (optional, the official profile's resampler) and
# scipy.signal (about 1.3 s of start-up) when audio is resampled.

# Decoded sample formats (PyAV names without the planar "p") -> scale that maps them to [-1, 1].
_INT_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_float(frame) -> np.ndarray:
    """One decoded PyAV AudioFrame -> (channels, samples) float32 in [-1, 1]."""
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
        return data.astype(np.float32)
    if base == "u8":
        return ((data.astype(np.float32) - 128.0) / 128.0)
    if base in _INT_SCALE:
        return (data.astype(np.float64) / _INT_SCALE[base]).astype(np.float32)
    raise ValueError(f"unsupported decoded sample format {fmt!r}")


# Downmix weights by channel name (ITU-R BS.775 style: centre 1, front left/right 1/sqrt(2), everything else 1/2,
# LFE 0), normalised to sum 1, so mono and stereo reduce to a plain average.
_DOWNMIX = {"FC": 1.0, "FL": 0.5 ** 0.5, "FR": 0.5 ** 0.5, "FLC": 0.5 ** 0.5, "FRC": 0.5 ** 0.5, "LFE": 0.0,
            "LFE2": 0.0}


def downmix(x: np.ndarray, channel_names=None) -> np.ndarray:
    """(channels, samples) -> (samples,) float64 mono with the weights above (a plain mean when names are unknown
    or there are at most two channels)."""
    x = np.asarray(x)
    if x.ndim == 1:
        return x.astype(np.float64)
    if x.shape[0] <= 2 or not channel_names or len(channel_names) != x.shape[0]:
        return x.mean(axis=0, dtype=np.float64)
    w = np.array([_DOWNMIX.get(n, 0.5) for n in channel_names], np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    return w @ x.astype(np.float64)


RESAMPLERS = ("polyphase", "kaiser_best")


def resample(x: np.ndarray, sr_in: int, sr_out: int, method: str = "polyphase") -> np.ndarray:
    """Band-limited resampling of float64 samples.

    ``polyphase``: scipy ``resample_poly``, output length ceil(len * sr_out / sr_in). ``kaiser_best``: resampy's
    best windowed-sinc filter, what the original ran before its DeepSpeech features (output length
    floor(len * sr_out / sr_in), as resampy gives it)."""
    if method not in RESAMPLERS:
        raise ValueError(f"unknown resampler {method!r}; choose one of {RESAMPLERS}")
    if sr_in == sr_out or len(x) == 0:
        return x
    if method == "kaiser_best":
        import resampy

        return resampy.resample(np.asarray(x, np.float64), int(sr_in), int(sr_out), filter="kaiser_best")
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(x, int(sr_out) // g, int(sr_in) // g)


class DecodedAudio:
    """Native-rate samples of one audio stream: ``samples`` (channels, n) float32, ``rate``, ``layout`` name and
    ``channel_names`` (e.g. FL, FR, FC, LFE, BL, BR)."""

    def __init__(self, samples: np.ndarray, rate: int, layout: str, channel_names: list):
        self.samples, self.rate, self.layout, self.channel_names = samples, int(rate), layout, list(channel_names)

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate if self.rate else 0.0

    def mono(self) -> np.ndarray:
        return downmix(self.samples, self.channel_names)


def decode_audio(path, max_seconds: Optional[float] = None, notes: Optional[list] = None) -> DecodedAudio:
    """Decode the audio stream of ``path`` at its native rate and channels (see the module doc).

    Raises UserError for a missing, empty or non-media file, a file without audio, an empty or undecodable
    stream, and ``MediaTooLong`` once more than ``max_seconds`` have been decoded.
    """
    import av

    path = os.fspath(path)
    name = os.path.basename(path)
    chunks: list[np.ndarray] = []
    rate = layout = None
    names: list = []
    total = last_frame = 0
    bad, cut, reason = 0, "", ""
    container = open_media(path, "audio")
    try:
        stream = audio_stream(container)
        if stream is None:
            raise UserError(f"{path}: the file has no audio stream")
        stated = header_seconds(stream, container)
        # the stream's own length, else the file's (which may include a longer video): be more lenient then
        slack = max(0.5, 0.02 * stated) if stream.duration else max(2.0, 0.2 * stated)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, EOFError) as e:
                cut = av_message(e)
                break
            if packet.is_corrupt:
                cut = "a damaged or incomplete packet"
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:   # e.g. an incomplete last AC-3 frame: keep the rest
                bad += 1
                reason = reason or av_message(e)
                continue
            for frame in frames:
                if frame.samples == 0:
                    continue
                if rate is None:
                    rate, layout = int(frame.sample_rate), frame.layout.name
                    names = [c.name for c in frame.layout.channels]
                elif int(frame.sample_rate) != rate:
                    raise UserError(f"{path}: the audio sample rate changes mid-stream ({rate} -> "
                                    f"{frame.sample_rate} Hz)")
                elif len(frame.layout.channels) != len(names):
                    raise UserError(f"{path}: the number of audio channels changes mid-stream")
                chunks.append(_frame_to_float(frame))
                total += frame.samples
                last_frame = frame.samples
                if max_seconds is not None and total > max_seconds * rate:
                    raise MediaTooLong(f"{path}: the audio lasts more than {max_seconds:g} s (the limit)",
                                       total / rate, max_seconds)
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot decode the audio ({av_message(e)})") from None
    finally:
        container.close()
    if not chunks or rate is None:
        detail = f" ({reason})" if reason else ""
        raise UserError(f"{path}: the audio stream is empty (no samples decoded){detail}")
    x = np.concatenate(chunks, axis=1)
    del chunks
    if stream.duration and 0 < x.shape[1] - round(stated * rate) < last_frame and not bad:
        # AAC decodes whole 1024-sample frames: drop the encoder's padding after the stream's stated end (only
        # within the last frame: a header that states less than whole frames decode, as a truncated AVI's does,
        # is wrong, and every complete packet is kept, as ffmpeg keeps them)
        x = x[:, :round(stated * rate)]
    if not np.all(np.isfinite(x)):
        raise UserError(f"{path}: the audio contains NaN or infinite samples")
    got = x.shape[1] / rate
    if bad:
        warn(f"{name}: {bad} audio packet(s) could not be decoded ({reason}); kept the {got:.2f} s that "
             "decoded", notes)
    if stated > 0 and stated - got > slack:
        warn(f"{name}: the audio stops at {got:.1f} s but the file says it lasts {stated:.1f} s "
             "(truncated or damaged file?)", notes)
    elif cut:
        warn(f"{name}: the audio data breaks off ({cut}); decoded what was there (truncated file?)", notes)
    return DecodedAudio(x, rate, layout, names)


# A lossy codec (AAC, MP3) or the resampler turns full-scale input into peaks a little above 1 (our own dubs read
# back at 1.002); that is clipped quietly. Louder than this is float data really beyond full scale: scaled, warned.
OVERSHOOT = 1.06


def within_full_scale(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``x`` (any shape) in [-1, 1] as float32: scaled to peak 1 when its peak is above ``OVERSHOOT``, else
    clipped; and the peak it had. The one rule for the features' input and the output track."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > OVERSHOOT:
        x = x / peak
    return np.clip(x, -1.0, 1.0).astype(np.float32), peak


def finish_mono(x: np.ndarray, rate: int, sample_rate: int, path: str = "", notes: Optional[list] = None,
                resampler: str = "polyphase") -> np.ndarray:
    """Mono native-rate samples -> float32 at ``sample_rate`` in [-1, 1] (louder float data scaled to peak 1)."""
    x, peak = within_full_scale(resample(x, rate, sample_rate, resampler))
    if peak > OVERSHOOT:
        warn(f"{os.path.basename(os.fspath(path))}: samples exceed full scale (peak {peak:.3f}); scaled down to "
             "peak 1.0", notes)
    return x


def load_audio(path: str, sample_rate: int = SAMPLE_RATE, resampler: str = "polyphase", notes: Optional[list] = None,
               max_seconds: Optional[float] = None) -> np.ndarray:
    """Decode the audio of ``path`` to mono float32 at ``sample_rate`` (see the module doc).

    Channels are downmixed (``downmix``); integer PCM is scaled by its full range; float data louder than full
    scale is scaled down to peak 1 (with a warning) rather than clipped; ``resampler`` is ``polyphase`` or
    ``kaiser_best`` (see ``resample``). Raises UserError for a missing file, a
    file that is not media, a file without an audio stream, and an empty or undecodable stream.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    d = decode_audio(path, max_seconds=max_seconds, notes=notes)
    return finish_mono(d.mono(), d.rate, sample_rate, path, notes, resampler)


def audio_duration(path: str) -> float:
    """Duration in seconds of the decoded audio of ``path`` (decodes the file; exact, not the container header)."""
    return len(load_audio(path, SAMPLE_RATE)) / float(SAMPLE_RATE)


def save_wav(path: str, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
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
