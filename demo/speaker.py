"""The demo's data: one synthetic speaker (utils.synthetic) with training sentences, held-out sentences and a
template, or a folder of the user's real videos.

Synthetic layout under ``<data_dir>``::

    train/en_s<sentence>_v<speed>.mp4   training videos (source_video_dir of the data pipeline)
    eval/heldout_<k>.mp4               ground truth for held-out sentence k (never trained on)
    eval/template.mp4                  the template: another video of the speaker (a training sentence, new take)

Every video comes with ``<stem>.mouth.npy`` (per-frame ground-truth openness). The template and the ground
truths share one head-motion seed, so frame k of the template and of a ground truth show the same head pose:
a dub of held-out sentence k on the template can be compared pixel by pixel with its ground truth.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from utils.errors import UserError

ENGLISH = [i for i, (lang, _) in enumerate(__import__("utils.synthetic.speech", fromlist=["SENTENCES"]).SENTENCES)
           if lang == "en"]
EVAL_SEED = 777            # head-motion seed shared by the template and the ground truths


@dataclass
class SpeakerSpec:
    """What to render. Training uses the first ``train_sentences`` English sentences at every speed in
    ``speeds``; the last ``heldout_sentences`` English sentences are only ever ground truth."""

    train_sentences: int = 6
    heldout_sentences: int = 2
    speeds: tuple = (140, 175, 210)
    voice: str = "en"
    size: int = 256
    head_motion: float = 1.0
    seed: int = 0

    def __post_init__(self):
        self.speeds = tuple(int(s) for s in self.speeds)
        n = len(ENGLISH)
        if self.heldout_sentences < 1 or self.train_sentences < 1 or self.train_sentences + self.heldout_sentences > n:
            raise UserError(f"--train_sentences ({self.train_sentences}) + --heldout_sentences "
                            f"({self.heldout_sentences}) must each be >= 1 and add up to at most {n}")
        if not self.speeds or min(self.speeds) < 80 or max(self.speeds) > 450:
            raise UserError(f"--speeds must be espeak-ng words per minute in 80..450, got {list(self.speeds)}")
        if self.size < 128:
            raise UserError(f"--size must be >= 128 pixels (the landmark detector needs the face), got {self.size}")


@dataclass
class EvalItem:
    """One held-out sentence: its ground-truth video (whose audio drives the dub) and per-frame openness."""

    name: str
    text: str
    video: str
    openness: str              # .npy path; "" when unknown (real data: measured from landmarks instead)


@dataclass
class DemoData:
    train_dir: str             # folder of training videos
    template: str
    heldout: list = field(default_factory=list)     # [EvalItem]
    synthetic: bool = True
    template_text: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _render(path: str, text: str, log, **kw) -> dict:
    """make_talking_head unless ``path`` already holds the same rendering (its .json metadata matches)."""
    from utils.synthetic.talking_head import make_talking_head

    meta_path = os.path.splitext(path)[0] + ".json"
    if os.path.isfile(path) and os.path.isfile(meta_path) and os.path.isfile(os.path.splitext(path)[0] + ".mouth.npy"):
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
            if all(meta.get(k) == v for k, v in [("text", text), ("voice", kw["voice"]), ("seed", kw["seed"]),
                                                ("size", kw["size"]), ("speed", kw["speed"]),
                                                ("head_motion", float(kw["head_motion"])),
                                                ("tail_s", kw.get("tail_s", 0.3)),
                                                ("lead_s", kw.get("lead_s", 0.3))]):
                return meta
        except (OSError, ValueError):
            pass
    log(f"rendering {os.path.basename(path)}: {text!r} ({kw['voice']}, {kw['speed']} wpm)")
    return make_talking_head(path, text, preset="fast", **kw)


def make_synthetic_speaker(data_dir: str, spec: SpeakerSpec, log=print) -> DemoData:
    """Render (or reuse) the speaker's training videos, held-out ground truths and template."""
    from utils.synthetic.speech import SENTENCES

    train_dir, eval_dir = os.path.join(data_dir, "train"), os.path.join(data_dir, "eval")
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(eval_dir, exist_ok=True)
    common = dict(voice=spec.voice, size=spec.size, head_motion=spec.head_motion)
    train_ids = ENGLISH[:spec.train_sentences]
    heldout_ids = ENGLISH[len(ENGLISH) - spec.heldout_sentences:]
    wanted = set()
    for j, sid in enumerate(train_ids):
        for speed in spec.speeds:
            name = f"en_s{sid}_v{speed}.mp4"
            wanted.add(name)
            _render(os.path.join(train_dir, name), SENTENCES[sid][1], log, seed=spec.seed * 1000 + 10 * sid + speed % 7,
                    speed=speed, **common)
    for stale in os.listdir(train_dir):     # videos of an earlier run with other settings must not be trained on
        if stale.endswith(".mp4") and stale not in wanted:
            for ext in (".mp4", ".mouth.npy", ".gt.npz", ".json"):
                p = os.path.join(train_dir, os.path.splitext(stale)[0] + ext)
                if os.path.exists(p):
                    os.remove(p)
    heldout, longest = [], 0.0
    mid_speed = sorted(spec.speeds)[len(spec.speeds) // 2]
    for k, sid in enumerate(heldout_ids):
        path = os.path.join(eval_dir, f"heldout_{k}.mp4")
        meta = _render(path, SENTENCES[sid][1], log, seed=EVAL_SEED + spec.seed, speed=mid_speed, **common)
        heldout.append(EvalItem(f"heldout_{k}", SENTENCES[sid][1], path, meta["mouth"]))
        longest = max(longest, meta["video_seconds"])
    # the template says a training sentence (a new take, not a training file); a silent tail makes it at least
    # as long as every ground truth, so dubbed frame k is template frame k (no ping-pong) and poses match
    tpl_path = os.path.join(eval_dir, "template.mp4")
    tpl_text = SENTENCES[train_ids[0]][1]
    tail = 0.3
    for _ in range(3):      # a longer lead-in than the ground truths': its syllables do not line up with theirs
        meta = _render(tpl_path, tpl_text, log, seed=EVAL_SEED + spec.seed, speed=mid_speed, lead_s=0.7, tail_s=tail,
                       **common)
        if meta["video_seconds"] >= longest + 0.04:
            break
        tail = round(tail + longest - meta["video_seconds"] + 0.2, 2)
    return DemoData(train_dir, tpl_path, heldout, True, tpl_text)


def real_data(video_dir: str, work_dir: str, log=print) -> DemoData:
    """The user's videos: the last one (sorted by name) is held out and dubbed with its own audio
    (reconstruction setting); the others are the training set, linked into ``<work_dir>/train`` (the user's
    folder is only read)."""
    from dataset.prepare.layout import VIDEO_EXTS

    if not os.path.isdir(video_dir):
        raise UserError(f"--data {video_dir}: not a folder")
    vids = sorted(n for n in os.listdir(video_dir) if n.lower().endswith(VIDEO_EXTS) and not n.startswith("."))
    if len(vids) < 2:
        raise UserError(f"--data {video_dir}: need at least 2 videos (training + one held out), found {len(vids)}")
    held = os.path.abspath(os.path.join(video_dir, vids[-1]))
    train_dir = os.path.join(work_dir, "train")
    os.makedirs(train_dir, exist_ok=True)
    for n in os.listdir(train_dir):
        if n not in vids[:-1]:
            os.remove(os.path.join(train_dir, n))
    for n in vids[:-1]:
        link = os.path.join(train_dir, n)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(video_dir, n)), link)
    log(f"real data: {len(vids) - 1} training video(s), held out {vids[-1]} (dubbed with its own audio)")
    return DemoData(train_dir, held, [EvalItem(os.path.splitext(vids[-1])[0], "(its own speech)", held, "")],
                    False, "")


def load_openness(item: EvalItem) -> np.ndarray | None:
    return np.load(item.openness).astype(np.float64) if item.openness else None
