"""CPU thread budget for the stages that run at the same time: decode (ffmpeg + OpenCV crops), the model (torch
intra-op threads) and encode (x264).

Left alone, every stage sizes itself to the whole machine: torch starts one OpenMP thread per core, ffmpeg's
decoder and x264 each start about as many again, and OpenCV has its own pool. Idle OpenMP threads spin at every
barrier, so while the decoder or another process holds a core, each of the model's parallel ops waits for a
descheduled thread: with other jobs on a 2-core machine the tiny model dubbed 6x slower with 2 torch threads
than with 1 (docs/benchmarks.md, 'CPU thread budget'). The plan here:

* ``OMP_WAIT_POLICY=PASSIVE`` (set by the command-line entry points before torch is imported, unless the user
  set it): a waiting thread sleeps instead of spinning, so a busy core costs one op's wait, not a collapse;
* on CPU the decoder, x264 and OpenCV get one thread per core each: their threads block (pthreads) when they
  have nothing to do, so they cost little under load and, idle, run in the model's gaps (measured: with one
  thread each, idle dubs ran no faster, the loaded tiny dub 1.2x slower, docs/benchmarks.md); with a
  GPU the encoder gets most cores, as the model no longer needs them;
* torch's intra-op count is chosen at run time on CPU (``ThreadTuner``): it starts at the budget and from time
  to time times a neighbouring count, keeping whichever gives more frames/s, so it drops to 1-2 threads while
  other processes load the machine and climbs back when they stop. Probes at a worse count cost time, so they
  become rarer while they keep losing, and come back at once when the current count's speed changes. A fixed
  ``--threads N`` turns the tuner off (the same count every call, so outputs are bit-for-bit reproducible;
  different counts can round the last float bit differently).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from utils.errors import UserError

# Lazy imports below: torch and cv2 load only when a thread plan is applied; the command-line entry points import
# this module to set OMP_WAIT_POLICY before torch starts (start-up time, and the policy must precede torch).


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def prefer_passive_waiting() -> None:
    """Make idle OpenMP threads sleep instead of spin. Only effective before torch (libgomp) is loaded, so the
    command-line scripts call it first thing; an explicit OMP_WAIT_POLICY of the user wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass(frozen=True)
class ThreadPlan:
    total: int           # cores the pipeline may use
    torch: int           # torch intra-op threads (the most the tuner may use)
    decoder: int         # ffmpeg decoder threads per input stream
    encoder: int         # x264 threads
    opencv: int          # OpenCV's pool (crops, paste-back, resizes)
    tune: bool           # adapt torch's count to the load at run time (CPU, automatic budget only)

    def describe(self) -> str:
        return (f"{self.total} cores: torch {self.torch}{' (tuned)' if self.tune else ''}, decoder "
                f"{self.decoder}, x264 {self.encoder}, OpenCV {self.opencv}")


def check_threads(threads) -> int:
    try:
        n = int(threads or 0)
    except (TypeError, ValueError):
        raise UserError(f"--threads must be a whole number (0 = automatic), got {threads!r}") from None
    if n < 0:
        raise UserError(f"--threads must be >= 0 (0 = automatic), got {n}")
    return n


def plan_threads(threads: int = 0, device: str = "cpu") -> ThreadPlan:
    """The budget for ``threads`` cores (0 = every usable core) when the model runs on ``device``."""
    n = check_threads(threads)
    total = n or usable_cores()
    if str(device).startswith("cuda"):
        # the GPU does the model; the CPU decodes, crops/pastes on the host side and encodes 100+ frames/s
        decoder = 1 if total < 8 else 2
        return ThreadPlan(total, torch=1 if total < 4 else 2, decoder=decoder,
                          encoder=max(1, total - decoder - 1), opencv=1, tune=False)
    # the stages' threads wait (pthreads, not spinning OpenMP) while they have nothing to do, so they cost little
    # under load and, idle, fill the model's gaps: one per core each
    return ThreadPlan(total, torch=total, decoder=total, encoder=total, opencv=total, tune=n == 0 and total > 1)


_applied: Optional[ThreadPlan] = None


def apply_plan(plan: ThreadPlan) -> None:
    """Apply the process-wide parts (torch and OpenCV pools, decoder threads of new streams)."""
    global _applied
    import torch

    torch.set_num_threads(plan.torch)
    try:
        import cv2

        cv2.setNumThreads(plan.opencv)
    except ImportError:
        pass
    _applied = plan


def decoder_threads() -> int:
    """ffmpeg decoder threads for a new input stream (0 = ffmpeg's own choice, when no plan was applied)."""
    return _applied.decoder if _applied is not None else 0


class ThreadTuner:
    """Pick torch's intra-op thread count for repeated model calls by timing them.

    ``run(fn, frames)`` calls ``fn`` with the current count (the caller's count is restored afterwards) and
    records seconds per frame. As soon as the current count has been timed, one call runs at a neighbouring
    candidate (alternately the next lower and the next higher; candidates 1, 2, 4, ... up to ``max_threads``);
    a candidate faster by ``margin`` becomes current. A probe is a call at a worse count, so probes back off:
    each one that loses doubles the calls until the next (``probe_every`` up to ``max_interval``), and a switch
    starts again at ``probe_every``. Two calls in a row at the current count more than ``change`` times slower or
    faster than its time at the last probe mean the machine's load changed: the next call probes again.
    Call it from the thread that runs the model.
    """

    def __init__(self, max_threads: int, probe_every: int = 4, margin: float = 0.9, max_interval: int = 64,
                 change: float = 1.3):
        m = max(1, int(max_threads))
        self.candidates = sorted({1, m} | {2 ** k for k in range(8) if 2 ** k < m})
        self.current = m
        self.probe_every = max(2, int(probe_every))
        self.max_interval = max(self.probe_every, int(max_interval))
        self.interval = self.probe_every          # calls at the current count between two probes
        self.margin = float(margin)
        self.change = float(change)
        self.mean: dict[int, float] = {}
        self.calls = 0
        self.probes = 0
        self._since_probe = None        # calls since the last probe (None: no probe yet)
        self._baseline = None           # the current count's time when it was last compared with a probe
        self._drift = 0                 # consecutive current-count calls far from the baseline
        self._down = True
        self._lock = threading.Lock()
        self.history: list[tuple[int, float]] = []      # (threads, seconds per frame) of each timed call

    def _next_count(self) -> int:
        if len(self.candidates) == 1 or self.current not in self.mean:
            return self.current
        if self._since_probe is not None and self._since_probe < self.interval:
            self._since_probe += 1
            return self.current
        self._since_probe = 1
        i = self.candidates.index(self.current)
        j = i - 1 if (self._down and i > 0) or i == len(self.candidates) - 1 else i + 1
        self._down = not self._down
        return self.candidates[j]

    def _record(self, n: int, dt: float) -> None:
        self.history.append((n, dt))
        if n == self.current:
            old = self.mean.get(n)
            self.mean[n] = dt if old is None else 0.5 * (old + dt)
            base = self._baseline
            if base is not None and not base / self.change <= dt <= base * self.change:
                self._drift += 1
                if self._drift >= 2:        # the load changed: look at the neighbours again now
                    self._drift, self._baseline = 0, None
                    self.interval = self.probe_every
                    self._since_probe = self.interval
            else:
                self._drift = 0
            return
        self.probes += 1
        self.mean[n] = dt
        if dt < self.margin * self.mean[self.current]:
            self.current, self.interval = n, self.probe_every
        else:
            self.interval = min(self.max_interval, 2 * self.interval)
        self._baseline, self._drift = self.mean[self.current], 0

    def run(self, fn: Callable, frames: int = 1):
        import torch

        with self._lock:
            self.calls += 1
            n = self._next_count()
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            try:
                out = fn()
            finally:
                torch.set_num_threads(before)   # the rest of the process keeps its own count
            if self.calls > 1:   # the very first call pays one-off set-up
                self._record(n, (time.perf_counter() - t0) / max(1, frames))
            return out
