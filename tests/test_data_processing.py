"""data_processing.py end to end on real files: synthetic talking heads (30 fps, audio longer than the video,
face-less frames) plus a corrupt file, a video without audio, a too-short one and a silent one."""
import json
import os
import shutil
import subprocess
import sys
import wave

import cv2
import numpy as np
import pytest

import data_processing
from config.config import DataConfig
from dataset.index import load_index, write_index
from dataset.prepare.indexing import generate_training_json, merge_data_roots
from dataset.prepare.layout import Layout
from dataset.prepare.pipeline import VIDEO_STAGES, list_videos, parse_features, parse_shard, prepare_dataset, shard_ids
from utils.errors import UserError
from utils.face.landmarks import read_openface_csv
from utils.synthetic.talking_head import make_talking_head
from utils.media.video_io import count_frames, probe, write_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROP_W = 128
GOOD = ("a30", "blong", "cface")
FACELESS = list(range(10, 16))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    gt = tmp_path_factory.mktemp("gt")
    kw = dict(size=160, preset="ultrafast", speed=200, lead_s=0.4, tail_s=0.4)
    meta = {
        "a30": make_talking_head(gt / "a30.mp4", "Peter bought a big map before the trip.", fps=30, seed=1, **kw),
        "blong": make_talking_head(gt / "blong.mp4", "We watched the moon rise above the harbour.",
                                   extra_audio_s=0.8, seed=2, **kw),
        "cface": make_talking_head(gt / "cface.mp4", "Five bright balloons floated away.",
                                   faceless_frames=FACELESS, seed=3, **kw),
    }
    for name in meta:  # only the videos go into the source folder (ground truth stays outside)
        shutil.copy(gt / f"{name}.mp4", d / f"{name}.mp4")
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(30)]
    write_video(d / "noaudio.mp4", frames, 25, preset="ultrafast")
    write_video(d / "short.mov", frames[:5], 25, audio=(0.1 * rng.standard_normal(3200)).astype(np.float32),
                preset="ultrafast")
    write_video(d / "silent.mkv", frames, 25, audio=np.zeros(19200, np.float32), preset="ultrafast")
    (d / "notes.txt").write_text("not a video")
    return {"dir": str(d), "meta": meta, "gt": str(gt)}


@pytest.fixture(scope="module")
def full(raw, tmp_path_factory):
    """The one-command run, as a user types it, with 2 worker processes."""
    root = str(tmp_path_factory.mktemp("full") / "data")
    cmd = [sys.executable, "data_processing.py", "--all", "--source_video_dir", raw["dir"], "--data_root", root,
           "--crop_width", str(CROP_W), "--workers", "2", "--no_progress"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return {"root": root, "stdout": res.stdout}


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.stat(p).st_mtime_ns
    return out


def test_report_statuses(full):
    rep = json.load(open(os.path.join(full["root"], "report.json")))
    v = rep["videos"]
    assert sorted(v) == ["a30", "blong", "cface", "corrupt", "noaudio", "short", "silent"]  # notes.txt ignored
    for name in GOOD:
        assert v[name]["status"] == "processed", v[name]
    assert v["corrupt"]["status"] == "failed" and "cannot open" in v["corrupt"]["reason"]
    assert v["noaudio"]["status"] == "failed" and "no audio track" in v["noaudio"]["reason"]
    assert v["short"]["status"] == "skipped" and "shorter than one clip" in v["short"]["reason"]
    assert v["silent"]["status"] == "skipped" and "silent" in v["silent"]["reason"]
    assert rep["counts"] == {"processed": 3, "skipped": 2, "failed": 2}
    assert "processed 3, skipped 2, failed 2" in full["stdout"]
    assert "corrupt" in full["stdout"] and "no audio track" in full["stdout"]


def test_outputs_exact_lengths(full, raw):
    root = full["root"]
    L = Layout(root)
    index = load_index(root)
    assert sorted(index.videos) == sorted(GOOD) and index.crop_width == CROP_W and index.audio_features == ["mel"]
    for name in GOOD:
        meta = raw["meta"][name]
        v25 = L.video(name)
        info = probe(v25)
        assert abs(info.fps - 25) < 1e-6 and info.has_audio
        n = count_frames(v25, 25)
        assert n == int(np.ceil(meta["video_seconds"] * 25 - 1e-6))  # 30 fps input: same duration at 25 fps
        lm, valid = read_openface_csv(L.csv(name))
        with open(L.csv(name)) as f:
            assert sum(1 for _ in f) - 1 == n                      # one CSV row per frame
        with wave.open(L.wav(name)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            wav_s = w.getnframes() / 16000
        assert abs(wav_s - meta["audio_seconds"]) < 0.1
        feats = np.load(L.feature("mel", name))
        assert feats.shape == (n, 80) and feats.dtype == np.float32 and np.isfinite(feats).all()
        entry = index.videos[name]
        crops = sorted(os.listdir(entry.crop_dir))
        assert entry.num_frames == n == len(feats) == len(crops) + len(entry.invalid_frames)
        assert crops == [f"{i:06d}.jpg" for i in entry.valid_frames()]
        assert entry.invalid_frames == [int(i) for i in np.flatnonzero(~valid)]
        for c in crops[:: max(1, len(crops) // 4)]:
            img = cv2.imread(os.path.join(entry.crop_dir, c))
            assert img.shape == (int(1.3 * CROP_W), CROP_W, 3) and img.std() > 10
    # audio longer than the video: the wav keeps it, the features are cut to the frames
    assert raw["meta"]["blong"]["audio_seconds"] - raw["meta"]["blong"]["video_seconds"] > 0.7
    # face-less frames are exactly the ones without a crop
    inv = set(index.videos["cface"].invalid_frames)
    assert set(FACELESS) <= inv and len(inv) <= len(FACELESS) + 2
    assert not index.videos["blong"].invalid_frames


def test_landmarks_match_ground_truth(full, raw):
    # blong is 25 fps: frame i of the prepared video is frame i of the source
    gt = np.load(raw["meta"]["blong"]["gt"])["landmarks"]
    lm, valid = read_openface_csv(Layout(full["root"]).csv("blong"))
    assert valid.all() and lm.shape == gt.shape
    err = np.linalg.norm(lm - gt, axis=-1)
    assert np.median(err) < 3.0, np.median(err)


def test_rerun_is_noop(full, raw):
    root = full["root"]
    before = _files(root)
    cfg = DataConfig(source_video_dir=raw["dir"], data_root=root, crop_width=CROP_W)
    rep = prepare_dataset(cfg, VIDEO_STAGES, progress=False)
    assert {v["status"] for n, v in rep["videos"].items() if n in GOOD} == {"skipped"}
    assert all(rep["videos"][n]["reason"] == "already processed" for n in GOOD)
    assert rep["videos"]["corrupt"]["status"] == "failed" and rep["videos"]["corrupt"]["previous_run"]
    assert rep["videos"]["short"]["status"] == "skipped"
    after = _files(root)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {"report.json"}, changed
    assert set(after) == set(before)


@pytest.fixture(scope="module")
def sharded(raw, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shards") / "data")
    reports = []
    for k in (0, 1):
        cfg = DataConfig(source_video_dir=raw["dir"], data_root=root, crop_width=CROP_W, shard=f"{k}/2")
        reports.append(prepare_dataset(cfg, VIDEO_STAGES, progress=False))
    out = data_processing.main(["--generate_training_json", "--data_root", root])
    return {"root": root, "reports": reports, "out": out}


def test_shards_equal_full_run(full, sharded):
    r0, r1 = (set(r["videos"]) for r in sharded["reports"])
    assert not r0 & r1 and len(r0 | r1) == 7 and abs(len(r0) - len(r1)) <= 1
    assert os.path.isfile(os.path.join(sharded["root"], "report.shard-0-of-2.json"))
    merged = json.load(open(os.path.join(sharded["root"], "report.json")))
    assert merged["counts"] == {"processed": 3, "skipped": 2, "failed": 2}
    a, b = load_index(full["root"]), load_index(sharded["root"])
    assert sorted(a.videos) == sorted(b.videos) == sorted(GOOD)
    for name in GOOD:
        ea, eb = a.videos[name], b.videos[name]
        assert (ea.num_frames, ea.invalid_frames) == (eb.num_frames, eb.invalid_frames)
        assert np.array_equal(np.load(ea.features["mel"]), np.load(eb.features["mel"]))
        assert sorted(os.listdir(ea.crop_dir)) == sorted(os.listdir(eb.crop_dir))
        la, lb = read_openface_csv(ea.landmarks)[0], read_openface_csv(eb.landmarks)[0]
        if name == "a30":  # re-encoded to 25 fps: libx264 with threads is not bit-reproducible between runs
            assert np.abs(la - lb).mean() < 0.5
        else:              # already 25 fps: copied, so decoding and dlib are exactly reproducible
            assert np.array_equal(la, lb)


def test_merge(full, sharded, tmp_path):
    out = str(tmp_path / "merged")
    res = data_processing.main(["--merge", full["root"], sharded["root"], "--data_root", out])
    ix = load_index(out)
    assert len(ix.videos) == 6 and len(res["renamed"]) == 3
    # both roots are folders named "data": the second root's ids get that prefix
    assert set(ix.videos) == set(GOOD) | {f"data_{n}" for n in GOOD}
    for e in ix.videos.values():  # entries point into the original roots: nothing was copied
        assert os.path.isdir(e.crop_dir) and not os.path.realpath(e.crop_dir).startswith(os.path.realpath(out))
        assert all(os.path.isfile(p) for p in e.features.values())
        assert len(os.listdir(e.crop_dir)) + len(e.invalid_frames) == e.num_frames
    assert sorted(os.listdir(out)) == ["report.json", "training_json.json"]
    raw_index = json.load(open(os.path.join(out, "training_json.json")))
    assert all(not os.path.isabs(v["crop_dir"]) for v in raw_index["videos"].values())
    # roots cropped at another width cannot share one index
    other = tmp_path / "w64"
    write_index(str(other / "training_json.json"), 64, ["mel"], {})
    with pytest.raises(UserError, match="different widths"):
        merge_data_roots([full["root"], str(other)], str(tmp_path / "bad"))
    with pytest.raises(UserError, match="new folder"):
        merge_data_roots([full["root"], sharded["root"]], full["root"])


def test_stagewise_user_csv_and_stale_part(full, raw, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(raw["dir"], "blong.mp4"), src / "blong.mp4")
    root = str(tmp_path / "data")
    L = Layout(root)
    # one stage at a time, as in the original's README one-liner
    data_processing.main(["--extract_audio", "--source_video_dir", str(src), "--data_root", root, "--no_progress"])
    assert os.path.isfile(L.wav("blong")) and os.path.isfile(L.video("blong"))
    assert not os.path.exists(L.csv("blong")) and not os.path.exists(L.marker("blong"))
    os.makedirs(L.crops("blong") + ".part")  # left over by a killed run: must be ignored and replaced
    open(os.path.join(L.crops("blong") + ".part", "999999.jpg"), "wb").close()
    user_csvs = os.path.join(full["root"], "landmarks")  # a user's OpenFace CSVs, used instead of dlib
    out = data_processing.main(["--all", "--source_video_dir", str(src), "--data_root", root, "--no_progress",
                                "--openface_landmark_dir", user_csvs, "--crop_width", str(CROP_W)])
    rec = out["report"]["videos"]["blong"]
    assert rec["status"] == "processed" and "convert_fps" not in rec["stages_run"]
    assert json.load(open(L.marker("blong")))["landmarks_origin"] == "user"
    with open(L.csv("blong")) as a, open(os.path.join(user_csvs, "blong.csv")) as b:
        assert a.read() == b.read()
    assert not os.path.exists(L.crops("blong") + ".part")
    assert sorted(os.listdir(L.crops("blong"))) == sorted(os.listdir(Layout(full["root"]).crops("blong")))
    assert list(load_index(root).videos) == ["blong"]


def test_bad_input(tmp_path):
    for bad in ("2/2", "1", "a/b", "-1/3"):
        with pytest.raises(UserError, match="shard"):
            parse_shard(bad)
    assert parse_shard("3/4") == (3, 4)
    ids = [f"v{i}" for i in range(7)]
    parts = [shard_ids(reversed(ids), (k, 3)) for k in range(3)]
    assert sorted(sum(parts, [])) == ids and parts[0] == ["v0", "v3", "v6"]
    with pytest.raises(UserError, match="not a folder"):
        prepare_dataset(DataConfig(source_video_dir=str(tmp_path / "nope"), data_root=str(tmp_path / "o")),
                           ["convert_fps"])
    with pytest.raises(UserError, match="audio_model_path"):
        prepare_dataset(DataConfig(source_video_dir=str(tmp_path), data_root=str(tmp_path / "o"),
                                      audio_feature="hubert"), ["extract_audio_features"])
    with pytest.raises(UserError, match="unknown --audio_feature"):
        parse_features("mel,wav2lip")
    with pytest.raises(UserError, match="no finished videos"):
        generate_training_json(str(tmp_path))
    with pytest.raises(SystemExit):
        data_processing.main(["--data_root", str(tmp_path)])  # no stage selected
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.mov").write_bytes(b"")
    assert sorted(list_videos(str(tmp_path))) == ["a", "a_mp4"]


def test_old_frame_rule_is_redone_not_mixed(full, raw, tmp_path):
    """A data root prepared by the old reader (markers without ``frame_rule``) is recognised: the index leaves
    such videos out, and the next run redoes their frame-dependent outputs (the user's CSV is kept)."""
    from dataset.prepare.pipeline import process_video
    from utils.media.video_io import FRAME_RULE

    root = str(tmp_path / "data")
    shutil.copytree(full["root"], root)
    L = Layout(root)
    m = json.load(open(L.marker("a30")))
    assert m["frame_rule"] == FRAME_RULE and m["status"] == "done"
    del m["frame_rule"]                                  # as the old reader wrote it
    m["landmarks_origin"] = "user"                       # (keeps dlib out of this test: the CSV is the user's)
    with open(L.marker("a30"), "w") as f:
        json.dump(m, f)
    _, summary = generate_training_json(root)
    assert "a30" in summary["excluded"] and "frame" in summary["excluded"]["a30"]
    csv_before = open(L.csv("a30")).read()
    v25_before = os.stat(L.video("a30")).st_mtime_ns
    cfg = DataConfig(source_video_dir=raw["dir"], data_root=root, crop_width=CROP_W)
    rec = process_video("a30", os.path.join(raw["dir"], "a30.mp4"), cfg, VIDEO_STAGES, progress=False)
    assert rec["status"] == "processed"
    assert {"convert_fps", "extract_audio", "extract_audio_features", "crop_face"} <= set(rec["stages_run"])
    assert os.stat(L.video("a30")).st_mtime_ns != v25_before and open(L.csv("a30")).read() == csv_before
    m2 = json.load(open(L.marker("a30")))
    assert m2["frame_rule"] == FRAME_RULE and m2["num_frames"] == count_frames(L.video("a30"), 25)
    _, summary = generate_training_json(root)
    assert "a30" not in summary["excluded"] and summary["videos"] == len(GOOD)
    # a run on the 25 fps copy itself (no source folder) cannot redo the conversion: kept, warned, not indexed
    m2.pop("frame_rule")
    with open(L.marker("a30"), "w") as f:
        json.dump(m2, f)
    rec = process_video("a30", L.video("a30"), cfg, VIDEO_STAGES, progress=False)
    assert any("--source_video_dir" in w for w in rec["warnings"])
    assert "a30" in generate_training_json(root)[1]["excluded"]
