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


def _img(t):
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def _novel(gen, ref, radius_px=12):
    """evaluation.fringe's measure on a whole crop: chroma of ``gen`` the ``ref`` has nowhere near."""
    from evaluation.colour import to_lab
    from evaluation.fringe import novel_chroma

    return novel_chroma(to_lab(_img(gen)), to_lab(_img(ref)), np.ones(gen.shape[-2:], bool), radius_px)


def test_sharpening_the_lightness_adds_no_colour_where_the_channels_disagree():
    """A generated edge whose channels are not equally sharp (red softer than green and blue) is already a faint
    fringe; per-channel unsharp masking amplifies it, sharpening the lightness leaves every pixel's chroma."""
    from inference.harmonize import gauss_blur, sharpen

    edge = np.zeros((40, 40, 3), np.uint8)
    edge[:, :20] = (205, 150, 125)                                     # skin | dark collar
    edge[:, 20:] = (40, 36, 36)
    x = _tensor(np.dstack([cv2.GaussianBlur(edge[..., 0], (0, 0), 1.6),
                           cv2.GaussianBlur(edge[..., 1:], (0, 0), 0.6)]))
    chroma = lambda t: t - t.mean(1, keepdim=True)                    # noqa: E731
    per_channel = (x + 0.7 * (x - gauss_blur(x, 0.8))).clamp(0, 1)    # the old way, written out
    assert _novel(per_channel, x, 2).max() > 3                          # a colour the edge did not have
    out = sharpen(x, 0.7)
    assert (chroma(out) - chroma(x)).abs().max() < 1e-5 and (out - x).abs().max() > 0.02       # it sharpens
    assert _novel(out, x, 2).max() < 1


def test_defringe_takes_out_a_green_line_along_the_jaw_and_keeps_moved_skin(face_crop):
    from inference.harmonize import luma, defringe

    src, _, lm = face_crop
    assert torch.allclose(defringe(src.clone(), src), src, atol=1e-5)              # nothing new: unchanged
    # a 2 px line along the jaw in a colour error only (green, lightness as the face's): what the model makes
    on = np.zeros(src.shape[-2:], np.uint8)
    cv2.polylines(on, [np.round(lm[3:14]).astype(np.int32)], False, 1, 2)
    on = torch.from_numpy(on.astype(bool))
    green = torch.tensor([-0.15, (0.299 * 0.15 + 0.114 * 0.05) / 0.587, -0.05]).view(3, 1)
    line = src.clone()
    line[0][:, on] = (line[0][:, on] + green).clamp(0, 1)
    fixed = defringe(line, src)
    assert np.percentile(_novel(line, src), 99) > 8 and np.percentile(_novel(fixed, src), 99) < 1.5
    assert (fixed - src)[0][:, on].abs().mean() < 0.25 * (line - src)[0][:, on].abs().mean()
    assert torch.allclose(luma(fixed), luma(line), atol=2e-3)                      # lightness untouched
    # a lower face moved down (a chin that drops over the collar) keeps its colours
    d = 0.1 * src.shape[-1]
    H = src.shape[-2]
    moved = _img(src).copy()
    shifted = cv2.warpAffine(moved, np.float32([[1, 0, 0], [0, 1, d]]), moved.shape[1::-1],
                             borderMode=cv2.BORDER_REPLICATE)
    moved[H // 2:] = shifted[H // 2:]
    moved = _tensor(moved)
    assert (defringe(moved, src) - moved).abs().mean() < 0.004


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
    assert cfg.color_match and cfg.defringe and cfg.blend_mask == "landmarks" and cfg.sharpen > 0   # the defaults
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
                                               preset="ultrafast", color_match=False, blend_mask="box", sharpen=0,
                                               defringe=False),
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
    assert from_args(InferenceConfig, p.parse_args(["--no-defringe"])).defringe is False
    assert from_dict({"defringe": False}).inference.defringe is False and from_dict({}).inference.defringe
