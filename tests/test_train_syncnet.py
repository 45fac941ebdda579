"""SyncNet training on a prepared data root: pair sampling, held-out split, training, and the saved file used
by the clip stage's sync loss."""
import numpy as np
import pytest
import torch

from config.config import crop_size
from dataset.clip_dataset import SyncPairDataset
from models.syncnet import load_syncnet, mouth_crops, sync_loss
from train_syncnet import main, split_videos, train_syncnet
from training.toy_data import make_toy_data
from utils.errors import UserError

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
    res = train_syncnet(data, str(out), mouth_region_size=M, face_size=32, hidden=16, steps=12, batch_size=8,
                        lr=1e-3, val_items=32, eval_every=0, num_workers=0)
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


def test_cli_errors_are_one_line(data, tmp_path):
    with pytest.raises(UserError, match="face_size must be a positive multiple of 32"):
        main(["--train_data", data, "--out", str(tmp_path / "x.pth"), "--face_size", "48"])
    with pytest.raises(UserError, match="training index not found"):
        main(["--train_data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.pth")])


def test_syncnet_training_beats_chance_on_held_out_video(tmp_path):
    """Lips of the toy data follow their audio; a SyncNet trained on 3 videos must tell aligned from shifted
    windows on a 4th, unseen video clearly better than chance (128 pairs: 0.65 is > 3 sigma above 0.5)."""
    torch.set_num_threads(1)
    data4 = make_toy_data(str(tmp_path / "toy4"), num_videos=4, num_frames=60, crop_width=40, seed=2)
    res = train_syncnet(data4, str(tmp_path / "sync.pth"), mouth_region_size=M, face_size=32, hidden=32,
                        steps=400, batch_size=32, lr=1e-3, val_items=128, eval_every=0, num_workers=0,
                        log=lambda *a: None)
    assert "held-out videos: toy003" in res["split"]
    assert res["val_accuracy"] >= 0.65, res["val_accuracy"]
    assert load_syncnet(str(tmp_path / "sync.pth")).config["face_offset"] == 0.5
