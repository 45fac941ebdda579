"""A small prepared data root (dataset/index.py format) whose lips truly follow its "audio", for tests, demos and
benchmarks on machines without real talking-head data.

Every video is the face of ``skimage.data.astronaut()`` cut to the aligned-crop layout (mouth inside the
[0.4W, 1.2W) x [0.1W, 0.9W) box), with a per-video shift and tint, a slow head sway, and a dark mouth opening whose height is the
per-frame "openness" o_t (smoothed noise). The audio feature of frame t is o_t times a fixed random direction
plus a little noise, so a SyncNet can learn the lip/audio relation and a generator can learn to draw it.
"""
import os

import cv2
import numpy as np
import torch
from skimage.data import astronaut

from dataset.index import INDEX_NAME, write_index
from models.vgg19 import VGG19_CFG


def _face_maker(crop_width, rng):
    """f(t) -> the video's face crop at frame t (RGB uint8), with a slow sub-pixel head sway."""
    img = astronaut()                                     # RGB 512x512; the mouth is near (row 145, col 222)
    W, H = crop_width, int(1.3 * crop_width)
    span = 85.0 + rng.uniform(-5, 5)                      # source pixels across the crop width
    cx, mouth_row = 222 + rng.uniform(-4, 4), 145 + rng.uniform(-4, 4)
    scale = span / W
    tint = rng.uniform(0.85, 1.15, size=3)
    phase = rng.uniform(0, 2 * np.pi, 2)

    def face(t):
        dx, dy = 2.0 * np.sin(0.23 * t + phase[0]), 1.5 * np.sin(0.17 * t + phase[1])   # source pixels
        # crop pixel (x, y) <- source (cx + dx + (x - W/2) * scale, mouth_row + dy + (y - 0.85 W) * scale)
        M = np.array([[scale, 0, cx + dx - W / 2 * scale], [0, scale, mouth_row + dy - 0.85 * W * scale]])
        crop = cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)
        return np.clip(crop * tint, 0, 255).astype(np.uint8)

    return face


def draw_mouth(face, openness):
    """Face crop with a dark mouth opening of height proportional to ``openness`` in [0, 1]."""
    W = face.shape[1]
    out = face.copy()
    center = (int(round(0.5 * W)), int(round(0.85 * W)))
    axes = (max(1, int(round(0.17 * W))), max(1, int(round(0.015 * W + openness * 0.16 * W))))
    cv2.ellipse(out, center, axes, 0, 0, 360, (150, 40, 50), -1, cv2.LINE_AA)              # lips
    inner = (max(1, axes[0] - max(1, W // 40)), max(1, axes[1] - max(1, W // 40)))
    cv2.ellipse(out, center, inner, 0, 0, 360, (25, 5, 10), -1, cv2.LINE_AA)                # cavity
    return out


def openness_track(num_frames, rng):
    """Open/closed runs of 3-7 frames (syllable-like) with soft edges."""
    o = np.repeat(rng.integers(0, 2, num_frames), rng.integers(3, 8, num_frames))[:num_frames].astype(float)
    o = np.convolve(np.pad(o, 1, mode="edge"), [0.15, 0.7, 0.15], mode="valid")
    return np.clip(0.1 + 0.8 * o, 0, 1)


def make_toy_data(root, num_videos=3, num_frames=40, crop_width=80, feature="toy", feature_dim=16, seed=0,
                  invalid_frames=()):
    """Write the data root and return the path of its training_json.json.

    ``invalid_frames``: frame numbers to list as invalid (no crop file) in every video.
    """
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=feature_dim)
    direction /= np.linalg.norm(direction)
    bias = rng.normal(size=feature_dim) * 0.1
    videos = {}
    for k in range(num_videos):
        name = f"toy{k:03d}"
        face = _face_maker(crop_width, rng)
        o = openness_track(num_frames, rng)
        crop_dir = os.path.join(root, "crops", name)
        os.makedirs(crop_dir, exist_ok=True)
        bad = sorted({int(i) for i in invalid_frames if 0 <= int(i) < num_frames})
        for t in range(num_frames):
            if t in bad:
                continue
            img = draw_mouth(face(t), o[t])
            cv2.imwrite(os.path.join(crop_dir, f"{t:06d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        feats = (o[:, None] * direction[None] * 2.0 + bias + rng.normal(size=(num_frames, feature_dim)) * 0.05)
        rel = os.path.join("features", feature, f"{name}.npy")
        os.makedirs(os.path.join(root, "features", feature), exist_ok=True)
        np.save(os.path.join(root, rel), feats.astype(np.float32))
        np.save(os.path.join(root, "features", feature, f"{name}.openness.npy"), o.astype(np.float32))
        videos[name] = {"num_frames": num_frames, "crop_dir": os.path.join("crops", name),
                        "features": {feature: rel}, "invalid_frames": bad}
    path = os.path.join(root, INDEX_NAME)
    write_index(path, crop_width, [feature], videos)
    return path


def write_random_vgg19(path, seed: int = 0) -> str:
    """A VGG19 weight file in torchvision's layout (features.{i}.weight/bias) with He-initialised random weights:
    stands in for the ImageNet file (which cannot be downloaded here) in tests and benchmarks of the perceptual
    loss. Returns ``path``."""
    g = torch.Generator().manual_seed(seed)
    sd, i, cin = {}, 0, 3
    for item in VGG19_CFG:
        if item == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"] = torch.randn(item, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(item)
        cin, i = item, i + 2
    torch.save(sd, path)
    return str(path)
