"""demo.py end to end, short: a one-sentence synthetic speaker, a 1.5-minute budget, then every artefact is
checked for real (the mp4 decodes with frames and audio, the pictures load, the numbers are finite)."""
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from config.config import InferenceConfig
from utils.media.audio_io import load_audio
from utils.media.timebase import num_video_frames
from utils.media.video_io import count_frames, iter_frames, probe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "demo.py")
# exact step counts: the test's run time does not depend on how busy the machine is; 200 frame steps are about
# what the tiny model needs before the dubbed faces are detectable again (60: 1 frame of 66, 150: 50)
SHORT = ["--minutes", "1.5", "--train_sentences", "1", "--heldout_sentences", "1", "--speeds", "175",
         "--size", "160", "--no_progress", "--device", "cpu", "--frame_steps", "200", "--clip_steps", "3",
         "--syncnet_steps", "10"]


def _run(*args, timeout=900):
    # one torch thread: on a machine whose cores other jobs share, two threads per process run several times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, DEMO, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    pic = out / "copy" / "demo.png"
    r = _run("--output_dir", str(out), "--save_picture", str(pic), *SHORT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, pic, r


@pytest.mark.slow
def test_demo_writes_every_artefact_with_finite_numbers(demo_run):
    out, pic, r = demo_run
    for k in range(1, 9):                                        # progress line for every step
        assert f"[demo {k}/8]" in r.stderr
    # said up front, before any work: these steps cannot train a useful model
    assert r.stderr.index("warning: the step counts given train") < r.stderr.index("[demo 1/8]")
    assert "step/s" not in r.stderr and "it/s" not in r.stderr  # --no_progress: no bars in the log
    m = json.loads((out / "metrics.json").read_text())
    a = m["artefacts"]
    for key in ("dubbed_mp4", "template_mp4", "silence_mp4", "side_by_side_png", "openness_png", "report_html",
                "report_md"):
        assert (out / a[key]).is_file(), key

    # the dub decodes, has the held-out sentence's length and carries its audio
    gt = out / "data" / "eval" / "heldout_0.mp4"
    info = probe(str(out / a["dubbed_mp4"]))
    assert info.has_audio
    frames = list(iter_frames(str(out / a["dubbed_mp4"]), fps=25.0))
    # one frame per 40 ms of the held-out speech (its AAC track decodes to the stated length, no frame padding)
    n_audio = num_video_frames(len(load_audio(str(gt), 16000)), 16000, 25.0)
    assert len(frames) == n_audio == count_frames(str(gt), 25.0) and n_audio > 25
    assert frames[0].shape == (160, 160, 3) and frames[0].std() > 10

    # pictures: 3 columns of frames, plot of the right size; the copy for the docs is the same picture
    sbs = cv2.imread(str(out / a["side_by_side_png"]))
    assert sbs is not None and sbs.shape[1] > 2.5 * sbs.shape[0] / 4 and sbs.std() > 10
    assert np.array_equal(cv2.imread(str(pic)), sbs)
    plot = cv2.imread(str(out / a["openness_png"]))
    assert plot is not None and plot.shape[1] >= 600

    # numbers: finite, in range, baselines present; the ground-truth video's own measured openness agrees with
    # the rendering's (the measurement works), the template's mouth does not follow the held-out sentence
    mean = m["mean"]
    for row in ("dubbed", "template", "silence"):
        for k in ("openness_corr", "psnr_mouth", "ssim_mouth", "psnr"):
            v = mean[row][k]
            assert v is not None and math.isfinite(v), (row, k, v)
        assert -1 <= mean[row]["openness_corr"] <= 1 and 0 < mean[row]["psnr_mouth"] < 100
    for row in ("dubbed", "template", "silence", "ground_truth"):     # the demo SyncNet's LSE, vs the speech
        assert math.isfinite(mean[row]["own_lse_c"]) and mean[row]["own_lse_c"] >= 0, row
        assert math.isfinite(mean[row]["own_lse_d"]), row
    assert mean["ground_truth"]["openness_corr"] > 0.9
    assert mean["template"]["openness_corr"] < 0.6
    bar = m["quality_bar"]
    assert bar["min_corr"] == 0.6 and isinstance(bar["passed"], bool)
    assert len(m["heldout"][0]["openness"]["dubbed"]) == len(frames)

    # the report states that the data are synthetic and shows the table's numbers
    page = (out / "report.html").read_text()
    assert "synthetic" in page.lower()
    assert a["dubbed_mp4"] in page and a["side_by_side_png"] in page
    assert f"{mean['dubbed']['psnr_mouth']:.2f}" in page


@pytest.mark.slow
def test_rerun_reuses_training(demo_run, tmp_path):
    out, _, _ = demo_run
    r = _run("--output_dir", str(out), *SHORT, "--minutes", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "SyncNet: reusing" in r.stderr and "tiny: reusing" in r.stderr and "tiny_clip: reusing" in r.stderr


@pytest.mark.slow
def test_real_videos_with_a_given_checkpoint_skip_training(demo_run, tmp_path):
    """--data + --checkpoint + --syncnet: the user's videos (only read), the last one held out and dubbed with its
    own speech by the given generator, scored with the given SyncNet."""
    from utils.synthetic.talking_head import make_talking_head

    out, _, _ = demo_run
    videos = tmp_path / "my videos"
    videos.mkdir()
    make_talking_head(videos / "a_take.mp4", "Peter bought a big map before the trip.", size=160, seed=5,
                      preset="ultrafast")
    make_talking_head(videos / "b_take.mp4", "We watched the moon rise above the harbour.", size=160, seed=6,
                      preset="ultrafast")
    before = {p.name: p.stat().st_mtime_ns for p in videos.iterdir()}
    res_dir = tmp_path / "real"
    ckpt = out / "models" / "demo" / "tiny_clip" / "final.pth"
    r = _run("--output_dir", str(res_dir), "--data", str(videos), "--checkpoint", str(ckpt),
             "--syncnet", str(out / "models" / "syncnet.pth"), "--no_progress", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "held out b_take.mp4" in r.stderr and "skipped: --checkpoint given" in r.stderr
    assert not (res_dir / "models").exists()                      # nothing was trained
    m = json.loads((res_dir / "metrics.json").read_text())
    assert m["synthetic"] is False and m["heldout"][0]["name"] == "b_take"
    dubbed = m["mean"]["dubbed"]
    for k in ("openness_corr", "psnr_mouth", "own_lse_c", "own_lse_d"):
        assert dubbed[k] is not None and math.isfinite(dubbed[k]), k
    assert count_frames(str(res_dir / m["artefacts"]["dubbed_mp4"]), 25.0) == count_frames(
        str(videos / "b_take.mp4"), 25.0)
    assert "Your videos" in (res_dir / "report.html").read_text()
    assert {p.name: p.stat().st_mtime_ns for p in videos.iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (["--minutes", "0"], "--minutes must be positive"),
    (["--minutes", "0.1"], "--minutes 0.1 cannot be kept"),
    (["--holdout_s", "2"], "apply to your own videos"),
    (["--val_every", "-1"], "--val_every must be >= 0"),
    (["--data", "/nonexistent/folder"], "not a folder"),
    (["--train_sentences", "9"], "--train_sentences"),
    (["--checkpoint", "/nonexistent/model.pth"], "file not found"),
    (["--syncnet", "/nonexistent/syncnet.pth"], "--syncnet"),
    (["--sync_weight", "-1"], "--sync_weight"),
    (["--mouth_region_size", "48"], "--mouth_region_size must be a positive multiple of 32 (m = 48 gives a 78x60"),
])
def test_bad_flags_give_one_line_error(tmp_path, args, message):
    r = _run("--output_dir", str(tmp_path / "o"), *args, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr


@pytest.mark.slow
def test_person_specific_model_from_a_few_videos(demo_run, tmp_path):
    """--data with a held-out segment (the last 1.5 s of the last of two videos), training started --init_from a
    checkpoint, validation during training, the best checkpoint kept and used for the report."""
    from dataset.index import load_index
    from models.checkpoint import read_checkpoint
    from utils.synthetic.talking_head import make_talking_head

    out, _, _ = demo_run
    videos = tmp_path / "presenter"
    videos.mkdir()
    make_talking_head(videos / "a_take.mp4", "Peter bought a big map before the trip.", size=160, seed=5,
                      preset="ultrafast")
    meta = make_talking_head(videos / "b_take.mp4", "We watched the moon rise above the quiet harbour.", size=160,
                             seed=6, preset="ultrafast")
    start = out / "models" / "demo" / "tiny_clip" / "final.pth"
    res = tmp_path / "mine"
    r = _run("--output_dir", str(res), "--data", str(videos), "--holdout_s", "1.5", "--init_from", str(start),
             "--frame_steps", "6", "--clip_steps", "2", "--syncnet_steps", "4", "--val_every", "3", "--minutes", "6",
             "--no_progress", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "holding out the last 1.5 s of b_take.mp4" in r.stderr and f"initialised the generator from {start}" in r.stderr
    # a few seconds of footage: said before training, with the seconds of speech it has and needs
    warn = r.stderr.index("warning: the training footage has ")
    assert warn < r.stderr.index("train LawDNet frame stage") and "needs at least 40 s" in r.stderr[warn:warn + 200]
    # the held-out segment is not in the training data: b_take is indexed without its last 1.5 s
    ix = load_index(res / "prepared" / "training_json.json")
    assert ix.videos["b_take"].num_frames == meta["num_frames"] - 38
    assert count_frames(str(res / "data" / "eval" / "heldout.mp4"), 25.0) == 38
    # validation after steps 3 and 6 of the frame stage and at the end of the clip stage; best.pth is the best
    m = json.loads((res / "metrics.json").read_text())
    val = m["validation"]
    assert [(v["stage"], v["step"]) for v in val] == [("tiny", 3), ("tiny", 6), ("tiny_clip", 2)]
    for v in val:
        assert all(v[k] is not None and math.isfinite(v[k]) for k in ("psnr_mouth", "ssim_mouth", "own_lse_c")), v
    best = max(val, key=lambda v: v["psnr_mouth"])
    assert (m["best"]["stage"], m["best"]["step"]) == (best["stage"], best["step"])
    best_ck = read_checkpoint(res / "validation" / "best.pth")
    assert best_ck["stage"] == best["stage"] and best_ck["global_step"] == best["step"]
    assert m["setup"]["checkpoint"] == os.path.join("validation", "best.pth")
    # the report: held-out segment dubbed by the best model, the silence baseline, the validation table
    page = (res / "report.html").read_text()
    assert "Validation during training" in page and "Your videos" in page
    # the verdict is the report's first line (a 6-step model does not meet the bar), and says what failed
    first = (res / "report.md").read_text().splitlines()[0]
    assert first.startswith("# LawDNet demo report: quality bar") and m["quality_bar"]["failed"]
    assert ("NOT met" in first) != m["quality_bar"]["passed"]
    assert m["mean"]["dubbed"]["skin_de_mean"] is not None and m["mean"]["dubbed"]["mouth_sharpness"] is not None
    assert m["mean"]["silence"]["psnr_mouth"] is not None and m["mean"]["dubbed"]["psnr_mouth"] is not None


@pytest.mark.slow
def test_an_official_checkpoint_sets_what_person_specific_training_continues(demo_run, tmp_path):
    """--init_from an official-format file (no metadata, DDP 'module.' keys): its architecture, official warp and
    preprocessing profile, m 288 and deepspeech2 features unless the flags say otherwise."""
    import torch

    from demo.pipeline import DemoOptions, model_from_init
    from models.checkpoint import read_checkpoint

    out, _, _ = demo_run
    ours = read_checkpoint(out / "models" / "demo" / "tiny_clip" / "final.pth")
    official = tmp_path / "checkpoint_epoch_170.pth"
    torch.save({"epoch": 170, "state_dict": {"net_g": {"module." + k: v for k, v in ours["state_dict"]["net_g"].items()}}},
               official)
    model, overrides, feature, warp, profile = model_from_init(DemoOptions(init_from=str(official)))
    assert (model.mouth_region_size, feature, warp, profile) == (288, "deepspeech2", "official", "official")
    assert overrides["encoder_channels"] == (16, 32, 64) and overrides["attn_dim"] == 64
    model, _, feature, _, _ = model_from_init(DemoOptions(
        init_from=str(official), inference=InferenceConfig(mouth_region_size=32, audio_feature="mel")))
    assert (model.mouth_region_size, feature) == (32, "mel")


def test_budget_plan_refuses_what_cannot_be_kept_and_warns_when_training_is_too_short():
    from demo.budget import Budget, check_budget, fixed_costs, useful_training_s
    from utils.errors import UserError

    fixed = fixed_costs(render_frames=2000, pipeline_frames=1500, heldout_frames=160)   # ~2 min nominal
    need = sum(fixed.values())
    useful = useful_training_s()
    assert 100 < need < 150 and 6 * 60 < useful < 9 * 60
    said = []
    with pytest.raises(UserError, match=r"--minutes 1.5 cannot be kept: .* use --minutes 3 or more"):
        check_budget(90, fixed, useful, None, said.append)
    assert check_budget(5 * 60, fixed, useful, None, said.append)            # the case: 5 minutes
    assert said[-1].startswith("warning: --minutes 5 leaves about 2.8 min for training, 39 % of what a useful "
                               "model needs") and "use --minutes 10" in said[-1]
    assert not check_budget(12 * 60, fixed, useful, None, said.append) and len(said) == 1
    assert check_budget(12 * 60, fixed, useful, useful / 10, said.append) and "step counts" in said[-1]
    # rescaling: a fixed step that ran faster than planned, and a slow generator measured by the probe
    b = Budget(60, 1, log=lambda m: None)
    assert b.slowdown == 1.0
    with b.step("make the data", nominal_s=10.0):
        pass
    assert b.slowdown == 0.5                                 # clamped: never plan on a machine 2x faster
    base = b.post_training_s(100)
    b.torch_slowdown = 10.0
    assert b.post_training_s(100) == pytest.approx(base + 2 * 100 * 0.02 * (10.0 - 0.5))


def test_validation_stops_a_stage_that_stopped_improving(tmp_path):
    """Person-specific training has no step cap: a stage ends when PATIENCE validations in a row were no better."""
    from demo.validation import PATIENCE, Validator

    class Scripted(Validator):
        def __call__(self, checkpoint, stage, step):
            row = {"stage": stage, "step": step, "psnr_mouth": scores[step]}
            if self.best is None or self.better(row["psnr_mouth"], self.best["psnr_mouth"]):
                open(self.best_path, "wb").close()
                row["best"] = True
            self.history.append(row)
            return row

    scores = {1: 20.0, 2: 21.0, 3: 20.5, 4: 20.9, 5: 22.0, 6: 21.0, 7: 21.5, 8: 21.9}
    v = Scripted("held.mp4", str(tmp_path), log=lambda m: None)
    said = [v.early_stop("c.pth", "tiny", k) for k in range(1, 9)]
    assert PATIENCE == 3 and said == [None] * 7 + ["stop"]
    # a new stage starts counting afresh only once it beats the best
    assert v.early_stop("c.pth", "tiny_clip", 1) is None and v.stale("tiny_clip") == 1
