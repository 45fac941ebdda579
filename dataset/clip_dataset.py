"""Clip-stage dataset (5 consecutive frames) and the SyncNet training pairs, on the prepared-data index.

Same rules as dataset/frame_dataset.py (keyed randomness, resampling instead of zero samples). Unlike the
original, a frame's references never come from the source clip (docs/original.md, 'Reference frames').
"""
import numpy as np
import torch
import torch.nn.functional as F

from dataset.frame_dataset import NUM_REFS, ResamplingDataset, SampleError, VideoStore, item_rng
from utils.errors import UserError
from utils.face.geometry import mouth_box

CLIP_FRAMES = 5


class ClipDataset(ResamplingDataset):
    """Items: {"source": (5,3,H,W), "refs": (5,15,H,W), "audio": (5,D,audio_window),
    "sync_audio": (D, sync_window)} - the sync window is centred on the middle of the 5 frames (the original's
    9 rows of the clip)."""

    def __init__(self, index_path, mouth_region_size, augment_num=1, audio_feature="", audio_window=5,
                 sync_window=9, clip_length=9, seed=0):
        store = VideoStore(index_path, mouth_region_size, audio_feature, clip_length, min_run=CLIP_FRAMES)
        super().__init__(store, augment_num, seed)
        self.audio_window = int(audio_window)
        self.sync_window = int(sync_window)

    def sample(self, vi, rng):
        s = self.store
        start = int(rng.choice(s.runs[vi]))
        frames = range(start, start + CLIP_FRAMES)
        # exclude the 9-frame clip around the 5 sources
        lo = start + CLIP_FRAMES // 2 - s.clip_length // 2
        hi = lo + s.clip_length
        refs = [s.reference_frames(vi, rng, lo, hi, list(frames)) for _ in frames]
        return {"source": torch.stack([s.image(vi, f) for f in frames]),
                "refs": torch.stack([torch.cat([s.image(vi, r) for r in rr], 0) for rr in refs]),
                "audio": torch.stack([s.window(vi, f, self.audio_window) for f in frames]),
                "sync_audio": s.window(vi, start + CLIP_FRAMES // 2, self.sync_window)}


class SyncPairDataset(ResamplingDataset):
    """SyncNet training pairs: {"face": (15, S, S) mouth boxes of 5 consecutive frames, "audio": (D, window),
    "label": 1. in sync / 0. out of sync}.

    Half the items are positives (the window centred on the clip's middle frame); negatives take the window
    ``>= min_offset`` frames away in the same video, or from another video when the video is too short.
    ``videos`` restricts to some video names; ``segment`` = (lo, hi) fractions restricts to a part of every
    video (held-out segments).
    """

    def __init__(self, index_path, mouth_region_size, face_size, augment_num=1, audio_feature="",
                 sync_window=9, min_offset=5, videos=None, segment=(0.0, 1.0), seed=0):
        store = VideoStore(index_path, mouth_region_size, audio_feature, min_run=CLIP_FRAMES)
        keep = [i for i, v in enumerate(store.videos) if videos is None or v.name in set(videos)]
        store.videos = [store.videos[i] for i in keep]
        store.valid = [store.valid[i] for i in keep]
        store.runs = [self._segment(store.runs[i], store.videos[j].num_frames, segment)
                      for j, i in enumerate(keep)]
        ok = [i for i, r in enumerate(store.runs) if len(r)]
        store.videos, store.valid, store.runs = ([x[i] for i in ok] for x in (store.videos, store.valid, store.runs))
        if not store.videos:
            raise UserError(f"{store.index.path}: no usable clips for this SyncNet split")
        super().__init__(store, augment_num, seed)
        self.face_size = int(face_size)
        self.sync_window = int(sync_window)
        self.min_offset = int(min_offset)
        self.segment = segment

    @staticmethod
    def _segment(starts, num_frames, segment):
        lo, hi = segment[0] * num_frames, segment[1] * num_frames
        return starts[(starts >= lo) & (starts + CLIP_FRAMES <= hi)]

    def mouths(self, vi, start):
        top, bottom, left, right = mouth_box(self.store.mouth_region_size)
        m = torch.stack([self.store.image(vi, f)[:, top:bottom, left:right] for f in range(start, start + 5)])
        if m.shape[-1] != self.face_size:
            m = F.interpolate(m, size=(self.face_size, self.face_size), mode="bilinear", align_corners=False)
        return m.reshape(-1, self.face_size, self.face_size)

    def sample(self, vi, rng):
        s = self.store
        start = int(rng.choice(s.runs[vi]))
        center = start + CLIP_FRAMES // 2
        positive = bool(rng.integers(2))
        avi, acenter = vi, center
        if not positive:
            n = s.features(vi).shape[0]
            far = np.nonzero(np.abs(np.arange(n) - center) >= self.min_offset)[0]
            # stay inside this split's part of the video
            lo, hi = self.segment[0] * n, self.segment[1] * n
            far = far[(far >= lo) & (far < hi)]
            if len(far):
                acenter = int(rng.choice(far))
            elif len(s.videos) > 1:
                avi = int((vi + 1 + rng.integers(len(s.videos) - 1)) % len(s.videos))
                acenter = int(rng.choice(s.valid[avi]))
            else:
                raise SampleError(f"video '{s.videos[vi].name}' is too short for an off-sync window")
        return {"face": self.mouths(vi, start), "audio": s.window(avi, acenter, self.sync_window),
                "label": torch.tensor(1.0 if positive else 0.0)}


__all__ = ["ClipDataset", "SyncPairDataset", "CLIP_FRAMES", "NUM_REFS", "item_rng"]
