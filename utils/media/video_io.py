"""The project's one video reader/writer (PyAV in-process: no PNG folders, no ffmpeg sub-processes).

Reading
    Files are opened by ``utils.media.container.open_media`` (local media containers only; see there). The picture
    stream is the best video stream that is not cover art. A decoder always outputs frames in presentation
    order, but MPEG-4 Part 2 in AVI with packed B-frames (ordinary DivX/Xvid files) carries presentation
    timestamps that are out of order, and trusting them repeats some frames and drops others. So AVI frames are
    timed by their decoding timestamps (AVI's real clock: one chunk per frame time) and other streams' timestamps
    are sorted over a few frames: every source frame is shown once, in decoding-output order.
    ``iter_frames`` streams RGB uint8 frames resampled to a CONSTANT rate exactly as the original LawDNet's
    ``ffmpeg -r 25`` conversion picks them, i.e. the frames the command line ``ffmpeg -i in -vf fps=25 out`` (FFmpeg
    5.1) outputs (``FRAME_RULE``; tests/test_frame_rule.py compares both frame by frame):

    - every frame is due at the output tick NEAREST to its time: ``round((t - file start) * fps)``, halves away
      from zero (AV_ROUND_NEAR_INF), ``file start`` being the container's start time (the earliest stream), the
      command line's input offset;
    - output tick n shows the last frame due at or before n (a frame due at the same tick as the next one is
      dropped; a frame is repeated until the next one is due);
    - the output starts at the first frame's tick, or at tick 0 (the file's start, the first frame repeated up to
      its own tick) when the file has more than one stream: ffmpeg's constant-rate output does that for a file
      with sound, so a video that starts late (an edit list, the B-frame delay of an AVI) stays in step with the
      audio;
    - it ends at the tick nearest to the last frame's end (its time + its duration, else one frame at the
      stream's rate).

    This works for any input rate and for variable-frame-rate input. Times are exact fractions, so a 30 fps
    input maps to 25 fps without float jitter. ``count_frames`` applies the same rule to the demuxed packet
    timestamps when those can be trusted, and decodes (without colour conversion) when they cannot (AVI, packets
    without timestamps, damaged or truncated files), so it always equals what is yielded.
    ``fps=None`` yields the native frames unchanged.

    Frames are returned as a player shows them: the display matrix of phone videos (rotation) is applied, so
    ``probe`` reports the display size. 8/10/12-bit, any chroma layout and odd sizes are converted to RGB24.
    A still image (PNG, JPEG with its EXIF orientation, BMP, TIFF, WebP) reads as a one-frame video.
    Damaged input is decoded as far as it goes: undecodable packets are skipped and a stream that stops before the
    length its header states (a truncated download) is reported through ``notes`` (see ``utils.errors.warn``).

Writing
    ``VideoWriter`` encodes H.264 (libx264, yuv420p) plus optional AAC audio from float32 samples (mono, or
    (channels, samples) with up to 8 channels), into a temporary file in the destination folder that is renamed
    over the destination only when ``close`` succeeds, so an error never leaves a half-written video.
    Odd sizes: H.264 in 4:2:0 can only store even sizes (its cropping counts in whole chroma samples; libx264
    refuses an odd yuv420p size), so a frame with an odd width or height is written in 4:4:4 (yuv444p, the
    High 4:4:4 Predictive profile, which crops to any size): the file has the frames' exact size (a 257x193
    template stays 257x193). Players built on FFmpeg (VLC, mpv, ffplay, PyAV, OpenCV) play it; hardware decoders,
    Safari/QuickTime and some browsers play only 4:2:0. ``odd_size="pad"`` writes 4:2:0 instead, one replicated
    row/column larger at the bottom/right (docs/inputs-frame-rule.md has the measurements). Even sizes are
    always yuv420p. Audio is muxed interleaved with the video as
    frames arrive and kept exactly as given unless ``match_audio=True``, which trims or zero-pads it to the video
    duration (num_frames / fps).
"""
from __future__ import annotations

import collections
import heapq
import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Optional

import numpy as np

from utils.errors import UserError, warn
from utils.media.container import (
    audio_stream,
    av_message,
    header_seconds,
    open_media,
    still_image_format,
    video_stream,
)
from utils.media.formats import OUTPUT_FORMATS as _FORMAT_BY_EXT
from utils.media.timebase import FPS, SAMPLE_RATE
from utils.threads import decoder_threads

# Lazy imports below: av, cv2, PIL and tqdm load when a video is read or written (start-up time of the CLIs);
# audio_io inside read_audio_track.

# Output container by file extension (the temp file keeps the extension, but say it explicitly anyway).
# Largest frame accepted (8K UHD is 33.2 Mpx): bounds the memory one decoded frame can take.
MAX_PIXELS = 36_000_000
# The frame-choice rule iter_frames follows (recorded by data preparation, which redoes frame-dependent outputs made
# under another rule; markers without it were made by the old "last frame at or before k / fps" rule).
FRAME_RULE = "ffmpeg-fps-nearest/1"
# Decoded frames held back to sort their timestamps (a B-frame reorder depth larger than this is unheard of).
_REORDER = 4
STILL_FPS = FPS
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass
class VideoInfo:
    """What ``probe`` found. Durations in seconds; audio fields are 0 when there is no audio stream.

    ``width``/``height`` are the display size (after the rotation in the file's display matrix, ``rotation``
    degrees counter-clockwise); ``still`` is True for a still image (one frame)."""

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    has_audio: bool
    audio_duration: float
    audio_sample_rate: int
    rotation: int = 0
    still: bool = False
    audio_channels: int = 0


def _av():
    import av

    return av


def _check_pixels(path, w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise UserError(f"{path}: the frame size {w}x{h} is too large (at most {MAX_PIXELS / 1e6:.0f} megapixels)")


def _read_still(path) -> np.ndarray:
    """A still image as RGB uint8 as a viewer shows it (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            _check_pixels(path, *im.size)
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except UserError:
        raise
    except Exception as e:  # Pillow raises many types for damaged files
        raise UserError(f"{path}: cannot read the image ({type(e).__name__}: {str(e)[:120]})") from None
    return np.ascontiguousarray(rgb)


def _open_input(path):
    """Open ``path`` for reading -> (container, picture stream); UserError (one line naming the file) otherwise."""
    container = open_media(path, "video")
    vs = video_stream(container)
    if vs is None:
        what = "has only a cover picture, no video stream" if container.streams.video else "has no video stream"
        container.close()
        raise UserError(f"{path}: the file {what}")
    cc = vs.codec_context
    try:
        _check_pixels(path, int(cc.width or 0), int(cc.height or 0))
    except UserError:
        container.close()
        raise
    return container, vs


def _stream_rate(stream) -> Optional[Fraction]:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return None


def _packet_timeline(container, stream) -> Optional[list[tuple[Fraction, Fraction]]]:
    """(pts seconds, duration seconds) of every video packet, sorted by presentation time (demux only), or None
    when the packets cannot stand for the decoded frames (AVI, which may pack two frames into one packet;
    packets without timestamps; a damaged or truncated file) and the frames must be decoded to be counted."""
    av = _av()
    if "avi" in (container.format.name or "").split(","):
        return None
    tb = Fraction(stream.time_base)
    out = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            if packet.pts is None or packet.is_corrupt:
                return None
            out.append((packet.pts * tb, (packet.duration or 0) * tb))
    except (av.error.FFmpegError, OSError, EOFError):
        return None
    if stream.frames and int(stream.frames) != len(out):  # the index promises frames the file does not hold
        return None
    out.sort(key=lambda x: x[0])
    return out


def _end_time(last_t: Fraction, last_dur: Fraction, prev_t: Optional[Fraction], rate: Optional[Fraction]) -> Fraction:
    """When the last frame stops being shown: its own duration, else the previous interval, else 1/rate."""
    if last_dur > 0:
        return last_t + last_dur
    if prev_t is not None and last_t > prev_t:
        return last_t + (last_t - prev_t)
    return last_t + (1 / rate if rate else 1 / _as_fraction(FPS))


def _as_fraction(fps) -> Fraction:
    if fps is None or not (float(fps) > 0) or not math.isfinite(float(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def _round_near(x: Fraction) -> int:
    """libavutil's AV_ROUND_NEAR_INF: to the nearest integer, halves away from zero."""
    half = Fraction(1, 2)
    return math.floor(x + half) if x >= 0 else -math.floor(-x + half)


class _Clock:
    """The frame-choice rule of ffmpeg's ``fps`` filter as the ``ffmpeg`` command line feeds it (module doc).

    Times are seconds (Fraction) in the stream's own clock. ``slot(t)`` is the output frame index a frame shown from
    ``t`` is due at: ``t`` shifted by the file's start time (the command line's input offset, rounded to the stream
    time base), then rounded to the nearest output tick. ``end_slot`` is where the output stops: the last frame's
    time plus its duration, passed through microseconds and the time base as the command line rounds it."""

    def __init__(self, container, stream, fps: Fraction):
        self.tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1_000_000)
        self.fps = fps
        self.rate = _stream_rate(stream)
        start = container.start_time
        self.off = _round_near(Fraction(-int(start), 1_000_000) / self.tb) * self.tb if start is not None else 0
        # The command line's constant-rate output starts a file that has other streams (audio) at the file's
        # start, repeating the first frame until its own slot; a video-only file starts at its first frame.
        self.pad = len(container.streams) > 1

    def origin(self, first_slot: int) -> int:
        """The tick of output frame 0."""
        return 0 if self.pad and first_slot > 0 else first_slot

    def slot(self, t: Fraction) -> int:
        return _round_near((t + self.off) * self.fps)

    def end_slot(self, last_t: Fraction, last_dur: Fraction) -> int:
        us = _round_near((last_t + self.off) * 1_000_000)
        if last_dur > 0:
            us += _round_near(last_dur * 1_000_000)
        else:   # no duration: one frame at the stream's rate (the decoder's frame rate in the command line)
            us += math.floor(1_000_000 / (self.rate or _as_fraction(FPS)))
        return _round_near(_round_near(Fraction(us, 1_000_000) / self.tb) * self.tb * self.fps)


def probe(path) -> VideoInfo:
    """Display size, rate, frame count, durations and audio facts of a video file (UserError for bad files).

    ``num_frames`` is the container's frame count, or the number of demuxed video packets when it does not say.
    ``fps`` is the native average rate. The first frame is decoded (its rotation gives the display size).
    """
    path = os.fspath(path)
    if still_image_format(path):
        h, w = _read_still(path).shape[:2]
        return VideoInfo(w, h, STILL_FPS, 1, 1 / STILL_FPS, False, 0.0, 0, still=True)
    av = _av()
    container, vs = _open_input(path)
    try:
        cc = vs.codec_context
        width, height = int(cc.width), int(cc.height)
        if width <= 0 or height <= 0:
            raise UserError(f"{path}: the video stream has no frame size (corrupt file?)")
        rate = _stream_rate(vs)
        num_frames = int(vs.frames or 0)
        duration = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else 0.0
        first = next(_decoded(container, vs, path, []), None)
        if first is None:
            raise UserError(f"{path}: the video stream has no decodable frames")
        rotation = _rotation(first.frame)
        width, height = int(first.frame.width), int(first.frame.height)
        if rotation % 180:
            width, height = height, width
        if num_frames <= 0:
            container.close()
            container, vs = _open_input(path)
            timeline = _packet_timeline(container, vs) or []
            num_frames = len(timeline)
            if timeline and duration <= 0:
                prev = timeline[-2][0] if len(timeline) > 1 else None
                duration = float(_end_time(timeline[-1][0], timeline[-1][1], prev, rate) - timeline[0][0])
        if duration <= 0 and container.duration:
            duration = container.duration / 1e6
        if duration <= 0 and rate:
            duration = num_frames / float(rate)
        fps = float(rate) if rate else (num_frames / duration if duration > 0 else 0.0)
        a = audio_stream(container)
        audio_duration, audio_sr, channels = 0.0, 0, 0
        if a is not None:
            audio_sr = int(a.codec_context.sample_rate or a.rate or 0)
            channels = int(a.codec_context.channels or 0)
            audio_duration = header_seconds(a, container)
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot read the video ({av_message(e)})") from None
    finally:
        container.close()
    if num_frames <= 0:
        raise UserError(f"{path}: the video stream has no frames")
    return VideoInfo(width, height, fps, num_frames, duration, a is not None, audio_duration, audio_sr,
                     rotation=rotation, audio_channels=channels)


def count_frames(path, fps: Optional[float] = FPS) -> int:
    """How many frames ``iter_frames(path, fps)`` yields (from packet timestamps when they can be trusted, else by
    decoding without colour conversion)."""
    path = os.fspath(path)
    if still_image_format(path):
        _read_still(path)
        return 1
    av = _av()
    container, vs = _open_input(path)
    try:
        timeline = _packet_timeline(container, vs)
        if timeline is None:
            container.close()
            container, vs = _open_input(path)
            vs.thread_type = "AUTO"
            if fps is None:
                return sum(1 for _ in _decoded(container, vs, path, []))
            return sum(1 for _ in _resampled(container, vs, path, _as_fraction(fps), 0, None, []))
        clock = _Clock(container, vs, _as_fraction(fps)) if fps is not None else None
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: cannot read the video ({av_message(e)})") from None
    finally:
        container.close()
    if fps is None:
        return len(timeline)
    if not timeline:
        return 0
    return max(0, clock.end_slot(*timeline[-1]) - clock.origin(clock.slot(timeline[0][0])))


def _rotation(frame) -> int:
    """Counter-clockwise rotation (0/90/180/270) a player applies to ``frame`` (its display matrix)."""
    try:
        r = float(getattr(frame, "rotation", 0) or 0)
    except (TypeError, ValueError):
        return 0
    return int(round(r / 90.0)) % 4 * 90


class _Shown:
    """A decoded frame and its time; converted to (rotated) RGB once, only if some output frame shows it."""

    __slots__ = ("frame", "t", "dur", "_rgb")

    def __init__(self, frame, t, dur):
        self.frame, self.t, self.dur, self._rgb = frame, t, dur, None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            k = _rotation(self.frame) // 90
            rgb = self.frame.to_ndarray(format="rgb24")
            self._rgb = np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb
            self.frame = None
        return self._rgb


def _raw_frames(container, stream, state: dict):
    """Decoded frames in decoder output order; damaged packets are skipped and counted in ``state``."""
    av = _av()
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError, EOFError) as e:  # the container breaks off: flush what we have
            state["cut"] = av_message(e)
            try:
                yield from stream.codec_context.decode(None)
            except av.error.FFmpegError:
                pass
            return
        if packet.is_corrupt:
            state["cut"] = "a damaged or incomplete packet"
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            state["bad"] = state.get("bad", 0) + 1
            state.setdefault("reason", av_message(e))
            continue
        yield from frames


def _decoded(container, stream, path, notes) -> Iterator[_Shown]:
    """Decoded frames with presentation times in seconds (Fraction): the stream's timestamps sorted (see the
    module doc) over a window of ``_REORDER`` frames. Reports damage and early ends through ``notes``."""
    tb = Fraction(stream.time_base)
    rate = _stream_rate(stream)
    step = (1 / rate if rate else 1 / _as_fraction(FPS)) / tb     # one frame in time-base units
    # AVI has no presentation timestamps, only one chunk per frame time: the decoding timestamp of what the
    # decoder outputs is the frame's time (libavcodec's own pick for such streams), also right after a seek
    avi = "avi" in (container.format.name or "").split(",")
    state: dict = {}
    heap: list = []
    held: collections.deque = collections.deque()
    last_ts = None
    last = None
    for frame in _raw_frames(container, stream, state):
        ts = frame.dts if avi else frame.pts if frame.pts is not None else frame.dts
        if ts is None:  # no timestamp: assume it follows the previous frame at the nominal rate
            ts = last_ts + step if last_ts is not None else 0
        last_ts = ts if last_ts is None else max(last_ts, ts)
        heapq.heappush(heap, ts)
        held.append(frame)
        if len(held) > _REORDER:
            f = held.popleft()
            last = _Shown(f, heapq.heappop(heap) * tb, (f.duration or 0) * tb)
            yield last
    while held:
        f = held.popleft()
        last = _Shown(f, heapq.heappop(heap) * tb, (f.duration or 0) * tb)
        yield last
    what = os.path.basename(os.fspath(path))
    if state.get("bad"):
        warn(f"{what}: {state['bad']} video packet(s) could not be decoded ({state['reason']}); the frames "
             "around them may be missing", notes)
    # the stream's own length, else the file's (which may include a longer audio track: be more lenient)
    own = bool(stream.duration)
    stated = header_seconds(stream, container)
    if last is not None and stated > 0:
        start = Fraction(stream.start_time or 0) * tb
        got = float(_end_time(last.t, last.dur, None, rate) - start)
        if stated - got > (max(0.5, 0.02 * stated) if own else max(2.0, 0.2 * stated)):
            warn(f"{what}: the video stops at {got:.1f} s but the file says it lasts {stated:.1f} s "
                 "(truncated or damaged file?)", notes)
            return
    if "cut" in state:
        warn(f"{what}: the video data breaks off ({state['cut']}); decoded what was there (truncated file?)",
             notes)


# Seeking only pays off far from the start; below this, decoding through is as fast and has no edge cases.
_SEEK_MIN_S = 2.0


def iter_frames(path, fps: Optional[float] = FPS, start_frame: int = 0, max_frames: Optional[int] = None,
                notes: Optional[list] = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames of ``path`` at constant ``fps`` (see the module doc), streaming.

    ``start_frame``/``max_frames`` count OUTPUT frames (at ``fps``; native frames when ``fps`` is None).
    Far-away start frames are reached with a keyframe seek instead of decoding everything before them.
    Warnings about damaged or truncated input go to ``notes`` (printed when it is None).
    """
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if max_frames is not None and max_frames <= 0:
        return
    path = os.fspath(path)
    if still_image_format(path):
        if start_frame == 0:
            yield _read_still(path)
        return
    container, vs = _open_input(path)
    try:
        vs.thread_type = "AUTO"
        vs.codec_context.thread_count = decoder_threads()   # utils.threads: the decode stage's share of the cores
        if fps is None:
            shown = _native(container, vs, path, start_frame, max_frames, notes)
        else:
            shown = _resampled(container, vs, path, _as_fraction(fps), start_frame, max_frames, notes)
        size, warned = None, False
        for s in shown:
            rgb = s.rgb()
            if size is None:
                size = rgb.shape[:2]
            elif rgb.shape[:2] != size:   # the stream changes resolution: keep one frame size (writers need it)
                import cv2

                if not warned:
                    warn(f"{os.path.basename(path)}: the frame size changes mid-stream ({size[1]}x{size[0]} -> "
                         f"{rgb.shape[1]}x{rgb.shape[0]}); later frames are scaled to the first size", notes)
                    warned = True
                rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            yield rgb
    finally:
        container.close()


def _native(container, vs, path, start_frame, max_frames, notes):
    n = 0
    for i, shown in enumerate(_decoded(container, vs, path, notes)):
        if i < start_frame:
            continue
        yield shown
        n += 1
        if max_frames is not None and n >= max_frames:
            return


def _resampled(container, vs, path, fps: Fraction, start_frame: int, max_frames, notes) -> Iterator[_Shown]:
    """The decoded frame ffmpeg's ``fps`` filter shows at each output frame k >= start_frame (module doc).

    Output frame k is tick ``n = origin + k``. Like the filter, with two frames in hand the older one
    is shown at n until the newer one's slot is <= n (then the newer one replaces it), and after the last frame
    the output stops at ``end_slot``."""
    av = _av()
    clock = _Clock(container, vs, fps)
    frames = _decoded(container, vs, path, notes)
    first = next(frames, None)
    if first is None:
        return
    n = clock.origin(clock.slot(first.t)) + start_frame
    held = first
    if start_frame and Fraction(start_frame) / fps > _SEEK_MIN_S:
        try:
            container.seek(int(math.floor((n / fps - clock.off) / Fraction(vs.time_base))), stream=vs,
                           backward=True)
            frames = _decoded(container, vs, path, notes)
            landed = next(frames, None)
        except av.error.FFmpegError:
            landed = None
        if landed is not None and clock.slot(landed.t) <= n:
            held = landed
        else:  # the seek overshot or failed: decode from the start instead
            container.seek(0, stream=vs, backward=True)
            frames = _decoded(container, vs, path, notes)
            held = next(frames)
    left = max_frames if max_frames is not None else -1
    for cur in frames:
        due = clock.slot(cur.t)
        while due > n:          # ``held`` stays on screen until the tick ``cur`` is due at
            yield held
            n += 1
            left -= 1
            if left == 0:
                return
        held = cur
    end = clock.end_slot(held.t, held.dur)
    while n < end:
        yield held
        n += 1
        left -= 1
        if left == 0:
            return


def read_frames(path, fps: Optional[float] = FPS, start_frame: int = 0, max_frames: Optional[int] = None,
                notes: Optional[list] = None) -> np.ndarray:
    """All (or ``max_frames``) frames as one (T, H, W, 3) uint8 array. Only for short clips; prefer iter_frames."""
    frames = list(iter_frames(path, fps, start_frame, max_frames, notes=notes))
    if not frames:
        raise UserError(f"{path}: no frames to read (start_frame={start_frame} past the end?)")
    return np.stack(frames)


def read_audio_track(path, sample_rate: int = SAMPLE_RATE, notes: Optional[list] = None) -> np.ndarray:
    """The audio track of a video as float32 mono at ``sample_rate`` (UserError if it has none)."""
    from utils.media.audio_io import load_audio

    return load_audio(path, sample_rate, notes=notes)


class VideoWriter:
    """Write RGB uint8 frames as H.264/yuv420p (+ AAC audio) with an atomic rename on success.

    Use as a context manager: ``with VideoWriter("out.mp4", 25, audio=wav) as w: w.write(frame)``. An exception
    inside the block (or a failing close) deletes the temp file and leaves any existing ``path`` untouched.
    ``audio`` is float samples in [-1, 1] at ``sample_rate``: 1-D mono or (channels, samples) with up to 8
    channels (``layout``: an FFmpeg layout name such as "5.1", default by channel count); kept as given unless
    ``match_audio`` (then trimmed/zero-padded to num_frames / fps). Odd frame sizes are kept exactly (yuv444p), or
    padded to even in yuv420p with ``odd_size="pad"`` (module doc).
    ``gop_size`` sets the keyframe interval (None: x264's default, 250).
    """

    def __init__(self, path, fps: float = FPS, audio: Optional[np.ndarray] = None, sample_rate: int = SAMPLE_RATE,
                 crf: int = 18, preset: str = "medium", match_audio: bool = False, gop_size: Optional[int] = None,
                 layout: Optional[str] = None, threads: int = 0, odd_size: str = "exact"):
        self.path = os.fspath(path)
        if odd_size not in ("exact", "pad"):
            raise ValueError(f"odd_size must be 'exact' or 'pad', got {odd_size!r}")
        self.odd_size = odd_size
        self._pad = False  # pad odd frames to even (yuv420p) instead of writing them in yuv444p
        self.threads = int(threads)  # x264 threads; 0 = x264's own choice (about 1.5 per core)
        self.fps = _as_fraction(fps)
        self.crf, self.preset, self.match_audio, self.gop_size = int(crf), str(preset), bool(match_audio), gop_size
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in _FORMAT_BY_EXT:
            raise UserError(f"{self.path}: unsupported video extension {ext!r} (use one of {sorted(_FORMAT_BY_EXT)})")
        self._format = _FORMAT_BY_EXT[ext]
        self.sample_rate = int(sample_rate)
        self.audio = None
        self.layout = None
        if audio is not None:
            a = np.asarray(audio)
            if a.ndim == 1:
                a = a[None, :]
            elif a.ndim == 2 and a.shape[0] > min(8, a.shape[1]) and a.shape[1] <= 8:
                a = a.T                                   # (samples, channels) -> (channels, samples)
            if a.ndim != 2 or not 1 <= a.shape[0] <= 8:
                raise ValueError(f"audio must be mono 1-D or (channels<=8, samples), got shape {a.shape}")
            self.layout = layout or _DEFAULT_LAYOUTS[a.shape[0]]
            if len(_av().AudioLayout(self.layout).channels) != a.shape[0]:
                raise ValueError(f"layout {self.layout!r} does not have {a.shape[0]} channels")
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
        odd = bool(w % 2 or h % 2)
        self._pad = odd and self.odd_size == "pad"
        vs.width, vs.height = (w + (w % 2), h + (h % 2)) if self._pad else (w, h)
        vs.pix_fmt = "yuv444p" if odd and not self._pad else "yuv420p"
        vs.options = {"crf": str(self.crf), "preset": self.preset,
                      **({"threads": str(self.threads)} if self.threads > 0 else {})}
        if self.gop_size:
            vs.codec_context.gop_size = int(self.gop_size)
        self._vstream = vs
        if self.audio is not None:
            a = self._container.add_stream("aac", rate=self.sample_rate)
            a.layout = self.layout
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
        if self._pad:  # yuv420p needs even sizes: replicate the last row/column
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
        total = self.audio.shape[1]
        if not pad:
            upto = min(upto, total)
        step = 1024 * 16
        while self._audio_pos < upto:
            n = min(step, upto - self._audio_pos)
            chunk = self.audio[:, self._audio_pos:self._audio_pos + n]
            if chunk.shape[1] < n:
                chunk = np.pad(chunk, ((0, 0), (0, n - chunk.shape[1])))
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self.layout)
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
                    self._feed_audio(self.audio.shape[1], pad=False)
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


def write_video(path, frames: Iterable[np.ndarray], fps: float = FPS, audio: Optional[np.ndarray] = None,
                sample_rate: int = SAMPLE_RATE, **kw) -> int:
    """Write ``frames`` (iterable of RGB uint8) with optional audio; returns the number of frames written."""
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, **kw) as w:
        for f in frames:
            w.write(f)
        return w.num_frames


def convert_to_fps(src, dst, fps: float = FPS, crf: int = 18, preset: str = "medium",
                   notes: Optional[list] = None) -> VideoInfo:
    """Re-encode ``src`` to constant ``fps`` H.264 at ``dst`` (atomic), keeping its audio as mono AAC.

    The audio keeps its native sample rate; multi-channel audio is downmixed to mono (what lip-sync training
    needs). Warnings about damaged input go to ``notes``.
    """
    info = probe(src)
    if os.path.abspath(os.fspath(src)) == os.path.abspath(os.fspath(dst)):
        raise UserError(f"{dst}: convert_to_fps cannot overwrite its own input")
    audio, sr = None, SAMPLE_RATE
    if info.has_audio and info.audio_sample_rate > 0:
        sr = info.audio_sample_rate
        audio = read_audio_track(src, sr, notes=notes)
    frames = iter_frames(src, fps=fps, notes=notes)
    try:
        from tqdm import tqdm

        frames = tqdm(frames, total=count_frames(src, fps), desc=f"convert to {fps:g} fps", unit="frame",
                      leave=False, disable=None)
    except ImportError:
        pass
    write_video(dst, frames, fps=fps, audio=audio, sample_rate=sr, crf=crf, preset=preset)
    return probe(dst)
