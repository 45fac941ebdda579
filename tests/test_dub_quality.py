"""Issue 25's fixes at dub time: colour harmonisation of the generated crop (inference/harmonize.py) and the
landmark blend mask (utils/face/blend.py), in the one place Dubber.dub and Dubber.render_frames share."""
import cv2
import numpy as np
import pytest
import torch

from config.config import InferenceConfig, ModelConfig
from inference.harmonize import harmonize
from utils.face.align import FaceAligner
from utils.face.blend import speech_mask, speech_region

TINY = dict(audio_channel=80, encoder_channels=(8, 16, 32), align_channels=16, attn_dim=32, decoder_channels=16)


@pytest.fixture(scope="module")
def face_crop():
    """(crop (1,3,Hc,Wc) float [0,1], source mask, crop landmarks) of the synthetic speaker's photo, m = 64."""
    from utils.synthetic.face import astronaut_face

    img, lm = astronaut_face()
    al = FaceAligner.for_mouth_size(64)
    M = al.estimate(np.asarray(lm))
    crop = al.crop(np.asarray(img), M)
    t = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    return t, al.source_mask(), FaceAligner.crop_landmarks(np.asarray(lm), M)


def test_harmonize_takes_a_cast_out_and_leaves_a_clean_crop_alone(face_crop):
    src, mask, _ = face_crop
    assert torch.allclose(harmonize(src.clone(), src, mask), src, atol=1e-5)
    H, W = src.shape[-2:]
    # a cast that varies over the face: green-yellow at the bottom, pink at the top, on the generated crop
    ramp = torch.linspace(0, 1, H).view(1, 1, H, 1)
    cast = torch.cat([1.12 - 0.2 * ramp, 0.95 + 0.15 * ramp, 0.9 - 0.1 * ramp], 1)
    gen = (src * cast).clamp(0, 1)
    fixed = harmonize(gen, src, mask)
    inside = (mask[0, 0] > 0.95)
    err_before = (gen - src).abs()[0][:, inside].mean()
    err_after = (fixed - src).abs()[0][:, inside].mean()
    assert err_after < 0.5 * err_before                   # in the mouth region too, where nothing was copied
    assert (fixed - src).abs()[0][:, mask[0, 0] < 0.05].mean() < 0.01
    # a uniform cast goes almost entirely
    gen = (src * torch.tensor([1.1, 0.92, 0.95]).view(1, 3, 1, 1)).clamp(0, 1)
    err = (harmonize(gen, src, mask) - src).abs()[0][:, inside].mean()
    assert err < 0.1 * (gen - src).abs()[0][:, inside].mean()


def test_sharpen_restores_detail_and_leaves_flat_areas(face_crop):
    from evaluation.sharpness import laplacian_variance
    from inference.harmonize import sharpen

    src = face_crop[0]
    assert sharpen(src, 0.0) is src
    img = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    blurred = torch.from_numpy(cv2.GaussianBlur(img(src), (0, 0), 0.8)).permute(2, 0, 1)[None].float() / 255
    assert laplacian_variance(img(sharpen(blurred, 0.7))) > 1.5 * laplacian_variance(img(blurred))
    flat = torch.full((1, 3, 20, 16), 0.5)
    assert torch.allclose(sharpen(flat, 0.7), flat, atol=1e-6)


def test_speech_mask_is_lips_and_jaw_only(face_crop):
    _, _, lm = face_crop
    src = face_crop[0]
    hw = src.shape[-2:]
    m = speech_mask(lm, hw)
    at = lambda i: m[int(round(lm[i][1])), int(round(lm[i][0]))]  # noqa: E731
    assert at(62) == 1.0 and at(66) == 1.0 and at(8) == 1.0 and at(57) == 1.0     # lips, chin
    for i in (30, 36, 45, 39, 27, 1, 15):                                         # nose tip, eyes, upper cheeks
        assert at(i) == 0.0, i
    assert (m[~speech_region(lm, hw)] == 0).all() and 0.05 < (m > 0).mean() < 0.6


@pytest.fixture(scope="module")
def dub_work(tmp_path_factory):
    from models import LawDNet
    from models.checkpoint import save_lawdnet
    from utils.synthetic.talking_head import make_talking_head

    d = tmp_path_factory.mktemp("dubq")
    torch.manual_seed(0)
    ckpt = d / "tiny.pth"
    save_lawdnet(ckpt, LawDNet(ModelConfig(**TINY)).eval(), audio_feature="mel", mouth_region_size=64)
    tpl = make_talking_head(d / "template.mp4", "Peter bought a map.", size=128, seed=1, preset="ultrafast")
    return {"dir": d, "ckpt": str(ckpt), "template": tpl["video"]}


def _dub(work, cfg, tmp_path, name):
    from inference import Dubber

    dubber = Dubber(work["ckpt"], cfg, progress=False)
    prepared = dubber.prepare_template(work["template"])
    seen = {}
    dubber.dub(prepared, work["template"], tmp_path / f"{name}.mp4",
               frame_callback=lambda k, i, inp, out, face: seen.__setitem__(k, (i, inp.copy(), out.copy(), face)))
    return dubber, prepared, seen


@pytest.mark.slow
def test_dub_changes_only_what_speech_moves_and_render_frames_matches(dub_work, tmp_path):
    cfg = InferenceConfig(device="cpu", batch_size=4, cache_dir=str(tmp_path / "cache"), preset="ultrafast")
    assert cfg.color_match and cfg.blend_mask == "landmarks" and cfg.sharpen > 0     # on by default
    dubber, prepared, seen = _dub(dub_work, cfg, tmp_path, "on")
    lm = prepared.template.landmarks
    changed = []
    for k, (i, inp, out, face) in seen.items():
        if not face:
            continue
        keep = ~speech_region(lm[i], inp.shape[:2], margin=0.03)   # + the bilinear footprint of the warp
        assert np.array_equal(inp[keep], out[keep]), k             # nose, cheeks, eyes: the template's exactly
        changed.append(np.abs(inp.astype(int) - out.astype(int))[~keep].mean())
    assert np.mean(changed) > 1.0
    # render_frames (live sessions) goes through the same colour match and mask
    from utils.media.audio_io import load_audio

    ks = [3, 4, 5, 6]
    samples = load_audio(dub_work["template"], 16000)
    windows = torch.from_numpy(dubber.frontend.windows(samples, len(seen), dubber.window))
    got = dubber.render_frames(prepared, [seen[k][0] for k in ks], [seen[k][1] for k in ks], windows[ks])
    for k, g in zip(ks, got):
        assert np.abs(g.astype(int) - seen[k][2].astype(int)).max() <= 1
    # --no-color_match and --blend_mask box change the output (the old paste covers the nose and cheeks)
    _, _, off = _dub(dub_work, InferenceConfig(device="cpu", batch_size=4, cache_dir=str(tmp_path / "cache"),
                                               preset="ultrafast", color_match=False, blend_mask="box", sharpen=0),
                     tmp_path,
                     "off")
    k = ks[0]
    keep = ~speech_region(lm[seen[k][0]], seen[k][1].shape[:2], margin=0.03)
    assert not np.array_equal(off[k][2][keep], seen[k][1][keep])


def test_color_match_is_a_flag_of_every_entry_point():
    import argparse

    from config.config import add_arguments, from_args

    p = argparse.ArgumentParser()
    add_arguments(p, InferenceConfig)
    assert from_args(InferenceConfig, p.parse_args([])).color_match is True
    assert from_args(InferenceConfig, p.parse_args(["--no-color_match"])).color_match is False
    assert from_args(InferenceConfig, p.parse_args(["--no_color_match"])).color_match is False
    from server.config import from_dict

    assert from_dict({"color_match": False}).inference.color_match is False   # the server's flat settings
    assert from_dict({}).inference.color_match is True
