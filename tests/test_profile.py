"""Preprocessing profiles (config/profile.py): what the generator is fed, against plain references of the original.

The references below are written from a description of the original only (they import nothing under test): FaceAlign's
similarity fit and warp (normalised least squares with a ridge, align-corners normalisation sampled with
align_corners=False, zero padding), SmoothSqMask (103x80 canvas -> 5x5 sigma-1 blur without padding ->
bilinear resize), the original's DeepSpeech2 windows (rows of the whole file, edge-padded by 2)
and its resampling (resampy kaiser_best); see docs/original.md. DeepSpeech2 itself is the plain reference of
tests/ds2_reference.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io.wavfile
import torch
import torch.nn.functional as F

from conftest import OFFICIAL_WARP, TINY_WIDTHS, make_dubber, tiny_generator
from ds2_reference import ds2_reference, speech_like, tiny_ds2_state, write_ds2_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------- plain references

# the original's template (x, y) of iBUG-68 points 17..35, 36, 39, 42, 45, 48, 54
REF_INDICES = list(range(17, 36)) + [36, 39, 42, 45, 48, 54]
REF_TEMPLATE = np.array([
    [0.000213, 0.106454], [0.075262, 0.038915], [0.181130, 0.018748], [0.290770, 0.034489], [0.393397, 0.077391],
    [0.586856, 0.077391], [0.689483, 0.034489], [0.799124, 0.018748], [0.904991, 0.038915], [0.980040, 0.106454],
    [0.490127, 0.203352], [0.490127, 0.307009], [0.490127, 0.409805], [0.490127, 0.515625], [0.366880, 0.587326],
    [0.426036, 0.609345], [0.490127, 0.628106], [0.554217, 0.609345], [0.613373, 0.587326], [0.121737, 0.216423],
    [0.334606, 0.231733], [0.645647, 0.231733], [0.858516, 0.216423], [0.254149, 0.780233], [0.726104, 0.780233]])


def ref_face_align_matrix(lm68, out_W, ratio=1.6):
    """FaceAlign: template normalised at construction, target points for out_W, then the similarity fitted by
    linear least squares on de-meaned, std-normalised point sets (normal equations + 1e-8 ridge, 50 rows)."""
    t = REF_TEMPLATE
    up = (t[2] + t[7]) / 2
    mark = t[12]
    s = mark[1] - up[1]
    c = up + 1.625 * (mark - up)
    c[0] = mark[0]
    target = (t - c) / (ratio * s) * out_W / 2 + np.array([out_W / 2, 1.3 * out_W / 2])
    src = np.asarray(lm68, np.float64)[REF_INDICES]
    ms, md = src.mean(0), target.mean(0)
    ss, sd = src.std(0).mean(), target.std(0).mean()
    sn, dn = (src - ms) / ss, (target - md) / sd
    A = np.zeros((50, 4))
    b = np.zeros(50)
    A[0::2] = np.stack([sn[:, 0], -sn[:, 1], np.ones(25), np.zeros(25)], 1)
    A[1::2] = np.stack([sn[:, 1], sn[:, 0], np.zeros(25), np.ones(25)], 1)
    b[0::2], b[1::2] = dn[:, 0], dn[:, 1]
    a_, b_, tx, ty = np.linalg.solve(A.T @ A + 1e-8 * np.eye(4), A.T @ b)
    S = np.array([[a_, -b_, tx], [b_, a_, ty], [0, 0, 1]])
    Ts = np.array([[1 / ss, 0, -ms[0] / ss], [0, 1 / ss, -ms[1] / ss], [0, 0, 1]])
    Td = np.array([[sd, 0, md[0]], [0, sd, md[1]], [0, 0, 1]])
    return Td @ S @ Ts


def ref_warp_img(frame, M, out_W):
    """warp_img_torch: M conjugated with 2x/(n-1)-1 for both images, inverted, affine_grid + grid_sample
    (bilinear, zero padding, align_corners=False), into (int(1.3 out_W), out_W), clipped to [0, 255]."""
    H, W = frame.shape[:2]
    Hc, Wc = int(1.3 * out_W), out_W

    def norm(w, h):
        return np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])

    Mn = norm(Wc, Hc) @ M @ np.linalg.inv(norm(W, H))
    theta = torch.tensor(np.linalg.inv(Mn)[:2], dtype=torch.float64)[None]
    grid = F.affine_grid(theta, (1, 3, Hc, Wc), align_corners=False)
    img = torch.tensor(np.asarray(frame, np.float64)).permute(2, 0, 1)[None]
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 255).numpy()


def ref_smooth_sq_mask(H, W):
    """SmoothSqMask: canvas 103x80, ones on rows [32, 96) x cols [8, 72), 5x5 Gaussian (sigma 1) without padding
    -> 99x76, bilinear resize (half-pixel centres, as an align_corners=False upsampling) to H x W."""
    canvas = np.zeros((103, 80))
    canvas[32:96, 8:72] = 1
    k = np.exp(-np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) / 2.0)
    k /= k.sum()
    blurred = np.zeros((99, 76))
    for dy in range(5):
        for dx in range(5):
            blurred += k[dy, dx] * canvas[dy:dy + 99, dx:dx + 76]

    def taps(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    r0, r1, ry = taps(H, 99)
    c0, c1, cx = taps(W, 76)
    rows = blurred[r0] * (1 - ry)[:, None] + blurred[r1] * ry[:, None]
    return rows[:, c0] * (1 - cx) + rows[:, c1] * cx


def ref_masked_source(frame_uint8, lm68, m=288):
    out_W = int(1.25 * m)
    crop = ref_warp_img(frame_uint8.astype(np.float64), ref_face_align_matrix(lm68, out_W), out_W) / 255.0
    return crop * (1 - ref_smooth_sq_mask(*crop.shape[:2]))[..., None]


def ref_original_windows(rows):
    """The original: features edge-padded by 2 rows on each side; frame i gets padded rows i..i+4, as (29, 5)."""
    padded = np.concatenate([rows[:1], rows[:1], rows, rows[-1:], rows[-1:]])
    return np.stack([padded[i:i + 5].T for i in range(len(rows))])


def ref_load_16k(path):
    """The original's audio: the wav as floats in [-1, 1], resampy kaiser_best to 16 kHz when it is not 16 kHz."""
    import resampy

    sr, x = scipy.io.wavfile.read(path)
    x = x.astype(np.float64) / 32768.0
    return x if sr == 16000 else resampy.resample(x, sr, 16000, filter="kaiser_best")


def _write_wav(path, x, sr):
    scipy.io.wavfile.write(path, sr, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16))


# ---------------------------------------------------------------------------------------- pieces


def test_smooth_sq_mask_matches_the_canvas_reference():
    from config.profile import get_profile
    from utils.face.align import mask_source, mouth_mask
    from utils.face.geometry import crop_size

    for m in (288, 256, 128, 64, 32):
        H, W = crop_size(m)
        ours = mouth_mask(H, W, profile=get_profile("official"))[0, 0].double().numpy()
        np.testing.assert_allclose(ours, ref_smooth_sq_mask(H, W), atol=1e-5)   # float32
    H, W = crop_size(288)
    ref = ref_smooth_sq_mask(H, W)
    rows, cols = np.flatnonzero(ref[:, W // 2] >= 0.5), np.flatnonzero(ref[300] >= 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (142, 443, 28, 331)   # the contour
    box = mouth_mask(H, W)[0, 0].numpy()                                               # ours (lawdnet)
    assert box[432:444, W // 2].max() < 0.5 < ref[432:444, W // 2].min()              # the band under the chin
    x = torch.rand(2, 3, H, W)
    off = mouth_mask(H, W, profile=get_profile("official"))
    assert torch.equal(mask_source(x, off), x * (1 - off))


def test_utils_defaults_are_the_lawdnet_profile():
    """utils cannot read the profile table (config is a layer above): its defaults must be the lawdnet row."""
    import inspect

    from config.profile import PROFILES, get_profile
    from utils.audio.features import extract_features
    from utils.face.align import DEFAULT_FACE_PROFILE, FaceAligner, face_profile

    lawdnet = PROFILES["lawdnet"]
    assert get_profile(None) is lawdnet
    for k, v in vars(DEFAULT_FACE_PROFILE).items():
        assert getattr(lawdnet, k) == v, k
    defaults = {k: p.default for k, p in inspect.signature(extract_features).parameters.items()}
    assert (defaults["resampler"], defaults["precision"]) == (lawdnet.resampler, lawdnet.audio_precision)
    assert face_profile(PROFILES["official"]).crop_fill == "zeros"
    with pytest.raises(TypeError, match="get_profile"):
        FaceAligner(64, profile="official")


@pytest.fixture(scope="module")
def astro():
    from skimage import data

    from utils.face.landmarks import LandmarkDetector

    img = data.astronaut()
    faces = LandmarkDetector().detect(img)
    assert len(faces) == 1
    return img, np.asarray(faces[0][1], np.float64)


def test_official_crop_matches_face_align_near_the_border(astro):
    """Face cut by the frame's top/left borders: the official crop is the original's (black outside the frame,
    its sample points), ours repeats the edge pixels and samples the exact inverse map."""
    from config.profile import get_profile
    from utils.face.align import FaceAligner

    img, lm = astro
    frame = np.ascontiguousarray(img[110:400, 200:470])
    lm = lm - [200, 110]
    for out_W in (360, 160):
        ref = ref_warp_img(frame, ref_face_align_matrix(lm, out_W), out_W)
        outside = ref.sum(-1) == 0
        assert 0.03 < outside.mean() < 0.5                        # the crop really leaves the frame
        off = FaceAligner(out_W, profile=get_profile("official"))
        M = off.estimate(lm, frame.shape[:2])
        # torch (the GPU path): the same sample points, to float precision (0-255 scale)
        t = off.crop_torch(torch.from_numpy(frame).permute(2, 0, 1)[None], torch.from_numpy(M)[None])
        err_t = np.abs(t[0].permute(1, 2, 0).numpy() - ref)
        assert err_t.mean() < 0.001 and err_t.max() < 0.02, (err_t.mean(), err_t.max())
        # cv2 (the CPU path) rounds sample positions to 1/32 px: a few levels on the photo's sharpest edges
        err = np.abs(off.crop(frame.astype(np.float32), M) - ref)
        assert err.mean() < 0.2 and err.max() < 8, (err.mean(), err.max())
        ours_u8 = off.crop(frame, M).astype(np.float64)
        assert np.abs(ours_u8 - ref).mean() < 0.4 and np.abs(ours_u8 - ref).max() < 8
        assert (ours_u8[outside] == 0).all()
        # lawdnet: the same fit, exact inverse map, edge pixels outside the frame
        ours_fit = FaceAligner(out_W)
        M0 = ours_fit.estimate(lm)
        np.testing.assert_allclose(M0, ref_face_align_matrix(lm, out_W), rtol=1e-6, atol=1e-6)
        lw = ours_fit.crop(frame, M0).astype(np.float64)
        assert (lw[outside].sum(-1) > 0).mean() > 0.95
        inside = ~outside
        assert np.abs(lw - ref)[inside].mean() > 2 * np.abs(ours_u8 - ref)[inside].mean()   # the sampler matters
    with pytest.raises(ValueError, match="frame size"):
        FaceAligner(64, profile=get_profile("official")).estimate(lm)


def test_deepspeech2_real_sample_normalisation_and_row_rule(tmp_path):
    from utils.audio.deepspeech2 import spectrogram
    from utils.audio.features import get_frontend
    from utils.media.timebase import num_video_frames

    sd = tiny_ds2_state()
    path = tmp_path / "ds2.ckpt"
    write_ds2_checkpoint(path, sd)
    fe = get_frontend("deepspeech2", str(path))
    speech = speech_like(1.2)
    for n in (20 * 640, 20 * 640 - 320, 20 * 640 + 319):
        x = speech[:n]
        T = num_video_frames(n, 16000)
        rows = ds2_reference(x, sd)
        C = (n // 160) // 2 + 1
        assert len(rows) == -(-C // 2) >= T                     # ceil(C/2) rows (21 for exactly 20 frames)
        ref = ref_original_windows(rows)[:T]
        np.testing.assert_allclose(fe.windows(x, T, 5), ref, atol=1e-3, rtol=0)
        if n == 20 * 640:                                      # exactly one row per frame from __call__
            np.testing.assert_allclose(fe(x, T), rows[:T], atol=1e-3, rtol=0)
    # audio shorter than the frames asked for: padded with silence, normalised over the real samples
    x = speech[:10 * 640 + 50]
    padded = np.pad(x, (0, 4 * 640))
    np.testing.assert_allclose(spectrogram(padded, num_real=len(x))[:, : 1 + len(x) // 160], spectrogram(x),
                               atol=1e-9)
    w = fe.windows(x, 15, 5)
    assert w.shape == (15, 29, 5) and np.isfinite(w).all()


@pytest.mark.parametrize("sr", [22050, 24000])
def test_kaiser_best_resampling_is_resampy(tmp_path, sr):
    from utils.media.audio_io import load_audio

    path = str(tmp_path / f"a{sr}.wav")
    _write_wav(path, speech_like(0.7, sr=sr), sr)
    ref = ref_load_16k(path)
    ours = load_audio(path, 16000, "kaiser_best")
    assert len(ours) == len(ref) == int(len(speech_like(0.7, sr=sr)) * 16000 / sr)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    poly = load_audio(path, 16000)                 # lawdnet: scipy polyphase, a different filter
    assert np.abs(poly[: len(ref)] - ref).max() > 1e-4


# ---------------------------------------------------------------------------------------- through Dubber

TINY_G = dict(audio_channel=29, **OFFICIAL_WARP)      # the tiny generator as an official one (DeepSpeech features)


@pytest.fixture(scope="module")
def official(tmp_path_factory, talking_head):
    """An official-format generator (no metadata), tiny DeepSpeech2 weights in the official format, and a template
    whose face is cut by the left border (so the m = 288 crop leaves the frame)."""
    from models.checkpoint import save_checkpoint
    from utils.media.video_io import VideoWriter, read_frames

    d = tmp_path_factory.mktemp("official")
    g = tiny_generator(3, **TINY_G)
    ckpt = d / "checkpoint_epoch_170.pth"
    save_checkpoint({"epoch": 170, "state_dict": {"net_g": {"module." + k: v for k, v in g.state_dict().items()}}},
                    ckpt)
    sd = tiny_ds2_state(seed=4)
    ds2 = d / "LibriSpeech_Pretrained_v3.ckpt"
    write_ds2_checkpoint(ds2, sd)
    src = talking_head("template.mp4", "Peter bought a big map.", size=128, seed=1, preset="ultrafast")
    frames = read_frames(src["video"], fps=25)
    video = d / "template.mp4"
    speech = speech_like(len(frames) / 25.0, sr=22050, seed=9)       # its own track at 22.05 kHz (data prep)
    with VideoWriter(video, fps=25.0, audio=speech.astype(np.float32), sample_rate=22050, preset="ultrafast",
                     crf=12) as w:
        for f in frames:
            w.write(np.ascontiguousarray(f[:, 36:]))
    return {"dir": d, "ckpt": str(ckpt), "ds2": str(ds2), "sd": sd, "video": str(video)}


def _capture_dub(dubber, prepared, wav, out):
    """Run a real dub; return the masked sources and audio windows the model was given, per output frame."""
    calls, faces = [], []

    def infer(src, refs, aud):
        calls.append((src.clone(), refs.clone(), aud.clone()))
        return src

    dubber.infer_fn = infer
    dubber.cfg.cache_references = False          # refs as the reference crops, not the generator's features of them
    stats = dubber.dub(prepared, wav, out, frame_callback=lambda k, i, a, b, has_face: faces.append((k, i, has_face)))
    src = torch.cat([c[0] for c in calls]).permute(0, 2, 3, 1).numpy()
    aud = torch.cat([c[2] for c in calls]).numpy()
    keys = [(k, i) for k, i, f in faces if f]
    assert len(keys) == len(src) == len(aud)
    return stats, keys, src, aud, calls[0][1][0]


@pytest.mark.slow
def test_dubber_with_an_official_checkpoint_feeds_what_the_original_fed(official, tmp_path):
    from utils.media.video_io import read_frames

    dubber = make_dubber(official["ckpt"], device="cpu", audio_model_path=official["ds2"], batch_size=8,
                         cache_dir=str(tmp_path / "cache"), preset="ultrafast")
    assert dubber.profile.name == "official" and dubber.amp_dtype == "fp16" and dubber.mouth_region_size == 288
    prepared = dubber.prepare_template(official["video"])
    frames = read_frames(official["video"], fps=25)
    lm = prepared.template.landmarks
    cache = {}

    def reference(i):   # the original's crop + SmoothSqMask of template frame i, with the same landmarks
        if i not in cache:
            cache[i] = ref_masked_source(frames[i], lm[i])
        return cache[i]

    for sr in (16000, 22050, 24000):
        wav = str(tmp_path / f"speech{sr}.wav")
        _write_wav(wav, speech_like(0.63, sr=sr, seed=sr), sr)
        stats, keys, src, aud, refs = _capture_dub(dubber, prepared, wav, tmp_path / f"o{sr}.mp4")
        assert stats["profile"] == "official" and len(keys) >= 0.8 * stats["frames"]
        ref = np.stack([reference(i) for _, i in keys])
        err = np.abs(src - ref)
        assert err.mean() <= 0.004 and err.max() <= 0.25, (sr, err.mean(), err.max())
        black = ref.sum(-1) == 0
        assert black.mean() > 0.03 and (src[black] == 0).all()    # out of the frame: black, as the original
        # DeepSpeech2 windows: the original extraction of the (resampled) whole file, its rows and windows
        rows = ds2_reference(ref_load_16k(wav), official["sd"])
        ref_w = ref_original_windows(rows)[[k for k, _ in keys]]
        assert np.abs(aud - ref_w).max() <= 1e-3, (sr, np.abs(aud - ref_w).max())
        if sr == 16000:   # references: unmasked crops of the chosen frames, as the original aligned them
            ref_refs = np.concatenate([ref_warp_img(frames[i].astype(np.float64), ref_face_align_matrix(lm[i], 360),
                                                    360) / 255 for i in prepared.reference_indices], -1)
            assert np.abs(refs.permute(1, 2, 0).numpy() - ref_refs).mean() < 0.004
    # the profile flag overrides the checkpoint's: ours differs from what the released weights saw
    ours = make_dubber(official["ckpt"], device="cpu", audio_model_path=official["ds2"], batch_size=8,
                       cache_dir=str(tmp_path / "cache"), preset="ultrafast", profile="lawdnet")
    assert ours.profile.name == "lawdnet" and ours.amp_dtype == "bf16"
    _, keys, src, _, _ = _capture_dub(ours, ours.prepare_template(official["video"]), str(tmp_path / "speech16000.wav"),
                                      tmp_path / "ours.mp4")
    ref = np.stack([reference(i) for _, i in keys])
    assert np.abs(src - ref).max() > 0.5 and np.abs(src - ref).mean() > 0.004


def test_data_preparation_follows_the_profile(official, tmp_path):
    """--profile official: crops black outside the frame and resampy-resampled audio; switching the profile of a
    data root redoes audio, features and crops but keeps the landmarks."""
    import cv2

    from config.config import DataConfig
    from dataset.prepare.layout import Layout, read_json
    from dataset.prepare.pipeline import VIDEO_STAGES, process_video
    from utils.media.audio_io import load_audio

    L = Layout(str(tmp_path / "data"))

    def run(profile):
        cfg = DataConfig(data_root=L.root, crop_width=80, profile=profile)
        r = process_video("tpl", official["video"], cfg, VIDEO_STAGES, progress=False)
        assert r["status"] == "processed", r
        assert read_json(L.marker("tpl"))["profile"] == profile
        names = sorted(os.listdir(L.crops("tpl")))
        left = np.mean([cv2.imread(os.path.join(L.crops("tpl"), n))[:, :3].mean() for n in names[:10]])
        return left, load_audio(L.wav("tpl"), 16000), os.path.getmtime(L.csv("tpl"))

    import resampy

    left_off, wav_off, csv_time = run("official")
    ref = resampy.resample(load_audio(L.video("tpl"), 22050).astype(np.float64), 22050, 16000, filter="kaiser_best")
    assert len(wav_off) == len(ref) and np.abs(wav_off - ref).max() < 2e-4      # int16 wav
    left_ours, wav_ours, csv_time2 = run("lawdnet")
    assert left_off < 3 < 20 < left_ours                          # black fill vs repeated edge pixels
    assert np.abs(wav_ours - wav_off).max() > 1e-4 and csv_time2 == csv_time


# ---------------------------------------------------------------------------------------- selection and storage


def test_profile_is_stored_and_chosen_from_the_checkpoint(official, tmp_path):
    from config.profile import get_profile, resolve_profile
    from inference.runner import ModelRunner
    from models.checkpoint import checkpoint_info, lawdnet_checkpoint, read_checkpoint, save_checkpoint
    from utils.errors import UserError

    assert checkpoint_info(read_checkpoint(official["ckpt"]))["profile"] == "official"
    g = tiny_generator(**{**TINY_G, "audio_channel": 80})
    ck = lawdnet_checkpoint(g, "mel", 64, profile="official")
    assert ck["profile"] == "official" and checkpoint_info(ck)["profile"] == "official"
    old = dict(lawdnet_checkpoint(g, "mel", 64))
    old.pop("profile")                                   # written before profiles existed: trained as lawdnet
    assert checkpoint_info(old)["profile"] == "lawdnet"
    path = tmp_path / "ours.pth"
    save_checkpoint(old, path)
    d = make_dubber(path, device="cpu")
    assert d.profile.name == "lawdnet" and d.amp_dtype == "bf16" and d.aligner.profile.crop_fill == "border"
    d = make_dubber(path, device="cpu", profile="OFFICIAL", amp_dtype="bf16")
    assert d.profile.name == "official" and d.runner.amp_dtype is None        # the CPU always runs fp32
    with pytest.raises(UserError, match="unknown preprocessing profile 'bogus'"):
        make_dubber(path, device="cpu", profile="bogus")
    with pytest.raises(UserError, match="amp_dtype"):
        make_dubber(path, device="cpu", amp_dtype="fp8")
    with pytest.raises(UserError, match="unknown preprocessing profile"):
        get_profile("dinet")
    assert resolve_profile("", "official").name == "official"
    assert resolve_profile("lawdnet", "official").name == "lawdnet"
    assert resolve_profile(None, None).name == "lawdnet"
    wav = str(tmp_path / "a.wav")
    _write_wav(wav, speech_like(0.3), 16000)
    r = subprocess.run([sys.executable, os.path.join(REPO, "inference_function.py"), "--video", official["video"],
                        "--audio", wav, "--checkpoint", str(path), "--output", str(tmp_path / "x.mp4"),
                        "--profile", "bogus", "--device", "cpu", "--quiet"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and lines[-1].startswith("error: unknown preprocessing profile") and len(lines) == 1
    if torch.cuda.is_available():
        assert ModelRunner(g, "cuda", amp_dtype="fp16").amp_dtype == torch.float16


@pytest.mark.slow
def test_training_uses_and_stores_the_profile(tmp_path):
    """The run's profile picks the training mask and is stored; --init_from an official-format file means
    official (unless --profile says otherwise: resolve_profile, tested above)."""
    from models.checkpoint import read_checkpoint, save_checkpoint
    from training.toy_data import make_toy_data
    from training.trainer import train_stage
    from utils.errors import UserError

    # official files mean deepspeech2 features: the toy features carry that name
    data = make_toy_data(str(tmp_path / "toy"), num_videos=3, num_frames=36, crop_width=40, feature="deepspeech2",
                         feature_dim=29)
    common = dict(train_data=data, result_root=str(tmp_path / "res"), mouth_region_size=32, no_perception=True,
                  logger="none", num_workers=0, augment_num=2, max_steps=1, batch_size=2,
                  model=dict(**TINY_WIDTHS, coarse_grid_size=20))
    first = train_stage("tiny", name="a", **common)
    ck = read_checkpoint(first["final"])
    assert ck["profile"] == "lawdnet"
    official_file = tmp_path / "official.pth"
    save_checkpoint({"state_dict": {"net_g": {"module." + k: v for k, v in ck["state_dict"]["net_g"].items()}}},
                    official_file)
    fine = train_stage("tiny", name="b", init_from=str(official_file), **common)
    assert read_checkpoint(fine["final"])["profile"] == "official"
    with pytest.raises(UserError, match="trained with the 'official' preprocessing profile, not 'lawdnet'"):
        train_stage("tiny", name="b", init_from=str(official_file), profile="lawdnet", resume=True,
                    **{**common, "max_steps": 2})         # a resumed run never switches its mask


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_official_profile_runs_fp16_on_gpu(official, tmp_path):
    d = make_dubber(official["ckpt"], device="cuda", audio_model_path=official["ds2"], cache_dir=str(tmp_path / "c"))
    assert d.runner.amp_dtype == torch.float16 and d.frontend.autocast
    x = torch.rand(2, 3, 468, 360, device="cuda")
    out = d.runner(x, torch.rand(2, 15, 468, 360, device="cuda"), torch.randn(2, 29, 5, device="cuda"))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    cpu = make_dubber(official["ckpt"], device="cpu", audio_model_path=official["ds2"])
    a = speech_like(1.0)
    np.testing.assert_allclose(d.frontend.windows(a, 25, 5), cpu.frontend.windows(a, 25, 5), atol=0.05)
