"""WebRTC transport of live sessions (aiortc): the browser's audio track in, the dubbed video + audio tracks out.

The browser sends an SDP offer (``POST /v1/live/offer``) with one audio track (microphone, or a speech file
played through WebAudio) and receives two tracks. Both are fed from the session's timeline at each slot's
send time: video frame k has RTP time k * 3600 (90 kHz), its audio the two 20 ms halves k * 640 and
k * 640 + 320 (16 kHz, the second half 20 ms later), so the RTCP sender reports of both tracks map the same
media time to the same wall time and the browser plays them in sync.

A server bound to a loopback address also keeps its ICE candidates on 127.0.0.1 (aioice skips loopback by
default): such a server serves local browsers only, and its media then never leaves the machine.
"""
from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

import av
import numpy as np

from utils import live_protocol as proto
from utils.media.timebase import FRAME_SAMPLES, SAMPLE_RATE

# Lazy imports below: aiortc and aioice are optional (WebRTC only); available() tells whether they are installed.

log = logging.getLogger("lawdnet.server")
HALF = FRAME_SAMPLES // 2          # each video frame's audio goes out as two 20 ms halves
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_loopback_patched = False


def available() -> bool:
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


def use_loopback_ice(host: str) -> None:
    """Gather ICE host candidates on 127.0.0.1 only when the server listens on loopback."""
    global _loopback_patched
    if host not in _LOOPBACK or _loopback_patched:
        return
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []
    _loopback_patched = True


def _track_class():
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class QueueTrack(MediaStreamTrack):
        """A track whose frames are put in by the session pump (already timed); None ends it."""

        def __init__(self, kind: str):
            super().__init__()
            self.kind = kind
            self.queue: asyncio.Queue = asyncio.Queue()

        async def recv(self):
            item = await self.queue.get()
            if item is None:
                self.stop()
                raise MediaStreamError
            return item

    return QueueTrack


async def _pump(session, video, audio):
    """Session timeline -> output tracks, each slot at its send time."""
    loop = asyncio.get_running_loop()
    try:
        async for slot, pic in session.frames():
            vf = av.VideoFrame.from_ndarray(pic.frame, format="rgb24")
            vf.pts, vf.time_base = proto.video_rtp(slot.k), Fraction(1, proto.VIDEO_CLOCK)
            video.queue.put_nowait(vf)
            pcm = np.frombuffer(proto.pcm16(slot.audio), "<i2")
            half = proto.FRAME_SAMPLES // 2
            for h in range(2):
                af = av.AudioFrame.from_ndarray(pcm[None, h * half:(h + 1) * half], format="s16", layout="mono")
                af.sample_rate, af.time_base = proto.RATE, Fraction(1, proto.RATE)
                af.pts = proto.audio_pts(slot.k) + h * half          # from the integer k: no drift
                if h == 0:
                    audio.queue.put_nowait(af)
                else:
                    loop.call_later(0.02, audio.queue.put_nowait, af)
    finally:
        video.queue.put_nowait(None)
        audio.queue.put_nowait(None)


async def _consume(track, session):
    """The browser's audio (Opus decoded to 48 kHz) -> 16 kHz mono pushed into the session."""
    from aiortc.mediastreams import MediaStreamError

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    while not session.closed:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        for f in resampler.resample(frame):
            session.push(f.to_ndarray().reshape(-1))


async def answer_offer(manager, template_id: str, sdp: str, sdp_type: str) -> dict:
    """Open a session for a browser's offer; returns the answer plus the session's description."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    session = manager.open(template_id, kind="webrtc", jpeg=False)
    pc = RTCPeerConnection()
    QueueTrack = _track_class()
    video, audio = QueueTrack("video"), QueueTrack("audio")
    tasks = []
    done = []

    async def shutdown(reason):
        if done:
            return
        done.append(reason)
        session.close(reason)
        for t in tasks:
            if t is not asyncio.current_task():
                t.cancel()
        await pc.close()

    @pc.on("connectionstatechange")
    async def _state():
        if pc.connectionState in ("failed", "closed"):
            await shutdown("the browser disconnected" if pc.connectionState == "failed" else "closed")

    @pc.on("track")
    def _track(track):
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(_consume(track, session)))

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        pc.addTrack(audio)
        pc.addTrack(video)
        await pc.setLocalDescription(await pc.createAnswer())
    except BaseException:
        await shutdown("bad offer")
        raise

    async def pump_then_close():
        try:
            await _pump(session, video, audio)
        finally:
            await shutdown(session.close_reason or "ended")

    tasks.append(asyncio.ensure_future(pump_then_close()))
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, **session.public()}
