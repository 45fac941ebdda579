"""The toolkit's one time base: video at 25 fps, model audio at 16 kHz, as the original converts every input.

Every module takes these from here (never a literal 25.0 / 16000 / 640), and every length in frames comes from
``num_video_frames``, so a dub, a training clip and a live session agree on which audio belongs to which frame.

Frame-count rule (used by every audio front-end, the dataset builder, inference and live sessions)::

    num_video_frames(n, sr, fps) = 0                                 if n == 0
                                 = max(1, floor(n / sr * fps + 0.5))  otherwise

i.e. the duration in video frames rounded half-up, and at least one frame for any non-empty audio. At 16 kHz and
25 fps one frame is exactly 640 samples (40 ms), so an audio of F*640 samples covers exactly F frames, and a
24 kHz file of the same duration gives the same F after resampling.
"""
from __future__ import annotations

import math

FPS = 25.0                 # output / model frame rate (ffmpeg -r 25 in the original)
SAMPLE_RATE = 16000        # rate of the audio the features are computed from


def samples_per_frame(sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> float:
    """Audio samples in one video frame (640 at 16 kHz / 25 fps)."""
    return sample_rate / fps


def num_video_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """Number of video frames an audio of ``num_samples`` at ``sample_rate`` covers (rule in the module doc)."""
    if sample_rate <= 0 or fps <= 0:
        raise ValueError(f"sample_rate and fps must be positive, got {sample_rate}, {fps}")
    n = int(num_samples)
    if n <= 0:
        return 0
    # The tiny epsilon keeps exact multiples (e.g. 640 samples -> 1.0 frame) safe from float error.
    return max(1, int(math.floor(n * float(fps) / float(sample_rate) + 0.5 + 1e-9)))


FRAME_SAMPLES = round(samples_per_frame())   # 640: audio samples of one video frame at the time base
