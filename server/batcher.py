"""One model worker for the whole server: model calls of concurrent jobs are merged into shared batches.

Each rendering job calls the batcher (as the Dubber's ``infer_fn``) from its own thread and blocks until its
slice of a batch comes back. The worker takes the first waiting call, gathers more for up to ``wait_s`` or
until ``max_frames`` frames are collected, runs the model once on the concatenation and splits the output.
If a merged call fails, its parts are retried one by one so that only the faulty job sees the error.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

import torch

log = logging.getLogger("lawdnet.server")
_STOP = object()


class _Call:
    __slots__ = ("args", "n", "out", "error", "done", "abandoned")

    def __init__(self, args):
        self.args = args
        self.n = int(args[0].shape[0])
        self.out = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        self.abandoned = False   # the caller gave up (job cancelled): skip it

    def key(self):
        return tuple((tuple(a.shape[1:]), a.dtype, a.device) for a in self.args)


class BatchingInferer:
    """``infer_fn(source, refs, audio) -> crops`` that routes every call through one worker thread."""

    def __init__(self, target: Optional[Callable] = None, max_frames: int = 32, wait_s: float = 0.005,
                 before_call: Optional[Callable[[], None]] = None, metrics=None):
        self.target = target                 # the real model call (set after the Dubber is built)
        self.max_frames = max(1, int(max_frames))
        self.wait_s = max(0.0, float(wait_s))
        self.before_call = before_call       # raises in the calling job's thread if that job was cancelled
        self.metrics = metrics
        self._q: queue.Queue = queue.Queue()
        self._carry: list = []
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="lawdnet-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side
    def __call__(self, source: torch.Tensor, refs: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if self.before_call is not None:
            self.before_call()
        call = _Call((source, refs, audio))
        self._q.put(call)
        while not call.done.wait(0.2):
            if self.before_call is not None:
                try:
                    self.before_call()        # a job cancelled while it waits for the model stops now
                except BaseException:
                    call.abandoned = True
                    raise
        if call.error is not None:
            raise call.error
        return call.out

    def pause(self) -> None:
        """Hold model calls (they wait, nothing fails) until ``resume``: maintenance, deterministic tests."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def close(self) -> None:
        self._running.set()
        self._q.put(_STOP)
        self._thread.join(timeout=30)

    @property
    def waiting(self) -> int:
        return self._q.qsize() + len(self._carry)

    # ------------------------------------------------------------------ worker side
    def _next(self, timeout=None):
        if self._carry:
            return self._carry.pop(0)
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self):
        while True:
            first = self._next()
            if first is _STOP:
                self._fail_pending(RuntimeError("the model worker stopped"))
                return
            self._running.wait()
            batch, n = [first], first.n
            deadline = time.perf_counter() + self.wait_s
            stop = False
            while n < self.max_frames:
                left = deadline - time.perf_counter()
                if left <= 0 and self._q.empty():
                    break
                nxt = self._next(timeout=max(left, 0.0)) if left > 0 else self._next(timeout=0)
                if nxt is None:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                if nxt.key() != first.key() or n + nxt.n > self.max_frames:
                    self._carry.append(nxt)   # does not fit: first in line for the next batch
                    break
                batch.append(nxt)
                n += nxt.n
            self._process(batch)
            if stop:
                self._q.put(_STOP)

    def _fail_pending(self, err):
        for c in self._carry:
            c.error = err
            c.done.set()
        self._carry.clear()
        while True:
            try:
                c = self._q.get_nowait()
            except queue.Empty:
                return
            if c is not _STOP:
                c.error = err
                c.done.set()

    def _run_target(self, args):
        t0 = time.perf_counter()
        out = self.target(*args)
        if self.metrics is not None:
            self.metrics.model_call(int(args[0].shape[0]), time.perf_counter() - t0)
        return out

    def _process(self, batch):
        for c in batch:
            if c.abandoned:
                c.done.set()
        batch = [c for c in batch if not c.abandoned]
        if not batch:
            return
        if len(batch) == 1:
            self._single(batch[0])
            return
        try:
            args = [torch.cat([c.args[i] for c in batch]) for i in range(3)]
            out = self._run_target(args)
            k = 0
            for c in batch:
                c.out = out[k:k + c.n]
                k += c.n
                c.done.set()
        except Exception:
            log.warning("merged model call of %d jobs failed; retrying them one by one", len(batch), exc_info=True)
            for c in batch:
                self._single(c)

    def _single(self, c):
        try:
            c.out = self._run_target(c.args)
        except BaseException as e:  # handed to the job that made the call
            c.error = e
        finally:
            c.done.set()
