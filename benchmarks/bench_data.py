"""Frames per second of each data-preparation stage on a synthetic talking head, with 1 and 2 workers.

    python benchmarks/bench_data.py [--seconds 20] [--size 256] [--workers 1 2] [--feature mel]

The source video is made at 30 fps so --convert_fps really re-encodes. A run with W workers prepares W copies
of it in parallel. Per stage the table shows frames (at 25 fps) per second of stage time; for W > 1 it is the
aggregate rate, total frames / (summed stage time / W). One-time imports and model loading are timed apart; the
last row is the whole run by wall clock (process start-up included).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config.config import DataConfig  # noqa: E402
from dataset.prepare.pipeline import VIDEO_STAGES, prepare_dataset  # noqa: E402
from utils.errors import cli_main  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog. Peter bought a big map before the trip to Madrid. "
        "Please open the window, the room is very warm today. We watched the moon rise above the quiet harbour. "
        "My father always buys fresh bread from the market.")


def make_source(path: str, seconds: float, size: int) -> dict:
    from utils.synthetic.speech import synthesize_speech
    from utils.synthetic.talking_head import make_talking_head

    speech, sr, _ = synthesize_speech(TEXT, "en", 175)
    tail = max(0.2, seconds - 0.2 - len(speech) / sr)
    return make_talking_head(path, TEXT, size=size, fps=30, lead_s=0.2, tail_s=tail, preset="veryfast")


def bench(src: str, workers: int, work: str, feature: str, crop_width: int) -> dict:
    sdir = os.path.join(work, f"src_w{workers}")
    os.makedirs(sdir, exist_ok=True)
    for i in range(workers):
        shutil.copy(src, os.path.join(sdir, f"v{i}.mp4"))
    cfg = DataConfig(source_video_dir=sdir, data_root=os.path.join(work, f"data_w{workers}"), workers=workers,
                     audio_feature=feature, crop_width=crop_width)
    rep = prepare_dataset(cfg, VIDEO_STAGES, progress=False)
    bad = [r for r in rep["videos"].values() if r["status"] != "processed"]
    if bad:
        raise RuntimeError(f"benchmark video not processed: {bad[0]['reason']}")
    frames = sum(r["num_frames"] for r in rep["videos"].values())
    rates = {}
    for stage in VIDEO_STAGES:
        t = sum(r["timings"].get(stage, 0.0) for r in rep["videos"].values())
        rates[stage] = frames / (t / workers) if t > 0 else float("nan")
    rates["whole run (wall)"] = frames / rep["seconds"]
    setup = max(r["timings"].get("setup", 0.0) for r in rep["videos"].values())
    return {"frames": frames, "rates": rates, "setup_s": setup}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", type=int, default=256, help="frame side of the synthetic video")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--feature", default="mel", help="audio front-end (learned ones need --audio_model_path)")
    p.add_argument("--crop_width", type=int, default=360)
    p.add_argument("--work_dir", default="", help="keep the files here (default: a temp folder, deleted)")
    a = p.parse_args(argv)
    work = a.work_dir or tempfile.mkdtemp(prefix="bench_data_")
    try:
        os.makedirs(work, exist_ok=True)
        meta = make_source(os.path.join(work, "source.mp4"), a.seconds, a.size)
        print(f"source: {meta['video_seconds']:.1f} s, {meta['num_frames']} frames at 30 fps, {a.size}x{a.size}; "
              f"{os.cpu_count()} CPU cores")
        results = {w: bench(meta["video"], w, work, a.feature, a.crop_width) for w in a.workers}
    finally:
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    cols = [f"workers={w} (frames/s)" for w in a.workers]
    names = list(VIDEO_STAGES) + ["whole run (wall)"]
    w0 = max(len(n) for n in names)
    print(f"{'stage':<{w0}}  " + "  ".join(f"{c:>22}" for c in cols))
    for n in names:
        print(f"{n:<{w0}}  " + "  ".join(f"{results[w]['rates'][n]:>22.1f}" for w in a.workers))
    print("one-time setup per worker process (imports, dlib/front-end loading, not in the stage rows): "
          + ", ".join(f"workers={w}: {results[w]['setup_s']:.1f} s" for w in a.workers))
    return results


if __name__ == "__main__":
    cli_main(main)
