"""Data preparation stages: a folder of raw videos -> a training set in the layout of ``dataset/index.py``.

Per video the stages run in this order (each one only when its output is missing, so a run can be resumed
anywhere and a second run does nothing)::

    convert_fps       source -> videos_25fps/<vid>.mp4, constant 25 fps, audio kept (a source that already is a
                      constant-25-fps mp4 is copied, not re-encoded)
    (length check)    fewer frames than one clip (clip_length) -> skipped
    extract_audio     videos_25fps/<vid>.mp4 -> audio/<vid>.wav, 16 kHz mono; no audio track -> failed,
                      digital silence -> skipped
    extract_audio_features
                      audio/<vid>.wav -> features/<feature>/<vid>.npy, exactly num_frames rows (the front-end's
                      cut/pad rule, utils/audio_features.py)
    detect_landmarks  dlib 68 points, main face tracked and smoothed -> landmarks/<vid>.csv (OpenFace layout);
                      a CSV already in landmarks/ (or in --openface_landmark_dir) is used instead; no face in any
                      frame -> failed
    crop_face         second streaming pass: frontalised crop (spec 4.5) of every frame with a face ->
                      crops/<vid>/<frame:06d>.jpg, crop_width wide; written to crops/<vid>.part/ and renamed

``num_frames`` is always ``count_frames(videos_25fps/<vid>.mp4, 25)``: CSV rows, feature rows and
(crops + invalid frames) all equal it. A stage that needs an earlier stage's output runs that stage first.

Bookkeeping: ``status/<vid>.json`` is the per-video marker, written LAST (atomically) with the video's final
state (done / skipped / failed + reason, num_frames, invalid frames, the source's size and mtime). A later run
skips a video whose marker covers the requested outputs and whose source is unchanged; a failed or skipped
video is not retried unless ``retry_failed`` (or its source file changed). Every output is written to a temp
name and renamed, so an interrupted run never leaves a half file that a later run would trust.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict
from typing import Iterable, Optional

import numpy as np

from config.config import AUDIO_FEATURES, DataConfig
from dataset.index import INDEX_NAME, load_index, write_index
from utils.atomic import atomic_write
from utils.errors import UserError

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".flv", ".ts", ".wmv")
FPS = 25
SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-3                      # -60 dBFS: below this the whole track counts as silent
VIDEO_STAGES = ("convert_fps", "extract_audio", "extract_audio_features", "detect_landmarks", "crop_face")
# stage -> stages whose outputs it reads
_NEEDS = {"convert_fps": (), "extract_audio": ("convert_fps",), "extract_audio_features": ("extract_audio",),
          "detect_landmarks": ("convert_fps",), "crop_face": ("detect_landmarks",)}
MARKER_VERSION = 1


class SkipVideo(Exception):
    """The video is fine as a file but unusable for training (too short, silent, too few faces)."""


# ---------------------------------------------------------------------------------------------- layout

class Layout:
    """Paths inside a data root (the layout documented in dataset/index.py, plus status/ and reports)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.fspath(root))

    def video(self, vid):
        return os.path.join(self.root, "videos_25fps", vid + ".mp4")

    def csv(self, vid):
        return os.path.join(self.root, "landmarks", vid + ".csv")

    def wav(self, vid):
        return os.path.join(self.root, "audio", vid + ".wav")

    def feature(self, name, vid):
        return os.path.join(self.root, "features", name, vid + ".npy")

    def crops(self, vid):
        return os.path.join(self.root, "crops", vid)

    def marker(self, vid):
        return os.path.join(self.root, "status", vid + ".json")

    def index(self):
        return os.path.join(self.root, INDEX_NAME)

    def report(self, shard: Optional[tuple[int, int]] = None):
        name = "report.json" if shard is None else f"report.shard-{shard[0]}-of-{shard[1]}.json"
        return os.path.join(self.root, name)

    def rel(self, path):
        return os.path.relpath(path, self.root).replace(os.sep, "/")


def _atomic_json(path: str, data) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)


def _atomic_npy(path: str, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def _atomic_copy(src: str, dst: str) -> None:
    with atomic_write(dst, "wb") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------------------------------------- inputs

def parse_features(spec) -> list[str]:
    """'mel' or 'mel,deepspeech2' (or a list) -> validated list of front-end names."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    out = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in AUDIO_FEATURES:
            raise UserError(f"unknown --audio_feature {item!r}; choose from {', '.join(AUDIO_FEATURES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise UserError("--audio_feature is empty")
    return out


def parse_shard(spec: str) -> Optional[tuple[int, int]]:
    """'K/N' -> (K, N) with 0 <= K < N; '' -> None."""
    if not spec:
        return None
    try:
        k, n = (int(x) for x in str(spec).split("/"))
    except ValueError:
        raise UserError(f"--shard must look like K/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise UserError(f"--shard {spec}: need 0 <= K < N (Slurm: use --array=0-{max(n - 1, 0)} so "
                        "$SLURM_ARRAY_TASK_ID starts at 0)")
    return k, n


def shard_ids(ids: Iterable[str], shard: Optional[tuple[int, int]]) -> list[str]:
    """Deterministic share of the videos: round-robin over the sorted ids (every shard must see the same list)."""
    ids = sorted(ids)
    if shard is None:
        return ids
    k, n = shard
    return [v for i, v in enumerate(ids) if i % n == k]


def list_videos(source_dir: str) -> dict[str, str]:
    """id -> path of every video file in ``source_dir`` (not recursive; hidden files ignored).

    The id is the file stem; when two files share a stem (a.mp4, a.mov) the later ones get the extension
    appended (a_mov) so no id is reused.
    """
    source_dir = os.fspath(source_dir)
    if not os.path.isdir(source_dir):
        raise UserError(f"--source_video_dir {source_dir}: not a folder")
    out: dict[str, str] = {}
    for name in sorted(os.listdir(source_dir)):
        path = os.path.join(source_dir, name)
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in VIDEO_EXTS or not os.path.isfile(path):
            continue
        vid = stem if stem not in out else f"{stem}_{ext.lstrip('.').lower()}"
        k = 2
        while vid in out:
            vid = f"{stem}_{ext.lstrip('.').lower()}{k}"
            k += 1
        out[vid] = path
    return out


def _signature(path: str) -> list:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


# ---------------------------------------------------------------------------------------------- per-process caches

_CACHE: dict = {}


def _frontend(name: str, model_path: str, device: str):
    key = ("frontend", name, model_path if name != "mel" else "", device)
    if key not in _CACHE:
        from utils.audio_features import get_frontend

        _CACHE[key] = get_frontend(name, model_path, device)
    return _CACHE[key]


def _detector():
    if "detector" not in _CACHE:
        from utils.landmarks import LandmarkDetector

        _CACHE["detector"] = LandmarkDetector()
    return _CACHE["detector"]


def _load_tools(stages, features, cfg: DataConfig, need_detector: bool) -> None:
    """Import the stage modules and load the models once per process, so stage timings measure the work."""
    import utils.audio_io  # noqa: F401
    import utils.video_io  # noqa: F401

    if "crop_face" in stages:
        import utils.face_align  # noqa: F401
    if "extract_audio_features" in stages:
        for f in features:
            _frontend(f, cfg.audio_model_path, cfg.device)
    if "detect_landmarks" in stages and need_detector:
        _detector()


def _tqdm(it, progress: bool, **kw):
    from tqdm import tqdm

    return tqdm(it, disable=not progress, leave=False, **kw)


# ---------------------------------------------------------------------------------------------- stages

def convert_stage(src: str, dst: str) -> bool:
    """Constant-25-fps copy of ``src`` at ``dst``; copies instead of re-encoding when it already is one."""
    from utils.video_io import convert_to_fps, count_frames, probe

    info = probe(src)
    cfr25 = (os.path.splitext(src)[1].lower() in (".mp4", ".m4v") and abs(info.fps - FPS) < 1e-3
             and count_frames(src, None) == count_frames(src, FPS))
    if cfr25:
        _atomic_copy(src, dst)
        return False
    convert_to_fps(src, dst, fps=FPS)
    return True


def audio_stage(video: str, wav: str) -> None:
    """16 kHz mono wav of the video's audio track; SkipVideo for digital silence."""
    from utils.audio_io import load_audio, save_wav
    from utils.video_io import probe

    if not probe(video).has_audio:
        raise UserError(f"{os.path.basename(video)}: the video has no audio track")
    samples = load_audio(video, SAMPLE_RATE)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak < SILENCE_PEAK:
        raise SkipVideo(f"the audio track is silent (peak {peak:.1e} < {SILENCE_PEAK:g})")
    save_wav(wav, samples, SAMPLE_RATE)


def features_stage(wav: str, out: str, name: str, num_frames: int, model_path: str, device: str) -> None:
    """(num_frames, dim) float32 features of ``wav`` (exact length by the front-end's cut/pad rule)."""
    from utils.audio_io import load_audio

    feats = _frontend(name, model_path, device)(load_audio(wav, SAMPLE_RATE), num_frames)
    if feats.shape[0] != num_frames:  # the front-end contract; never store a misaligned file
        raise RuntimeError(f"{name} front-end returned {feats.shape[0]} rows for {num_frames} frames")
    _atomic_npy(out, feats.astype(np.float32))


def landmark_stage(video: str, csv_path: str, num_frames: int, import_dir: str = "", progress: bool = True) -> str:
    """Write ``csv_path``: a user CSV from ``import_dir`` if there is one, else dlib tracking. Returns the origin."""
    from utils.landmarks import track_landmarks, write_openface_csv
    from utils.video_io import iter_frames

    vid = os.path.splitext(os.path.basename(csv_path))[0]
    user_csv = os.path.join(import_dir, vid + ".csv") if import_dir else ""
    if user_csv and os.path.isfile(user_csv):
        _atomic_copy(user_csv, csv_path)
        return "user"
    lm, valid = track_landmarks(iter_frames(video, FPS), _detector(), progress=progress, total=num_frames)
    if len(lm) != num_frames:
        raise UserError(f"{os.path.basename(video)}: decoded {len(lm)} frames, expected {num_frames}")
    write_openface_csv(csv_path, lm, valid, fps=FPS)
    return "dlib"


def load_landmarks(csv_path: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of exactly ``num_frames`` frames from a CSV (ours or a user's OpenFace CSV).

    A user CSV may differ by a few rows (OpenFace run on a slightly different decode, spec 3.3): extra rows are
    dropped, missing frames are invalid. A larger difference means it belongs to another frame rate or video.
    """
    from utils.landmarks import read_openface_csv

    lm, valid = read_openface_csv(csv_path)
    if abs(len(lm) - num_frames) > max(3, int(0.01 * num_frames)):
        raise UserError(f"{csv_path}: {len(lm)} landmark rows but the 25 fps video has {num_frames} frames "
                        "(was it made from a video at another frame rate?)")
    if len(lm) < num_frames:
        pad = num_frames - len(lm)
        lm = np.concatenate([lm, np.repeat(lm[-1:], pad, 0)])
        valid = np.concatenate([valid, np.zeros(pad, bool)])
    return lm[:num_frames], valid[:num_frames]


def crop_stage(video: str, csv_path: str, out_dir: str, num_frames: int, crop_width: int, jpeg_quality: int = 95,
               progress: bool = True) -> list[int]:
    """Aligned crops of every valid frame into ``out_dir`` (via ``out_dir.part``). Returns the invalid frames."""
    import cv2

    from utils.face_align import FaceAligner
    from utils.video_io import iter_frames

    lm, valid = load_landmarks(csv_path, num_frames)
    aligner = FaceAligner(crop_width)
    mats = aligner.estimate(lm)
    part = out_dir + ".part"
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    n = 0
    frames = iter_frames(video, FPS, max_frames=num_frames)
    for i, frame in enumerate(_tqdm(frames, progress, total=num_frames, desc="crops", unit="frame")):
        n += 1
        if not valid[i]:
            continue
        crop = aligner.crop(frame, mats[i])
        if not cv2.imwrite(os.path.join(part, f"{i:06d}.jpg"), np.ascontiguousarray(crop[..., ::-1]), params):
            raise OSError(f"cannot write {part}/{i:06d}.jpg")
    if n != num_frames:
        shutil.rmtree(part, ignore_errors=True)
        raise UserError(f"{os.path.basename(video)}: decoded {n} frames, expected {num_frames}")
    if os.path.isdir(out_dir):  # an older crop set (other crop_width): replace it
        shutil.rmtree(out_dir)
    os.replace(part, out_dir)
    return [int(i) for i in np.flatnonzero(~valid)]


def _crops_ok(out_dir: str, crop_width: int) -> bool:
    """A finished crop dir of the right width (only finished dirs exist under the final name)."""
    import cv2

    if not os.path.isdir(out_dir):
        return False
    names = sorted(n for n in os.listdir(out_dir) if n.endswith(".jpg"))
    if not names:
        return False
    img = cv2.imread(os.path.join(out_dir, names[0]), cv2.IMREAD_UNCHANGED)
    return img is not None and img.shape[:2] == (int(1.3 * crop_width), crop_width)


# ---------------------------------------------------------------------------------------------- one video

def expand_stages(stages: Iterable[str]) -> list[str]:
    """Requested stages plus the ones they read from, in execution order."""
    want = set()

    def add(s):
        if s not in _NEEDS:
            raise ValueError(f"unknown stage {s!r}")
        want.add(s)
        for d in _NEEDS[s]:
            add(d)

    for s in stages:
        add(s)
    return [s for s in VIDEO_STAGES if s in want]


def _outputs_complete(L: Layout, vid: str, features: list[str]) -> bool:
    return (os.path.isfile(L.video(vid)) and os.path.isfile(L.csv(vid)) and os.path.isfile(L.wav(vid))
            and all(os.path.isfile(L.feature(f, vid)) for f in features) and os.path.isdir(L.crops(vid)))


def _remove_outputs(L: Layout, vid: str, keep_csv: bool) -> None:
    """Drop stale outputs of a video whose source changed (a user-provided CSV is kept)."""
    for p in [L.video(vid), L.wav(vid)] + [L.feature(f, vid) for f in AUDIO_FEATURES] + ([] if keep_csv else [L.csv(vid)]):
        if os.path.isfile(p):
            os.remove(p)
    shutil.rmtree(L.crops(vid), ignore_errors=True)


def _same_source(marker: dict, source: str, sig: list, v25: str) -> bool:
    """Is ``source`` still the file the marker's outputs were made from?"""
    if not marker:
        return False
    if marker.get("source") == source:
        return marker.get("source_sig") == sig
    if os.path.abspath(source) == v25:  # a run without --source_video_dir works on our own 25 fps copy
        return True
    return (marker.get("source_sig") or [None])[0] == sig[0]  # the source folder moved: same size, same file


def _result(vid, src, status, reason="", **kw) -> dict:
    out = {"video": vid, "source": src, "status": status, "reason": reason}
    out.update(kw)
    return out


def process_video(vid: str, source: str, cfg: DataConfig, stages: Iterable[str], features: Optional[list] = None,
                  retry_failed: bool = False, progress: bool = True) -> dict:
    """Run ``stages`` (plus prerequisites) for one video; never raises for bad input.

    Returns a report record: video, source, status ('processed' | 'skipped' | 'failed'), reason, num_frames,
    invalid_frames (count), stages_run, seconds, timings (seconds per stage run).
    """
    t_start = time.time()
    L = Layout(cfg.data_root)
    features = features or parse_features(cfg.audio_feature)
    stages = expand_stages(stages)
    marker_path = L.marker(vid)
    marker = read_json(marker_path) or {}
    try:
        sig = _signature(source)
    except OSError as e:
        return _result(vid, source, "failed", f"cannot read the source: {e}")
    same_source = _same_source(marker, source, sig, L.video(vid))
    if marker and not same_source:  # the user replaced the video: outputs derived from the old one are stale
        _remove_outputs(L, vid, keep_csv=marker.get("landmarks_origin") == "user")
        os.remove(marker_path)
        marker = {}
    elif same_source and not retry_failed and marker.get("status") in ("failed", "skipped"):
        return _result(vid, source, marker["status"], marker.get("reason", ""), num_frames=marker.get("num_frames"),
                       previous_run=True)
    elif (same_source and marker.get("status") == "done" and marker.get("crop_width") == cfg.crop_width
          and set(features) <= set(marker.get("features", [])) and _outputs_complete(L, vid, features)):
        return _result(vid, source, "skipped", "already processed", num_frames=marker.get("num_frames"),
                       invalid_frames=len(marker.get("invalid_frames", [])), previous_run=True)

    # a run on our own 25 fps copy keeps recording the original source, so a later run from it stays valid
    m_source, m_sig = source, sig
    if os.path.abspath(source) == L.video(vid) and marker.get("source"):
        m_source, m_sig = marker["source"], marker.get("source_sig")
    ran: list[str] = []
    timings: dict[str, float] = {}
    num_frames = None
    invalid = marker.get("invalid_frames") if marker.get("status") == "done" else None
    origin = marker.get("landmarks_origin", "")

    def timed(name, fn, *a, **kw):
        t = time.time()
        out = fn(*a, **kw)
        timings[name] = timings.get(name, 0.0) + time.time() - t
        ran.append(name)
        return out

    def finish(status, reason=""):
        rec = {"version": MARKER_VERSION, "status": status, "reason": reason, "source": m_source,
               "source_sig": m_sig, "num_frames": num_frames, "landmarks_origin": origin,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if status == "done":
            rec.update(crop_width=cfg.crop_width, invalid_frames=invalid or [],
                       features=[f for f in AUDIO_FEATURES if os.path.isfile(L.feature(f, vid))])
        _atomic_json(marker_path, rec)  # the marker is the last thing written for a video

    try:
        from utils.video_io import count_frames

        v25 = L.video(vid)
        t = time.time()
        _load_tools(stages, features, cfg, need_detector=not os.path.isfile(L.csv(vid)) and not (
            cfg.openface_landmark_dir and os.path.isfile(os.path.join(cfg.openface_landmark_dir, vid + ".csv"))))
        timings["setup"] = time.time() - t  # one-time imports and model loading of this process
        if os.path.abspath(source) != v25 and not os.path.isfile(v25):
            timed("convert_fps", convert_stage, source, v25)
        if not os.path.isfile(v25):
            raise UserError(f"{v25}: missing (run --convert_fps with --source_video_dir)")
        num_frames = count_frames(v25, FPS)
        if num_frames < cfg.clip_length:
            raise SkipVideo(f"only {num_frames} frames at 25 fps, shorter than one clip ({cfg.clip_length})")
        if "extract_audio" in stages and not os.path.isfile(L.wav(vid)):
            timed("extract_audio", audio_stage, v25, L.wav(vid))
        if "extract_audio_features" in stages:
            for f in features:
                if not os.path.isfile(L.feature(f, vid)):
                    timed("extract_audio_features", features_stage, L.wav(vid), L.feature(f, vid), f, num_frames,
                          cfg.audio_model_path, cfg.device)
        if "detect_landmarks" in stages and not os.path.isfile(L.csv(vid)):
            origin = timed("detect_landmarks", landmark_stage, v25, L.csv(vid), num_frames,
                           cfg.openface_landmark_dir, progress)
        if "detect_landmarks" in stages or "crop_face" in stages:
            _, valid = load_landmarks(L.csv(vid), num_frames)
            if not valid.any():
                raise UserError(f"no face found in any of the {num_frames} frames")
            if valid.sum() < cfg.clip_length:
                raise SkipVideo(f"a face is visible in only {int(valid.sum())} of {num_frames} frames "
                                f"(< one clip, {cfg.clip_length})")
            invalid = [int(i) for i in np.flatnonzero(~valid)]
        if "crop_face" in stages and not _crops_ok(L.crops(vid), cfg.crop_width):
            invalid = timed("crop_face", crop_stage, v25, L.csv(vid), L.crops(vid), num_frames, cfg.crop_width,
                            cfg.jpeg_quality, progress)
    except SkipVideo as e:
        finish("skipped", str(e))
        return _result(vid, source, "skipped", str(e), num_frames=num_frames, stages_run=ran, timings=timings,
                       seconds=time.time() - t_start)
    except UserError as e:
        finish("failed", str(e))
        return _result(vid, source, "failed", str(e), num_frames=num_frames, stages_run=ran, timings=timings,
                       seconds=time.time() - t_start)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # an unexpected error: reported, no marker (so the next run retries it)
        return _result(vid, source, "failed", f"{type(e).__name__}: {e}", num_frames=num_frames, stages_run=ran,
                       timings=timings, seconds=time.time() - t_start)
    if _outputs_complete(L, vid, features) and invalid is not None:
        finish("done")
    return _result(vid, source, "processed" if ran else "skipped", "" if ran else "outputs already present",
                   num_frames=num_frames, invalid_frames=len(invalid) if invalid is not None else None,
                   stages_run=ran, timings=timings, seconds=time.time() - t_start)


def _worker_init(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(max(1, threads))
    except ImportError:
        pass


def _run_one(args) -> dict:
    return process_video(*args)


# ---------------------------------------------------------------------------------------------- whole folder

def discover(cfg: DataConfig) -> dict[str, str]:
    """id -> source path: the files of --source_video_dir, else the 25 fps videos already in the data root."""
    if cfg.source_video_dir:
        return list_videos(cfg.source_video_dir)
    L = Layout(cfg.data_root)
    folder = os.path.dirname(L.video("x"))
    if not os.path.isdir(folder):
        raise UserError(f"no --source_video_dir given and {folder} does not exist")
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.endswith(".mp4") and not n.startswith(".")}


def prepare_dataset(cfg: DataConfig, stages: Iterable[str], retry_failed: bool = False, progress: bool = True,
                    write_report: bool = True) -> dict:
    """Run the video stages over every video of this shard (in ``cfg.workers`` processes); return the report.

    The report is written to <data_root>/report.json (report.shard-K-of-N.json for a shard).
    """
    stages = expand_stages(stages)
    features = parse_features(cfg.audio_feature)
    shard = parse_shard(cfg.shard)
    if cfg.clip_length < 1 or cfg.crop_width < 8 or cfg.workers < 1:
        raise UserError("--clip_length and --workers must be >= 1 and --crop_width >= 8")
    if "extract_audio_features" in stages:  # a wrong model path is one clear error, not one per video
        for f in features:
            _frontend(f, cfg.audio_model_path, cfg.device)
    if cfg.openface_landmark_dir and not os.path.isdir(cfg.openface_landmark_dir):
        raise UserError(f"--openface_landmark_dir {cfg.openface_landmark_dir}: not a folder")
    videos = discover(cfg)
    if not videos:
        where = cfg.source_video_dir or os.path.dirname(Layout(cfg.data_root).video("x"))
        raise UserError(f"no video files ({', '.join(VIDEO_EXTS)}) in {where}")
    ids = shard_ids(videos, shard)
    os.makedirs(cfg.data_root, exist_ok=True)
    t0 = time.time()
    results: dict[str, dict] = {}
    workers = min(cfg.workers, max(1, len(ids)))
    if workers == 1:
        for vid in _tqdm(ids, progress, desc="videos", unit="video"):
            results[vid] = process_video(vid, videos[vid], cfg, stages, features, retry_failed, progress)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # no forked torch/CUDA/dlib state in the workers
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
            futs = {pool.submit(_run_one, (vid, videos[vid], cfg, stages, features, retry_failed, False)): vid
                    for vid in ids}
            for fut in _tqdm(cf.as_completed(futs), progress, total=len(futs), desc="videos", unit="video"):
                vid = futs[fut]
                try:
                    results[vid] = fut.result()
                except cf.process.BrokenProcessPool as e:  # a worker died (killed, out of memory, crash)
                    results[vid] = _result(vid, videos[vid], "failed", f"worker process died: {e}")
    report = {
        "format": "lawdnet-report-v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data_root": os.path.abspath(cfg.data_root), "source_video_dir": cfg.source_video_dir,
        "stages": stages, "audio_features": features, "shard": cfg.shard, "workers": workers,
        "seconds": round(time.time() - t0, 3), "config": asdict(cfg),
        "counts": _counts(results.values()), "videos": {v: results[v] for v in sorted(results)},
    }
    if write_report:
        _atomic_json(Layout(cfg.data_root).report(shard), report)
    return report


def _counts(records) -> dict:
    out = {"processed": 0, "skipped": 0, "failed": 0}
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def merge_shard_reports(data_root: str) -> Optional[dict]:
    """Join report.shard-*.json of a data root into report.json (after a Slurm array); None if there are none."""
    L = Layout(data_root)
    names = sorted(n for n in os.listdir(L.root) if n.startswith("report.shard-") and n.endswith(".json"))
    if not names:
        return None
    videos: dict = {}
    parts = []
    for n in names:
        r = read_json(os.path.join(L.root, n))
        if not r:
            continue
        parts.append(n)
        videos.update(r.get("videos", {}))
    report = {"format": "lawdnet-report-v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "data_root": L.root, "merged_from": parts, "counts": _counts(videos.values()),
              "videos": {v: videos[v] for v in sorted(videos)}}
    _atomic_json(L.report(), report)
    return report


# ---------------------------------------------------------------------------------------------- index

def generate_training_json(data_root: str, audio_features: Optional[list] = None,
                           crop_width: Optional[int] = None) -> tuple[str, dict]:
    """Write <data_root>/training_json.json from the 'done' markers of the data root (all shards included).

    ``audio_features``: the features every indexed video must have (None = those all done videos share).
    ``crop_width``: only videos cropped at this width (None = the most common one). Returns (path, summary)
    where summary has 'videos' (indexed count) and 'excluded' (name -> reason).
    """
    L = Layout(data_root)
    status_dir = os.path.dirname(L.marker("x"))
    markers = {}
    if os.path.isdir(status_dir):
        for n in sorted(os.listdir(status_dir)):
            if n.endswith(".json") and not n.startswith("."):
                m = read_json(os.path.join(status_dir, n))
                if m and m.get("status") == "done":
                    markers[n[:-5]] = m
    if not markers:
        raise UserError(f"{L.root}: no finished videos (status/*.json); run data_processing.py --all first")
    if crop_width is None:
        widths = [m.get("crop_width") for m in markers.values()]
        crop_width = max(set(widths), key=widths.count)
    if audio_features is None:
        sets = [set(m.get("features", [])) for m in markers.values() if m.get("crop_width") == crop_width]
        common = set.intersection(*sets) if sets else set()
        audio_features = [f for f in AUDIO_FEATURES if f in common]
        if not audio_features:
            raise UserError(f"{L.root}: the finished videos share no audio feature; pass --audio_feature")
    videos, excluded = {}, {}
    for vid, m in markers.items():
        if m.get("crop_width") != crop_width:
            excluded[vid] = f"cropped at width {m.get('crop_width')}, index uses {crop_width}"
            continue
        missing = [f for f in audio_features if not os.path.isfile(L.feature(f, vid))]
        if missing or not _outputs_complete(L, vid, []):
            excluded[vid] = "missing " + (", ".join(missing) + " features" if missing else "outputs")
            continue
        videos[vid] = {"num_frames": int(m["num_frames"]), "crop_dir": L.rel(L.crops(vid)),
                       "features": {f: L.rel(L.feature(f, vid)) for f in audio_features},
                       "invalid_frames": list(m.get("invalid_frames", [])), "landmarks": L.rel(L.csv(vid)),
                       "video": L.rel(L.video(vid)), "audio": L.rel(L.wav(vid))}
    if not videos:
        raise UserError(f"{L.root}: no video has all of {', '.join(audio_features)} at crop width {crop_width}")
    write_index(L.index(), crop_width, audio_features, videos)
    return L.index(), {"videos": len(videos), "excluded": excluded, "audio_features": audio_features,
                       "crop_width": crop_width}


# ---------------------------------------------------------------------------------------------- merge

def merge_data_roots(roots: list[str], out_root: str) -> tuple[str, dict]:
    """One index over several prepared data roots, without copying: entries point into the old roots.

    Paths are relative to ``out_root`` (keep the roots where they are relative to it). A name already taken
    gets the source root's folder name as prefix (``<root>_<vid>``, then a counter). All roots must share the
    crop width; the merged index lists the audio features they all have. Returns (index path, renames).
    """
    if len(roots) < 1:
        raise UserError("--merge needs at least one prepared data root")
    out = Layout(out_root)
    abs_roots = [os.path.abspath(r) for r in roots]
    if out.root in abs_roots:
        raise UserError(f"--data_root {out_root} must be a new folder, not one of the merged roots")
    if len(set(abs_roots)) != len(abs_roots):
        raise UserError("--merge lists the same data root twice")
    indexes = [load_index(r) for r in roots]
    widths = {ix.crop_width for ix in indexes}
    if len(widths) > 1:
        raise UserError("cannot merge data roots cropped at different widths: "
                        + ", ".join(f"{r}={ix.crop_width}" for r, ix in zip(roots, indexes)))
    common = [f for f in indexes[0].audio_features if all(f in ix.audio_features for ix in indexes)]
    if not common:
        raise UserError("the data roots share no audio feature: "
                        + ", ".join(f"{r}={ix.audio_features}" for r, ix in zip(roots, indexes)))
    videos, renames, origin = {}, {}, {}
    for r, ix in zip(abs_roots, indexes):
        tag = os.path.basename(r.rstrip(os.sep)) or "root"
        for name in sorted(ix.videos):
            e = ix.videos[name]
            new, k = name, 2
            if new in videos:
                new = f"{tag}_{name}"
                while new in videos:
                    new, k = f"{tag}{k}_{name}", k + 1
                renames[f"{r}:{name}"] = new
            videos[new] = {"num_frames": e.num_frames, "crop_dir": out.rel(e.crop_dir),
                           "features": {f: out.rel(e.features[f]) for f in common},
                           "invalid_frames": list(e.invalid_frames),
                           "landmarks": out.rel(e.landmarks) if e.landmarks else ""}
            origin[new] = {"status": "merged", "reason": "", "source": r, "original_name": name}
    os.makedirs(out.root, exist_ok=True)
    write_index(out.index(), widths.pop(), common, videos)
    _atomic_json(out.report(), {"format": "lawdnet-report-v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "merged_from": abs_roots, "renamed": renames,
                                "counts": {"merged": len(videos)}, "videos": origin})
    return out.index(), renames


# ---------------------------------------------------------------------------------------------- printing

def format_report(report: dict, max_rows: int = 60) -> str:
    """Summary table of a report: counts, then one row per video (processed rows dropped when there are many)."""
    rows = list(report.get("videos", {}).values())
    if len(rows) > max_rows:
        rows = [r for r in rows if r["status"] != "processed"][:max_rows]
    name_w = max([5] + [len(r["video"]) for r in rows])
    lines = [f"{'video':<{name_w}}  {'status':<9}  {'frames':>6}  {'no-face':>7}  reason",
             f"{'-' * name_w}  {'-' * 9}  {'-' * 6}  {'-' * 7}  {'-' * 6}"]
    for r in rows:
        nf = "" if r.get("num_frames") is None else str(r["num_frames"])
        inv = "" if r.get("invalid_frames") is None else str(r["invalid_frames"])
        reason = r.get("reason", "")
        if r.get("previous_run") and r["status"] != "processed" and reason != "already processed":
            reason += " [earlier run; --retry_failed retries]"
        lines.append(f"{r['video']:<{name_w}}  {r['status']:<9}  {nf:>6}  {inv:>7}  {reason}")
    c = report.get("counts", {})
    lines.append(f"processed {c.get('processed', 0)}, skipped {c.get('skipped', 0)}, failed {c.get('failed', 0)}"
                 f" ({report.get('seconds', 0):.1f} s)")
    return "\n".join(lines)


def print_report(report: dict, file=None) -> None:
    print(format_report(report), file=file or sys.stdout)
