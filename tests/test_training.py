"""Training: datasets on a prepared data root, 2-process DDP, exact resume, truncated checkpoints, coarse-to-fine
init, the clip stage with real (test-written) VGG19/SyncNet weight files, and learning on synthetic data.

The data root is made by training.toy_data: astronaut face crops whose mouth opening follows the "audio"
feature. Everything runs the tiny stage at mouth size 32 (52x40 crops) on CPU.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dataset.clip_dataset import ClipDataset
from dataset.frame_dataset import FrameDataset
from models.checkpoint import load_lawdnet, read_checkpoint
from models.syncnet import SyncNet, save_syncnet
from training.checkpoints import list_checkpoints
from training.losses import lr_factor, step_lr_factor
from training.toy_data import make_toy_data, write_random_vgg19
from training.trainer import train_stage
from utils.errors import UserError
from utils.face.geometry import crop_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = 32
INVALID = (3, 4, 20)
COMMON = dict(mouth_region_size=M, no_perception=True, logger="none", num_workers=0, augment_num=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return make_toy_data(str(root), num_videos=3, num_frames=36, crop_width=40, invalid_frames=INVALID)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return str(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def uninterrupted(data, results):
    """8 steps, a checkpoint after every one: step-based, so it runs past the 2 planned epochs of 3 batches.
    The reference for the resume tests (their interrupted runs are copies of this folder cut at some step)."""
    torch.set_num_threads(1)
    return train_stage("tiny", name="full", train_data=data, result_root=results, max_steps=8, save_every_steps=1,
                       keep_last=10, **COMMON)


def _cut_copy(results, name, step):
    """A copy of the uninterrupted run as a run killed after ``step`` would have left it."""
    src, dst = os.path.join(results, "full", "tiny"), os.path.join(results, name, "tiny")
    shutil.copytree(src, dst)
    os.remove(os.path.join(dst, "final.pth"))
    for s, p in list_checkpoints(dst):
        if s > step:
            os.remove(p)
    return dst


def _snapshot(folder):
    """Every file below ``folder`` with its size and modification time."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            st = os.stat(os.path.join(dirpath, n))
            out[os.path.relpath(os.path.join(dirpath, n), folder)] = (st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------- datasets

def test_frame_dataset_items_are_valid_keyed_and_references_avoid_the_source_clip(data):
    ds = FrameDataset(data, M, augment_num=2, seed=7)
    H, W = crop_size(M)
    feats = {v.name: np.load(v.features["toy"]) for v in ds.store.videos}
    for i in range(len(ds)):
        item = ds[(1, i)]
        assert item["source"].shape == (3, H, W) and item["refs"].shape == (15, H, W)
        assert item["audio"].shape == (16, 5)
        assert item["source"].std() > 0.05                       # a real image, never a zero sample
        again = ds[(1, i)]
        assert all(torch.equal(item[k], again[k]) for k in item)  # keyed: same key, same item
    # recover the frames behind one item by matching pixels and audio rows
    rng_item = ds[(0, 4)]
    vid = ds.store.videos[4 % 3]
    frames = {t: ds.store.image(4 % 3, t) for t in ds.store.valid[4 % 3]}
    src = [t for t, im in frames.items() if torch.equal(im, rng_item["source"])]
    assert len(src) == 1 and src[0] not in INVALID
    rows = np.clip(np.arange(src[0] - 2, src[0] + 3), 0, 35)
    assert np.allclose(rng_item["audio"].numpy(), feats[vid.name][rows].T)
    for r in rng_item["refs"].split(3):
        ref = [t for t, im in frames.items() if torch.equal(im, r)]
        assert ref and ref[0] // 9 != src[0] // 9                 # not from the source's 9-frame clip


def test_clip_dataset_and_resampling_of_missing_crops(data, tmp_path):
    ds = ClipDataset(data, M, augment_num=1, sync_window=9, seed=1)
    item = ds[(0, 0)]
    assert item["source"].shape == (5, 3) + crop_size(M) and item["refs"].shape == (5, 15) + crop_size(M)
    assert item["audio"].shape == (5, 16, 5) and item["sync_audio"].shape == (16, 9)
    assert torch.equal(item["audio"][:, :, 2][2], item["sync_audio"][:, 4])   # both centred on the middle frame
    for vi in range(3):                                         # clips never contain an invalid frame
        assert all(not set(range(s, s + 5)) & set(INVALID) for s in ds.store.runs[vi])
    # a crop deleted after indexing: the item comes from other frames, never as zeros
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(os.path.dirname(data), copy)
    for f in os.listdir(copy / "crops" / "toy000"):
        os.remove(copy / "crops" / "toy000" / f)
    ds2 = FrameDataset(str(copy), M, augment_num=1, seed=3)
    item = ds2[(0, 0)]                                         # index 0 -> toy000, all crops gone
    assert item["source"].std() > 0.05


# ---------------------------------------------------------------- options, errors

def test_lr_factor_is_clamped_and_perception_needs_vgg(data, results):
    f = lr_factor(5, 5)
    assert [round(f(k), 3) for k in (0, 5, 6, 10, 11, 50)] == [1.0, 1.0, round(1 - 1 / 6, 3), round(1 - 5 / 6, 3), 0.0, 0.0]
    # in steps: 10 steps, half flat, then 1 - k/6 for the k-th step after the flat part
    assert [step_lr_factor(k, 10, 1, 1) for k in range(10)] == pytest.approx(
        [1, 1, 1, 1, 1, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6])
    assert step_lr_factor(50, 10, 1, 1) == 0.0 and step_lr_factor(7, 10, 1, 0) == 1.0
    with pytest.raises(UserError, match="--vgg_path.*--no_perception"):
        train_stage("tiny", name="novgg", train_data=data, result_root=results, max_steps=1,
                    **{**COMMON, "no_perception": False})
    with pytest.raises(UserError, match="--adv_warmup_steps must be >= 0"):
        train_stage("tiny", name="neg", train_data=data, result_root=results, adv_warmup_steps=-5, **COMMON)
    with pytest.raises(UserError, match="unknown training stage"):
        train_stage("frame_99", train_data=data)


# ---------------------------------------------------------------- resume, and one run per result folder

def test_step_based_run_and_exact_resume_across_an_epoch_boundary(data, results, uninterrupted):
    u = uninterrupted
    assert u["global_step"] == 8 and u["epoch"] == 2                    # 8 steps whatever the 2 x 3 planned
    # the learning rate follows the step schedule: flat over the first half (4 steps), then 1 - k / 5
    assert [h["lr/g"] for h in u["history"]] == pytest.approx([1e-4] * 4 + [1e-4 * (1 - k / 5) for k in range(4)])
    _cut_copy(results, "cut", 2)
    rest = train_stage("tiny", name="cut", train_data=data, result_root=results, max_steps=8, resume=True,
                       save_every_steps=1, keep_last=10, **COMMON)
    assert rest["global_step"] == 8 and rest["param_hash"] == u["param_hash"]
    assert np.allclose([h["loss/g"] for h in rest["history"]], [h["loss/g"] for h in u["history"][2:]], rtol=1e-5)
    ck = read_checkpoint(rest["final"])
    assert ck["global_step"] == 8 and ck["optimizer"]["g"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 2 / 5)


def test_truncated_newest_checkpoint_falls_back_and_leftover_temporaries_go(data, results, uninterrupted, capsys):
    folder = _cut_copy(results, "trunc", 4)
    newest = list_checkpoints(folder)[-1][1]
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    leftover = os.path.join(folder, ".tmp_checkpoint_step000000005.pth.x1y2.pth")   # a save killed mid-write
    with open(leftover, "wb") as f:
        f.write(b"partial")
    capsys.readouterr()
    out = train_stage("tiny", name="trunc", train_data=data, result_root=results, max_steps=8, resume=True,
                      save_every_steps=1, keep_last=2, **COMMON)
    err = capsys.readouterr().err
    assert re.search(r"warning: skipping unreadable checkpoint .*checkpoint_step000000004\.pth", err)
    assert "resumed from" in err and "checkpoint_step000000003.pth" in err
    assert out["param_hash"] == uninterrupted["param_hash"]
    assert not os.path.exists(leftover) and "interrupted save" in err
    assert os.path.isfile(newest + ".unreadable")                      # set aside, no longer "the newest"
    assert [s for s, _ in list_checkpoints(folder)] == [7, 8]           # keep_last prunes older steps only


def test_a_new_run_never_mixes_with_or_deletes_an_earlier_one(data, results, uninterrupted):
    folder = os.path.join(results, "again", "tiny")
    shutil.copytree(os.path.join(results, "full", "tiny"), folder)
    before = _snapshot(folder)
    with pytest.raises(UserError, match=r"already holds a training run \(checkpoints up to step 8, final.pth\): "
                                        r"pass --resume to continue it or --overwrite to start it over"):
        train_stage("tiny", name="again", train_data=data, result_root=results, max_steps=2, **COMMON)
    assert _snapshot(folder) == before
    # a second run in the same folder at the same time is refused too
    import fcntl

    with open(os.path.join(folder, ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="another training run is using"):
            train_stage("tiny", name="again", train_data=data, result_root=results, max_steps=9, resume=True,
                        **COMMON)
    assert _snapshot(folder) == before
    # --overwrite starts over: only the new run's files remain
    out = train_stage("tiny", name="again", train_data=data, result_root=results, max_steps=2, overwrite=True,
                      save_every_steps=1, **COMMON)
    assert [s for s, _ in list_checkpoints(folder)] == [1, 2]
    assert read_checkpoint(out["final"])["global_step"] == 2
    with open(os.path.join(folder, "config.json")) as f:
        assert json.load(f)["train"]["max_steps"] == 2


def test_a_stage_starts_from_an_official_format_checkpoint(data, results, uninterrupted, tmp_path, capsys):
    """Official files carry no metadata and DDP 'module.' keys: the architecture comes from the shapes, the
    feature width must fit the data, and the warp mode the weights were made for is pointed out."""
    ours = read_checkpoint(uninterrupted["final"])["state_dict"]["net_g"]
    official = tmp_path / "checkpoint_epoch_170.pth"
    torch.save({"epoch": 170, "state_dict": {"net_g": {"module." + k: v for k, v in ours.items()}}}, official)
    capsys.readouterr()
    out = train_stage("tiny", name="from_official", train_data=data, result_root=results, max_steps=1,
                      init_from=str(official), lr_g=1e-12, lr_d=1e-12, **COMMON)
    err = capsys.readouterr().err
    assert f"initialised the generator from {official} (official checkpoint)" in err
    assert "pass --warp_mode official to keep it" in err
    got = read_checkpoint(out["final"])["state_dict"]["net_g"]
    assert all(torch.allclose(got[k], ours[k], atol=1e-6) for k in ours)      # lr ~0: the weights as loaded


def test_time_limit_stops_on_plan_and_on_save_sees_every_checkpoint(data, results):
    """--time_limit_s (time-boxed demos): the step that crosses the limit is the last, its checkpoint and final.pth
    are written as at max_steps, and a resumed run continues the same plan; on_save sees every checkpoint."""
    seen = []
    out = train_stage("tiny", name="timed", train_data=data, result_root=results, max_steps=1000, time_limit_s=1e-3,
                      on_save=lambda path, step: seen.append((os.path.basename(path), step)), **COMMON)
    assert out["global_step"] == 1 and read_checkpoint(out["final"])["global_step"] == 1
    assert seen == [("checkpoint_step000000001.pth", 1)]
    more = train_stage("tiny", name="timed", train_data=data, result_root=results, max_steps=1000, resume=True,
                       time_limit_s=1e-3, **COMMON)
    assert more["global_step"] == 2


# ---------------------------------------------------------------- learning

@pytest.mark.slow
def test_loss_decreases_on_synthetic_data(data, results):
    # Without the perceptual term (weight 10 in real runs) an LSGAN weight of 1 dominates this tiny set and the
    # pixel loss oscillates; 0.1 keeps the adversarial term on while letting the reconstruction drive.
    out = train_stage("tiny", name="learn", train_data=data, result_root=results, max_steps=48, lr_g=1e-3, lr_d=1e-3,
                      lamb_g_spatial=0.1, **{**COMMON, "augment_num": 16})
    img = [h["loss/img"] for h in out["history"]]
    assert len(img) == 48
    assert np.mean(img[-12:]) < 0.85 * np.mean(img[:6]), img


# ---------------------------------------------------------------- clip stage with weight files

def test_clip_stage_from_frame_stage_with_vgg_and_syncnet(data, results, uninterrupted, tmp_path):
    vgg = tmp_path / "vgg19.pth"
    write_random_vgg19(vgg)
    sync = tmp_path / "sync.pth"
    torch.manual_seed(0)
    save_syncnet(SyncNet(15, 16, 16, face_size=32, audio_window=9), str(sync))
    out = train_stage("tiny_clip", name="full", train_data=data, result_root=results, max_steps=2,
                      init_from=uninterrupted["final"], vgg_path=str(vgg), syncnet_path=str(sync),
                      sync_warmup_steps=4, lr_warmup_steps=4, adv_warmup_steps=2, lr_d=0.0,
                      **{**COMMON, "no_perception": False, "augment_num": 1})
    h = out["history"]
    assert [x["weight/sync"] for x in h] == pytest.approx([0.1 * 1 / 4, 0.1 * 2 / 4])
    assert [x["lr/g"] for x in h] == pytest.approx([1e-4 * 1 / 4, 1e-4 * 2 / 4])
    assert [x["weight/adv"] for x in h] == pytest.approx([0.5, 1.0])
    # the frame stage's spatial discriminator came along (lr_d = 0 keeps it as loaded)
    d_frame = read_checkpoint(uninterrupted["final"])["state_dict"]["net_dI"]
    d_clip = read_checkpoint(out["final"])["state_dict"]["net_dI"]
    assert all(torch.equal(d_frame[k], d_clip[k]) for k in d_frame)
    assert all(x["loss/sync"] > 0 and x["loss/d_temporal"] > 0 and x["loss/g_perception"] > 0 for x in h)
    ck = read_checkpoint(out["final"])
    assert {"net_g", "net_dI", "net_dV"} <= set(ck["state_dict"]) and ck["audio_feature"] == "toy"
    model, info = load_lawdnet(out["final"], return_info=True)     # inference needs only the file
    assert model.warp_mode == "corrected" and info["mouth_region_size"] == M
    with pytest.raises(UserError, match="SyncNet takes 29-wide audio"):
        save_syncnet(SyncNet(15, 29, 16, face_size=32), str(sync))
        train_stage("tiny_clip", name="bad", train_data=data, result_root=results, max_steps=1,
                    syncnet_path=str(sync), **COMMON)


# ---------------------------------------------------------------- torchrun

def _run(cmd, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


@pytest.mark.slow
def test_torchrun_two_processes_agree_with_each_other_and_with_one_process(data, results):
    args = ["--stage", "tiny", "--train_data", data, "--result_root", results, "--mouth_region_size", str(M),
            "--no_perception", "--logger", "none", "--num_workers", "0", "--augment_num", "4", "--max_steps", "3"]
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "train_sequence_distributed.py", "--name", "ddp", "--batch_size", "2"] + args)
    hashes = dict(re.findall(r"rank (\d)/2 done at step 3: parameter sha1 ([0-9a-f]{40})", out))
    assert set(hashes) == {"0", "1"} and hashes["0"] == hashes["1"], out[-2000:]
    # the same global batch (2 x 2) in one process gives the same weights up to float rounding
    single = train_stage("tiny", name="single", train_data=data, result_root=results, batch_size=4, max_steps=3,
                         mouth_region_size=M, no_perception=True, logger="none", num_workers=0, augment_num=4)
    a = read_checkpoint(os.path.join(results, "ddp", "tiny", "final.pth"))["state_dict"]
    b = read_checkpoint(single["final"])["state_dict"]
    for net in ("net_g", "net_dI"):
        for k in a[net]:
            assert torch.allclose(a[net][k], b[net][k], atol=2e-5, rtol=1e-4), (net, k)


@pytest.mark.slow
def test_sequence_script_chains_stages_and_skips_finished_ones(data, tmp_path):
    """train_sequence_distributed.sh: tiny -> tiny_clip under torchrun, the clip stage initialised from the
    frame stage's final.pth under a --result_root given as a flag; a re-run skips both stages."""
    sync = tmp_path / "sync.pth"
    save_syncnet(SyncNet(15, 16, 16, face_size=32, audio_window=9), str(sync))
    out_root = tmp_path / "runs"
    cmd = ["bash", "train_sequence_distributed.sh", "seq", "--train_data", data, "--result_root", str(out_root),
           "--mouth_region_size", str(M), "--no_perception", "--syncnet_path", str(sync), "--logger", "none",
           "--num_workers", "0", "--augment_num", "2", "--max_steps", "2"]
    env = {"STAGES": "tiny tiny_clip", "NPROC": "1", "PYTHON": sys.executable}
    out = _run(cmd, env)
    frame_final, clip_final = out_root / "seq" / "tiny" / "final.pth", out_root / "seq" / "tiny_clip" / "final.pth"
    assert frame_final.is_file() and clip_final.is_file(), out[-2000:]
    clip_cfg = json.loads((out_root / "seq" / "tiny_clip" / "config.json").read_text())
    assert os.path.samefile(clip_cfg["train"]["init_from"], frame_final)
    assert load_lawdnet(str(clip_final)).config == load_lawdnet(str(frame_final)).config
    again = _run(cmd, env)
    assert again.count("already finished") == 2, again[-2000:]


# ---------------------------------------------------------------- one error line, folder untouched

def _bad_index(tmp_path, name, raw):
    path = tmp_path / name
    path.write_text(json.dumps({"format": "lawdnet-data-v1", **raw}))
    return str(path)


def _cli(argv, capsys):
    """train_sequence_distributed.py's main as its CLI runs it: (exit status, stderr lines)."""
    import train_sequence_distributed as tsd
    from utils.errors import cli_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli_main(lambda: tsd.main(argv))
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_every_bad_input_is_one_error_line_and_leaves_the_folder_untouched(data, results, uninterrupted, tmp_path,
                                                                          capsys):
    folder = os.path.join(results, "kept", "tiny")
    shutil.copytree(os.path.join(results, "full", "tiny"), folder)
    before = _snapshot(folder)
    garbage = tmp_path / "vgg19.pth"
    garbage.write_text("not weights")
    video = {"num_frames": 36, "crop_dir": "crops/toy000", "features": {"toy": "features/toy/toy000.npy"}}
    cases = [
        ([f"--train_data={_bad_index(tmp_path, 'a.json', {'videos': {'v': video}})}"], "'crop_width' is missing"),
        ([f"--train_data={_bad_index(tmp_path, 'b.json', {'crop_width': 40, 'videos': {'v': {'crop_dir': 'c'}}})}"],
         "'num_frames' is missing for video 'v'"),
        ([f"--train_data={_bad_index(tmp_path, 'c.json', {'crop_width': 40, 'videos': [video]})}"],
         "'videos' must map video names to entries, got a list"),
        (["--log_every", "0"], "--log_every must be >= 1"),
        (["--lr_g", "-1"], "--lr_g must be a positive number"),
        (["--num_workers", "-1"], "--num_workers must be >= 0"),
        (["--vgg_path", str(garbage), "--no-no_perception"], "not a PyTorch checkpoint"),
        (["--overwrite"], "pass one"),
    ]
    base = ["--stage", "tiny", "--name", "kept", "--train_data", data, "--result_root", results, "--mouth_region_size",
            str(M), "--no_perception", "--logger", "none", "--num_workers", "0", "--max_steps", "9", "--resume"]
    for extra, message in cases:
        code, lines = _cli(base + extra, capsys)
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert code == 2 and len(errors) == 1 and message in errors[0], (extra, lines)
        assert not any("Traceback" in ln or "weights_only" in ln for ln in lines), lines
        assert _snapshot(folder) == before, extra
    # a new run without --resume over the earlier one
    code, lines = _cli([a for a in base if a != "--resume"], capsys)
    assert code == 2 and lines == [f"error: {folder} already holds a training run (checkpoints up to step 8, "
                                   "final.pth): pass --resume to continue it or --overwrite to start it over (or "
                                   "choose another --name)"]
    assert _snapshot(folder) == before
    # a result root that cannot be created
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, lines = _cli(base + ["--result_root", str(blocker / "runs")], capsys)
    assert code == 2 and len(lines) == 1 and "is a file" in lines[0] and blocker.read_text() == ""


@pytest.mark.slow
def test_sequence_script_reports_each_failure_in_one_line(data, tmp_path):
    """The .sh under real torchrun (2 gloo processes): a bad flag, a busy MASTER_PORT and Ctrl-C each give one
    line and no torchrun traceback; its own checks answer in one line too."""
    import signal
    import socket
    import time

    root = tmp_path / "runs"
    cmd = ["bash", "train_sequence_distributed.sh", "seq", "--train_data", data, "--result_root", str(root),
           "--mouth_region_size", str(M), "--no_perception", "--logger", "none", "--num_workers", "0",
           "--augment_num", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STAGES": "tiny tiny_clip", "NPROC": "2", "PYTHON": sys.executable}

    def run(extra, **more):
        p = subprocess.run(cmd + extra, cwd=ROOT, env={**env, **more}, capture_output=True, text=True, timeout=300)
        return p.returncode, p.stderr.strip().splitlines()

    code, lines = run(["--max_steps", "2", "--log_every", "0"])
    assert code == 2 and lines == ["error: --log_every must be >= 1, got 0"], lines
    assert not root.exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, lines = run(["--max_steps", "2"], MASTER_PORT=str(port))
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: MASTER_PORT {port} is already in use"), lines
    assert "choose a free port, e.g. MASTER_PORT=" in lines[0] and not root.exists()
    for extra, more, message in [([], {"NPROC": "two"}, "NPROC must be a positive whole number"),
                                 (["--resume"], {}, "the sequence always resumes"),
                                 (["--result_root"], {}, "--result_root needs a value")]:
        code, lines = run(extra, **more)
        assert code == 2 and len(lines) == 1 and message in lines[0], lines
    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during training
    p = subprocess.Popen(cmd + ["--max_steps", "1000", "--save_every_steps", "1"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    folder = root / "seq" / "tiny"
    deadline = time.monotonic() + 240
    while not (folder / "checkpoint_step000000002.pth").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert p.returncode == 130 and lines[-1] == "interrupted" and lines.count("interrupted") == 1, err[-3000:]
    assert not any("Traceback" in ln or "Error" in ln for ln in lines), err[-3000:]
    steps = list_checkpoints(str(folder))
    assert steps and read_checkpoint(steps[-1][1])["global_step"] == steps[-1][0]
