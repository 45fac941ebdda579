"""Auxiliary networks: discriminators, SyncNet, VGG19 trunk, sync_batchnorm shim.

Official-layout weight files are built here from a description of the original (key names and shapes written out
independently of the model code), saved with torch.save and loaded back through the public loaders.
"""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.discriminator import Discriminator
from models.syncnet import SyncNet, load_syncnet, mouth_crops, save_syncnet, sync_loss
from models.vgg19 import Vgg19Features, half_resolution, load_vgg19, perceptual_loss
from sync_batchnorm import SynchronizedBatchNorm1d, SynchronizedBatchNorm2d, convert_model
from utils.errors import UserError

torch.set_num_threads(2)


# ---------------------------------------------------------------- discriminator

def official_discriminator_sd(in_ch, gen):
    """The original: 4 blocks in -> 128 -> 256 -> 256 -> 256, k4; 1x1 conv to 1; DDP-prefixed keys."""
    chans = [in_ch, 128, 256, 256, 256]
    sd = {}
    for i in range(4):
        sd[f"module.down_blocks.{i}.conv.weight"] = torch.randn(chans[i + 1], chans[i], 4, 4, generator=gen) * 0.05
        sd[f"module.down_blocks.{i}.conv.bias"] = torch.randn(chans[i + 1], generator=gen) * 0.05
    sd["module.conv.weight"] = torch.randn(1, 256, 1, 1, generator=gen) * 0.05
    sd["module.conv.bias"] = torch.randn(1, generator=gen) * 0.05
    return sd


def reference_discriminator(sd, x):
    """Plain functional recomputation of the original discriminator from the raw official tensors."""
    feats = []
    for i in range(4):
        x = F.leaky_relu(F.conv2d(x, sd[f"module.down_blocks.{i}.conv.weight"],
                                  sd[f"module.down_blocks.{i}.conv.bias"]), 0.2)
        if i < 3:
            x = F.avg_pool2d(x, 2)
        feats.append(x)
    return feats, F.conv2d(x, sd["module.conv.weight"], sd["module.conv.bias"])


def test_discriminator_loads_official_checkpoint_and_matches_reference(tmp_path):
    gen = torch.Generator().manual_seed(0)
    ckpt = {"epoch": 171, "state_dict": {"net_g": {}, "net_dI": official_discriminator_sd(3, gen),
                                         "net_dV": official_discriminator_sd(15, gen)}}
    path = tmp_path / "checkpoint_epoch_170.pth"
    torch.save(ckpt, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    for name, ch in (("net_dI", 3), ("net_dV", 15)):
        d = Discriminator(ch)
        d.load_official_state_dict(loaded[name])       # strict: raises on any missing/extra key or shape
        x = torch.rand(2, ch, 64, 64, generator=gen)
        feats, logits = d(x)
        ref_feats, ref_logits = reference_discriminator(loaded[name], x)
        assert logits.shape == (2, 1, 2, 2)
        assert [f.shape[1] for f in feats] == [128, 256, 256, 256]
        torch.testing.assert_close(logits, ref_logits)
        for f, r in zip(feats, ref_feats):
            torch.testing.assert_close(f, r)
    # a 3-channel D cannot take the 15-channel weights
    with pytest.raises(RuntimeError):
        Discriminator(3).load_official_state_dict(loaded["net_dV"])


@pytest.mark.parametrize("hw,patch", [((468, 360), (52, 39)), ((416, 320), (46, 34))])
def test_discriminator_patch_map_size(hw, patch):
    # narrow widths: the patch size only depends on the spatial ops, and this keeps the test fast
    d = Discriminator(3, block_expansion=4, max_features=8)
    feats, logits = d(torch.rand(1, 3, *hw))
    assert tuple(logits.shape) == (1, 1, *patch)
    assert Discriminator.patch_size(*hw) == patch
    assert len(feats) == 4 and [f.shape[1] for f in feats] == [8, 8, 8, 8]


# ---------------------------------------------------------------- SyncNet

def official_syncnet_sd(gen, face_ch=15, audio_ch=29):
    """syncnet_256mouth.pth layout: Same=conv, Res=conv1+conv2, Down=conv (pool has no weights)."""
    sd = {}

    def conv(key, cout, cin, *k):
        fan_in = cin * (k[0] * k[1] if len(k) == 2 else k[0])
        sd[key + ".weight"] = torch.randn(cout, cin, *k, generator=gen) * fan_in ** -0.5
        sd[key + ".bias"] = torch.randn(cout, generator=gen) * 0.01

    face = [("same", face_ch, 64, 7)] + [("res", 64, 64, 3), ("down", 64, 64, 3)]
    for cin in (64, 128, 128, 128):
        face += [("same", cin, 128, 3), ("res", 128, 128, 3), ("down", 128, 128, 3)]
    face.append(("same", 128, 128, 1))
    assert len(face) == 16
    for i, (kind, cin, cout, k) in enumerate(face):
        p = f"face_encoder.face_conv.{i}"
        if kind == "res":
            conv(p + ".conv1", cout, cin, k, k)
            conv(p + ".conv2", cout, cout, k, k)
        else:
            conv(p + ".conv", cout, cin, k, k)
    audio = [("same", audio_ch, 7)] + [("res", 128, 3), ("down", 128, 3)] * 3 + [("same", 128, 3)]
    for i, (kind, cin, k) in enumerate(audio):
        p = f"audio_encoder.audio_conv.{i}"
        if kind == "res":
            conv(p + ".conv1", 128, cin, k)
            conv(p + ".conv2", 128, 128, k)
        else:
            conv(p + ".conv", 128, cin, k)
    conv("merge_encoder.0", 128, 256, 3, 3)
    conv("merge_encoder.2", 1, 128, 3, 3)
    return sd


def test_syncnet_loads_official_layout(tmp_path):
    gen = torch.Generator().manual_seed(1)
    sd = official_syncnet_sd(gen)
    path = tmp_path / "syncnet_256mouth.pth"
    torch.save({"state_dict": {"net": sd}}, path)
    net = load_syncnet(str(path))
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    assert net.config == dict(face_channels=15, audio_channels=29, hidden=128, face_size=256, audio_window=9,
                              face_offset=0.0)   # the released model sees faces in [0, 1]
    own = net.state_dict()
    assert set(own) == set(sd)
    assert all(torch.equal(own[k], sd[k]) for k in sd)
    assert sum(v.numel() for v in sd.values()) == sum(p.numel() for p in net.parameters())
    # fully convolutional face encoder: a 64x64 mouth stack gives a 2x2 score map
    with torch.no_grad():
        out = net(torch.rand(1, 15, 64, 64, generator=gen), torch.randn(1, 29, 9, generator=gen))
    assert out.shape == (1, 1, 2, 2) and torch.isfinite(out).all()

    # DDP-prefixed keys are accepted too and give the same network
    path2 = tmp_path / "syncnet_module.pth"
    torch.save({"state_dict": {"net": {"module." + k: v for k, v in sd.items()}}}, path2)
    net2 = load_syncnet(str(path2))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_syncnet_default_input_gives_8x8_map():
    net = SyncNet(hidden=8)         # narrow but the official input: (B,15,256,256) + (B,29,9)
    with torch.no_grad():
        out = net(torch.rand(2, 15, 256, 256), torch.randn(2, 29, 9))
    assert out.shape == (2, 1, 8, 8)


def test_syncnet_own_format_roundtrip(tmp_path):
    net = SyncNet(face_channels=15, audio_channels=80, hidden=16, face_size=64, audio_window=5)
    path = tmp_path / "runs" / "syncnet.pth"
    save_syncnet(net, str(path), epoch=3)
    back = load_syncnet(str(path))
    assert back.config == net.config and back.face_size == 64 and back.audio_window == 5
    face, audio = torch.rand(2, 15, 64, 64), torch.randn(2, 80, 5)
    with torch.no_grad():
        torch.testing.assert_close(back(face, audio), net(face, audio))


def _one_line_user_error(fn, path):
    with pytest.raises(UserError) as exc:
        fn(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and os.path.basename(str(path)) in msg
    return msg


def test_syncnet_bad_files(tmp_path):
    _one_line_user_error(load_syncnet, tmp_path / "missing_syncnet.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    _one_line_user_error(load_syncnet, text)
    # a generator-style checkpoint is a checkpoint, but not a SyncNet one
    other = tmp_path / "netG_model_epoch_9.pth"
    torch.save({"state_dict": {"net_g": {"module.x": torch.zeros(1)}}}, other)
    _one_line_user_error(load_syncnet, other)
    # right keys, one tensor of the wrong shape
    sd = official_syncnet_sd(torch.Generator().manual_seed(2))
    sd["face_encoder.face_conv.7.conv2.weight"] = torch.zeros(128, 128, 5, 5)
    bad = tmp_path / "bad_shape.pth"
    torch.save({"state_dict": {"net": sd}}, bad)
    msg = _one_line_user_error(load_syncnet, bad)
    assert "face_conv.7.conv2" in msg
    with pytest.raises(UserError):
        load_syncnet("")


def test_mouth_crops_and_sync_loss_backpropagates():
    m = 16                                             # crop 26x20, mouth box rows [8,24) cols [2,18)
    net = SyncNet(hidden=16, face_size=64).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    frames5 = torch.rand(2, 5, 3, 26, 20, requires_grad=True)
    mouths = mouth_crops(frames5, m)
    assert mouths.shape == (2, 15, m, m)
    for k in range(5):                                 # frame k occupies channels 3k..3k+2
        assert torch.equal(mouths[:, 3 * k:3 * k + 3], frames5[:, k, :, 8:24, 2:18])
    audio = torch.randn(2, 29, 9)
    loss = sync_loss(net, mouths, audio)
    with torch.no_grad():
        ref = ((net(F.interpolate(mouths, size=(64, 64), mode="bilinear", align_corners=False), audio) - 1) ** 2).mean()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    g = frames5.grad
    assert g[:, :, :, 8:24, 2:18].abs().sum() > 0
    outside = g.clone()
    outside[:, :, :, 8:24, 2:18] = 0
    assert outside.abs().sum() == 0
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError):
        mouth_crops(frames5, 32)                       # box does not fit in a 26x20 crop


# ---------------------------------------------------------------- VGG19

VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def torchvision_vgg19_sd(gen):
    """torchvision vgg19 layout: features.{conv index}.weight/bias for all 16 convs, plus classifier keys.
    The classifier tensors are small stand-ins (the real ones are 0.5 GB; the loader must ignore them anyway)."""
    sd, idx, cin = {}, 0, 3
    for item in VGG_CFG:
        if item == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(item, cin, 3, 3, generator=gen) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(item, generator=gen) * 0.01
        cin, idx = item, idx + 2
    for i in (0, 3, 6):
        sd[f"classifier.{i}.weight"] = torch.randn(4, 4, generator=gen)
        sd[f"classifier.{i}.bias"] = torch.randn(4, generator=gen)
    return sd


def reference_vgg(sd, x):
    """Activations after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 computed with F.conv2d from the raw dict."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    taps, outs, idx = {1, 6, 11, 20, 29}, [], 0
    for item in VGG_CFG:
        if item == "M":
            x = F.max_pool2d(x, 2)
            idx += 1
            continue
        x = F.relu(F.conv2d(x, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"], padding=1))
        if idx + 1 in taps:
            outs.append(x)
        idx += 2
        if len(outs) == 5:
            break
    return outs


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    gen = torch.Generator().manual_seed(3)
    sd = torchvision_vgg19_sd(gen)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    return path, sd


def test_vgg19_loads_torchvision_file_and_matches_reference(vgg_file):
    path, sd = vgg_file
    vgg = load_vgg19(str(path))
    assert not vgg.training and all(not p.requires_grad for p in vgg.parameters())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        outs = vgg(x)
        ref = reference_vgg(sd, x)
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-5)
        assert o.abs().sum() > 0


def test_perceptual_loss(vgg_file):
    path, _ = vgg_file
    vgg = load_vgg19(str(path))
    gen = torch.Generator().manual_seed(5)
    real = torch.rand(1, 3, 64, 48, generator=gen)
    # identical images give exactly zero: real and fake are down-sampled the same way (docs/original.md, 'Losses')
    assert perceptual_loss(vgg, real.clone(), real).item() == 0.0
    fake = (real + 0.1 * torch.randn(real.shape, generator=gen)).clamp(0, 1).requires_grad_(True)
    loss = perceptual_loss(vgg, fake, real)
    with torch.no_grad():
        terms = [F.l1_loss(a, b) for a, b in zip(vgg(fake), vgg(real))]
        terms += [F.l1_loss(a, b) for a, b in zip(vgg(half_resolution(fake)), vgg(half_resolution(real)))]
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_vgg19_bad_files(tmp_path):
    msg = _one_line_user_error(load_vgg19, tmp_path / "vgg19-dcbb9e9d.pth")
    assert "--vgg_path" in msg and "download.pytorch.org" in msg
    with pytest.raises(UserError):
        load_vgg19("")
    wrong = tmp_path / "disc.pth"
    torch.save(Discriminator(3, block_expansion=4, max_features=8).state_dict(), wrong)
    _one_line_user_error(load_vgg19, wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01garbage")
    _one_line_user_error(load_vgg19, junk)
    # right keys, wrong widths (e.g. a VGG16-style or truncated file)
    sd = torchvision_vgg19_sd(torch.Generator().manual_seed(6))
    sd["features.28.weight"] = torch.zeros(256, 512, 3, 3)
    shaped = tmp_path / "vgg_bad_shape.pth"
    torch.save(sd, shaped)
    assert "features.28.weight" in _one_line_user_error(load_vgg19, shaped)


def test_vgg19_without_weights_is_trainable_when_asked():
    vgg = Vgg19Features(requires_grad=True)
    assert all(p.requires_grad for p in vgg.parameters())
    assert len(vgg.state_dict()) == 26          # 13 convs up to relu5_1 x (weight, bias); no mean/std


# ---------------------------------------------------------------- sync_batchnorm

def test_convert_model_is_noop_on_cpu(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SynchronizedBatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 6),
                          SynchronizedBatchNorm1d(6))
    assert isinstance(model[1], nn.BatchNorm2d)
    keys = set(model[1].state_dict())
    assert keys == set(nn.BatchNorm2d(4).state_dict())   # standard keys: loads plain BN checkpoints
    assert convert_model(model) is model and type(model[1]) is SynchronizedBatchNorm2d
    out = model(torch.rand(3, 3, 6, 6))                   # works on CPU, train mode
    assert out.shape == (3, 6)
    # with a process group up but the module on CPU, still nothing is converted (SyncBatchNorm needs CUDA)
    import torch.distributed as dist
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        assert convert_model(model) is model and type(model[4]) is SynchronizedBatchNorm1d
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_aux_models_on_cuda(tmp_path):
    dev = f"cuda:{torch.cuda.device_count() - 1}"       # not necessarily cuda:0
    d = Discriminator(15, block_expansion=8, max_features=16).to(dev)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, logits = d(torch.rand(1, 15, 468, 360, device=dev))
    assert logits.shape == (1, 1, 52, 39) and logits.device == torch.device(dev)
    net = SyncNet(hidden=16, face_size=64)
    path = tmp_path / "s.pth"
    save_syncnet(net, str(path))
    net = load_syncnet(str(path), device=dev)
    frames = torch.rand(1, 5, 3, 26, 20, device=dev, requires_grad=True)
    loss = sync_loss(net, mouth_crops(frames, 16), torch.randn(1, 29, 9, device=dev))
    loss.backward()
    assert frames.grad.abs().sum() > 0
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        m = convert_model(nn.Sequential(nn.Conv2d(3, 4, 3), SynchronizedBatchNorm2d(4)).to(dev))
        assert isinstance(m[1], nn.SyncBatchNorm)
    finally:
        dist.destroy_process_group()
