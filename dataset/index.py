"""The training-set index written by data_processing.py and read by the datasets (one definition for both).

Layout of a prepared data root (all paths inside the JSON are relative to the JSON's folder, so a data root
can be moved, and two roots can be merged without copying clips)::

    <data_root>/
      videos_25fps/<vid>.mp4          constant 25 fps copy of the source video (audio kept)
      landmarks/<vid>.csv             OpenFace-layout 68-point landmarks (user CSVs are accepted here)
      audio/<vid>.wav                 16 kHz mono PCM
      features/<feature>/<vid>.npy    (num_frames, dim) float32, exactly one row per video frame
      crops/<vid>/<frame:06d>.jpg     frontalised face crops, crop_width wide, int(1.3*crop_width) high;
                                      frames without a face have no file and are listed in invalid_frames
      training_json.json              this index
      report.json                     per-video status of the last preparation run

``training_json.json``::

    {"format": "lawdnet-data-v1", "crop_width": 360, "audio_features": ["mel"],
     "videos": {"<vid>": {"num_frames": 250, "crop_dir": "crops/<vid>",
                          "features": {"mel": "features/mel/<vid>.npy"},
                          "invalid_frames": [17, 18], "landmarks": "landmarks/<vid>.csv"}}}
"""
import json
import os
from dataclasses import dataclass, field

from utils.atomic import atomic_write
from utils.errors import UserError

FORMAT = "lawdnet-data-v1"
INDEX_NAME = "training_json.json"


@dataclass
class VideoEntry:
    name: str
    num_frames: int
    crop_dir: str                      # absolute
    features: dict                     # feature name -> absolute .npy path
    invalid_frames: list = field(default_factory=list)
    landmarks: str = ""

    def frame_path(self, i):
        return os.path.join(self.crop_dir, f"{i:06d}.jpg")

    def valid_frames(self):
        bad = set(self.invalid_frames)
        return [i for i in range(self.num_frames) if i not in bad]


@dataclass
class DataIndex:
    path: str
    crop_width: int
    audio_features: list
    videos: dict                       # name -> VideoEntry


def load_index(path):
    """Read a training_json.json (or the data root holding one); one-line UserError when it is not usable."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_NAME)
    if not os.path.isfile(path):
        raise UserError(f"training index not found: {path} (run data_processing.py --all first)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"training index {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} index (re-run data_processing.py --generate_training_json)")
    root = os.path.dirname(os.path.abspath(path))
    crop_width = _field(raw, "crop_width", int, path, "")
    if crop_width < 1:
        raise UserError(f"{path}: crop_width must be a positive number of pixels, got {crop_width}")
    feats = raw.get("audio_features", [])
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        raise UserError(f"{path}: 'audio_features' must be a list of feature names")
    entries = raw.get("videos", {})
    if not isinstance(entries, dict):
        raise UserError(f"{path}: 'videos' must map video names to entries, got a {type(entries).__name__}")
    videos = {}
    for name, v in entries.items():
        where = f" for video '{name}'"
        if not isinstance(v, dict):
            raise UserError(f"{path}: the entry{where} must be an object, got a {type(v).__name__}")
        num_frames = _field(v, "num_frames", int, path, where)
        crop_dir = _field(v, "crop_dir", str, path, where)
        features = v.get("features", {})
        if not isinstance(features, dict) or not all(isinstance(p, str) for p in features.values()):
            raise UserError(f"{path}: 'features'{where} must map feature names to .npy paths")
        invalid = v.get("invalid_frames", [])
        if not isinstance(invalid, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in invalid):
            raise UserError(f"{path}: 'invalid_frames'{where} must be a list of frame numbers")
        landmarks = v.get("landmarks") or ""
        if not isinstance(landmarks, str):
            raise UserError(f"{path}: 'landmarks'{where} must be a path")
        videos[name] = VideoEntry(
            name=name, num_frames=num_frames, crop_dir=os.path.join(root, crop_dir),
            features={k: os.path.join(root, p) for k, p in features.items()}, invalid_frames=list(invalid),
            landmarks=os.path.join(root, landmarks) if landmarks else "")
    return DataIndex(path=path, crop_width=crop_width, audio_features=list(feats), videos=videos)


def _field(entry, key, kind, path, where):
    """``entry[key]`` as ``kind`` (int or str), or a one-line error naming the file, the entry and the key."""
    if key not in entry:
        raise UserError(f"{path}: '{key}' is missing{where} (re-run data_processing.py --generate_training_json)")
    value = entry[key]
    ok = isinstance(value, str) if kind is str else (isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UserError(f"{path}: '{key}'{where} must be {'a path' if kind is str else 'a whole number'}, "
                        f"got {value!r}")
    if kind is int and value < 0:
        raise UserError(f"{path}: '{key}'{where} must be >= 0, got {value}")
    return value


def write_index(path, crop_width, audio_features, videos):
    """Atomically write an index. ``videos``: name -> dict with paths relative to the index's folder."""
    data = {"format": FORMAT, "crop_width": int(crop_width), "audio_features": list(audio_features),
            "videos": videos}
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
