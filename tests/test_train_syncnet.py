"""SyncNet training on a prepared data root: pair sampling, held-out split, training, and the saved file used
by the clip stage's sync loss."""
import numpy as np
import pytest
import torch

from config.config import SyncNetConfig
from dataset.clip_dataset import SyncPairDataset
from models.syncnet import load_syncnet, mouth_crops, sync_loss
from train_syncnet import main
from training.syncnet_trainer import split_videos, train_syncnet
from training.toy_data import make_toy_data
from utils.errors import UserError
from utils.face.geometry import crop_size

M = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_toy_data(str(tmp_path_factory.mktemp("toy")), num_videos=3, num_frames=40, crop_width=40, seed=2)


def test_split_holds_out_videos_or_segments():
    assert split_videos(["c", "a", "b", "d", "e"], 0.2) == (["a", "b", "c", "d"], ["e"], False)
    assert split_videos(["only"], 0.2) == (["only"], ["only"], True)


def test_pairs_are_aligned_or_at_least_min_offset_away(data):
    ds = SyncPairDataset(data, M, 32, augment_num=4, sync_window=9, min_offset=5, seed=0)
    feats = [np.load(v.features["toy"]) for v in ds.store.videos]
    labels = []
    for i in range(len(ds)):
        item = ds[(0, i)]
        assert item["face"].shape == (15, 32, 32) and item["audio"].shape == (16, 9)
        # find the window's centre row (unclamped rows are unique in this noisy feature)
        mid = item["audio"][:, 4].numpy()
        where = [(v, t) for v, f in enumerate(feats) for t in range(len(f)) if np.allclose(f[t], mid)]
        assert len(where) == 1
        v, t = where[0]
        vi = i % len(feats)
        # the clip whose mouths we got: match its middle frame's mouth box against every frame
        top, bottom, left, right = 16, 48, 4, 36
        mouths = {f: ds.store.image(vi, f)[:, top:bottom, left:right] for f in ds.store.valid[vi]}
        middle = [f for f, m in mouths.items() if torch.equal(m, item["face"][6:9])]
        assert len(middle) == 1
        if item["label"] == 1:
            assert (v, t) == (vi, middle[0])
        else:
            assert v != vi or abs(t - middle[0]) >= 5
        labels.append(float(item["label"]))
    assert 0.25 < np.mean(labels) < 0.75


def test_train_save_load_and_use_in_the_sync_loss(data, tmp_path, capsys):
    out = tmp_path / "sync.pth"
    torch.set_num_threads(1)
    res = train_syncnet(data, str(out), SyncNetConfig(mouth_region_size=M, face_size=32, hidden=16, steps=12,
                                                      batch_size=8, lr=1e-3, val_items=32, eval_every=0,
                                                      num_workers=0))
    assert "held-out videos: toy002" in res["split"] and len(res["history"]) == 12
    assert all(np.isfinite(res["history"])) and 0.0 <= res["val_accuracy"] <= 1.0
    net = load_syncnet(str(out))
    assert net.config["audio_channels"] == 16 and net.face_size == 32
    frames = torch.rand(2, 5, 3, *crop_size(M), requires_grad=True)
    loss = sync_loss(net, mouth_crops(frames, M), torch.randn(2, 16, 9))
    loss.backward()
    assert frames.grad.abs().sum() > 0                       # the clip stage can train through it
    saved = torch.load(out, weights_only=True)
    assert saved["audio_feature"] == "toy" and saved["val_accuracy"] == res["val_accuracy"]


def test_every_bad_option_is_one_error_line_before_any_training(data, tmp_path, capsys):
    from utils.errors import cli_main

    existing = tmp_path / "old.pth"
    existing.write_bytes(b"an earlier SyncNet")
    (tmp_path / ".tmp_old.pth.abc123.pth").write_bytes(b"partial")   # a save killed mid-write
    base = ["--train_data", data, "--mouth_region_size", str(M), "--face_size", "32", "--num_workers", "0"]
    cases = [(["--out", str(tmp_path / "x.pth"), "--face_size", "48"], "face_size must be a positive multiple of 32"),
             (["--out", str(tmp_path / "x.pth"), "--batch_size", "0"], "--batch_size must be >= 2"),
             (["--out", str(tmp_path / "x.pth"), "--hidden", "0"], "--hidden must be an even number >= 2"),
             (["--out", str(tmp_path / "x.pth"), "--lr", "-1"], "--lr must be a positive number"),
             (["--out", str(tmp_path / "x.pth"), "--steps", "0"], "--steps must be >= 1"),
             (["--out", str(tmp_path)], "is a folder"),
             (["--out", str(existing)], "exists: pass --overwrite"),
             (["--out", str(existing / "x.pth")], "is a file"),
             (["--out", str(tmp_path / "x.pth"), "--train_data", str(tmp_path / "nothing")], "training index not found")]
    for extra, message in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            cli_main(lambda: main(base + extra))
        lines = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert existing.read_bytes() == b"an earlier SyncNet" and not (tmp_path / "x.pth").exists()
    with pytest.raises(UserError, match="face_size"):        # the leftover goes once an --out check passed
        main(base + ["--out", str(existing), "--overwrite", "--face_size", "48"])
    assert (tmp_path / ".tmp_old.pth.abc123.pth").exists()
    main(base + ["--out", str(existing), "--overwrite", "--steps", "2", "--batch_size", "4", "--hidden", "8",
                 "--val_items", "8", "--no_progress"])
    assert not (tmp_path / ".tmp_old.pth.abc123.pth").exists() and load_syncnet(str(existing)).config["hidden"] == 8


def _readme_smoke_commands():
    """The CPU smoke run of docs/training.md: the make_toy_data keywords and the train_syncnet.py flags."""
    import ast
    import os
    import re
    import shlex

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(repo, "docs", "training.md")).read()
    block = text[text.index("**CPU smoke run**"):]
    block = block[block.index("```bash") + 7:block.index("```", block.index("```bash") + 7)]
    call = re.search(r"make_toy_data\('toy', (.*?)\)\"", block).group(1)
    toy = {k: ast.literal_eval(v) for k, v in (kv.split("=") for kv in call.split(", "))}
    line = block.replace("\\\n", " ")
    flags = shlex.split(re.search(r"python train_syncnet.py (.*)", line).group(1))
    return toy, flags


@pytest.mark.slow
def test_the_readme_smoke_command_learns(tmp_path):
    """The SyncNet smoke command of docs/training.md, run as written on its toy data: lips follow their audio, so
    held-out accuracy on the unseen 4th video must be clearly above chance (128 pairs: 0.65 is > 3 sigma above
    0.5). With --hidden 16 --steps 50 (the README's former example) it stayed at chance (0.52)."""
    toy, flags = _readme_smoke_commands()
    torch.set_num_threads(1)
    root = make_toy_data(str(tmp_path / "toy"), **toy)
    flags = [str(tmp_path / f) if f in ("toy", "toy_sync.pth") else f for f in flags]
    res = main(flags + ["--val_items", "128", "--no_progress"])
    assert "held-out videos: toy003" in res["split"] and root.startswith(str(tmp_path))
    assert res["val_accuracy"] >= 0.65, res["val_accuracy"]
    assert load_syncnet(str(tmp_path / "toy_sync.pth")).config["face_offset"] == 0.5
