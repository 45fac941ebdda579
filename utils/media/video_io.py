"""The project's one video reader/writer (PyAV in-process: no PNG folders, no ffmpeg sub-processes).

Reading
    ``iter_frames`` streams RGB uint8 frames resampled to a CONSTANT rate by timestamp: output frame k shows the
    input frame that is on screen at time ``k / fps`` after the first frame (the last input frame whose
    presentation time is <= that time). This works for any input rate and for variable-frame-rate input; the
    output ends where the last input frame stops being displayed (its pts + its duration), so a 1 s clip gives
    ``ceil(1 s * fps)`` frames whatever its native rate. Times are compared as exact fractions, so a 30 fps input
    maps to 25 fps without float jitter. ``count_frames`` applies the same rule to the demuxed packet timestamps
    (no decoding). ``fps=None`` yields the native frames unchanged.

Writing
    ``VideoWriter`` encodes H.264 (libx264, yuv420p) plus optional AAC audio from a float32 mono array, into a
    temporary file in the destination folder that is renamed over the destination only when ``close`` succeeds,
    so an error never leaves a half-written video. yuv420p needs even sizes: a frame with an odd width or height
    is PADDED by one replicated row/column at the bottom/right (no content is lost; the file is one pixel larger).
    Audio is muxed interleaved with the video as frames arrive and kept exactly as given unless
    ``match_audio=True``, which trims or zero-pads it to the video duration (num_frames / fps).
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Optional

import numpy as np

from utils.errors import UserError
from utils.threads import decoder_threads

# Containers that libavformat opens as "video" but that are still images.
_IMAGE_FORMATS = ("image2", "_pipe", "apng", "gif")
# Output container by file extension (the temp file keeps the extension, but say it explicitly anyway).
_FORMAT_BY_EXT = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


@dataclass
class VideoInfo:
    """What ``probe`` found. Durations in seconds; audio fields are 0 when there is no audio stream."""

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    has_audio: bool
    audio_duration: float
    audio_sample_rate: int


def _av():
    import av

    return av


def _open_input(path):
    """Open ``path`` for reading; UserError (one line naming the file) for missing/unreadable/not-a-video."""
    av = _av()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: video file not found")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a file")
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from None
    fmt = container.format.name or ""
    if not container.streams.video or any(tag in fmt for tag in _IMAGE_FORMATS):
        container.close()
        what = "is an image, not a video" if container.streams.video else "has no video stream"
        raise UserError(f"{path}: the file {what}")
    return container


def _stream_rate(stream) -> Optional[Fraction]:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return None


def _packet_timeline(container, stream) -> list[tuple[Fraction, Fraction]]:
    """(pts seconds, duration seconds) of every video packet, sorted by presentation time (demux only)."""
    tb = Fraction(stream.time_base)
    out = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            continue
        out.append((ts * tb, (packet.duration or 0) * tb))
    out.sort(key=lambda x: x[0])
    return out


def _end_time(last_t: Fraction, last_dur: Fraction, prev_t: Optional[Fraction], rate: Optional[Fraction]) -> Fraction:
    """When the last frame stops being shown: its own duration, else the previous interval, else 1/rate."""
    if last_dur > 0:
        return last_t + last_dur
    if prev_t is not None and last_t > prev_t:
        return last_t + (last_t - prev_t)
    return last_t + (1 / rate if rate else Fraction(1, 25))


def _as_fraction(fps) -> Fraction:
    if fps is None or not (float(fps) > 0) or not math.isfinite(float(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def _num_outputs(span: Fraction, fps: Fraction) -> int:
    """Number of k >= 0 with k / fps < span."""
    return max(0, math.ceil(span * fps)) if span > 0 else 0


def probe(path) -> VideoInfo:
    """Size, rate, frame count, durations and audio facts of a video file (UserError for bad files).

    ``num_frames`` is the container's frame count, or the number of demuxed video packets when it does not say.
    ``fps`` is the native average rate.
    """
    av = _av()
    container = _open_input(path)
    try:
        vs = container.streams.video[0]
        cc = vs.codec_context
        width, height = int(cc.width), int(cc.height)
        if width <= 0 or height <= 0:
            raise UserError(f"{path}: the video stream has no frame size (corrupt file?)")
        rate = _stream_rate(vs)
        num_frames = int(vs.frames or 0)
        duration = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else 0.0
        if num_frames <= 0:
            timeline = _packet_timeline(container, vs)
            num_frames = len(timeline)
            if timeline and duration <= 0:
                prev = timeline[-2][0] if len(timeline) > 1 else None
                duration = float(_end_time(timeline[-1][0], timeline[-1][1], prev, rate) - timeline[0][0])
        if duration <= 0 and container.duration:
            duration = container.duration / 1e6
        if duration <= 0 and rate:
            duration = num_frames / float(rate)
        fps = float(rate) if rate else (num_frames / duration if duration > 0 else 0.0)
        has_audio = bool(container.streams.audio)
        audio_duration, audio_sr = 0.0, 0
        if has_audio:
            a = container.streams.audio[0]
            audio_sr = int(a.codec_context.sample_rate or a.rate or 0)
            if a.duration and a.time_base:
                audio_duration = float(a.duration * a.time_base)
            elif container.duration:
                audio_duration = container.duration / 1e6
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot read the video ({type(e).__name__}: {e})") from None
    finally:
        container.close()
    if num_frames <= 0:
        raise UserError(f"{path}: the video stream has no frames")
    return VideoInfo(width, height, fps, num_frames, duration, has_audio, audio_duration, audio_sr)


def count_frames(path, fps: Optional[float] = 25.0) -> int:
    """How many frames ``iter_frames(path, fps)`` yields (from packet timestamps; no decoding)."""
    av = _av()
    container = _open_input(path)
    try:
        vs = container.streams.video[0]
        timeline = _packet_timeline(container, vs)
        rate = _stream_rate(vs)
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot read the video ({type(e).__name__}: {e})") from None
    finally:
        container.close()
    if fps is None:
        return len(timeline)
    if not timeline:
        return 0
    prev = timeline[-2][0] if len(timeline) > 1 else None
    end = _end_time(timeline[-1][0], timeline[-1][1], prev, rate)
    return _num_outputs(end - timeline[0][0], _as_fraction(fps))


class _Shown:
    """A decoded frame and its time; converted to RGB once, only if some output frame shows it."""

    __slots__ = ("frame", "t", "dur", "_rgb")

    def __init__(self, frame, t, dur):
        self.frame, self.t, self.dur, self._rgb = frame, t, dur, None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self.frame.to_ndarray(format="rgb24")
            self.frame = None
        return self._rgb


def _decoded(container, stream, path) -> Iterator[_Shown]:
    """Decoded frames with their presentation time in seconds (Fraction)."""
    av = _av()
    tb = Fraction(stream.time_base)
    rate = _stream_rate(stream)
    last_t = None
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                t = frame.pts * tb
            else:  # no timestamp: assume it follows the previous frame at the nominal rate
                t = (last_t + (1 / rate if rate else Fraction(1, 25))) if last_t is not None else Fraction(0)
            last_t = t
            yield _Shown(frame, t, (frame.duration or 0) * tb)
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot decode the video ({type(e).__name__}: {e})") from None


# Seeking only pays off far from the start; below this, decoding through is as fast and has no edge cases.
_SEEK_MIN_S = 2.0


def iter_frames(path, fps: Optional[float] = 25.0, start_frame: int = 0,
                max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames of ``path`` at constant ``fps`` (see the module doc), streaming.

    ``start_frame``/``max_frames`` count OUTPUT frames (at ``fps``; native frames when ``fps`` is None).
    Far-away start frames are reached with a keyframe seek instead of decoding everything before them.
    """
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if max_frames is not None and max_frames <= 0:
        return
    container = _open_input(path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        vs.codec_context.thread_count = decoder_threads()   # utils.threads: the decode stage's share of the cores
        if fps is None:
            yield from _iter_native(container, vs, path, start_frame, max_frames)
        else:
            yield from _iter_resampled(container, vs, path, _as_fraction(fps), start_frame, max_frames)
    finally:
        container.close()


def _iter_native(container, vs, path, start_frame, max_frames):
    n = 0
    for i, shown in enumerate(_decoded(container, vs, path)):
        if i < start_frame:
            continue
        yield shown.rgb()
        n += 1
        if max_frames is not None and n >= max_frames:
            return


def _iter_resampled(container, vs, path, fps: Fraction, start_frame: int, max_frames):
    av = _av()
    rate = _stream_rate(vs)
    frames = _decoded(container, vs, path)
    first = next(frames, None)
    if first is None:
        return
    t0 = first.t
    k = start_frame
    target = t0 + Fraction(start_frame) / fps
    prev = first
    if target - t0 > _SEEK_MIN_S:
        try:
            container.seek(int(math.floor(target / Fraction(vs.time_base))), stream=vs, backward=True)
            frames = _decoded(container, vs, path)
            landed = next(frames, None)
        except av.error.FFmpegError:
            landed = None
        if landed is not None and landed.t <= target:
            prev = landed
        else:  # the seek overshot or failed: decode from the start instead
            container.seek(0, stream=vs, backward=True)
            frames = _decoded(container, vs, path)
            prev = next(frames)
    emitted = 0
    prev_prev_t = None
    for cur in frames:
        if cur.t <= prev.t:  # same or earlier timestamp: the later-decoded frame replaces it on screen
            prev = cur
            continue
        # Every output time before the new frame appears shows ``prev`` (all earlier times were emitted already).
        while t0 + Fraction(k) / fps < cur.t:
            yield prev.rgb()
            emitted += 1
            if max_frames is not None and emitted >= max_frames:
                return
            k += 1
        prev_prev_t, prev = prev.t, cur
    end = _end_time(prev.t, prev.dur, prev_prev_t, rate)
    while t0 + Fraction(k) / fps < end:
        yield prev.rgb()
        emitted += 1
        if max_frames is not None and emitted >= max_frames:
            return
        k += 1


def read_frames(path, fps: Optional[float] = 25.0, start_frame: int = 0, max_frames: Optional[int] = None) -> np.ndarray:
    """All (or ``max_frames``) frames as one (T, H, W, 3) uint8 array. Only for short clips; prefer iter_frames."""
    frames = list(iter_frames(path, fps, start_frame, max_frames))
    if not frames:
        raise UserError(f"{path}: no frames to read (start_frame={start_frame} past the end?)")
    return np.stack(frames)


def read_audio_track(path, sample_rate: int = 16000) -> np.ndarray:
    """The audio track of a video as float32 mono at ``sample_rate`` (UserError if it has none)."""
    from utils.media.audio_io import load_audio

    return load_audio(path, sample_rate)


class VideoWriter:
    """Write RGB uint8 frames as H.264/yuv420p (+ AAC audio) with an atomic rename on success.

    Use as a context manager: ``with VideoWriter("out.mp4", 25, audio=wav) as w: w.write(frame)``. An exception
    inside the block (or a failing close) deletes the temp file and leaves any existing ``path`` untouched.
    ``audio`` is a float mono array in [-1, 1] at ``sample_rate``; kept as given unless ``match_audio`` (then
    trimmed/zero-padded to num_frames / fps). Odd frame sizes are padded to even (see the module doc).
    ``gop_size`` sets the keyframe interval (None: x264's default, 250).
    """

    def __init__(self, path, fps: float = 25.0, audio: Optional[np.ndarray] = None, sample_rate: int = 16000,
                 crf: int = 18, preset: str = "medium", match_audio: bool = False, gop_size: Optional[int] = None,
                 threads: int = 0):
        self.path = os.fspath(path)
        self.threads = int(threads)  # x264 threads; 0 = x264's own choice (about 1.5 per core)
        self.fps = _as_fraction(fps)
        self.crf, self.preset, self.match_audio, self.gop_size = int(crf), str(preset), bool(match_audio), gop_size
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in _FORMAT_BY_EXT:
            raise UserError(f"{self.path}: unsupported video extension {ext!r} (use one of {sorted(_FORMAT_BY_EXT)})")
        self._format = _FORMAT_BY_EXT[ext]
        self.sample_rate = int(sample_rate)
        self.audio = None
        if audio is not None:
            a = np.asarray(audio)
            if a.ndim == 2 and 1 in a.shape:
                a = a.reshape(-1)
            if a.ndim != 1:
                raise ValueError(f"audio must be mono 1-D samples, got shape {a.shape}")
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"audio must be float samples in [-1, 1], got {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError("audio contains NaN or infinite samples")
            if self.sample_rate <= 0:
                raise ValueError(f"sample_rate must be positive, got {sample_rate}")
            self.audio = np.clip(a.astype(np.float32), -1.0, 1.0)
        self.num_frames = 0
        self._container = None
        self._vstream = self._astream = None
        self._size = None  # (H, W) of the first frame
        self._audio_pos = 0  # samples already sent to the encoder
        self._tmp = None
        self._closed = False

    # -- context manager --------------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    # -- writing ----------------------------------------------------------------------------------------------
    def _open(self, h: int, w: int):
        av = _av()
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        stem, ext = os.path.splitext(os.path.basename(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{ext}", dir=folder)
        os.close(fd)
        self._container = av.open(self._tmp, mode="w", format=self._format,
                                  options={"movflags": "+faststart"} if self._format in ("mp4", "mov") else {})
        vs = self._container.add_stream("libx264", rate=self.fps)
        vs.width, vs.height = w + (w % 2), h + (h % 2)
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": str(self.crf), "preset": self.preset,
                      **({"threads": str(self.threads)} if self.threads > 0 else {})}
        if self.gop_size:
            vs.codec_context.gop_size = int(self.gop_size)
        self._vstream = vs
        if self.audio is not None:
            a = self._container.add_stream("aac", rate=self.sample_rate)
            a.layout = "mono"
            self._astream = a
        self._size = (h, w)

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one RGB uint8 (H, W, 3) frame; every frame must have the first frame's size."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        f = np.asarray(frame_rgb)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frames must be RGB uint8 (H, W, 3), got {f.dtype} {f.shape}")
        h, w = f.shape[:2]
        if self._container is None:
            self._open(h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame {self.num_frames} is {w}x{h}, but the video is {self._size[1]}x{self._size[0]}")
        if h % 2 or w % 2:  # yuv420p needs even sizes: replicate the last row/column
            f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        av = _av()
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
        vf.pts = self.num_frames
        for packet in self._vstream.encode(vf):
            self._container.mux(packet)
        self.num_frames += 1
        # Keep the audio interleaved with the video so the muxer never buffers a whole stream.
        self._feed_audio(self._samples_at(self.num_frames), pad=False)

    def _samples_at(self, n_frames: int) -> int:
        return int(round(n_frames * self.sample_rate / self.fps))

    def _feed_audio(self, upto: int, pad: bool) -> None:
        """Encode audio samples [_audio_pos, upto); past the array's end, zeros if ``pad`` else stop."""
        if self._astream is None:
            return
        av = _av()
        if not pad:
            upto = min(upto, len(self.audio))
        step = 1024 * 16
        while self._audio_pos < upto:
            n = min(step, upto - self._audio_pos)
            chunk = self.audio[self._audio_pos:self._audio_pos + n]
            if len(chunk) < n:
                chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.float32)])
            af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            af.sample_rate = self.sample_rate
            af.time_base = Fraction(1, self.sample_rate)
            af.pts = self._audio_pos
            for packet in self._astream.encode(af):
                self._container.mux(packet)
            self._audio_pos += n

    def close(self) -> None:
        """Flush the encoders, finish the file and rename it to ``path`` (idempotent)."""
        if self._closed:
            return
        if self._container is None:
            self._closed = True
            raise ValueError(f"{self.path}: no frames were written")
        try:
            for packet in self._vstream.encode(None):
                self._container.mux(packet)
            if self._astream is not None:
                if self.match_audio:
                    self._feed_audio(self._samples_at(self.num_frames), pad=True)
                else:
                    self._feed_audio(len(self.audio), pad=False)
                for packet in self._astream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Drop everything written so far (no output file)."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a broken muxer may fail too; the temp file is removed anyway
                pass
            self._container = None
        if self._tmp and os.path.exists(self._tmp):
            os.remove(self._tmp)
        self._tmp = None


def write_video(path, frames: Iterable[np.ndarray], fps: float = 25.0, audio: Optional[np.ndarray] = None,
                sample_rate: int = 16000, **kw) -> int:
    """Write ``frames`` (iterable of RGB uint8) with optional audio; returns the number of frames written."""
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, **kw) as w:
        for f in frames:
            w.write(f)
        return w.num_frames


def convert_to_fps(src, dst, fps: float = 25.0, crf: int = 18, preset: str = "medium") -> VideoInfo:
    """Re-encode ``src`` to constant ``fps`` H.264 at ``dst`` (atomic), keeping its audio as mono AAC.

    The audio keeps its native sample rate; multi-channel audio is downmixed to mono (what lip-sync needs).
    """
    info = probe(src)
    if os.path.abspath(os.fspath(src)) == os.path.abspath(os.fspath(dst)):
        raise UserError(f"{dst}: convert_to_fps cannot overwrite its own input")
    audio, sr = None, 16000
    if info.has_audio and info.audio_sample_rate > 0:
        sr = info.audio_sample_rate
        audio = read_audio_track(src, sr)
    frames = iter_frames(src, fps=fps)
    try:
        from tqdm import tqdm

        frames = tqdm(frames, total=count_frames(src, fps), desc=f"convert to {fps:g} fps", unit="frame",
                      leave=False, disable=None)
    except ImportError:
        pass
    write_video(dst, frames, fps=fps, audio=audio, sample_rate=sr, crf=crf, preset=preset)
    return probe(dst)
