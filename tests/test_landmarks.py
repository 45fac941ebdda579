"""Real dlib landmarks on skimage's astronaut: detection, tracking over a synthetic sequence, smoothing, CSV."""
import os

import cv2
import numpy as np
import pytest
from skimage import data

from utils.errors import UserError
from utils.face.landmarks import (LandmarkDetector, find_predictor, read_openface_csv, smooth_landmarks,
                             track_landmarks, write_openface_csv)


@pytest.fixture(scope="module")
def detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def astro_landmarks(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


def test_find_predictor(tmp_path, monkeypatch):
    monkeypatch.delenv("LAWDNET_DLIB_PREDICTOR", raising=False)
    default = find_predictor()
    assert os.path.isfile(default)
    with pytest.raises(UserError, match="missing.dat"):
        find_predictor(str(tmp_path / "missing.dat"))
    monkeypatch.setenv("LAWDNET_DLIB_PREDICTOR", str(tmp_path / "nope.dat"))
    with pytest.raises(UserError, match="LAWDNET_DLIB_PREDICTOR"):
        find_predictor()
    monkeypatch.setenv("LAWDNET_DLIB_PREDICTOR", default)
    assert find_predictor() == default
    assert find_predictor(default) == default


def test_astronaut_landmarks_plausible(astro_landmarks):
    box, lm = astro_landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    assert 60 < w < 130 and 60 < h < 130
    inner = lm[17:]  # brows, nose, eyes, mouth: inside the box (small margin)
    assert (inner[:, 0] > x0 - 0.1 * w).all() and (inner[:, 0] < x1 + 0.1 * w).all()
    assert (inner[:, 1] > y0 - 0.1 * h).all() and (inner[:, 1] < y1 + 0.1 * h).all()
    eyes, mouth, nose_tip, chin = lm[36:48], lm[48:68], lm[30], lm[8]
    assert eyes[:, 1].max() < nose_tip[1] < mouth[:, 1].min() < chin[1]
    assert lm[36:42, 0].mean() < nose_tip[0] < lm[42:48, 0].mean()   # image-left eye, nose, image-right eye
    assert lm[48, 0] < lm[54, 0]


def test_subpixel_and_downscaled_detection(detector, astronaut, astro_landmarks):
    _, lm = astro_landmarks
    plain = LandmarkDetector(min_face=0).detect(astronaut)[0][1]
    assert np.abs(plain - lm).mean() < 1.0           # upscaled-patch prediction agrees with plain dlib
    assert np.any(lm != np.round(lm))                # and is not stuck on integers
    # a 2x frame is detected on a downscaled copy (max_side 640), landmarks come from full resolution
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    faces = detector.detect(big)
    assert len(faces) == 1
    expected = (lm + 0.5) * 2 - 0.5
    assert np.abs(faces[0][1] - expected).mean() < 2.5
    with pytest.raises(UserError):
        detector.detect(astronaut.astype(np.float32))


def _sequence(astronaut, n=12, blank=(5, 6), only_small=(8,)):
    """Main face (scale ~1.55) moving right/down + a smaller static second face; yields frames lazily."""
    patch = astronaut[50:230, 140:310]
    small = patch  # scale 1.0 -> face ~87 px vs ~135 px for the main one
    truth = []

    def gen():
        for t in range(n):
            frame = np.full((400, 640, 3), 128, np.uint8)
            s = 1.5 + 0.01 * t
            ox, oy = 300 + 4 * t, 40 + 3 * t
            if t not in blank:
                frame[150:150 + small.shape[0], 40:40 + small.shape[1]] = small
                if t not in only_small:
                    ph, pw = int(round(patch.shape[0] * s)), int(round(patch.shape[1] * s))
                    frame[oy:oy + ph, ox:ox + pw] = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
            truth.append((s, ox, oy, patch.shape))
            yield frame

    return gen(), truth


def test_track_follows_main_face(detector, astronaut, astro_landmarks):
    _, lm_ast = astro_landmarks
    frames, truth = _sequence(astronaut)
    lms, valid = track_landmarks(frames, detector=detector, smooth=1.0, progress=False)
    assert lms.shape == (12, 68, 2) and lms.dtype == np.float32
    assert valid.tolist() == [t not in (5, 6, 8) for t in range(12)]
    base = lm_ast - np.array([140, 50])          # landmarks in patch coordinates
    errs = []
    for t in np.nonzero(valid)[0]:
        s, ox, oy, shape = truth[t]
        ph, pw = int(round(shape[0] * s)), int(round(shape[1] * s))
        expected = (base + 0.5) * np.array([pw / shape[1], ph / shape[0]]) - 0.5 + np.array([ox, oy])
        errs.append(np.abs(lms[t] - expected).mean())
    assert max(errs) < 1.5, errs                  # face ~135 px wide; dlib is nearly scale-equivariant
    # the small face (x < 220) never took the track, invalid frames were interpolated near the main face
    assert (lms[:, 30, 0] > 300).all()
    assert np.isfinite(lms).all()
    assert lms[7, 30, 0] > lms[4, 30, 0]          # motion continues across the gap


def test_track_empty_and_no_face(detector):
    lms, valid = track_landmarks([], detector=detector, progress=False)
    assert lms.shape == (0, 68, 2) and valid.shape == (0,)
    lms, valid = track_landmarks([np.zeros((120, 160, 3), np.uint8)] * 2, detector=detector, progress=False)
    assert not valid.any() and np.isfinite(lms).all()


def test_smooth_landmarks():
    rng = np.random.default_rng(0)
    T = 60
    t = np.arange(T, dtype=np.float64)
    clean = np.zeros((T, 68, 2))
    clean[..., 0] = 100 + 2.0 * t[:, None]        # steady motion
    clean[..., 1] = 50 - 0.5 * t[:, None]
    valid = np.ones(T, bool)
    valid[30] = False
    exact = smooth_landmarks(clean, valid, sigma=2.0)
    assert np.allclose(exact, clean, atol=1e-3)   # linear motion kept, also at run ends and across the gap
    noisy = clean + rng.normal(0, 1.0, clean.shape)
    noisy[30] = 1e6                               # garbage in the invalid frame must not leak
    sm = smooth_landmarks(noisy, valid, sigma=2.0)
    assert np.abs(sm - clean).max() < 3.0
    assert np.abs(sm - clean)[valid].std() < 0.6 * np.abs(noisy - clean)[valid].std()
    assert np.array_equal(smooth_landmarks(noisy, valid, sigma=0)[valid], noisy[valid].astype(np.float32))


def test_openface_csv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 500, (7, 68, 2)).astype(np.float32)
    valid = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    path = tmp_path / "sub" / "video.csv"
    write_openface_csv(str(path), lm, valid)
    header = path.read_text().splitlines()[0]
    assert header.startswith("frame, face_id, timestamp, confidence, success, x_0,")
    assert len(header.split(",")) == 141
    lm2, valid2 = read_openface_csv(str(path))
    assert np.array_equal(valid2, valid)
    assert np.abs(lm2[valid] - lm[valid]).max() < 1e-3
    # invalid rows come back interpolated from their neighbours
    assert np.allclose(lm2[2], (lm2[1] + lm2[3]) / 2, atol=1e-3)
    # header without spaces (pandas-style) is accepted too
    nospace = tmp_path / "nospace.csv"
    nospace.write_text(path.read_text().replace(", ", ","))
    lm3, valid3 = read_openface_csv(str(nospace))
    assert np.array_equal(valid3, valid) and np.abs(lm3 - lm2).max() < 1e-6
    assert not list(tmp_path.glob("sub/.tmp_*"))   # atomic write leaves no temporary file


def test_openface_csv_errors(tmp_path):
    lm = np.zeros((3, 68, 2), np.float32) + 10
    good = tmp_path / "good.csv"
    write_openface_csv(str(good), lm)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:2] + [lines[2].replace("10.000", "abc", 1)] + lines[3:]) + "\n")
    with pytest.raises(UserError, match=r"bad\.csv.*row 3"):
        read_openface_csv(str(bad))
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(UserError, match=r"short\.csv.*row 4"):
        read_openface_csv(str(short))
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("frame,face_id\n1,0\n")
    with pytest.raises(UserError, match=r"nohead\.csv.*x_0"):
        read_openface_csv(str(nohead))
    with pytest.raises(UserError, match="not found"):
        read_openface_csv(str(tmp_path / "absent.csv"))
    with pytest.raises(UserError):
        write_openface_csv(str(tmp_path / "x.csv"), np.zeros((3, 5, 2)))
