"""Template frames in output order, streaming, with bounded memory.

Forward runs of the ping-pong schedule are decoded in one pass; backward runs are decoded in chunks (seek to
the chunk, decode it forward, hand the frames out in reverse), so at most one chunk of frames is in memory
whatever the video length. The chunk holds at most ``chunk_bytes`` of frames.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from inference.schedule import source_runs
from utils.errors import UserError
from utils.media.timebase import FPS
from utils.media.video_io import iter_frames



def chunk_frames(height: int, width: int, chunk_bytes: int = 256 << 20, lo: int = 8, hi: int = 128) -> int:
    """Frames per backward chunk for this frame size."""
    return int(np.clip(chunk_bytes // max(1, height * width * 3), lo, hi))


def _read_range(path, first: int, count: int) -> Iterator[np.ndarray]:
    n = 0
    # the template's analysis already recorded the reader's warnings: do not repeat them on every pass
    for frame in iter_frames(path, fps=FPS, start_frame=first, max_frames=count, notes=[]):
        yield frame
        n += 1
    if n != count:  # the cache or the count said the video is longer than it decodes
        raise UserError(f"{path}: expected frames {first}..{first + count - 1} but the video ended after "
                        f"{first + n} frames (file changed or corrupt?)")


def iter_schedule(path, num_output: int, num_template: int, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(template_index, frame RGB uint8)`` for output frames 0..num_output-1 (ping-pong order)."""
    if num_template == 1:
        frame = next(_read_range(path, 0, 1))
        for _ in range(num_output):
            yield 0, frame
        return
    for first, last, step in source_runs(num_output, num_template):
        if step > 0:
            for i, frame in enumerate(_read_range(path, first, last - first + 1)):
                yield first + i, frame
            continue
        hi = first
        while hi >= last:
            lo = max(last, hi - chunk + 1)
            frames = list(_read_range(path, lo, hi - lo + 1))
            for i in range(len(frames) - 1, -1, -1):
                yield lo + i, frames[i]
                frames[i] = None  # release as we go
            hi = lo - 1
