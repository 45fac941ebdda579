"""Checks of uploaded media against the server's limits; every failure is an ApiError with the reason.

Audio is decoded only up to ``max_audio_seconds`` (decoding stops as soon as the limit is passed, whatever the
header says), so the memory one upload can take is bounded by the limit.
"""
from __future__ import annotations

from server.errors import ApiError, user_message
from utils.errors import UserError
from utils.media.container import MediaTooLong, audio_stream, header_seconds, open_media

# Lazy import below: inference.dubber (torch) loads with the first upload, not when the app module is imported
# (start-up time).


def _header_seconds(path: str) -> float:
    """Duration the container claims (0 when unknown); a cheap pre-check before decoding."""
    try:
        c = open_media(path, "audio")
    except UserError:  # the decoder gives the reason below
        return 0.0
    try:
        return header_seconds(audio_stream(c), c)
    finally:
        c.close()


def load_audio_upload(path: str, max_seconds: float):
    """Decode an uploaded audio (or a video's audio track) for dubbing, within ``max_seconds``.

    Returns an ``inference.DubAudio``; raises ApiError 422 for undecodable/empty media or too long audio.
    """
    from inference.dubber import load_dub_audio

    def too_long(sec, more=False):
        return ApiError(422, "audio_too_long", f"the audio lasts {'more than ' if more else ''}{sec:.1f} s; "
                                               f"the limit is {max_seconds:g} s")

    claimed = _header_seconds(path)
    if max_seconds and claimed > max_seconds + 0.5:
        raise too_long(claimed)
    try:
        audio = load_dub_audio(path, max_seconds=(max_seconds + 0.02) if max_seconds else None)
    except MediaTooLong as e:
        raise too_long(e.seconds, more=True) from None
    except UserError as e:
        raise ApiError(422, "unprocessable_media", user_message(e, {path: "the uploaded audio"})) from None
    return audio
