"""Evaluation metrics on synthetic talking heads (real H.264 files, real dlib landmarks, real weight files)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from evaluation import evaluate, psnr, ssim
from evaluation.lse import offsets_summary
from evaluation.syncnet_v2 import SyncNetV2, load_syncnet_v2
from models.syncnet import SyncNet, save_syncnet
from utils.errors import UserError
from utils.synthetic.talking_head import make_talking_head
from utils.media.video_io import VideoWriter, iter_frames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    a = make_talking_head(d / "a.mp4", "Peter bought a big map before the trip to Madrid.", size=160, seed=3,
                          preset="ultrafast")
    # another sentence, with its silences at other times
    b = make_talking_head(d / "b.mp4", "We watched the moon rise above the quiet harbour.", size=64, seed=4,
                          lead_s=1.0, tail_s=0.0, preset="ultrafast")
    noisy = d / "noisy.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(noisy, fps=25, preset="ultrafast", crf=18) as w:
        for f in iter_frames(a["video"]):
            w.write(np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8))
    return {"dir": d, "a": a["video"], "b": b["video"], "noisy": str(noisy)}


def test_psnr_ssim_functions():
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(1)
    img = data.astronaut()[::4, ::4]
    assert psnr(img, img) == math.inf and ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    assert psnr(img, noisy) == pytest.approx(peak_signal_noise_ratio(img, noisy, data_range=255), rel=1e-9)
    ref = structural_similarity(img, noisy, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(img, noisy) == pytest.approx(ref, abs=0.02) and ssim(img, noisy) < 0.9
    assert psnr(img, np.clip(img + 40.0, 0, 255)) < psnr(img, noisy)


def test_reconstruction_metrics_and_av_correlation(vids):
    same = evaluate(vids["a"], reference=vids["a"], template=vids["a"], progress=False)
    assert same["psnr"] == math.inf and same["psnr_mouth"] == math.inf
    assert same["ssim"] == pytest.approx(1.0) and same["ssim_mouth"] == pytest.approx(1.0)
    assert same["mouth_jitter_ratio"] == pytest.approx(1.0) and same["frame_count_diff"] == 0
    assert 0.6 < same["seam_paste"] < 1.4        # no paste border in an untouched video
    # the appearance metrics against the reference and the template (evaluation/appearance.py)
    for s in ("", "_tpl"):
        assert same[f"skin_de_mean{s}"] == 0.0 and same[f"edge_de_p99{s}"] < 0.05
        assert same[f"mouth_sharpness{s}"] == pytest.approx(1.0) and same[f"skin_flicker_excess{s}"] == 0.0
        assert same[f"appearance_frames{s}"] > 0.9 * same["frames"]
    assert same["open_in_silence"] < 0.15       # the truth itself: mouth still closing as speech ends
    assert same["opening_agreement"] == pytest.approx(1.0) and same["fringe_p99"] < 0.05
    tracked = {}
    worse = evaluate(vids["noisy"], reference=vids["a"], progress=False, landmark_cache=tracked)
    assert sorted(k[0] for k in tracked) == sorted(os.path.abspath(v) for v in (vids["noisy"], vids["a"]))
    again = evaluate(vids["noisy"], reference=vids["a"], progress=False, landmark_cache=tracked)
    assert len(tracked) == 2 and again == pytest.approx(worse, nan_ok=True)   # nothing tracked twice, same figures
    assert 15 < worse["psnr"] < 40 and worse["ssim"] < 0.9 and worse["ssim_mouth"] < 0.9
    assert worse["skin_de_mean"] > 2 and worse["skin_flicker_excess"] > 1 and worse["mouth_sharpness"] > 1.5
    assert "skin_de_mean_tpl" not in worse
    assert worse["mouth_jitter_ratio"] > 1.2     # frame-to-frame noise shows up as jitter
    # the synthetic mouth follows its own speech, not another sentence
    other = evaluate(vids["a"], audio=vids["b"], progress=False)
    assert same["av_corr"] > 0.5 and other["av_corr"] < same["av_corr"] - 0.3
    assert "opening_agreement" not in other                    # nothing to agree with
    assert same["silence_motion"] < 0.5 * same["speech_motion"]


def test_seam_score_sees_a_pasted_box(vids, tmp_path):
    """A hard-edged brightened box over the lower face (the original paste-back's artefact) raises the seam
    score measured on that box's outline."""
    from utils.face.align import PASTE_OUTER, FaceAligner
    from utils.face.landmarks import LandmarkDetector

    det = LandmarkDetector()
    out = tmp_path / "box.mp4"
    al = FaceAligner.for_mouth_size(128)            # evaluate's default crop geometry
    t, b, l, r = [f * al.out_W for f in PASTE_OUTER]
    with VideoWriter(out, fps=25, preset="ultrafast", crf=12) as w:
        for f in iter_frames(vids["a"], max_frames=20):
            faces = det.detect(f)
            g = f.astype(np.float32)
            if faces:
                M = al.estimate(faces[0][1])
                ys, xs = np.mgrid[0:f.shape[0], 0:f.shape[1]]
                u = M[0, 0] * xs + M[0, 1] * ys + M[0, 2]
                v = M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
                g[(u >= l) & (u <= r) & (v >= t) & (v <= b)] += 30
            w.write(np.clip(g, 0, 255).astype(np.uint8))
    res = evaluate(out, progress=False)
    base = evaluate(vids["a"], progress=False)
    assert res["seam_paste"] > 1.5 * base["seam_paste"] and res["seam_paste"] > 1.5


def test_own_syncnet_lse_scores_pairs_like_the_syncnet_itself():
    """Every LSE distance is 1 - mean score of SyncNet.forward on that (5 mouths, audio window) pair, so the
    SyncNet's face_offset (0.5 for SyncNets trained here) is applied exactly as in training."""
    from evaluation.lse import lse_own_syncnet
    from utils.audio.base import make_windows

    torch.manual_seed(1)
    net = SyncNet(face_channels=15, audio_channels=12, hidden=8, face_size=32, audio_window=5,
                  face_offset=0.5).eval()
    with torch.no_grad():                                # He init: the input (and its offset) reaches the score
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    T, vshift = 12, 2
    mouths = torch.rand(T, 3, 40, 40)                    # resized to 32 inside, like the evaluation does
    feats = np.random.default_rng(0).standard_normal((T, 12)).astype(np.float32)
    res = lse_own_syncnet(net, mouths, feats, vshift=vshift)
    win = torch.from_numpy(make_windows(feats, 5))
    small = torch.nn.functional.interpolate(mouths, size=(32, 32), mode="bilinear", align_corners=False)
    dist = np.full((T - 4, 2 * vshift + 1), np.nan)
    with torch.no_grad():
        for i in range(T - 4):
            face = small[i:i + 5].reshape(1, 15, 32, 32)
            for j, k in enumerate(range(-vshift, vshift + 1)):
                if 0 <= i + 2 + k < T:
                    dist[i, j] = 1 - net(face, win[i + 2 + k][None]).mean().item()
    expected = offsets_summary(dist, vshift)
    assert res["av_offset"] == expected["av_offset"] and res["lse_frames"] == T - 4
    assert res["lse_d"] == pytest.approx(expected["lse_d"], abs=1e-5)
    assert res["lse_c"] == pytest.approx(expected["lse_c"], abs=1e-5)


@pytest.mark.slow
def test_lse_with_syncnet_v2_and_own_syncnet(vids, tmp_path):
    torch.manual_seed(0)
    v2 = SyncNetV2()
    sd = {k: v for k, v in v2.state_dict().items() if not k.endswith("num_batches_tracked")}   # old-torch file
    v2_path = tmp_path / "syncnet_v2.model"
    torch.save(sd, v2_path)
    own_path = tmp_path / "own_syncnet.pth"
    save_syncnet(SyncNet(face_channels=15, audio_channels=80, hidden=16, face_size=64), own_path)
    res = evaluate(vids["a"], syncnet_v2=str(v2_path), syncnet=str(own_path), vshift=5, progress=False)
    for k in ("lse_d", "lse_c", "own_lse_d", "own_lse_c"):
        assert math.isfinite(res[k]), k
    assert res["lse_c"] >= 0 and res["own_lse_c"] >= 0 and -5 <= res["av_offset"] <= 5
    assert res["lse_frames"] == res["frames"] - 5   # syncnet_python's window count
    # foreign files give one-line errors
    torch.save({"netcnnaud.0.weight": torch.zeros(3)}, tmp_path / "bad.model")
    with pytest.raises(UserError, match="syncnet_v2"):
        load_syncnet_v2(tmp_path / "bad.model")


def test_offsets_summary():
    d = np.tile(np.array([5.0, 4.0, 2.0, 4.0, 5.0]), (10, 1))
    r = offsets_summary(d, 2)
    assert r["lse_d"] == 2.0 and r["lse_c"] == 2.0 and r["av_offset"] == 0


@pytest.mark.slow
def test_cli_table_json_and_errors(vids, tmp_path):
    js = tmp_path / "m.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), "--generated", vids["a"], "--reference",
                        vids["a"], "--json", str(js), "--quiet"], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "PSNR full frame" in r.stdout and "LSE" not in r.stdout
    m = json.loads(js.read_text())
    assert m["psnr"] == "inf" and m["ssim"] == pytest.approx(1.0)
    r = subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), "--generated", str(tmp_path / "no.mp4")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
