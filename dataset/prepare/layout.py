"""Where everything lives inside a prepared data root, and the atomic writers every stage uses."""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

import numpy as np

from dataset.index import INDEX_NAME
from utils.atomic import atomic_write


# ---------------------------------------------------------------------------------------------- layout

class Layout:
    """Paths inside a data root (the layout documented in dataset/index.py, plus status/ and reports)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.fspath(root))

    def video(self, vid):
        return os.path.join(self.root, "videos_25fps", vid + ".mp4")

    def csv(self, vid):
        return os.path.join(self.root, "landmarks", vid + ".csv")

    def wav(self, vid):
        return os.path.join(self.root, "audio", vid + ".wav")

    def feature(self, name, vid):
        return os.path.join(self.root, "features", name, vid + ".npy")

    def crops(self, vid):
        return os.path.join(self.root, "crops", vid)

    def marker(self, vid):
        return os.path.join(self.root, "status", vid + ".json")

    def index(self):
        return os.path.join(self.root, INDEX_NAME)

    def report(self, shard: Optional[tuple[int, int]] = None):
        name = "report.json" if shard is None else f"report.shard-{shard[0]}-of-{shard[1]}.json"
        return os.path.join(self.root, name)

    def rel(self, path):
        return os.path.relpath(path, self.root).replace(os.sep, "/")


def atomic_json(path: str, data) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)


def atomic_npy(path: str, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def atomic_copy(src: str, dst: str) -> None:
    with atomic_write(dst, "wb") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def outputs_complete(L: Layout, vid: str, features: list[str]) -> bool:
    return (os.path.isfile(L.video(vid)) and os.path.isfile(L.csv(vid)) and os.path.isfile(L.wav(vid))
            and all(os.path.isfile(L.feature(f, vid)) for f in features) and os.path.isdir(L.crops(vid)))
