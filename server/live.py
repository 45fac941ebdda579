"""Live dubbing sessions: speech pushed in as it is produced, dubbed frames with that audio sent out in real time.

Timeline. Output slot k is one 25 fps frame plus its 40 ms of audio (640 samples at 16 kHz); it is sent at
``E_k = T0 + 40 ms * k`` (from the integer k, never accumulated: utils/live_protocol.py). Slots are formed in
batches of b frames by the session's producer thread, ``lead`` seconds before the first slot's send time (enough
to render the batch). The batch adapts to the load: b is the smallest size (1 ... ``--live_batch_size``) whose
expected render time (a per-batch plus a per-frame cost measured at warm-up, scaled by how much slower the recent
batches ran) fits in 80 % of its own playing time, so an idle machine renders 1-2 frames at a time (low latency)
and a loaded one larger batches (``--no-live_adaptive_batch`` keeps b fixed). Forming a batch decides
what each slot plays: the next 640 samples of pushed speech, or idle silence. Every slot shows the template
frame of the ping-pong schedule (index k) rendered by the model with that slot's audio window, so the idle
template keeps moving with a closed, still mouth (silence features) and nothing jumps when speech starts or
stops: a window straddling the boundary sees silence on one side, exactly as offline with leading silence.

Jitter buffer. While idle, pushed speech starts as soon as its first frame plus the generator's look-ahead (2
frames for the 5-frame window, plus the front-end's right context) plus half an input chunk of cushion is there: it
is placed in the LAST slots of the batch being formed, so it starts within one batch. While speaking, a batch
waits (until shortly before it must be rendered) for its frames plus look-ahead; if the input falls behind, the
missing slots become silence (an underrun, counted) and the next speech starts again as above. ``end`` marks
the end of an utterance: its last frames are sent at once with silence as look-ahead.

Interrupt (barge-in). ``interrupt()`` drops the queued speech, silences the slots already formed but not yet sent
(their sound stops at once) and re-renders those that still show speech with silence features when there is time
before they are due, so the mouth closes into the idle template within a few frames, on the same ping-pong
schedule (no jump); speech pushed afterwards starts as from idle, within one batch.

Batches of all sessions are formed on one shared 40 ms * B grid, so their model calls arrive together at the
server's frame batcher (server/batcher.py) and are merged. Before the first slot the producer renders two idle
batches (not sent) to measure the render time the lead is planned with. A frame whose render is still in flight at
its send time may go out up to GRACE_S late (counted as late; its timestamp is unchanged); one not rendered by then
is replaced by the previous picture (counted as dropped); a producer that falls behind skips rendering until it is
on time.
Nothing is written to disk; a session holds its template (ref-counted) until it ends.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional

import av
import cv2
import numpy as np
import torch

from inference.frames import chunk_frames, iter_schedule
from server.errors import ApiError
from server.storage import new_id
from utils.audio.streaming import StreamingFeatures
from utils.heap import settle_heap
from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE
from utils.media.video_io import iter_frames

log = logging.getLogger("lawdnet.server")

FRAME_S = 1.0 / FPS
RATE = SAMPLE_RATE                  # short names in the timeline arithmetic
FR = FRAME_SAMPLES
UTILISATION = 0.8                  # adaptive batch: the expected render may use this share of the batch's time
START_MARGIN = 1.5                 # the load ratio the lead plans for until a dozen batches are measured
LATENCIES_KEPT = 500               # per-frame latencies kept for the statistics
_EPOCH = time.monotonic()          # the shared batch grid of every session starts here
MAX_LAG_S = 3.0                    # a consumer this far behind the timeline ends its session
GRACE_S = 0.02                     # a frame whose render is still in flight at its send time may be this late


@dataclass(eq=False)
class Slot:
    k: int
    send_at: float
    audio: np.ndarray                 # (640,) float32 at 16 kHz, what is played with this frame
    speech: bool                      # carries pushed audio (False: idle silence)
    audio_pos: int = -1               # position (16 kHz samples) of audio[0] in the pushed stream; -1 idle
    template_index: int = 0
    frame: Optional[np.ndarray] = None   # RGB uint8 once rendered
    jpeg: Optional[bytes] = None
    dropped: bool = False
    audio_in_at: float = 0.0          # when the last sample of this slot's speech was pushed (monotonic)
    shows_speech: bool = False        # the picture is rendered from a window holding speech
    interrupted: bool = False         # silenced by an interrupt before it was sent
    rerender: bool = False            # ... and its picture, still showing speech, is to be rendered idle
    picture: Optional[np.ndarray] = None  # the template frame (kept until sent: an interrupt re-renders it)


class _Resampler:
    """Pushed PCM at any rate -> float32 16 kHz mono, stateful across chunks (no clicks at chunk borders)."""

    def __init__(self, rate: int):
        self.rate = int(rate)
        self._r = None
        if self.rate != RATE:
            self._r = av.AudioResampler(format="flt", layout="mono", rate=RATE)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._r is None:
            return x

        frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._r.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _grid_start(after: float, period: float) -> float:
    """The first instant of the shared batch grid at or after ``after``."""
    n = np.ceil((after - _EPOCH) / period)
    return _EPOCH + n * period


class LiveSession:
    def __init__(self, dubber, prepared, template_id: str, *, batch_size: int = 4, lead_s: float = 0.0,
                 sample_rate: int = RATE, jpeg_quality: int = 0, idle_timeout_s: float = 60.0,
                 on_close=None, metrics=None, kind: str = "ws", adaptive: bool = True):
        if int(sample_rate) < 8000 or int(sample_rate) > 192000:
            raise ApiError(400, "bad_request", f"sample_rate must be 8000-192000 Hz, got {sample_rate}")
        self.id = new_id()
        self.kind = kind
        self.template_id = template_id
        self.created = time.time()
        self.dubber, self.prepared = dubber, prepared
        self.features = StreamingFeatures(dubber.frontend)
        self.half = int(dubber.window) // 2
        self.B = max(1, int(batch_size))           # the largest batch
        self.adaptive = bool(adaptive) and self.B > 1
        self.b = self.B                             # the current batch size (adaptive: 1 ... B)
        self.lookahead = self.half * FR + self.features.right        # samples needed after a frame
        self.fixed_lead = float(lead_s)
        self.jpeg_quality = int(jpeg_quality)
        self.idle_timeout_s = float(idle_timeout_s)
        self.sample_rate = int(sample_rate)
        self._resample = _Resampler(self.sample_rate)
        self._on_close = on_close
        self.metrics = metrics
        self._cond = threading.Condition()
        self._queue = np.zeros(0, np.float32)     # pushed 16 kHz audio not yet placed on the timeline
        self._queue_pos = 0                        # stream position of _queue[0]
        self._ended = False                        # the queued audio is a complete utterance
        self._chunks: collections.deque = collections.deque(maxlen=8)   # sizes of recent pushes (samples)
        self.last_input = time.monotonic()
        self._playing = False
        keep = (self.features.left + self.half) * FR
        self._hist = np.zeros(keep, np.float32)    # audio played just before the next batch (silence at start)
        self._slots: collections.deque = collections.deque()
        self._last_picture: Optional[Slot] = None
        # render time model: cost(b) = a + c * b seconds (measured at warm-up) times the recent load ratio
        self._cost = (0.0, 0.5 * FRAME_S)
        self._load: collections.deque = collections.deque([1.0], maxlen=12)   # measured / modelled render time
        self._arrivals: collections.deque = collections.deque()   # (stream end position, time) per push
        self._latencies: collections.deque = collections.deque(maxlen=LATENCIES_KEPT)
        self._interrupt: Optional[dict] = None    # the last interrupt: its time and what was seen since
        self._reset_history = False
        self._k_next = 0                           # the first slot not handed to the transport yet
        self._interrupts_seen = 0                  # interrupts so far (a batch formed across one is silenced)
        self._started = False                      # t0 is final (set by the producer after its warm-up batch)
        self._rendering = -1                       # first slot of the batch being rendered (-1: none)
        self.closed = False
        self.close_reason = ""
        self.error: Optional[BaseException] = None
        self.stats = collections.Counter()
        self.t0 = _grid_start(time.monotonic() + 2 * self.B * FRAME_S + 0.2, self.B * FRAME_S)
        self._thread = threading.Thread(target=self._run, name=f"lawdnet-live-{self.id[:6]}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ input side (any thread)
    def push_pcm16(self, data: bytes) -> None:
        """Append little-endian int16 mono PCM at the session's sample rate."""
        if len(data) % 2:
            raise ApiError(400, "bad_request", "PCM chunks must hold whole 16-bit samples")
        self.push(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0)

    def push(self, samples: np.ndarray) -> None:
        """Append float mono samples in [-1, 1] at the session's sample rate."""
        x = self._resample(np.asarray(samples, np.float32).reshape(-1))
        if not len(x):
            return
        with self._cond:
            if self.closed:
                return
            if self._ended:           # a new utterance after an ended one that is still queued
                self._ended = False
            self._queue = np.concatenate([self._queue, np.clip(x, -1, 1)])
            self._chunks.append(len(x))
            self.last_input = time.monotonic()
            self._arrivals.append((self._queue_pos + len(self._queue), self.last_input))
            self.stats["samples_in"] += len(x)
            self._cond.notify_all()

    def end_utterance(self) -> None:
        """No more audio follows for now: send what is queued without waiting for look-ahead."""
        with self._cond:
            self._ended = bool(len(self._queue))
            self._cond.notify_all()

    def interrupt(self) -> dict:
        """Barge-in: drop the speech pushed but not yet shown. Queued audio is discarded, formed slots not yet sent
        become silent at once (and are re-rendered idle when there is time before they are due), the history of
        the feature windows becomes silence; the next speech starts as from idle. Returns what was dropped."""
        with self._cond:
            if self.closed:
                return {"samples_dropped": 0, "frames_silenced": 0, "k": self._k_next}
            now = time.monotonic()
            queued = len(self._queue)
            self._queue_pos += queued
            self._queue = np.zeros(0, np.float32)
            self._arrivals.clear()
            self._ended = False
            self._playing = False
            self._reset_history = True
            silenced = self._silence(self._slots)          # formed, not yet sent
            self._interrupts_seen += 1
            self._interrupt = {"at": now, "resume_pos": self._queue_pos, "last_speech": None, "first_idle": None}
            self.stats["interrupts"] += 1
            self.stats["samples_dropped_by_interrupt"] += queued + silenced * FR
            k_next = self._k_next
            self._cond.notify_all()
        log.info("live session %s interrupted: %d queued samples and %d formed frames dropped", self.id, queued,
                 silenced)
        return {"samples_dropped": queued + silenced * FR, "frames_silenced": silenced, "k": k_next}

    @staticmethod
    def _silence(slots) -> int:
        """Interrupted: the slots' sound becomes silence, their pictures showing speech are to be rendered idle."""
        n = 0
        for s in slots:
            if s.speech or s.shows_speech:
                n += int(s.speech)
                s.audio = np.zeros(FR, np.float32)
                s.speech, s.audio_pos, s.interrupted, s.rerender = False, -1, True, s.shows_speech
        return n

    @property
    def pushed_samples(self) -> int:
        return int(self.stats["samples_in"])

    # ------------------------------------------------------------------ timeline
    def send_time(self, k: int) -> float:
        return self.t0 + k * FRAME_S

    def expected_render_s(self, b: int, typical: bool = False) -> float:
        """Render time (model + JPEG) of a batch of ``b`` to plan for: the warm-up's cost model scaled by the
        slowest (``typical``: the median) load ratio of the last dozen batches (CPU load varies). Until a dozen
        batches of the timeline have been measured, the slowest is taken as at least START_MARGIN (the first
        ones also meet the sender, the client and the first JPEGs, which the warm-up did not)."""
        a, c = self._cost
        if typical:
            ratio = float(np.median(self._load))
        else:
            ratio = max(max(self._load), START_MARGIN if len(self._load) < self._load.maxlen else 0.0)
        return ratio * (a + c * b)

    @property
    def render_s(self) -> float:
        return self.expected_render_s(self.b)

    def _choose_batch(self) -> int:
        """Adaptive: the smallest batch whose typical render (the median load of the last dozen batches) fits in
        UTILISATION of its playing time; going down a size needs twice the margin (no flapping between sizes). A
        single slow batch does not switch sizes: the lead, planned for the slowest, absorbs it."""
        if not self.adaptive:
            return self.B
        for b in range(1, self.B + 1):
            share = UTILISATION if b >= self.b else UTILISATION / 2
            if self.expected_render_s(b, typical=True) <= share * b * FRAME_S:
                return b
        return self.B

    def lead_for(self, b: int) -> float:
        if self.fixed_lead > 0:
            return self.fixed_lead
        return min(max(1.25 * self.expected_render_s(b) + 0.03, 1.5 * FRAME_S), 2 * self.B * FRAME_S)

    @property
    def lead(self) -> float:
        return self.lead_for(self.b)

    def _jitter(self) -> int:
        return max(self._chunks) if self._chunks else FR

    def _cushion(self) -> int:
        """Samples kept queued beyond the look-ahead when speech starts: half the largest recent push. (With 40 ms
        pushes a whole one would hold every frame back by one more push; half keeps 20 ms against jitter, and
        the wait up to each batch's deadline absorbs more.)"""
        return self._jitter() // 2

    def _take(self, n_frames: int, partial_ok: bool) -> list:
        """Pop up to ``n_frames`` frames of queued audio: [(audio, stream position, arrival of its last sample)]."""
        out = []
        for _ in range(n_frames):
            if len(self._queue) >= FR or (partial_ok and len(self._queue)):
                a = self._queue[:FR]
                end = self._queue_pos + len(a)
                while len(self._arrivals) > 1 and self._arrivals[0][0] < end:
                    self._arrivals.popleft()
                arrived = self._arrivals[0][1] if self._arrivals else time.monotonic()
                out.append((np.pad(a, (0, FR - len(a))) if len(a) < FR else a, self._queue_pos, arrived))
                self._queue = self._queue[FR:]
                self._queue_pos += len(a)
            else:
                break
        if not len(self._queue):
            self._ended = False
        return out

    def _form(self, n: int, B: int) -> tuple[list, np.ndarray]:
        """Decide the content of slots n..n+B-1; returns (slots, tentative look-ahead audio). Adaptive: a speaking
        session whose input holds fewer than B frames with their look-ahead at the deadline forms a smaller
        batch of those instead of an underrun (the batch size had just grown, or the input is late)."""
        deadline = self.send_time(n) - 1.3 * self.expected_render_s(B) - 0.02
        with self._cond:
            while not self.closed:
                avail, now = len(self._queue), time.monotonic()
                if self._ended:
                    break
                if self._playing and avail >= B * FR + self.lookahead:
                    break
                if not self._playing and (avail == 0 or avail >= B * FR + self.lookahead + self._cushion()):
                    break
                if now >= deadline:
                    break
                self._cond.wait(timeout=min(0.01, deadline - now))
            avail = len(self._queue)
            quiet = time.monotonic() - self.last_input
            ended = self._ended or bool(avail and quiet > 1.5 * self._jitter() / RATE + 2 * FRAME_S)
            was_playing = self._playing
            ready = (avail - self.lookahead) // FR
            if was_playing and not ended and self.adaptive and 1 <= ready < B:
                B = int(ready)
                self.stats["batches_shrunk"] += 1
            if was_playing:
                taken = self._take(B, partial_ok=ended)
                first = 0
            else:
                r = -(-avail // FR) if ended else (avail - self.lookahead - self._cushion()) // FR
                taken = self._take(min(B, max(0, r)), partial_ok=ended)
                first = B - len(taken)           # speech goes into the last slots: starts within this batch
            if not taken or (ended and not len(self._queue)):
                self._playing = False
            elif was_playing and len(taken) < B:  # the input fell behind: re-buffer before going on
                self._playing = False
                self.stats["underruns"] += 1
            else:
                self._playing = True
            ahead = self._queue[:self.lookahead].copy()
            if self._reset_history:            # after an interrupt the windows look back on silence
                self._hist[:] = 0
                self._reset_history = False
        slots = []
        j = 0
        for i in range(B):
            k = n + i
            if first <= i < first + len(taken):
                a, pos, arrived = taken[j]
                j += 1
                slots.append(Slot(k, self.send_time(k), a, True, pos, audio_in_at=arrived))
            else:
                slots.append(Slot(k, self.send_time(k), np.zeros(FR, np.float32), False))
        return slots, ahead

    def _windows(self, slots: list, ahead: np.ndarray, keep_history: bool = True) -> torch.Tensor:
        """(B, C, W) feature windows of the batch from the played history, the batch and the look-ahead."""
        batch = np.concatenate([s.audio for s in slots])
        la = np.zeros(self.lookahead, np.float32)
        la[:len(ahead)] = ahead
        signal = np.concatenate([self._hist, batch, la])
        h0 = len(self._hist)
        for i, s in enumerate(slots):      # does the picture show speech (any in the 5-frame window)?
            s.shows_speech = bool(np.any(signal[max(0, h0 + (i - self.half) * FR):h0 + (i + self.half + 1) * FR]))
        if keep_history and len(self._hist):
            self._hist = np.concatenate([self._hist, batch])[-len(self._hist):]
        return self._feature_windows(signal, len(slots))

    def _feature_windows(self, signal: np.ndarray, n: int) -> torch.Tensor:
        """(n, C, W) windows of W = 2h + 1 feature rows, one centred on each of the n frames ``signal`` covers
        (with h frames of context either side)."""
        W = 2 * self.half + 1
        rows = self.features.rows(signal, n + 2 * self.half)          # (n + 2h, C)
        idx = np.arange(n)[:, None] + np.arange(W)[None, :]
        return torch.from_numpy(np.ascontiguousarray(rows[idx].transpose(0, 2, 1)))

    # ------------------------------------------------------------------ producer thread
    def _run(self):
        tpl = self.prepared.template
        try:
            frames = iter_schedule(tpl.path, 1 << 60, tpl.num_frames, chunk_frames(tpl.height, tpl.width))
            self._warm_up()
            n = 0
            while not self.closed:
                self._rerender_interrupted()
                b = self.b = self._choose_batch()
                start = self.send_time(n) - self.lead_for(b)
                with self._cond:
                    while not self.closed and time.monotonic() < start and not self._rerender_due():
                        self._cond.wait(timeout=min(0.05, start - time.monotonic()))
                if self.closed:
                    break
                if self._rerender_due():
                    continue
                seen = self._interrupts_seen
                slots, ahead = self._form(n, b)
                for s in slots:
                    s.template_index, s.picture = next(frames)
                pictures = [s.picture for s in slots]     # (a slot sent before its render drops its picture)
                windows = self._windows(slots, ahead)
                with self._cond:
                    if self._interrupts_seen != seen:     # interrupted while this batch was being formed
                        self.stats["samples_dropped_by_interrupt"] += FR * self._silence(slots)
                    self._slots.extend(slots)
                    self._cond.notify_all()
                b = len(slots)                        # (a speaking session may form a smaller batch)
                t0 = time.monotonic()
                # a batch that cannot be ready in time (at the typical render time) is skipped to catch up
                if t0 + self.expected_render_s(b, typical=True) > slots[-1].send_at:
                    self.stats["batches_skipped"] += 1
                else:
                    self._rendering = n
                    self._render(slots, windows, pictures)
                    self._load.append((time.monotonic() - t0) / max(1e-4, self._model_cost(b)))
                    self.stats[f"batches_of_{b}"] += 1
                    with self._cond:
                        self._rendering = -1
                n += b
        except BaseException as e:  # the session ends; the transport reports it
            if not self.closed:
                log.exception("live session %s failed", self.id)
                self.error = e
                self.close("internal error: " + type(e).__name__)
        finally:
            self.close(self.close_reason or "ended")
            self._finish()

    def _render(self, slots: list, windows: torch.Tensor, pictures: Optional[list] = None) -> None:
        """Render the slots' template pictures with ``windows`` (and their JPEGs) and attach them to the slots."""
        pictures = [s.picture for s in slots] if pictures is None else pictures
        out = self.dubber.render_frames(self.prepared, [s.template_index for s in slots], pictures, windows)
        jpegs = [self._jpeg(f) for f in out] if self.jpeg_quality else [None] * len(out)
        with self._cond:
            for s, f, j in zip(slots, out, jpegs):
                if not s.dropped:
                    s.frame, s.jpeg = f, j

    def _model_cost(self, b: int) -> float:
        """Seconds a batch of ``b`` took at warm-up (the cost model before any load ratio)."""
        a, c = self._cost
        return a + c * b

    def _silence_windows(self, n: int) -> torch.Tensor:
        return self._feature_windows(np.zeros((self.features.left + n + 2 * self.half) * FR + self.features.right,
                                              np.float32), n)

    def _rerender_due(self) -> bool:
        with self._cond:
            return any(s.rerender for s in self._slots)

    def _rerender_interrupted(self) -> None:
        """After an interrupt: the formed slots that still show speech are rendered again with silence when that
        can finish before they are due (the others keep their picture; their sound is already silent)."""
        with self._cond:
            marked = [s for s in self._slots if s.rerender]
            for s in marked:
                s.rerender = False
            now = time.monotonic()
            todo = [s for s in marked if not s.dropped and s.picture is not None and
                    s.send_at - now > 1.2 * self.expected_render_s(len(marked)) + 0.005]
            pictures = [s.picture for s in todo]
        if not todo:
            return
        self._render(todo, self._silence_windows(len(todo)), pictures)
        with self._cond:
            for s in todo:
                s.shows_speech = False
        self.stats["frames_rerendered_idle"] += len(todo)

    def _warm_up(self) -> None:
        """Idle batches rendered (not sent) before the timeline starts: the first pays the one-off costs (first
        decode, allocator, kernels), the next ones measure the cost model behind the lead and the adaptive batch
        (the fastest of two batches of the largest size and, when adaptive, of three of a single frame: a
        per-batch and a per-frame cost; the load ratio then scales it). The first send time is then moved later if the warm-up ran into it, so no frame of the first batch
        is dropped."""
        tpl = self.prepared.template
        sched = iter_schedule(tpl.path, self.B, tpl.num_frames, chunk_frames(tpl.height, tpl.width))
        idx, pics = map(list, zip(*[next(sched) for _ in range(self.B)]))
        windows = self._silence_windows(self.B)
        times: dict = {}
        for i, b in enumerate([self.B] * 3 + ([1] * 3 if self.adaptive else [])):
            if self.closed:
                return
            t = time.monotonic()
            out = self.dubber.render_frames(self.prepared, idx[:b], pics[:b], windows[:b])
            for f in out if self.jpeg_quality else ():
                self._jpeg(f)
            if i:                      # the first pays the one-off costs; the fastest of the rest is the cost
                times[b] = min(times.get(b, 1e9), time.monotonic() - t)
        if self.adaptive:
            c = max(1e-4, (times[self.B] - times[1]) / (self.B - 1))
            self._cost = (max(0.0, times[1] - c), c)
        else:
            self._cost = (0.0, times[self.B] / self.B)
        settle_heap()                  # a full GC later would stall the timeline longer than the input buffer
        with self._cond:
            self._load = collections.deque([1.0], maxlen=12)
            earliest = time.monotonic() + self.lead + 0.05
            if self.t0 < earliest:
                self.t0 = _grid_start(earliest, self.B * FRAME_S)
            self._started = True
            self._cond.notify_all()

    def _jpeg(self, rgb: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return buf.tobytes()

    # ------------------------------------------------------------------ output side (asyncio)
    async def frames(self):
        """Yield ``(slot, picture_slot)`` at each slot's send time; ``picture_slot`` holds the picture to show
        (the slot itself, or the previous picture when the slot was not rendered in time: ``slot.dropped``)."""
        while not self._started and not self.closed:    # the producer's warm-up fixes the first send time
            await asyncio.sleep(0.005)
        k = 0
        while not self.closed:
            delay = self.send_time(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > MAX_LAG_S:
                self.close("the client does not read the stream fast enough")
                return
            slot = None
            while not self.closed:
                with self._cond:
                    if self._slots and self._slots[0].k == k:
                        slot = self._slots.popleft()
                        self._k_next = k + 1      # from here on an interrupt no longer reaches it
                if slot is not None:
                    break
                await asyncio.sleep(0.004)
            if slot is None:
                return
            # a render in flight for this slot may finish a little after the send time: the frame is sent late
            # (its timestamp is unchanged, the receiver's playout absorbs it) rather than replaced
            late_by = slot.send_at + GRACE_S
            while slot.frame is None and 0 <= self._rendering <= k and time.monotonic() < late_by and \
                    not self.closed:
                await asyncio.sleep(0.002)
            with self._cond:
                if slot.frame is None:
                    slot.dropped = True
                elif time.monotonic() > slot.send_at + 0.002:
                    self.stats["frames_late"] += 1
            now = time.monotonic()
            if slot.speech and slot.audio_in_at:
                self._latencies.append(now - slot.audio_in_at)
            self._note_interrupt(slot, now)
            with self._cond:
                slot.picture = None
            if slot.dropped:
                self.stats["frames_dropped"] += 1
                if self.metrics is not None:
                    self.metrics.inc("live_frames_dropped_total")
                pic = self._last_picture
                if pic is None:           # nothing rendered yet: show the raw template frame
                    slot.frame = self._raw_frame(slot)
                    slot.jpeg = self._jpeg(slot.frame) if self.jpeg_quality else None
                    pic = self._last_picture = slot
            else:
                pic = self._last_picture = slot
            self.stats["frames_sent"] += 1
            self.stats["speech_frames_sent"] += int(slot.speech)
            if self.metrics is not None:
                self.metrics.inc("live_frames_sent_total")
            yield slot, pic
            k += 1

    def _note_interrupt(self, slot: Slot, now: float) -> None:
        """After an interrupt: when the last frame still showing (or sounding) speech and the first idle one go."""
        it = self._interrupt
        if it is None or it["first_idle"] is not None:
            return
        if slot.speech and slot.audio_pos >= it["resume_pos"]:      # new speech came first: nothing to measure
            self._interrupt = None
            return
        ms = round(1000 * (now - it["at"]), 1)
        if slot.speech or slot.shows_speech:
            it["last_speech"] = ms
            return
        it["first_idle"] = ms
        last = it["last_speech"] if it["last_speech"] is not None else 0.0
        self.stats["interrupt_to_last_speech_ms"] = last
        self.stats["interrupt_to_first_idle_ms"] = ms
        self.stats["interrupt_to_first_idle_ms_max"] = max(self.stats["interrupt_to_first_idle_ms_max"], ms)

    def latency_ms(self) -> dict:
        """Server-side latency of the speech frames sent recently: last sample of the frame's audio pushed -> the
        frame sent (look-ahead, jitter cushion, batch and lead; not the network)."""
        lat = np.array(self._latencies) * 1000
        if not len(lat):
            return {"p50": None, "p95": None, "max": None, "frames": 0}
        return {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                "max": round(float(lat.max()), 1), "frames": int(len(lat))}

    def _raw_frame(self, slot: Slot) -> np.ndarray:
        f = next(iter(iter_frames(self.prepared.template.path, fps=FPS, start_frame=slot.template_index,
                                  max_frames=1)), None)
        t = self.prepared.template
        return f if f is not None else np.zeros((t.height, t.width, 3), np.uint8)

    # ------------------------------------------------------------------ lifetime
    def idle_for(self) -> float:
        return time.monotonic() - self.last_input

    def close(self, reason: str = "closed", wait: bool = False) -> None:
        """End the session (idempotent). The producer thread stops and releases the template; ``wait`` joins it
        (never from the event loop: a model call in flight may take a batch's time)."""
        with self._cond:
            if not self.closed:
                self.closed = True
                self.close_reason = reason
                self._slots.clear()
                self._queue = np.zeros(0, np.float32)
                self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def _finish(self) -> None:
        if self._on_close is not None:
            self._on_close(self)

    def public(self) -> dict:
        t = self.prepared.template
        return {"session_id": self.id, "kind": self.kind, "template_id": self.template_id,
                "created": self.created, "fps": FPS, "sample_rate": RATE, "input_sample_rate": self.sample_rate,
                "width": int(t.width), "height": int(t.height), "batch_size": self.B,
                "adaptive_batch": self.adaptive, "current_batch_size": self.b,
                "lookahead_ms": round(self.lookahead / RATE * 1000, 1), "lead_ms": round(self.lead * 1000, 1),
                "mouth_box": template_mouth_box(self.prepared), "face": t.face, "stats": self.public_stats()}

    def public_stats(self) -> dict:
        a, c = self._cost
        return {**dict(self.stats), "latency_ms": self.latency_ms(), "current_batch_size": self.b,
                "render_cost_ms": {"per_batch": round(1000 * a, 1), "per_frame": round(1000 * c, 1)},
                "load_ratio": round(max(self._load), 2)}


def template_mouth_box(prepared) -> list:
    """[x0, y0, x1, y1] around the template's mouth over all frames (landmarks 48-67, enlarged by half)."""
    lm = prepared.template.landmarks[prepared.template.valid][:, 48:68]
    if not len(lm):
        return [0, 0, int(prepared.template.width), int(prepared.template.height)]
    x0, y0 = lm[..., 0].min(), lm[..., 1].min()
    x1, y1 = lm[..., 0].max(), lm[..., 1].max()
    w, h = x1 - x0, y1 - y0
    t = prepared.template
    return [int(max(0, x0 - w / 4)), int(max(0, y0 - h / 4)), int(min(t.width, x1 + w / 4)),
            int(min(t.height, y1 + h / 4))]


class LiveManager:
    """All live sessions of the server: the ``max_sessions`` limit, idle timeouts, template references."""

    def __init__(self, dubber, templates, metrics=None, max_sessions: int = 4, idle_timeout_s: float = 60.0,
                 batch_size: int = 4, lead_ms: float = 0.0, jpeg_quality: int = 85, adaptive_batch: bool = True):
        self.dubber, self.templates, self.metrics = dubber, templates, metrics
        self.max_sessions = int(max_sessions)
        self.idle_timeout_s = float(idle_timeout_s)
        self.batch_size, self.lead_s, self.jpeg_quality = int(batch_size), float(lead_ms) / 1000, int(jpeg_quality)
        self.adaptive_batch = bool(adaptive_batch)
        self._lock = threading.Lock()
        self.sessions: dict[str, LiveSession] = {}
        self._closing = False
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="lawdnet-live-reaper", daemon=True)
        self._reaper.start()

    def open(self, template_id: str, sample_rate: int = RATE, kind: str = "ws", jpeg: bool = True) -> LiveSession:
        """A new session on a stored template (ApiError 404 unknown template, 503 when full or shutting down)."""
        with self._lock:
            if self._closing:
                raise ApiError(503, "shutting_down", "the server is shutting down", {"Retry-After": "30"})
            if len(self.sessions) >= self.max_sessions:
                raise ApiError(503, "busy", f"all {self.max_sessions} live sessions are in use; try again later",
                               {"Retry-After": "10"})
            self.sessions[f"pending-{id(threading.current_thread())}-{time.monotonic()}"] = None   # reserve
            key = next(reversed(self.sessions))
        try:
            prepared = self.templates.acquire(template_id)
            try:
                s = LiveSession(self.dubber, prepared, template_id, batch_size=self.batch_size, lead_s=self.lead_s,
                                sample_rate=sample_rate, jpeg_quality=self.jpeg_quality if jpeg else 0,
                                idle_timeout_s=self.idle_timeout_s, on_close=self._closed, metrics=self.metrics,
                                kind=kind, adaptive=self.adaptive_batch)
            except BaseException:
                self.templates.release(template_id)
                raise
        finally:
            with self._lock:
                self.sessions.pop(key, None)
        with self._lock:
            self.sessions[s.id] = s
        if self.metrics is not None:
            self.metrics.inc("live_sessions_total")
        log.info("live session %s opened on template %s (%s)", s.id, template_id, kind)
        return s

    def _closed(self, s: LiveSession) -> None:
        with self._lock:
            if self.sessions.pop(s.id, None) is None:
                return
        self.templates.release(s.template_id)
        log.info("live session %s closed: %s (%s)", s.id, s.close_reason, dict(s.stats))

    def get(self, session_id: str) -> Optional[LiveSession]:
        with self._lock:
            s = self.sessions.get(session_id)
        return s if isinstance(s, LiveSession) else None

    def list(self) -> list:
        with self._lock:
            live = [s for s in self.sessions.values() if isinstance(s, LiveSession)]
        return [s.public() for s in live]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.sessions)

    def _reap(self):
        while not self._stop.wait(1.0):
            with self._lock:
                live = [s for s in self.sessions.values() if isinstance(s, LiveSession)]
            for s in live:
                if self.idle_timeout_s and s.idle_for() > self.idle_timeout_s:
                    s.close(f"no audio for {self.idle_timeout_s:g} s (idle timeout)")

    def close_all(self) -> None:
        with self._lock:
            self._closing = True
            live = [s for s in self.sessions.values() if isinstance(s, LiveSession)]
        for s in live:
            s.close("the server is shutting down", wait=True)
        self._stop.set()
