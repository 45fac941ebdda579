"""Wall-clock budget of a demo run: one deadline, shares of what is left for each stage, step-by-step progress."""
from __future__ import annotations

import sys
import time


class Budget:
    """``total_s`` seconds from construction. ``share(f, reserve)`` = f x (time left - reserve), never negative."""

    def __init__(self, total_s: float, num_steps: int, log=None):
        self.start = time.monotonic()
        self.total_s = float(total_s)
        self.num_steps = int(num_steps)
        self.step_no = 0
        self.timings: dict[str, float] = {}
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._current = None

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return max(0.0, self.total_s - self.elapsed())

    def share(self, fraction: float, reserve: float = 0.0) -> float:
        return max(0.0, (self.left() - reserve) * float(fraction))

    def log(self, msg: str) -> None:
        self._log(f"[demo] {msg}")

    def step(self, name: str, detail: str = "") -> "_StepTimer":
        """Context manager printing ``[demo k/N] name ...`` and timing the step."""
        self.step_no += 1
        return _StepTimer(self, name, detail)


class _StepTimer:
    def __init__(self, budget: Budget, name: str, detail: str):
        self.b, self.name, self.detail = budget, name, detail

    def __enter__(self):
        self.t0 = time.monotonic()
        b = self.b
        b._log(f"[demo {b.step_no}/{b.num_steps}] {self.name}" + (f" ({self.detail})" if self.detail else "")
               + f"  [{b.elapsed() / 60:.1f} of {b.total_s / 60:.1f} min used]")
        return self

    def __exit__(self, exc_type, exc, tb):
        dt = time.monotonic() - self.t0
        self.b.timings[self.name] = round(self.b.timings.get(self.name, 0.0) + dt, 2)
        if exc_type is None:
            self.b._log(f"[demo {self.b.step_no}/{self.b.num_steps}] {self.name}: done in {dt:.1f} s")
        return False
