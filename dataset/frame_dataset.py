"""Frame-stage dataset: one source frame, 5 reference frames of the same video, the audio window of the source.

Reads a prepared data root (dataset/index.py). Fixes of the original (docs/original.md, 'Datasets'):
* a bad sample is never returned as zeros: a missing/unreadable image makes the item resample another video;
* references never come from the source's own 9-frame clip (when the video is long enough);
* every random choice comes from a generator seeded by (seed, epoch, item), so an item is the same whatever
  worker or rank loads it - which is what makes resume exact and runs reproducible;
* no CUDA objects in the dataset (masking happens in the training loop).

Items are requested with keys ``(epoch, index)`` (training.sampler) or a plain ``index`` (epoch 0).
"""
import os
import random
import sys

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.index import load_index
from utils.errors import UserError
from utils.face.geometry import crop_size

NUM_REFS = 5
MAX_RESAMPLES = 50


class SampleError(Exception):
    """This item cannot be built from this video (missing file, too few frames); resample another one."""


class VideoStore:
    """The usable videos of an index: valid frames, audio features (memory-mapped) and image reading."""

    def __init__(self, index_path, mouth_region_size, audio_feature="", clip_length=9, min_run=1):
        self.index = load_index(index_path)
        feats = self.index.audio_features
        self.feature = audio_feature or (feats[0] if feats else "")
        if not self.feature:
            raise UserError(f"{self.index.path} lists no audio features (run data_processing.py --extract_audio)")
        self.size = crop_size(mouth_region_size)          # (H, W) of this stage's crops
        self.mouth_region_size = mouth_region_size
        self.clip_length = clip_length
        self.videos, self.valid, self.runs, self.skipped = [], [], [], []
        dim = None
        for name, v in sorted(self.index.videos.items()):
            if self.feature not in v.features:
                raise UserError(f"{self.index.path}: video '{name}' has no '{self.feature}' features "
                                f"(it has: {', '.join(v.features) or 'none'})")
            path = v.features[self.feature]
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise UserError(f"cannot read audio features {path}: {e}") from None
            if arr.ndim != 2 or arr.shape[0] == 0:
                raise UserError(f"{path}: expected (num_frames, dim) features, got shape {arr.shape}")
            if dim is None:
                dim = arr.shape[1]
            elif arr.shape[1] != dim:
                raise UserError(f"{path}: feature width {arr.shape[1]} differs from the other videos' {dim}")
            n = min(v.num_frames, arr.shape[0])            # frames that have both an image and a feature row
            valid = np.array([i for i in v.valid_frames() if i < n], dtype=np.int64)
            ok = np.zeros(n + 1, bool)
            ok[valid] = True
            # starts of runs of `min_run` consecutive valid frames (clip dataset needs 5)
            c = np.concatenate([[0], np.cumsum(ok[:n])])
            starts = np.nonzero(c[min_run:] - c[:-min_run] == min_run)[0] if n >= min_run else np.zeros(0, int)
            if len(valid) < 2 or len(starts) == 0:
                self.skipped.append(name)
                continue
            self.videos.append(v)
            self.valid.append(valid)
            self.runs.append(starts)
        if not self.videos:
            raise UserError(f"{self.index.path}: no video has enough valid frames for training "
                            f"(need >= {max(2, min_run)} frames with a face)")
        self.feature_dim = int(dim)
        self._features = {}

    def features(self, vi):
        arr = self._features.get(vi)
        if arr is None:                                   # opened lazily: each worker maps its own copy
            arr = self._features[vi] = np.load(self.videos[vi].features[self.feature], mmap_mode="r")
        return arr

    def window(self, vi, center, width):
        """(D, width) feature rows centred on ``center``, clamped at the video's ends (as make_windows)."""
        f = self.features(vi)
        half = width // 2
        rows = np.clip(np.arange(center - half, center + half + 1), 0, f.shape[0] - 1)
        return torch.from_numpy(np.ascontiguousarray(f[rows].T, dtype=np.float32))

    def image(self, vi, frame):
        """(3, H, W) float RGB in [0, 1] at this stage's crop size."""
        path = self.videos[vi].frame_path(int(frame))
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SampleError(f"missing or unreadable crop {path}")
        H, W = self.size
        if img.shape[:2] != (H, W):
            shrink = img.shape[0] > H
            img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)

    def reference_frames(self, vi, rng, exclude_lo, exclude_hi, sources, count=NUM_REFS):
        """``count`` valid frames outside [exclude_lo, exclude_hi) - when the video is too short for that, any
        valid frame but the ``sources`` themselves - without repeats when there are enough."""
        valid = self.valid[vi]
        pool = valid[(valid < exclude_lo) | (valid >= exclude_hi)]
        if len(pool) == 0:
            pool = valid[~np.isin(valid, np.asarray(sources))]
        if len(pool) == 0:
            raise SampleError(f"video '{self.videos[vi].name}' is too short for reference frames")
        return rng.choice(pool, size=count, replace=len(pool) < count)


def item_rng(seed, key):
    """Generator for one item: depends only on (seed, epoch, index), never on worker or rank."""
    epoch, index = key if isinstance(key, (tuple, list)) else (0, key)
    return np.random.default_rng([int(seed), int(epoch), int(index)]), int(index)


class ResamplingDataset(Dataset):
    """Length = videos x augment_num (the original's "augmentation" by repetition); item i starts at video
    i % num_videos and moves to a random other video when that one cannot give a sample."""

    def __init__(self, store, augment_num, seed):
        self.store = store
        self.augment_num = int(augment_num)
        self.seed = int(seed)
        self._warned = set()

    def __len__(self):
        return len(self.store.videos) * self.augment_num

    def __getitem__(self, key):
        rng, index = item_rng(self.seed, key)
        vi = index % len(self.store.videos)
        for _ in range(MAX_RESAMPLES):
            try:
                return self.sample(vi, rng)
            except SampleError as e:
                if str(e) not in self._warned:           # once per problem and process
                    self._warned.add(str(e))
                    print(f"warning: {e}; resampling", file=sys.stderr)
                vi = int(rng.integers(len(self.store.videos)))
        raise UserError(f"{self.store.index.path}: {MAX_RESAMPLES} samples in a row failed to load "
                        "(crops missing? see the warnings above)")

    def sample(self, vi, rng):
        raise NotImplementedError


class FrameDataset(ResamplingDataset):
    """Items: {"source": (3,H,W), "refs": (15,H,W), "audio": (D, audio_window)} for one random valid frame."""

    def __init__(self, index_path, mouth_region_size, augment_num=1, audio_feature="", audio_window=5,
                 clip_length=9, seed=0):
        super().__init__(VideoStore(index_path, mouth_region_size, audio_feature, clip_length), augment_num, seed)
        self.audio_window = int(audio_window)

    def sample(self, vi, rng):
        s = self.store
        src = int(rng.choice(s.valid[vi]))
        clip0 = (src // s.clip_length) * s.clip_length   # the source's own clip is excluded
        refs = s.reference_frames(vi, rng, clip0, clip0 + s.clip_length, [src])
        return {"source": s.image(vi, src),
                "refs": torch.cat([s.image(vi, r) for r in refs], 0),
                "audio": s.window(vi, src, self.audio_window)}


def worker_init(worker_id):
    """Distinct, reproducible global RNG streams per (rank, worker); one OpenCV thread per worker."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2 ** 32                             # DataLoader derives it from its generator + worker id
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
