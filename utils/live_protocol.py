"""The live sessions' wire format (docs/live.md), shared by the server (server/live_routes.py, server/webrtc.py)
and its clients (client_LawDNet.py, benchmarks/bench_stream.py). Only numpy and the standard library: a client
needs neither torch nor the web framework.

Time base. Output slot k is one 25 fps frame plus 640 samples of 16 kHz audio. Every timestamp is computed from
integer counts (frame index, sample position), never accumulated: ``pts(k) = k / 25`` s, RTP video time ``k *
3600`` (90 kHz), audio ``k * 640`` samples, so a session that has run for hours is still exactly in sync.

WebSocket messages, client -> server: binary int16 LE mono PCM; text ``{"type": "end" | "interrupt" | "close"}``.
Server -> client: text ``ready`` / ``interrupted`` / ``closed`` / ``error`` JSON, and one binary message per
frame: ``uint32 LE n | n bytes of JSON header | JPEG | int16 LE PCM``.
"""
from __future__ import annotations

import json
import struct
import time
from fractions import Fraction

import numpy as np

from utils.media.timebase import FPS, FRAME_SAMPLES  # noqa: F401  (part of the protocol: 640 samples a frame)
from utils.media.timebase import SAMPLE_RATE as RATE  # noqa: F401  (the wire's audio rate)

FRAMES_PER_S = int(FPS)              # the time base as an integer, for exact timestamp arithmetic
WS_PATH = "/v1/live/ws"
VIDEO_CLOCK = 90000                  # RTP clock of video
VIDEO_TICKS = VIDEO_CLOCK // FRAMES_PER_S     # 3600 per frame

# text messages
READY, INTERRUPTED, CLOSED, ERROR = "ready", "interrupted", "closed", "error"
END, INTERRUPT, CLOSE = "end", "interrupt", "close"
CLIENT_MESSAGES = (END, INTERRUPT, CLOSE)


def pts(k: int) -> float:
    """Presentation time (s) of output frame ``k``: one division of integers, exact at any length."""
    return float(Fraction(int(k), FRAMES_PER_S))


def audio_pts(k: int) -> int:
    """16 kHz sample position of the first audio sample of frame ``k``."""
    return int(k) * FRAME_SAMPLES


def video_rtp(k: int) -> int:
    return int(k) * VIDEO_TICKS


def control(kind: str) -> str:
    """A client -> server text message."""
    if kind not in CLIENT_MESSAGES:
        raise ValueError(f"client messages are {CLIENT_MESSAGES}, not {kind!r}")
    return json.dumps({"type": kind})


def parse_control(text: str):
    """The type of a client text message, or None when it is not one."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        return None
    return kind if kind in CLIENT_MESSAGES else None


def pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> int16 LE bytes."""
    return (np.clip(np.asarray(samples, np.float32), -1, 1) * 32767).astype("<i2").tobytes()


def frame_header(k: int, *, speech: bool, audio_pos: int, template_index: int, dropped: bool, video_bytes: int,
                 audio_samples: int, idle: bool, interrupted: bool = False) -> dict:
    """``speech``: the frame carries pushed audio; ``idle``: neither its sound nor its picture holds speech (the
    mouth is closed); ``interrupted``: it was silenced by an interrupt after it was formed."""
    return {"type": "frame", "k": int(k), "pts": round(pts(k), 3), "speech": bool(speech), "idle": bool(idle),
            "audio_pos": int(audio_pos), "template_index": int(template_index), "dropped": bool(dropped),
            "interrupted": bool(interrupted), "video_bytes": int(video_bytes), "audio_samples": int(audio_samples),
            "server_time": round(time.time(), 4)}


def pack_frame(header: dict, jpeg: bytes, pcm: bytes) -> bytes:
    """One binary WebSocket message: uint32 LE header length, JSON header, JPEG bytes, int16 LE PCM."""
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + jpeg + pcm


def unpack_frame(data: bytes) -> tuple[dict, bytes, np.ndarray]:
    """Inverse of ``pack_frame``: (header, JPEG bytes, int16 PCM)."""
    (n,) = struct.unpack_from("<I", data, 0)
    head = json.loads(data[4:4 + n])
    v0 = 4 + n
    v1 = v0 + int(head["video_bytes"])
    return head, data[v0:v1], np.frombuffer(data[v1:], "<i2")
