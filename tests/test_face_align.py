"""Face alignment, masks and paste-back on the real astronaut face (dlib landmarks)."""
import cv2
import numpy as np
import pytest
import torch
from skimage import data

from utils.face.geometry import crop_size, mouth_box
from utils.errors import UserError
from utils.face.align import (FaceAligner, apply_transform, fit_similarity, mask_source, mouth_mask,
                              paste_back, paste_back_torch, paste_mask)
from utils.face.landmarks import LandmarkDetector

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def astro(detector):
    img = data.astronaut()
    faces = detector.detect(img)
    assert len(faces) == 1
    return img, faces[0][1]


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1.0]])


def _to_t(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def _to_np(t):
    return t[0].permute(1, 2, 0).cpu().numpy()


def test_template_geometry():
    al = FaceAligner(360)
    assert al.crop_hw == (468, 360) == crop_size(288)
    assert FaceAligner.for_mouth_size(256).crop_hw == crop_size(256)
    t = al.target
    assert t.shape == (25, 2)
    assert np.allclose(t[-2], (112, 270), atol=1) and np.allclose(t[-1], (248, 270), atol=1)   # as the original
    assert abs(t[12, 0] - 180) < 1e-6                        # nose bridge on the centre line
    assert abs((t[12, 1] - (t[2, 1] + t[7, 1]) / 2) - 0.3125 * 360) < 1.0   # brow tops to nose bridge


def test_fit_similarity_any_point_count():
    rng = np.random.default_rng(0)
    M = _similarity(1.7, 0.4, 12.0, -30.0)
    for n in (2, 3, 25, 68):
        src = rng.uniform(0, 300, (n, 2))
        assert np.allclose(fit_similarity(src, apply_transform(src, M)), M, atol=1e-9)
    batch = rng.uniform(0, 300, (4, 10, 2))
    Ms = fit_similarity(batch, apply_transform(batch[0], M))
    assert Ms.shape == (4, 3, 3) and np.allclose(Ms[0], M)
    with pytest.raises(UserError, match="degenerate"):
        fit_similarity(np.ones((5, 2)), rng.uniform(0, 1, (5, 2)))
    al = FaceAligner(128)
    lm = rng.uniform(0, 300, (68, 2))
    lm[list((17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45, 48, 54))] = \
        apply_transform(al.target, np.linalg.inv(M))
    assert np.allclose(al.estimate(lm), M, atol=1e-9)              # unused points do not matter
    assert al.estimate(np.stack([lm, lm])).shape == (2, 3, 3)
    with pytest.raises(UserError):
        al.estimate(np.zeros((5, 2)))


@pytest.mark.parametrize("device", DEVICES)
def test_pixel_convention_crop(device):
    """A frame whose value is the crop coordinate it maps to must crop to the coordinate grid itself."""
    al = FaceAligner(64)
    Hc, Wc = al.crop_hw
    M = _similarity(0.37, 0.3, 5.0, -20.0)
    H, W = 300, 260
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    uv = apply_transform(np.stack([xs, ys], -1).reshape(-1, 2), M).reshape(H, W, 2)
    frame = np.concatenate([uv, uv.sum(-1, keepdims=True)], -1).astype(np.float32)
    yc, xc = np.mgrid[0:Hc, 0:Wc]
    c = al.crop(frame, M)
    assert np.abs(c[..., 0] - xc).max() < 0.02 and np.abs(c[..., 1] - yc).max() < 0.02   # half a px would be 0.5
    ct = _to_np(al.crop_torch(_to_t(frame).to(device), torch.tensor(M)[None]))
    assert np.abs(ct[..., 0] - xc).max() < 1e-3 and np.abs(ct[..., 1] - yc).max() < 1e-3


def test_render_and_recrop_round_trip(astro):
    img, lm = astro
    al = FaceAligner(200)
    M = al.estimate(lm)
    known = cv2.GaussianBlur(al.crop(img, M).astype(np.float32), (0, 0), 2.0)
    # frame(p) = known(M p): render the known crop into a frame, then crop it again
    frame = cv2.warpAffine(known, M[:2], (512, 512), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    again = al.crop(frame, M)
    err = np.abs(again - known)[4:-4, 4:-4]
    assert err.mean() < 1.0 and err.max() < 12


def test_astronaut_crop_mouth_corners(astro):
    img, lm = astro
    al = FaceAligner(360)
    M = al.estimate(lm)
    crop = al.crop(img, M)
    assert crop.shape == (468, 360, 3) and crop.dtype == np.uint8
    clm = al.crop_landmarks(lm, M)
    corners = clm[[48, 54]]
    assert abs(corners[:, 0].mean() - 180) < 8                   # mouth centred
    assert np.abs(corners - [(112, 270), (248, 270)]).max() < 30  # the astronaut smiles: corners wider, higher
    assert np.abs(clm[list(range(17, 36)) + [36, 39, 42, 45]] - al.target[:23]).mean() < 6


def test_rotated_scaled_astronaut_gives_same_crop(astro, detector):
    img, lm = astro
    al = FaceAligner(160)
    crop0 = al.crop(img, al.estimate(lm))
    R = _similarity(1.4, np.deg2rad(12), 40.0, -60.0)
    big = cv2.warpAffine(img, R[:2], (760, 760), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    faces = detector.detect(big)
    assert len(faces) >= 1
    lm2 = max(faces, key=lambda f: (f[0][2] - f[0][0]))[1]
    assert np.abs(lm2 - apply_transform(lm, R)).mean() < 3.0
    crop1 = al.crop(big, al.estimate(lm2))
    diff = np.abs(crop1.astype(np.float32) - crop0)[20:-20, 20:-20]
    assert diff.mean() < 10, diff.mean()
    assert np.median(diff) < 8


def test_mouth_mask():
    H, W = crop_size(288)
    m = mouth_mask(H, W)
    assert m.shape == (1, 1, H, W) and m.dtype == torch.float32
    top, bottom, left, right = mouth_box(288)
    mm = m[0, 0].numpy()
    cy, cx = (top + bottom) // 2, (left + right) // 2
    assert mm[cy, cx] > 0.999 and mm[0, 0] < 1e-6 and mm[-1, -1] < 1e-3
    for r0, r1 in ((top - 1, top), (bottom - 1, bottom)):        # 50 % contour exactly on the box edges
        assert abs(mm[r0, cx] + mm[r1, cx] - 1) < 1e-5 and mm[r0, cx] != mm[r1, cx]
    for c0, c1 in ((left - 1, left), (right - 1, right)):
        assert abs(mm[cy, c0] + mm[cy, c1] - 1) < 1e-5
    assert np.allclose(mm, mm[:, ::-1], atol=1e-6)              # no shift: left/right symmetric
    x = torch.rand(2, 3, H, W)
    ms = mask_source(x, m)
    assert torch.all(ms[..., cy, cx] < 1e-3) and torch.allclose(ms[..., 5, 5], x[..., 5, 5])
    assert mouth_mask(H, W, dtype=torch.float64).dtype == torch.float64


def test_paste_mask():
    H, W = crop_size(288)
    pm = paste_mask(H, W)
    assert pm.shape == (H, W) and pm.dtype == np.float32 and pm.max() == 1.0
    band = int(0.03 * W)
    assert not pm[:band].any() and not pm[-band:].any() and not pm[:, :band].any() and not pm[:, -band:].any()
    top, bottom, left, right = mouth_box(288)
    assert pm[(top + bottom) // 2, (left + right) // 2] == 1.0
    assert np.abs(np.diff(pm, axis=0)).max() < 0.05 and np.abs(np.diff(pm, axis=1)).max() < 0.05


def _alpha_image(shape, crop_hw, M):
    """Warped weight x 255 as seen by paste_back: a white crop pasted on a black frame."""
    return paste_back(np.zeros(shape, np.uint8), np.full(crop_hw + (3,), 255, np.uint8), M)[..., 0]


def test_paste_back_unchanged_crop(astro):
    img, lm = astro
    al = FaceAligner(360)
    M = al.estimate(lm)
    out = paste_back(img, al.crop(img, M), M)
    alpha = _alpha_image(img.shape, al.crop_hw, M)
    inside = alpha == 255
    assert inside.sum() > 2000
    err = np.abs(out.astype(np.int16) - img)[inside]
    assert err.mean() < 1.0 and np.percentile(err, 99) < 8
    assert np.array_equal(out[alpha == 0], img[alpha == 0])     # zero weight: bit-identical
    # random content: only pixels with a non-zero weight may change
    noise = np.random.default_rng(0).integers(0, 256, al.crop_hw + (3,), dtype=np.uint8)
    out2 = paste_back(img, noise, M)
    changed = (out2 != img).any(-1)
    assert changed.any() and not (changed & (alpha == 0)).any()


def test_paste_back_no_holes_when_face_is_larger_than_crop(astro):
    img, lm = astro
    big = cv2.resize(img, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    lm3 = (lm + 0.5) * 3 - 0.5
    al = FaceAligner(96)                                         # ~3 frame pixels per crop pixel
    M = al.estimate(lm3)
    assert np.sqrt(abs(np.linalg.det(M[:2, :2]))) < 0.5
    Hc, Wc = al.crop_hw
    const = np.zeros((Hc, Wc, 3), np.uint8) + np.array([200, 40, 90], np.uint8)
    out = paste_back(big, const, M)
    full = _alpha_image(big.shape, al.crop_hw, M) == 255
    assert full.sum() > 10000
    assert (out[full] == [200, 40, 90]).all()                    # no original pixel shows through
    # smooth reference: a ramp crop must land as the same ramp evaluated at M p
    yc, xc = np.mgrid[0:Hc, 0:Wc]
    ramp = np.stack([xc * 2.0, yc * 2.0, (xc + yc) * 1.0], -1).astype(np.float32)
    out = paste_back(big, ramp, M)
    ys, xs = np.nonzero(full)
    uv = apply_transform(np.stack([xs, ys], -1), M)
    ref = np.stack([uv[:, 0] * 2, uv[:, 1] * 2, uv.sum(-1)], -1)
    assert np.abs(out[ys, xs].astype(np.float64) - ref).max() <= 1.0


def test_paste_back_crop_past_frame_border(astro):
    img, lm = astro
    al = FaceAligner(360)
    M = al.estimate(lm)
    frame = np.ascontiguousarray(img[100:400, 200:512])          # face cut by the top and left borders
    M2 = M @ np.array([[1, 0, 200], [0, 1, 100], [0, 0, 1.0]])
    crop = al.crop(frame, M2)
    out = paste_back(frame, np.full_like(crop, 255), M2)
    changed = (out != frame).any(-1)
    assert changed[:20, :20].any()                               # the footprint reaches the corner
    assert not changed[200:].any() and not changed[:, 150:].any()  # no wrap-around to the far borders
    same = paste_back(frame, crop, M2)
    diff = np.abs(same.astype(np.int16) - frame)
    assert diff.max() < 40 and diff[changed].mean() < 2          # no black/replicated garbage pasted


@pytest.mark.parametrize("device", DEVICES)
def test_torch_versions_match_numpy(astro, device):
    img, lm = astro
    al = FaceAligner(128)
    shifted = np.ascontiguousarray(np.roll(img, (30, -40), axis=(0, 1)))
    frames_np = [img, shifted]
    Ms = np.stack([al.estimate(lm), al.estimate(lm + [-40, 30])])
    frames = torch.from_numpy(np.stack(frames_np)).permute(0, 3, 1, 2).to(device)
    crops = al.crop_torch(frames.float(), torch.from_numpy(Ms))
    assert crops.shape == (2, 3) + al.crop_hw and crops.device.type == device
    for i in range(2):
        ref = al.crop(frames_np[i], Ms[i]).astype(np.float32)
        assert np.abs(_to_np(crops[i:i + 1]) - ref).mean() < 0.5
    noise = torch.randint(0, 256, (2, 3) + al.crop_hw, dtype=torch.uint8, device=device)
    out = paste_back_torch(frames, noise.float(), Ms)
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    for i in range(2):
        ref = paste_back(frames_np[i], _to_np(noise[i:i + 1]), Ms[i])
        o = _to_np(out[i:i + 1])
        d = np.abs(o.astype(np.int16) - ref)  # cv2 interpolates with 1/32-px weights: up to ~8 on noise
        assert d.max() <= 8 and d.mean() < 0.1
        untouched = _alpha_image(img.shape, al.crop_hw, Ms[i]) == 0
        assert np.array_equal(o[untouched], frames_np[i][untouched])
    outf = paste_back_torch(frames.float(), noise.float(), Ms, mask=torch.from_numpy(paste_mask(*al.crop_hw)))
    assert outf.dtype == torch.float32
    assert (outf - out.float()).abs().max() <= 1.0
