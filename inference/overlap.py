"""Run pipeline stages in threads joined by bounded queues, so decoding, the model and encoding overlap.

PyAV, OpenCV and torch release the GIL in their heavy calls, so plain threads give real overlap. Queues are
bounded: a slow consumer stalls the producer instead of letting frames pile up in memory. An exception in any
stage is re-raised in the caller; stopping early (close / error) stops the other threads.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class StageTimer:
    """Seconds spent per stage (thread-safe accumulation)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + dt

    def timed(self, name: str, fn: Callable, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.add(name, time.perf_counter() - t0)


class Background:
    """Iterate ``iterable`` in a daemon thread, ``maxsize`` items ahead. Use as an iterator; call ``close``."""

    def __init__(self, iterable: Iterable, maxsize: int = 2, name: str = "producer"):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._it = iterable
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for item in self._it:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as e:  # handed to the consumer
            self._put(_Failure(e))
        finally:
            close = getattr(self._it, "close", None)
            if close is not None and self._stop.is_set():
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self) -> Iterator:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)


class Consumer:
    """Feed items to ``fn`` in a daemon thread through a bounded queue; ``finish`` waits and re-raises errors."""

    def __init__(self, fn: Callable, maxsize: int = 2, name: str = "consumer"):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as e:
                    self._error = e   # keep draining so the producer never blocks

    def put(self, item) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(item)

    def finish(self) -> None:
        self._q.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        self._q.put(_DONE)   # the thread drains without processing once an error is set
        self._thread.join(timeout=30)
