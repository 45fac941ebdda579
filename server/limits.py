"""Checks of uploaded media against the server's limits; every failure is an ApiError with the reason."""
from __future__ import annotations

from server.errors import ApiError, user_message
from utils.errors import UserError


def _header_seconds(path: str) -> float:
    """Duration the container claims (0 when unknown); a cheap pre-check before decoding everything."""
    import av

    try:
        with av.open(path) as c:
            if c.streams.audio:
                s = c.streams.audio[0]
                if s.duration and s.time_base:
                    return float(s.duration * s.time_base)
            return (c.duration or 0) / 1e6
    except Exception:  # the decoder gives the real reason below
        return 0.0


def load_audio_upload(path: str, max_seconds: float):
    """Decode an uploaded audio (or a video's audio track) for dubbing, within ``max_seconds``.

    Returns an ``inference.DubAudio``; raises ApiError 422 for undecodable/empty media or too long audio.
    """
    from inference.dubber import load_dub_audio

    def too_long(sec):
        return ApiError(422, "audio_too_long", f"the audio lasts {sec:.1f} s; the limit is {max_seconds:g} s")

    claimed = _header_seconds(path)
    if max_seconds and claimed > max_seconds + 0.5:
        raise too_long(claimed)
    try:
        audio = load_dub_audio(path)
    except UserError as e:
        raise ApiError(422, "unprocessable_media", user_message(e, {path: "the uploaded audio"})) from None
    if max_seconds and audio.seconds > max_seconds + 0.02:
        raise too_long(audio.seconds)
    return audio
