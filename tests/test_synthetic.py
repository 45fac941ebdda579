"""utils.synthetic end to end: real espeak-ng speech, real dlib landmarks, real H.264/AAC files decoded back."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.errors import UserError
from utils.face.landmarks import LandmarkDetector
from utils.synthetic.speech import SENTENCES, is_vowel
from utils.synthetic.talking_head import make_dataset, make_talking_head
from utils.media.video_io import count_frames, probe, read_audio_track, read_frames

EN_TEXT = "Peter bought a big map."
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """One English video with a still head (so only the mouth changes) and its decoded frames."""
    out = tmp_path_factory.mktemp("still") / "still.mp4"
    meta = make_talking_head(out, EN_TEXT, voice="en", seed=0, head_motion=0.0, preset="veryfast")
    return meta, read_frames(meta["video"])


def test_video_audio_and_ground_truth_agree(tmp_path):
    meta = make_talking_head(tmp_path / "talk.mp4", EN_TEXT, seed=1, preset="veryfast")
    info = probe(meta["video"])
    n = meta["num_frames"]
    assert (info.width, info.height) == (256, 256) and info.fps == pytest.approx(25.0)
    assert info.num_frames == n == count_frames(meta["video"], fps=25)
    assert info.has_audio
    assert info.audio_duration == pytest.approx(n / 25.0, abs=0.08)
    audio = read_audio_track(meta["video"], 16000)
    assert abs(len(audio) / 16000 - n / 25.0) < 0.1
    assert np.abs(audio).max() > 0.1  # real speech, not silence

    mouth = np.load(meta["mouth"])
    gt = np.load(meta["gt"])
    assert mouth.shape == (n,) and mouth.dtype == np.float32
    assert mouth.min() >= 0.0 and mouth.max() <= 1.0
    np.testing.assert_array_equal(gt["openness"], mouth)
    assert gt["landmarks"].shape == (n, 68, 2) and gt["phoneme"].shape == (n,) and gt["has_face"].all()
    labels = [str(p) for p in gt["phoneme"]]
    vowel = np.array([is_vowel(p) for p in labels])
    silent = np.array([p == "" for p in labels])
    bilabial = np.array([p in ("p", "b", "m") for p in labels])
    assert vowel.sum() >= 5 and silent.sum() >= 10 and bilabial.sum() >= 2
    assert mouth[:5].max() < 0.05 and mouth[-5:].max() < 0.05  # lead/tail silence: closed
    assert mouth[vowel].mean() > 0.35
    assert mouth[vowel].mean() > 4 * mouth[silent].mean()
    assert mouth[bilabial].mean() < mouth[vowel].mean()
    meta_file = json.loads(Path(meta["meta"]).read_text())
    assert meta_file["num_frames"] == n and meta_file["text"] == EN_TEXT and len(meta_file["phonemes"]) > 5


def test_mouth_pixels_follow_openness(still, detector):
    meta, frames = still
    mouth = np.load(meta["mouth"])
    closed = int(np.argmin(mouth))
    faces = detector.detect(frames[closed])
    assert len(faces) == 1
    lm = faces[0][1]
    # mouth box from the astronaut's lip landmarks, extended down to where the jaw drops
    x0, y0 = lm[48:68].min(0)
    x1, y1 = lm[48:68].max(0)
    mw = x1 - x0
    mbox = (slice(int(y0 - 0.1 * mw), int(y1 + 0.6 * mw)), slice(int(x0 - 0.1 * mw), int(x1 + 0.1 * mw)))
    # an unchanged region: the eyes and brows
    ex0, ey0 = lm[17:27].min(0)
    ex1, ey1 = lm[36:48].max(0)
    ebox = (slice(int(ey0), int(ey1)), slice(int(ex0), int(ex1)))
    ref = frames[closed].astype(np.float32)
    d_mouth = np.array([np.abs(f.astype(np.float32)[mbox] - ref[mbox]).mean() for f in frames])
    d_eyes = np.array([np.abs(f.astype(np.float32)[ebox] - ref[ebox]).mean() for f in frames])
    assert np.corrcoef(d_mouth, mouth)[0, 1] > 0.85
    widest = int(np.argmax(mouth))
    assert d_mouth[widest] > 15.0
    assert d_eyes.max() < 2.0 and d_mouth[widest] > 10 * d_eyes.max()
    # the landmark ground truth moves with it: detected lower-lip-to-upper-lip gap tracks openness
    lm_open = detector.detect(frames[widest])[0][1]
    gap = lambda p: np.linalg.norm(p[66] - p[62])  # noqa: E731
    assert gap(lm_open) > gap(lm) + 10
    gt = np.load(meta["gt"])["landmarks"]
    assert np.abs(gt[widest] - lm_open).mean() < 3.0


def test_deterministic_by_seed(tmp_path, still):
    meta0, frames0 = still
    again = make_talking_head(tmp_path / "again.mp4", EN_TEXT, voice="en", seed=0, head_motion=0.0,
                              preset="veryfast")
    np.testing.assert_array_equal(np.load(again["mouth"]), np.load(meta0["mouth"]))
    g0, g1 = np.load(meta0["gt"]), np.load(again["gt"])
    for key in ("openness", "width", "phoneme", "landmarks", "affine"):
        np.testing.assert_array_equal(g0[key], g1[key])
    np.testing.assert_array_equal(read_frames(again["video"]), frames0)
    np.testing.assert_array_equal(read_audio_track(again["video"]), read_audio_track(meta0["video"]))
    a = make_talking_head(tmp_path / "s5a.mp4", "Hello there.", seed=5, size=96, preset="ultrafast")
    b = make_talking_head(tmp_path / "s5b.mp4", "Hello there.", seed=5, size=96, preset="ultrafast")
    c = make_talking_head(tmp_path / "s6.mp4", "Hello there.", seed=6, size=96, preset="ultrafast")
    np.testing.assert_array_equal(read_frames(a["video"]), read_frames(b["video"]))
    la, lc = np.load(a["gt"])["landmarks"], np.load(c["gt"])["landmarks"]
    assert np.abs(la - lc).max() > 1.0  # another seed moves the head differently
    np.testing.assert_array_equal(np.load(a["mouth"]), np.load(c["mouth"]))  # same speech, same mouth


def test_mandarin_video(tmp_path):
    text = next(t for lang, t in SENTENCES if lang == "cmn")
    meta = make_talking_head(tmp_path / "zh.mp4", text, voice="cmn", seed=2, size=128, preset="ultrafast")
    assert meta["language"] == "cmn"
    info = probe(meta["video"])
    assert info.has_audio and info.num_frames == meta["num_frames"]
    assert info.audio_duration == pytest.approx(meta["num_frames"] / 25.0, abs=0.08)
    gt = np.load(meta["gt"])
    labels = [str(p) for p in gt["phoneme"]]
    vowel = np.array([is_vowel(p) for p in labels])
    assert vowel.sum() >= 10
    mouth = gt["openness"]
    assert mouth[vowel].mean() > 0.35 and mouth[:5].max() < 0.05
    # spoken as Mandarin (pinyin phonemes such as the aspirated "tS;h"), not English digits
    assert any(p.startswith("tS;") for p in labels)


def test_fps_longer_audio_and_faceless_options(tmp_path, detector):
    meta = make_talking_head(tmp_path / "opts.mp4", "Hello there.", seed=3, fps=30.0, extra_audio_s=0.6,
                             faceless_frames=(3, 4), preset="veryfast")
    info = probe(meta["video"])
    n = meta["num_frames"]
    assert info.fps == pytest.approx(30.0) and info.num_frames == n == count_frames(meta["video"], fps=None)
    assert len(np.load(meta["mouth"])) == n
    assert info.audio_duration == pytest.approx(n / 30.0 + 0.6, abs=0.08)
    assert info.audio_duration - info.duration == pytest.approx(0.6, abs=0.08)
    frames = read_frames(meta["video"], fps=None)
    has_face = np.load(meta["gt"])["has_face"]
    assert has_face.tolist() == [i not in (3, 4) for i in range(n)]
    for i in (2, 3, 4, 5):
        assert (len(detector.detect(frames[i])) > 0) == bool(has_face[i]), f"frame {i}"
    with pytest.raises(UserError, match="faceless frame"):
        make_talking_head(tmp_path / "bad.mp4", "Hi.", faceless_frames=(10_000,))
    with pytest.raises(UserError, match="voice"):
        make_talking_head(tmp_path / "bad.mp4", "Hi.", voice="no-such-voice")
    assert not (tmp_path / "bad.mp4").exists()


def test_make_dataset_and_cli(tmp_path):
    vids = make_dataset(tmp_path / "ds", 3, seed=4, languages=("en", "cmn"), size=64, preset="ultrafast")
    assert [v["language"] for v in vids] == ["en", "cmn", "en"]
    assert vids[0]["text"] != vids[2]["text"]
    for v in vids:
        assert Path(v["video"]).exists() and Path(v["mouth"]).exists() and Path(v["gt"]).exists()
        assert probe(v["video"]).num_frames == v["num_frames"]
    again = make_dataset(tmp_path / "ds2", 1, seed=4, languages=("en", "cmn"), size=64, preset="ultrafast")
    assert (again[0]["text"], again[0]["voice"], again[0]["speed"]) == (vids[0]["text"], vids[0]["voice"],
                                                                         vids[0]["speed"])
    np.testing.assert_array_equal(np.load(again[0]["mouth"]), np.load(vids[0]["mouth"]))

    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "utils.synthetic", "--out_dir", str(out), "--num_videos", "1",
                        "--size", "64"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "en_0000.mp4").exists() and (out / "en_0000.mouth.npy").exists()
    r = subprocess.run([sys.executable, "-m", "utils.synthetic", "--out_dir", str(out), "--num_videos", "0"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
