"""Pictures of the report: frames side by side (input | generated | ground truth, native pixels, with each video's
metrics) and openness over time."""
from __future__ import annotations

import os

import numpy as np

from utils.media.timebase import FPS
from utils.media.video_io import iter_frames

# Lazy imports below: cv2 and matplotlib (about 2 s of start-up) load only to draw (demo.py answers --help fast).


def pick_frames(gt_openness: np.ndarray, count: int = 4) -> list[int]:
    """Frames worth looking at: the most open frame and evenly spaced frames of the spoken part."""
    o = np.asarray(gt_openness, np.float64)
    speech = np.flatnonzero(o > 0.05)
    lo, hi = (int(speech[0]), int(speech[-1])) if len(speech) else (0, len(o) - 1)
    picks = [int(np.argmax(o))]
    for q in np.linspace(0.15, 0.85, 8):
        k = int(round(lo + q * (hi - lo)))
        if all(abs(k - p) > 3 for p in picks):
            picks.append(k)
        if len(picks) >= count:
            break
    return sorted(picks[:count])


def _read(video: str, indices: list[int]) -> dict[int, np.ndarray]:
    want, out = set(indices), {}
    for k, f in enumerate(iter_frames(video, fps=FPS)):
        if k in want:
            out[k] = f
        if len(out) == len(want):
            break
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def side_by_side(columns: list[tuple[str, str]], indices: list[int], out_png: str, box=None,
                 gt_openness=None, scale: int = 2, notes: dict | None = None) -> str:
    """PNG with one row per frame index and one column per (title, video); ``box`` = (x0, y0, x1, y1) region
    of the frame to show (the lower face) at its native resolution, each pixel shown ``scale`` x ``scale``
    (nearest neighbour: no smoothing hides or adds blur); ``notes[title]``: lines of text (the video's metrics)
    printed above its column."""
    import cv2

    frames = {title: _read(video, indices) for title, video in columns}
    rows = []
    for k in indices:
        cells = []
        for title, _ in columns:
            f = frames[title].get(k)
            if f is None:
                continue
            if box is not None:
                x0, y0, x1, y1 = box
                f = f[y0:y1, x0:x1]
            f = cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            cap = f"{title}, frame {k}"
            if gt_openness is not None and title.startswith("ground truth") and k < len(gt_openness):
                cap += f" (open {gt_openness[k]:.2f})"
            cells.append(_label(f, cap))
            cells.append(np.full((cells[-1].shape[0], 4, 3), 255, np.uint8))
        if cells:
            rows.append(np.hstack(cells[:-1]))
            rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    if not rows:
        raise RuntimeError("no frames could be read for the side-by-side picture")
    if notes:
        rows.insert(0, _notes_row([(notes.get(t) or []) for t, _ in columns], rows[0].shape[1], len(columns)))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows[:-1]]
    img = np.vstack(rows)
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    cv2.imwrite(out_png, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return out_png


def _notes_row(texts: list[list[str]], width: int, n: int) -> np.ndarray:
    """A white band with each column's lines of text above it."""
    import cv2

    lines = max((len(t) for t in texts), default=0)
    band = np.full((16 * lines + 8, width, 3), 255, np.uint8)
    col = (width + 4) // max(n, 1)
    for c, t in enumerate(texts):
        for i, line in enumerate(t):
            cv2.putText(band, line, (c * col + 4, 14 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                        cv2.LINE_AA)
    return band


def mouth_box_from_landmarks(landmarks: np.ndarray, frame_hw: tuple[int, int], grow: float = 1.4):
    """(x0, y0, x1, y1) covering nose tip to chin and cheek to cheek over all frames, clipped to the frame."""
    lm = np.asarray(landmarks, np.float64)
    pts = lm[:, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 30, 33]].reshape(-1, 2)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * grow / 2
    H, W = frame_hw
    return (int(max(0, cx - half)), int(max(0, cy - half)), int(min(W, cx + half)), int(min(H, cy + half)))


def openness_plot(tracks: list[tuple[str, np.ndarray, float]], gt: np.ndarray, out_png: str, title: str = "") -> str:
    """Ground-truth openness vs measured openness of each video over time. Measured openness (inner-lip gap /
    eye distance) is standardised per video so shapes compare; the legend gives each track's r with the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def z(x):
        x = np.asarray(x, np.float64)
        return (x - x.mean()) / (x.std() + 1e-9)

    fig, ax = plt.subplots(figsize=(10, 3.8), dpi=100)
    t = np.arange(len(gt)) / FPS
    ax.plot(t, z(gt), color="black", lw=2.2, label="ground truth (rendering)")
    styles = ["tab:red", "tab:blue", "tab:gray", "tab:green", "tab:purple"]
    for (name, x, r), c in zip(tracks, styles):
        n = min(len(x), len(gt))
        ax.plot(t[:n], z(x[:n]), color=c, lw=1.3, label=f"{name} (r = {r:+.2f})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mouth openness (standardised)")
    ax.set_title(title or "mouth openness: generated vs ground truth")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
