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

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.media.audio_io import load_audio
from utils.media.formats import VIDEO_EXTS
from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE
from utils.media.video_io import VideoWriter, count_frames, iter_frames
from utils.synthetic.speech import SENTENCES

# Lazy imports below: the synthetic talking head (cv2, dlib, skimage behind it) and the evaluation package load only
# when used (start-up time of demo.py).

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


def make_one_video_speaker(data_dir: str, spec: SpeakerSpec, log=print) -> tuple[str, str, float]:
    """The synthetic speaker as ONE video, for the person-specific flow (``demo.py --data``): the training
    sentences at every speed, then the held-out sentences, in ``<data_dir>/video/presenter.mp4`` (+ its
    ``.mouth.npy``); and a template (a new take of training sentences) whose frames line up with the held-out part:
    both are rendered with one head-motion seed, so frame k of the template and of the held-out part show the same
    pose and a dub of the held-out speech can be compared pixel by pixel with the held-out footage.
    Returns (video, template, held-out seconds: pass it as --holdout_s)."""
    parts_dir, video_dir = os.path.join(data_dir, "parts"), os.path.join(data_dir, "video")
    os.makedirs(parts_dir, exist_ok=True)
    os.makedirs(video_dir, exist_ok=True)
    common = dict(voice=spec.voice, size=spec.size, head_motion=spec.head_motion)
    train_text = " ".join(SENTENCES[sid][1] for sid in ENGLISH[:spec.train_sentences])
    held_text = " ".join(SENTENCES[sid][1] for sid in ENGLISH[len(ENGLISH) - spec.heldout_sentences:])
    mid_speed = sorted(spec.speeds)[len(spec.speeds) // 2]
    parts = [_render(os.path.join(parts_dir, f"train_v{v}.mp4"), train_text, log, seed=spec.seed * 1000 + v,
                     speed=v, **common) for v in spec.speeds]
    held = _render(os.path.join(parts_dir, "heldout.mp4"), held_text, log, seed=EVAL_SEED + spec.seed,
                   speed=mid_speed, **common)
    video = os.path.join(video_dir, "presenter.mp4")
    if not all(os.path.isfile(p) for p in (video, video[:-4] + ".mouth.npy")):
        log(f"joining {len(parts) + 1} takes into {video}")
        concat_videos([p["video"] for p in parts + [held]], video)
        np.save(video[:-4] + ".mouth.npy", np.concatenate([np.load(p["mouth"]) for p in parts + [held]]))
    tpl = os.path.join(data_dir, "template.mp4")
    tpl_text = " ".join(SENTENCES[sid][1] for sid in ENGLISH[:2])
    tail = 0.3
    for _ in range(3):                  # as long as the held-out part at least (no ping-pong: poses stay aligned)
        meta = _render(tpl, tpl_text, log, seed=EVAL_SEED + spec.seed, speed=mid_speed, lead_s=0.7, tail_s=tail,
                       **common)
        if meta["num_frames"] >= held["num_frames"]:
            break
        tail = round(tail + (held["num_frames"] - meta["num_frames"]) / FPS + 0.2, 2)
    return video, tpl, held["num_frames"] / FPS


def concat_videos(paths: list, dst: str) -> str:
    """The 25 fps videos ``paths`` one after the other (16 kHz mono audio, 640 samples per frame) in ``dst``."""
    counts = [count_frames(p, FPS) for p in paths]
    audio = np.concatenate([np.pad(a, (0, max(0, n * FRAME_SAMPLES - len(a))))[:n * FRAME_SAMPLES]
                            for a, n in zip((load_audio(p, SAMPLE_RATE) for p in paths), counts)])
    with VideoWriter(dst, fps=FPS, audio=audio, sample_rate=SAMPLE_RATE, preset="fast") as w:
        for p, n in zip(paths, counts):
            for frame in iter_frames(p, fps=FPS, max_frames=n):
                w.write(frame)
    return dst


def cut_video(src: str, dst: str, start: int, stop: int) -> str:
    """Frames [start, stop) of ``src`` at 25 fps with the matching audio (16 kHz mono) as an mp4; the audio of
    frame k is samples [640 k, 640 (k + 1)), the rule of the data pipeline."""
    audio = load_audio(src, SAMPLE_RATE)
    audio = np.pad(audio, (0, max(0, stop * FRAME_SAMPLES - len(audio))))
    audio = audio[start * FRAME_SAMPLES:stop * FRAME_SAMPLES]
    with VideoWriter(dst, fps=FPS, audio=audio, sample_rate=SAMPLE_RATE, preset="fast") as w:
        for k, frame in enumerate(iter_frames(src, fps=FPS, max_frames=stop)):
            if k >= start:
                w.write(frame)
    return dst


def default_holdout_s(num_videos: int, last_seconds: float) -> float:
    """0 (the whole last video) with several videos; 20 % of a single video, between 3 and 20 s."""
    if num_videos > 1:
        return 0.0
    return round(min(20.0, max(3.0, 0.2 * last_seconds)), 2)


def real_data(source: str, work_dir: str, log=print, holdout_s: float | None = None, template: str = "",
              min_train_s: float = 5.0) -> DemoData:
    """The user's videos of one person (a folder, or one video file). The last one by name is held out - its
    last ``holdout_s`` seconds (default: the whole last video when there are several, 20 % of a single video) -
    and dubbed with its own speech onto ``template`` (default: the held-out footage itself, i.e. reconstruction);
    everything before that is training data, under ``<work_dir>/train`` (the user's files are only read: whole
    videos are linked, a cut one is re-encoded). A ``<video>.mouth.npy`` next to a video (utils.synthetic writes
    one) gives per-frame ground-truth openness."""
    if os.path.isfile(source):
        folder, vids = os.path.dirname(os.path.abspath(source)), [os.path.basename(source)]
    elif os.path.isdir(source):
        folder = os.path.abspath(source)
        vids = sorted(n for n in os.listdir(source) if n.lower().endswith(VIDEO_EXTS) and not n.startswith("."))
    else:
        raise UserError(f"--data {source}: not a folder or a video file")
    if not vids:
        raise UserError(f"--data {source}: no video found ({', '.join(VIDEO_EXTS)})")
    last = os.path.join(folder, vids[-1])
    n_last = count_frames(last, FPS)
    if holdout_s is None:
        holdout_s = default_holdout_s(len(vids), n_last / FPS)
    if holdout_s < 0:
        raise UserError(f"--holdout_s must be >= 0 (0 = the whole last video), got {holdout_s}")
    held_frames = n_last if holdout_s == 0 else int(round(holdout_s * FPS))
    if held_frames > n_last:
        raise UserError(f"--holdout_s {holdout_s}: {vids[-1]} is only {n_last / FPS:.1f} s long")
    if held_frames < FPS:
        raise UserError(f"--holdout_s {holdout_s}: hold out at least 1 s to validate on")
    cut = n_last - held_frames
    if len(vids) == 1 and cut < min_train_s * FPS:
        raise UserError(f"{vids[-1]} ({n_last / FPS:.1f} s) is too short to train on {min_train_s:g} s and hold out "
                        f"{held_frames / FPS:.1f} s: give a longer video, more videos, or a shorter --holdout_s")
    train_dir, eval_dir = os.path.join(work_dir, "train"), os.path.join(work_dir, "eval")
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(eval_dir, exist_ok=True)
    split = {"source": last, "size": os.path.getsize(last), "mtime_ns": os.stat(last).st_mtime_ns, "cut": cut,
             "frames": n_last, "videos": vids}
    split_path = os.path.join(work_dir, "split.json")
    same = False
    if os.path.isfile(split_path):
        with open(split_path, encoding="utf-8") as f:
            same = json.load(f) == split
    stem = os.path.splitext(vids[-1])[0]
    train_names = vids[:-1] + ([f"{stem}.mp4"] if cut else [])
    for n in os.listdir(train_dir):                     # what an earlier split left must not be trained on
        if n not in train_names or not same:
            os.remove(os.path.join(train_dir, n))
    for n in vids[:-1]:
        link = os.path.join(train_dir, n)
        if not os.path.lexists(link):
            os.symlink(os.path.join(folder, n), link)
    held = os.path.join(eval_dir, "heldout.mp4")
    gt = os.path.join(folder, stem + ".mouth.npy")
    openness = ""
    if not same or not os.path.isfile(held):
        if cut:
            log(f"real data: holding out the last {held_frames / FPS:.1f} s of {vids[-1]}")
            cut_video(last, os.path.join(train_dir, f"{stem}.mp4"), 0, cut)
            cut_video(last, held, cut, n_last)
        else:
            cut_video(last, held, 0, n_last)
        if os.path.isfile(gt):
            np.save(os.path.join(eval_dir, "heldout.mouth.npy"), np.load(gt)[cut:n_last])
        with atomic_write(split_path, "w", encoding="utf-8") as f:
            json.dump(split, f, indent=1)
    if os.path.isfile(os.path.join(eval_dir, "heldout.mouth.npy")):
        openness = os.path.join(eval_dir, "heldout.mouth.npy")
    what = f"the last {held_frames / FPS:.1f} s of {vids[-1]}" if cut else vids[-1]
    log(f"real data: {len(train_names)} training video(s), held out {what} (dubbed with its own speech onto "
        f"{os.path.basename(template) if template else 'its own footage'})")
    return DemoData(train_dir, os.path.abspath(template) if template else held,
                    [EvalItem(stem, "(its own speech)", held, openness)], False, "")


def load_openness(item: EvalItem) -> np.ndarray | None:
    return np.load(item.openness).astype(np.float64) if item.openness else None


# Seconds of speech (not counting silences) a person-specific model needs to learn a mouth from: the synthetic
# speaker's one-video benchmark learns it from 47 s of speech (held-out openness r 0.82) and the demo from 47 s
# (0.87); an 11 s film clip (about 9 s of training speech) gave a smeared mouth. 40 s is between what failed and
# what worked; a real face (head motion, lighting, a real voice) likely needs more
MIN_SPEECH_S = 40.0


def speech_seconds(train_dir: str) -> float:
    """Seconds of speech (frames of the audio above the silence level of evaluation.mouth_motion) in the videos
    of ``train_dir``."""
    from evaluation.mouth_motion import audio_energy_db, silent_frames

    total = 0.0
    for name in sorted(os.listdir(train_dir)):
        if not name.lower().endswith(VIDEO_EXTS):
            continue
        try:
            a = load_audio(os.path.join(train_dir, name), SAMPLE_RATE)
        except UserError:
            continue
        T = len(a) // FRAME_SAMPLES
        if T:
            total += float((~silent_frames(audio_energy_db(a, T))).sum()) / FPS
    return total
