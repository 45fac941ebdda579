"""The training index: built from the finished videos of a data root, or merged from several data roots."""
from __future__ import annotations

import os
import time
from typing import Optional

from dataset.index import load_index, write_index
from dataset.prepare.layout import Layout, atomic_json, outputs_complete, read_json
from utils.audio.features import AUDIO_FEATURES
from utils.errors import UserError
from utils.media.video_io import FRAME_RULE

# ---------------------------------------------------------------------------------------------- index

def generate_training_json(data_root: str, audio_features: Optional[list] = None,
                           crop_width: Optional[int] = None) -> tuple[str, dict]:
    """Write <data_root>/training_json.json from the 'done' markers of the data root (all shards included).

    ``audio_features``: the features every indexed video must have (None = those all done videos share).
    ``crop_width``: only videos cropped at this width (None = the most common one). Returns (path, summary)
    where summary has 'videos' (indexed count) and 'excluded' (name -> reason).
    """
    L = Layout(data_root)
    status_dir = os.path.dirname(L.marker("x"))
    markers = {}
    if os.path.isdir(status_dir):
        for n in sorted(os.listdir(status_dir)):
            if n.endswith(".json") and not n.startswith("."):
                m = read_json(os.path.join(status_dir, n))
                if m and m.get("status") == "done":
                    markers[n[:-5]] = m
    if not markers:
        raise UserError(f"{L.root}: no finished videos (status/*.json); run data_processing.py --all first")
    if crop_width is None:
        widths = [m.get("crop_width") for m in markers.values()]
        crop_width = max(set(widths), key=widths.count)
    if audio_features is None:
        sets = [set(m.get("features", [])) for m in markers.values() if m.get("crop_width") == crop_width]
        common = set.intersection(*sets) if sets else set()
        audio_features = [f for f in AUDIO_FEATURES if f in common]
        if not audio_features:
            raise UserError(f"{L.root}: the finished videos share no audio feature; pass --audio_feature")
    videos, excluded = {}, {}
    for vid, m in markers.items():
        if m.get("frame_rule") != FRAME_RULE:   # never mix frames chosen by two rules in one index
            excluded[vid] = (f"its 25 fps frames were chosen by the rule {m.get('frame_rule', 'of an older reader')!r},"
                             f" not {FRAME_RULE!r}; run data preparation again to redo it")
            continue
        if m.get("crop_width") != crop_width:
            excluded[vid] = f"cropped at width {m.get('crop_width')}, index uses {crop_width}"
            continue
        missing = [f for f in audio_features if not os.path.isfile(L.feature(f, vid))]
        if missing or not outputs_complete(L, vid, []):
            excluded[vid] = "missing " + (", ".join(missing) + " features" if missing else "outputs")
            continue
        videos[vid] = {"num_frames": int(m["num_frames"]), "crop_dir": L.rel(L.crops(vid)),
                       "features": {f: L.rel(L.feature(f, vid)) for f in audio_features},
                       "invalid_frames": list(m.get("invalid_frames", [])), "landmarks": L.rel(L.csv(vid)),
                       "video": L.rel(L.video(vid)), "audio": L.rel(L.wav(vid))}
    if not videos:
        raise UserError(f"{L.root}: no video has all of {', '.join(audio_features)} at crop width {crop_width}")
    write_index(L.index(), crop_width, audio_features, videos)
    return L.index(), {"videos": len(videos), "excluded": excluded, "audio_features": audio_features,
                       "crop_width": crop_width}


# ---------------------------------------------------------------------------------------------- merge

def merge_data_roots(roots: list[str], out_root: str) -> tuple[str, dict]:
    """One index over several prepared data roots, without copying: entries point into the old roots.

    Paths are relative to ``out_root`` (keep the roots where they are relative to it). A name already taken
    gets the source root's folder name as prefix (``<root>_<vid>``, then a counter). All roots must share the
    crop width; the merged index lists the audio features they all have. Returns (index path, renames).
    """
    if len(roots) < 1:
        raise UserError("--merge needs at least one prepared data root")
    out = Layout(out_root)
    abs_roots = [os.path.abspath(r) for r in roots]
    if out.root in abs_roots:
        raise UserError(f"--data_root {out_root} must be a new folder, not one of the merged roots")
    if len(set(abs_roots)) != len(abs_roots):
        raise UserError("--merge lists the same data root twice")
    indexes = [load_index(r) for r in roots]
    widths = {ix.crop_width for ix in indexes}
    if len(widths) > 1:
        raise UserError("cannot merge data roots cropped at different widths: "
                        + ", ".join(f"{r}={ix.crop_width}" for r, ix in zip(roots, indexes)))
    common = [f for f in indexes[0].audio_features if all(f in ix.audio_features for ix in indexes)]
    if not common:
        raise UserError("the data roots share no audio feature: "
                        + ", ".join(f"{r}={ix.audio_features}" for r, ix in zip(roots, indexes)))
    videos, renames, origin = {}, {}, {}
    for r, ix in zip(abs_roots, indexes):
        tag = os.path.basename(r.rstrip(os.sep)) or "root"
        for name in sorted(ix.videos):
            e = ix.videos[name]
            new, k = name, 2
            if new in videos:
                new = f"{tag}_{name}"
                while new in videos:
                    new, k = f"{tag}{k}_{name}", k + 1
                renames[f"{r}:{name}"] = new
            videos[new] = {"num_frames": e.num_frames, "crop_dir": out.rel(e.crop_dir),
                           "features": {f: out.rel(e.features[f]) for f in common},
                           "invalid_frames": list(e.invalid_frames),
                           "landmarks": out.rel(e.landmarks) if e.landmarks else ""}
            origin[new] = {"status": "merged", "reason": "", "source": r, "original_name": name}
    os.makedirs(out.root, exist_ok=True)
    write_index(out.index(), widths.pop(), common, videos)
    atomic_json(out.report(), {"format": "lawdnet-report-v1", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "merged_from": abs_roots, "renamed": renames,
                                "counts": {"merged": len(videos)}, "videos": origin})
    return out.index(), renames


