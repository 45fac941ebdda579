"""Wall-clock budget of a demo run: one deadline, a plan of what each step costs, step-by-step progress.

Only training is elastic; making the data, the data pipeline, dubbing and evaluation cost what they cost. So the
plan estimates those from their sizes (frames) with planning figures of an idle 2-core CPU (``NOMINAL``), and
rescales the estimates by how much longer (or shorter) the finished steps really took on this machine now
(``slowdown``). Training gets what is left after the still-to-come fixed steps. Up front the plan says when a
budget cannot be kept at all (an error) and when it leaves too little training for a useful model (a warning).
"""
from __future__ import annotations

import math
import sys
import time

from utils.errors import UserError
from utils.face.geometry import crop_size

# Lazy import below: torch loads only to probe the generator's speed (demo.py answers --help and option errors
# without it).

# Planning figures, seconds on an idle 2-core CPU (the machine of docs/benchmarks.md). ``dub_frame`` and
# ``eval_frame`` are per held-out frame: template landmarks, dub, silence dub and baseline video; landmarks and
# metrics of every compared video.
NOMINAL = {"render_frame": 0.012, "pipeline_frame": 0.025, "dub_frame": 0.15, "eval_frame": 0.27,
           "frame_step": 0.095, "clip_step": 0.125, "sync_step": 0.05, "stage_setup": 8.0, "report": 5.0,
           "gen_frame": 0.02}
# of dub_frame: the two generator passes (dub and silence dub) per held-out frame, which run at torch's speed
GEN_PASSES = 2
# the demo model met the quality bar with these step counts (docs/benchmarks.md: 3000 frame + 300 clip steps)
USEFUL_STEPS = {"frame": 3000, "clip": 300, "sync": 1500}
OVERRUN = 0.10                      # the run may end at most this fraction past its budget


def useful_training_s(model_steps: dict | None = None) -> float:
    """Nominal seconds of the training that gives a useful demo model."""
    s = {**USEFUL_STEPS, **(model_steps or {})}
    return (s["frame"] * NOMINAL["frame_step"] + s["clip"] * NOMINAL["clip_step"] + s["sync"] * NOMINAL["sync_step"]
            + 3 * NOMINAL["stage_setup"])


def fixed_costs(render_frames: int, pipeline_frames: int, heldout_frames: int) -> dict:
    """Nominal seconds of the steps that do not train."""
    return {"make the data": render_frames * NOMINAL["render_frame"],
            "data pipeline": pipeline_frames * NOMINAL["pipeline_frame"],
            "dub": heldout_frames * NOMINAL["dub_frame"], "evaluate": heldout_frames * NOMINAL["eval_frame"],
            "report": NOMINAL["report"]}


def check_budget(total_s: float, fixed: dict, needed_s: float, planned_s: float | None, log) -> bool:
    """Up front: an error when the fixed steps alone overrun the budget by more than OVERRUN; a warning when the
    training the run will do cannot give a useful model (``needed_s`` nominal seconds; 0 = no training).
    ``planned_s``: nominal seconds of exact step counts given by the user, None = whatever the budget leaves.
    Returns whether it warned."""
    need = sum(fixed.values())
    if need > total_s * (1 + OVERRUN):
        raise UserError(f"--minutes {total_s / 60:g} cannot be kept: preparing the data, dubbing and evaluating "
                        f"alone take about {need / 60:.1f} min on an idle 2-core CPU; use --minutes "
                        f"{math.ceil(need / 60)} or more ({math.ceil((need + needed_s) / 60)} for a model that "
                        "meets the quality bar)")
    if not needed_s:
        return False
    left = max(0.0, total_s - need)
    if planned_s is None and left < needed_s:
        log(f"warning: --minutes {total_s / 60:g} leaves about {left / 60:.1f} min for training, "
            f"{100 * left / needed_s:.0f} % of what a useful model needs (3000 frame + 300 clip steps, about "
            f"{needed_s / 60:.1f} min on an idle 2-core CPU): expect an undertrained model; use --minutes "
            f"{math.ceil((need + needed_s) / 60)} for one that meets the quality bar")
        return True
    if planned_s is not None and planned_s < 0.9 * needed_s:
        log(f"warning: the step counts given train {100 * planned_s / needed_s:.0f} % of what a useful model needs "
            "(3000 frame + 300 clip steps): expect an undertrained model")
        return True
    return False


class Budget:
    """``total_s`` seconds from construction. ``share(f, reserve)`` = f x (time left - reserve), never negative.

    ``fixed(name, nominal_s)`` times a step that does not train and updates ``slowdown`` (actual / nominal seconds
    of such steps so far); ``estimate(nominal_s)`` is a nominal cost rescaled by it."""

    def __init__(self, total_s: float, num_steps: int, log=None):
        self.start = time.monotonic()
        self.total_s = float(total_s)
        self.num_steps = int(num_steps)
        self.step_no = 0
        self.timings: dict[str, float] = {}
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._nominal = self._actual = 0.0
        self.torch_slowdown = None          # set by a generator probe: torch work slows down unlike the rest

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return max(0.0, self.total_s - self.elapsed())

    def share(self, fraction: float, reserve: float = 0.0) -> float:
        return max(0.0, (self.left() - reserve) * float(fraction))

    @property
    def slowdown(self) -> float:
        """How much slower than the planning figures this machine is now (1 until a fixed step has run)."""
        if self._nominal < 5.0:                          # too little measured to tell
            return 1.0
        return min(20.0, max(0.5, self._actual / self._nominal))

    def estimate(self, nominal_s: float) -> float:
        return nominal_s * self.slowdown

    def post_training_s(self, heldout_frames: int) -> float:
        """Dubbing, evaluation and the report of ``heldout_frames`` held-out frames, on this machine now."""
        post = fixed_costs(0, 0, heldout_frames)
        gen = GEN_PASSES * heldout_frames * NOMINAL["gen_frame"]
        torch_k = self.torch_slowdown if self.torch_slowdown is not None else self.slowdown
        return self.estimate(post["dub"] - gen + post["evaluate"] + post["report"]) + gen * torch_k

    def probe_generator(self, model, mouth_region_size: int) -> None:
        """Time the generator ``model`` on one inference batch of 8 (after a warm-up) to set torch_slowdown (the
        model's own cost per frame against the tiny model's planning figure)."""
        import torch


        c = model.config
        H, W = crop_size(mouth_region_size)
        x = (torch.rand(8, c.source_channel, H, W), torch.rand(8, c.ref_channel, H, W),
             torch.rand(8, c.audio_channel, c.audio_window))
        with torch.no_grad():
            model.eval()(*x)
            t0 = time.perf_counter()
            model(*x)
        self.torch_slowdown = max(0.1, (time.perf_counter() - t0) / 8 / NOMINAL["gen_frame"])

    def log(self, msg: str) -> None:
        self._log(f"[demo] {msg}")

    def step(self, name: str, detail: str = "", nominal_s: float = 0.0) -> "_StepTimer":
        """Context manager printing ``[demo k/N] name ...`` and timing the step; a step with ``nominal_s`` > 0
        (a fixed step that really ran) also feeds ``slowdown``."""
        self.step_no += 1
        return _StepTimer(self, name, detail, nominal_s)


class _StepTimer:
    def __init__(self, budget: Budget, name: str, detail: str, nominal_s: float):
        self.b, self.name, self.detail, self.nominal_s = budget, name, detail, nominal_s

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
            if self.nominal_s > 0:
                self.b._nominal += self.nominal_s
                self.b._actual += dt
            self.b._log(f"[demo {self.b.step_no}/{self.b.num_steps}] {self.name}: done in {dt:.1f} s")
        return False
