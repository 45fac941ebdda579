"""Validation during training on the held-out segment, and the best checkpoint.

After every ``val_every`` steps (and at the end of each stage) the checkpoint just written dubs the held-out
segment's speech onto its own footage (reconstruction: the mouth is masked, so it has to come from the audio)
with the project's Dubber, and ``evaluation.evaluate`` scores it against the held-out footage: mouth PSNR/SSIM,
the correlation of mouth opening with audio energy and with the footage's own opening (``opening_agreement``),
and LSE-C/LSE-D with the run's own SyncNet. The checkpoint
with the best ``select_by`` figure is copied to ``best.pth``; every figure goes to ``validation.json`` (a re-run
skips checkpoints already scored).
"""
from __future__ import annotations

import json
import math
import os
import shutil

from config.config import InferenceConfig
from demo.dubbing import make_dubber
from utils.atomic import atomic_write

# Lazy imports below: the evaluation package (torch) and the landmark detector (cv2, dlib) load only when a
# validation runs (start-up time of demo.py).

METRICS = ("psnr_mouth", "ssim_mouth", "av_corr", "opening_agreement", "own_lse_c", "own_lse_d")
LOWER_IS_BETTER = {"own_lse_d"}
PATIENCE = 3          # a stage stops when this many validations in a row did not beat the best (early stopping)


class Validator:
    def __init__(self, heldout_video: str, work_dir: str, syncnet: str = "", device: str = "cpu",
                 select_by: str = "psnr_mouth", mouth_size: int = 64, log=print,
                 inference: InferenceConfig | None = None):
        self.video, self.dir, self.syncnet, self.device = heldout_video, work_dir, syncnet, device
        self.select_by, self.mouth_size, self.log = select_by, mouth_size, log
        self.inference = inference or InferenceConfig()
        os.makedirs(work_dir, exist_ok=True)
        self.best_path = os.path.join(work_dir, "best.pth")
        self.history_path = os.path.join(work_dir, "validation.json")
        self.history = []
        if os.path.isfile(self.history_path):
            with open(self.history_path, encoding="utf-8") as f:
                self.history = json.load(f)
        self._detector = None
        self._tracked: dict = {}       # the held-out footage is tracked once, not at every validation

    def better(self, a, b) -> bool:
        if a is None or not math.isfinite(a):
            return False
        if b is None or not math.isfinite(b):
            return True
        return a < b if self.select_by in LOWER_IS_BETTER else a > b

    @property
    def best(self) -> dict | None:
        best = None
        for h in self.history:
            if best is None or self.better(h.get(self.select_by), best.get(self.select_by)):
                best = h
        return best if best is not None and os.path.isfile(self.best_path) else None

    def stale(self, stage: str) -> int:
        """Validations of ``stage`` since the best one (all of them when the best came from another stage)."""
        best = self.best
        rows = [h for h in self.history if h["stage"] == stage]
        if best is None:
            return len(rows)
        return len([h for h in rows if h is not best and self.history.index(h) > self.history.index(best)])

    def early_stop(self, checkpoint: str, stage: str, step: int) -> str | None:
        """Validate, then "stop" when the last PATIENCE validations of ``stage`` did not improve (the trainer's
        on_save protocol)."""
        self(checkpoint, stage, step)
        if self.stale(stage) >= PATIENCE:
            self.log(f"validation: {PATIENCE} validations of {stage} without a better {self.select_by}: "
                     f"stopping it")
            return "stop"
        return None

    def __call__(self, checkpoint: str, stage: str, step: int) -> dict:
        from evaluation import evaluate
        from utils.face.landmarks import LandmarkDetector

        for h in self.history:
            if h["stage"] == stage and h["step"] == step:
                return h
        self._detector = self._detector or LandmarkDetector()
        out = os.path.join(self.dir, "last_dub.mp4")
        dubber = make_dubber(checkpoint, self.inference, self.device, os.path.join(self.dir, "cache"), False)
        dubber.dub(dubber.prepare_template(self.video), self.video, out)
        ev = evaluate(out, reference=self.video, audio=self.video, syncnet=self.syncnet or None,
                      mouth_size=self.mouth_size, device=self.device, progress=False, detector=self._detector,
                      landmark_cache=self._tracked)
        row = {"stage": stage, "step": int(step)}
        row.update({k: (float(ev[k]) if ev.get(k) is not None and math.isfinite(float(ev[k])) else None)
                    for k in METRICS})
        prev = self.best
        if prev is None or self.better(row[self.select_by], prev.get(self.select_by)):
            with atomic_write(self.best_path, "wb") as f, open(checkpoint, "rb") as src:
                shutil.copyfileobj(src, f)
            row["best"] = True
        self.history.append(row)
        with atomic_write(self.history_path, "w", encoding="utf-8") as f:
            json.dump(self.history, f, indent=1)
        fmt = ", ".join(f"{k} {row[k]:.3f}" for k in METRICS if row[k] is not None)
        self.log(f"validation {stage} step {step}: {fmt}" + ("  <- best so far" if row.get("best") else ""))
        return row
