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
                      cut/pad rule, utils/audio/base.py)
    detect_landmarks  dlib 68 points, main face tracked and smoothed -> landmarks/<vid>.csv (OpenFace layout);
                      a CSV already in landmarks/ (or in --openface_landmark_dir) is used instead; no face in any
                      frame -> failed
    crop_face         second streaming pass: frontalised crop (docs/original.md) of every frame with a face ->
                      crops/<vid>/<frame:06d>.jpg, crop_width wide; written to crops/<vid>.part/ and renamed

``num_frames`` is always ``count_frames(videos_25fps/<vid>.mp4, 25)``: CSV rows, feature rows and
(crops + invalid frames) all equal it. A stage that needs an earlier stage's output runs that stage first.

Bookkeeping: ``status/<vid>.json`` is the per-video marker, written LAST (atomically) with the video's final
state (done / skipped / failed + reason, num_frames, invalid frames, the source's size and mtime, and the
``frame_rule`` of the reader that chose the 25 fps frames, ``utils.media.video_io.FRAME_RULE``). A marker made
under another frame rule (markers without one were made by the old "frame on screen at k/25" reader) has its
frame-dependent outputs (25 fps copy, wav, features, our landmarks, crops) removed and redone on the next run;
a user-provided landmark CSV is kept. When the source is the 25 fps copy itself (no --source_video_dir) the copy
cannot be redone: it is kept, the marker keeps its old rule and a warning says so (the index leaves it out).
``generate_training_json`` indexes only videos whose marker has the current rule. A later run
skips a video whose marker covers the requested outputs and whose source is unchanged; a failed or skipped
video is not retried unless ``retry_failed`` (or its source file changed). Every output is written to a temp
name and renamed, so an interrupted run never leaves a half file that a later run would trust.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict
from typing import Iterable, Optional

import numpy as np

from config.config import DataConfig
from config.profile import LAWDNET, get_profile
from dataset.prepare.layout import Layout, atomic_json, outputs_complete, read_json
from dataset.prepare.report import count_statuses
from dataset.prepare.stages import (
    SkipVideo,
    audio_stage,
    convert_stage,
    crop_stage,
    crops_ok,
    features_stage,
    frontend,
    landmark_stage,
    load_landmarks,
    load_tools,
    progress_bar,
)
from utils.audio.features import AUDIO_FEATURES
from utils.errors import UserError
from utils.media.formats import VIDEO_EXTS
from utils.media.timebase import FPS
from utils.media.video_io import FRAME_RULE, count_frames

# The rule of markers written before FRAME_RULE was recorded: output k showed the frame on screen at k / 25 s.
OLD_FRAME_RULE = "on-screen-at-k/25"

# Lazy imports below: torch and cv2 load in each worker process only to pin its thread count.

VIDEO_STAGES = ("convert_fps", "extract_audio", "extract_audio_features", "detect_landmarks", "crop_face")
# stage -> stages whose outputs it reads
_NEEDS = {"convert_fps": (), "extract_audio": ("convert_fps",), "extract_audio_features": ("extract_audio",),
          "detect_landmarks": ("convert_fps",), "crop_face": ("detect_landmarks",)}
MARKER_VERSION = 1


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


def _remove_outputs(L: Layout, vid: str, keep_csv: bool, keep_video: bool = False) -> None:
    """Drop stale outputs of a video whose source (or preprocessing profile) changed (a user-provided CSV is kept)."""
    for p in ([] if keep_video else [L.video(vid)]) + [L.wav(vid)] + [L.feature(f, vid) for f in AUDIO_FEATURES] + (
            [] if keep_csv else [L.csv(vid)]):
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
    invalid_frames (count), stages_run, seconds, timings (seconds per stage run), warnings (what the readers
    found suspicious in the source: truncated file, damaged packets; kept in the marker for later runs).
    """
    t_start = time.time()
    L = Layout(cfg.data_root)
    features = features or parse_features(cfg.audio_feature)
    stages = expand_stages(stages)
    profile = get_profile(cfg.profile)
    marker_path = L.marker(vid)
    marker = read_json(marker_path) or {}
    try:
        sig = _signature(source)
    except OSError as e:
        return _result(vid, source, "failed", f"cannot read the source: {e}")
    same_source = _same_source(marker, source, sig, L.video(vid))
    own_copy = os.path.abspath(source) == L.video(vid)    # no source folder: our 25 fps copy is the input
    video_rule = FRAME_RULE
    if marker and same_source and marker.get("frame_rule", OLD_FRAME_RULE) != FRAME_RULE:
        old_rule = marker.get("frame_rule", OLD_FRAME_RULE)
        if own_copy:   # the copy cannot be converted again (what is read from it is the same under both rules)
            video_rule = old_rule
            note = (f"{vid}: videos_25fps/{vid}.mp4 was converted by the frame rule {old_rule!r}, not "
                    f"{FRAME_RULE!r}; run again with --source_video_dir to convert it again (left out of the "
                    "index until then)")
            marker["warnings"] = [w for w in marker.get("warnings", []) if w != note] + [note]
        else:          # frames were chosen by another rule: everything that depends on which frames is stale
            _remove_outputs(L, vid, keep_csv=marker.get("landmarks_origin") == "user")
            marker = {k: marker[k] for k in ("source", "source_sig", "landmarks_origin") if k in marker}
    if marker and not same_source:  # the user replaced the video: outputs derived from the old one are stale
        _remove_outputs(L, vid, keep_csv=marker.get("landmarks_origin") == "user")
        os.remove(marker_path)
        marker = {}
    elif same_source and not retry_failed and marker.get("status") in ("failed", "skipped"):
        return _result(vid, source, marker["status"], marker.get("reason", ""), num_frames=marker.get("num_frames"),
                       previous_run=True, warnings=marker.get("warnings", []))
    elif same_source and marker.get("status") == "done" and marker.get("profile", LAWDNET) != profile.name:
        # another preprocessing profile: the wav (resampler), features and crops (fill, sampling) are stale
        _remove_outputs(L, vid, keep_csv=True, keep_video=True)
        marker = {k: marker[k] for k in ("source", "source_sig", "landmarks_origin") if k in marker}
    elif (same_source and marker.get("status") == "done" and marker.get("crop_width") == cfg.crop_width
          and set(features) <= set(marker.get("features", [])) and outputs_complete(L, vid, features)):
        return _result(vid, source, "skipped", "already processed", num_frames=marker.get("num_frames"),
                       invalid_frames=len(marker.get("invalid_frames", [])), previous_run=True,
                       warnings=marker.get("warnings", []))

    # a run on our own 25 fps copy keeps recording the original source, so a later run from it stays valid
    m_source, m_sig = source, sig
    if os.path.abspath(source) == L.video(vid) and marker.get("source"):
        m_source, m_sig = marker["source"], marker.get("source_sig")
    ran: list[str] = []
    timings: dict[str, float] = {}
    num_frames = None
    invalid = marker.get("invalid_frames") if marker.get("status") == "done" else None
    origin = marker.get("landmarks_origin", "")
    notes: list = list(marker.get("warnings", []))

    def timed(name, fn, *a, **kw):
        t = time.time()
        out = fn(*a, **kw)
        timings[name] = timings.get(name, 0.0) + time.time() - t
        ran.append(name)
        return out

    def finish(status, reason=""):
        rec = {"version": MARKER_VERSION, "status": status, "reason": reason, "source": m_source,
               "source_sig": m_sig, "num_frames": num_frames, "landmarks_origin": origin, "warnings": notes,
               "frame_rule": video_rule,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if status == "done":
            rec.update(crop_width=cfg.crop_width, profile=profile.name, invalid_frames=invalid or [],
                       features=[f for f in AUDIO_FEATURES if os.path.isfile(L.feature(f, vid))])
        atomic_json(marker_path, rec)  # the marker is the last thing written for a video

    try:
        v25 = L.video(vid)
        t = time.time()
        load_tools(stages, features, cfg, need_detector=not os.path.isfile(L.csv(vid)) and not (
            cfg.openface_landmark_dir and os.path.isfile(os.path.join(cfg.openface_landmark_dir, vid + ".csv"))))
        timings["setup"] = time.time() - t  # one-time imports and model loading of this process
        if os.path.abspath(source) != v25 and not os.path.isfile(v25):
            timed("convert_fps", convert_stage, source, v25, notes)
        if not os.path.isfile(v25):
            raise UserError(f"{v25}: missing (run --convert_fps with --source_video_dir)")
        num_frames = count_frames(v25, FPS)
        if num_frames < cfg.clip_length:
            raise SkipVideo(f"only {num_frames} frames at 25 fps, shorter than one clip ({cfg.clip_length})")
        if "extract_audio" in stages and not os.path.isfile(L.wav(vid)):
            timed("extract_audio", audio_stage, v25, L.wav(vid), notes, profile.resampler)
        if "extract_audio_features" in stages:
            for f in features:
                if not os.path.isfile(L.feature(f, vid)):
                    timed("extract_audio_features", features_stage, L.wav(vid), L.feature(f, vid), f, num_frames,
                          cfg.audio_model_path, cfg.device, profile.audio_precision)
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
        if "crop_face" in stages and not crops_ok(L.crops(vid), cfg.crop_width):
            invalid = timed("crop_face", crop_stage, v25, L.csv(vid), L.crops(vid), num_frames, cfg.crop_width,
                            cfg.jpeg_quality, progress, profile)
    except SkipVideo as e:
        finish("skipped", str(e))
        return _result(vid, source, "skipped", str(e), num_frames=num_frames, stages_run=ran, timings=timings,
                       seconds=time.time() - t_start, warnings=notes)
    except UserError as e:
        finish("failed", str(e))
        return _result(vid, source, "failed", str(e), num_frames=num_frames, stages_run=ran, timings=timings,
                       seconds=time.time() - t_start, warnings=notes)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # an unexpected error: reported, no marker (so the next run retries it)
        return _result(vid, source, "failed", f"{type(e).__name__}: {e}", num_frames=num_frames, stages_run=ran,
                       timings=timings, seconds=time.time() - t_start, warnings=notes)
    if outputs_complete(L, vid, features) and invalid is not None:
        finish("done")
    return _result(vid, source, "processed" if ran else "skipped", "" if ran else "outputs already present",
                   num_frames=num_frames, invalid_frames=len(invalid) if invalid is not None else None,
                   stages_run=ran, timings=timings, seconds=time.time() - t_start, warnings=notes)


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
    get_profile(cfg.profile)  # an unknown --profile is one error, not one per video
    if "extract_audio_features" in stages:  # a wrong model path is one clear error, not one per video
        for f in features:
            frontend(f, cfg.audio_model_path, cfg.device)
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
        for vid in progress_bar(ids, progress, desc="videos", unit="video"):
            results[vid] = process_video(vid, videos[vid], cfg, stages, features, retry_failed, progress)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # no forked torch/CUDA/dlib state in the workers
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
            futs = {pool.submit(_run_one, (vid, videos[vid], cfg, stages, features, retry_failed, False)): vid
                    for vid in ids}
            for fut in progress_bar(cf.as_completed(futs), progress, total=len(futs), desc="videos", unit="video"):
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
        "counts": count_statuses(results.values()), "videos": {v: results[v] for v in sorted(results)},
    }
    if write_report:
        atomic_json(Layout(cfg.data_root).report(shard), report)
    return report


