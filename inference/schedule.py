"""Which template frame each output frame shows.

Audio longer than the template plays the template forward, then backward, then forward again
("ping-pong": 0..N-1, N-2..1, 0..N-1, ...), so there is never a jump cut. Audio shorter than the template uses
only its first frames. The original cut the output to min(frames, audio) rounded down to the batch size
(docs/original.md, 'Output length').
"""
from __future__ import annotations

from typing import Iterator


def pingpong_index(k: int, num_template: int) -> int:
    """Template frame shown by output frame ``k``."""
    if num_template <= 0:
        raise ValueError("the template has no frames")
    if num_template == 1:
        return 0
    period = 2 * num_template - 2
    r = k % period
    return r if r < num_template else period - r


def source_runs(num_output: int, num_template: int) -> Iterator[tuple[int, int, int]]:
    """The schedule as runs ``(first, last, step)`` of consecutive template indices (step +1 or -1), in order.

    Readers use it to decode forward runs in one pass and backward runs chunk by chunk.
    """
    k = 0
    while k < num_output:
        first = pingpong_index(k, num_template)
        step = 1 if num_template == 1 or (k % (2 * num_template - 2)) < num_template - 1 else -1
        if num_template == 1:
            yield 0, 0, 1
            k += 1
            continue
        # the run continues until the turning point (N-1 going forward, 0 going backward)
        end = num_template - 1 if step > 0 else 0
        length = min(abs(end - first) + 1, num_output - k)
        last = first + step * (length - 1)
        yield first, last, step
        k += length
