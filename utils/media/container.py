"""The one place where a path becomes a libavformat container (used by video_io and audio_io).

Every input path of the toolkit (CLI, server uploads, data preparation, evaluation) opens media through
``open_media``, which accepts real media files only:

- a local regular file, opened through the ``file`` protocol with every other protocol disabled, so a name
  such as ``concat:a.mp4|b.mp4`` or ``http://...`` is just a file name and a container can never make
  libavformat open a URL;
- a real media container: demuxers outside ``MEDIA_DEMUXERS`` (concat/ffconcat lists, HLS/DASH playlists,
  SDP, image sequences, scripts...) are refused before anything they reference is opened (a self-referencing
  ffconcat file made libavformat open ~20,000 files);
- one-line errors without libav's raw ``[Errno 1094995529]`` text; an empty file says it is empty.

Streams: the video stream is libavformat's best one that is not an attached picture (cover art), so a cover
picture stored as a one-frame stream before the real video is skipped too; the audio stream is the one marked
default, else the best one.
"""
from __future__ import annotations

import os

from utils.errors import UserError

# Lazy imports below: av loads only when a file is opened (start-up time of the CLIs' --help and option errors).

# libavformat demuxer names (a demuxer whose name list contains one of these is accepted).
MEDIA_DEMUXERS = (
    "mov", "matroska", "avi", "flv", "asf", "mpeg", "mpegts", "ogg", "mxf", "dv", "nut", "rm", "ivf",
    "yuv4mpegpipe", "wav", "w64", "mp3", "flac", "aac", "loas", "ac3", "eac3", "dts", "truehd", "aiff", "caf",
    "amr", "amrnb", "amrwb", "au", "wv", "ape", "tta", "mpc", "mpc8", "voc", "tak", "shn",
)
# The first bytes of text files libavformat would treat as lists of other files.
_LISTS = ((b"ffconcat", "a concat list (ffconcat)"), (b"#EXTM3U", "an M3U/HLS playlist"),
          (b"[playlist]", "a PLS playlist"), (b"<?xml", "an XML manifest (DASH/IMF/playlist)"),
          (b"<MPD", "a DASH manifest"), (b"v=0", "an SDP session description"), (b"#!", "a script"))
# Still images (decoded with Pillow as one-frame videos by video_io, never through libavformat).
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"),
                (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


class MediaTooLong(UserError):
    """The media lasts longer than a configured limit (decoding stopped as soon as it was passed)."""

    def __init__(self, message: str, seconds: float, limit: float):
        super().__init__(message)
        self.seconds, self.limit = float(seconds), float(limit)


def av_message(e: BaseException) -> str:
    """libav's reason without errno numbers or file names ('invalid data', 'unexpected end of file', ...)."""
    import av

    if isinstance(e, av.error.InvalidDataError):
        return "invalid data"
    if isinstance(e, (EOFError, av.error.EOFError)):
        return "unexpected end of file"
    text = getattr(e, "strerror", None) or str(e)
    if not text or text.startswith("Error number"):
        return "damaged or unsupported data"
    return text.split(": '")[0].strip().rstrip(".")[:200].lower()


def check_file(path: str, what: str) -> None:
    """UserError unless ``path`` is an existing, non-empty regular file."""
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} file not found")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: the file is empty (0 bytes)")


def _head(path: str, n: int = 64) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e})") from None


def still_image_format(path: str) -> str:
    """'PNG' / 'JPEG' / 'BMP' / 'TIFF' / 'WEBP' when the file is a still image (by its bytes), else ''."""
    head = _head(path, 16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    return ""


def open_media(path, what: str = "media"):
    """Open a local media file for reading (rules in the module doc); UserError with one line otherwise."""
    import av

    path = os.fspath(path)
    check_file(path, what)
    head = _head(path).lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, desc in _LISTS:
        if head.startswith(magic):
            raise UserError(f"{path}: {desc}, not a media file (lists, playlists and other files that "
                            "refer to further files or URLs are not accepted)")
    if still_image_format(path):
        raise UserError(f"{path}: a still image, not a {what} file")
    try:
        container = av.open("file:" + os.path.abspath(path), mode="r", container_options={
            "protocol_whitelist": "file", "format_whitelist": ",".join(MEDIA_DEMUXERS)})
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as e:
        if isinstance(e, av.error.ArgumentError):  # probed as a demuxer outside MEDIA_DEMUXERS
            raise UserError(f"{path}: not an audio/video container this tool reads (see 'Accepted inputs' "
                            "in the README)") from None
        hint = " (not a media file FFmpeg can decode, or a damaged one)" if isinstance(e, av.error.InvalidDataError) \
            else ""
        raise UserError(f"{path}: cannot open as {what}: {av_message(e)}{hint}") from None
    return container


def video_stream(container):
    """The picture stream: libavformat's best video stream (a moving picture rather than a one-frame cover
    picture stream), never an attached picture (cover art); None if there is none."""
    import av

    pic = av.stream.Disposition.attached_pic
    moving = [s for s in container.streams.video if not (s.disposition & pic)]
    return _best(container, "video", moving)


def audio_stream(container):
    """The audio stream marked default, else libavformat's best one; None if there is no audio."""
    import av

    streams = list(container.streams.audio)
    for s in streams:
        if s.disposition & av.stream.Disposition.default:
            return s
    return _best(container, "audio", streams)


def _best(container, kind: str, candidates: list):
    """libavformat's best ``kind`` stream if it is one of ``candidates``, else the first; None if none."""
    import av

    if not candidates:
        return None
    try:
        best = container.streams.best(kind)
    except (av.error.FFmpegError, ValueError):
        best = None
    return best if best in candidates else candidates[0]


def header_seconds(stream, container) -> float:
    """Duration the file's header states for ``stream`` (0 when it does not say)."""
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return (container.duration or 0) / 1e6 if container.duration and container.duration > 0 else 0.0
