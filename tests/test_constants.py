"""One source per constant: the time base, the video extensions, the warp modes, the audio front-ends and the crop
geometry are each defined in one module; SyncNet's renamed blocks keep the released file's keys; the
discriminators' alias table."""
import ast
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> the one module (relative path) allowed to define it at module level
HOMES = {
    "FPS": "utils/media/timebase.py",
    "SAMPLE_RATE": "utils/media/timebase.py",
    "FRAME_SAMPLES": "utils/media/timebase.py",
    "VIDEO_EXTS": "utils/media/formats.py",
    "OUTPUT_VIDEO_EXTS": "utils/media/formats.py",
    "WARP_MODES": "config/config.py",
    "AUDIO_FEATURES": "utils/audio/features.py",
    "crop_size": "utils/face/geometry.py",
    "mouth_box": "utils/face/geometry.py",
}


def _definitions():
    """name -> [relative paths defining it at module level] over the project (tests excluded)."""
    found = {}
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("__pycache__", "tests")]
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(d, f), ROOT)
            tree = ast.parse(open(os.path.join(d, f), encoding="utf-8").read())
            for node in tree.body:
                names = []
                if isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    names = [node.target.id]
                elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names = [node.name]
                for n in names:
                    found.setdefault(n, []).append(rel)
    return found


def test_each_constant_has_one_home():
    found = _definitions()
    wrong = {n: found.get(n, []) for n, home in HOMES.items() if found.get(n, []) != [home]}
    assert not wrong, f"defined elsewhere or more than once (expected {HOMES}): {wrong}"
    # and no module spells the frame rate out as its own FPS-like constant
    fps_like = sorted(p for n, ps in found.items() if re.fullmatch(r"_?[A-Z_]*FPS", n) and n != "STILL_FPS"
                      for p in ps if p != HOMES["FPS"])
    assert not fps_like, fps_like


def test_the_time_base_is_consistent():
    from utils.media.timebase import FPS, FRAME_SAMPLES, SAMPLE_RATE, num_video_frames, samples_per_frame

    assert FRAME_SAMPLES == samples_per_frame() == SAMPLE_RATE / FPS == 640
    assert num_video_frames(7 * FRAME_SAMPLES) == 7


def test_output_formats_are_inputs_too():
    from utils.media.formats import OUTPUT_FORMATS, OUTPUT_VIDEO_EXTS, VIDEO_EXTS

    assert set(OUTPUT_VIDEO_EXTS) == set(OUTPUT_FORMATS) <= set(VIDEO_EXTS)


# The state_dict layout of the released syncnet_256mouth.pth (spec 8) for any width: per Sequential index of the
# face / audio encoder, the conv attributes it holds. The blocks were renamed; these must not change.
_FACE = {0: ("conv",), 1: ("conv1", "conv2"), 2: ("conv",)} | {
    i: (("conv",), ("conv1", "conv2"), ("conv",))[(i - 3) % 3] for i in range(3, 15)} | {15: ("conv",)}
_AUDIO = {0: ("conv",), 1: ("conv1", "conv2"), 2: ("conv",), 3: ("conv1", "conv2"), 4: ("conv",),
          5: ("conv1", "conv2"), 6: ("conv",), 7: ("conv",)}


def _released_keys():
    keys = []
    for prefix, layout in (("face_encoder.face_conv", _FACE), ("audio_encoder.audio_conv", _AUDIO)):
        for i, convs in layout.items():
            keys += [f"{prefix}.{i}.{c}.{p}" for c in convs for p in ("weight", "bias")]
    return sorted(keys + [f"merge_encoder.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")])


def test_renamed_syncnet_blocks_keep_the_released_keys(tmp_path):
    from models.syncnet import SyncNet, load_syncnet

    net = SyncNet(hidden=8)
    assert sorted(net.state_dict()) == _released_keys()
    # a file with the released layout (no config, ``module.`` prefix as DDP wrote it) loads strictly
    torch.manual_seed(0)
    sd = {"module." + k: torch.randn_like(v) for k, v in net.state_dict().items()}
    path = tmp_path / "syncnet_256mouth.pth"
    torch.save({"state_dict": {"net": sd}}, path)              # the DINet release layout
    back = load_syncnet(str(path))
    assert all(torch.equal(back.state_dict()[k], sd["module." + k]) for k in back.state_dict())


def test_discriminator_alias_table():
    from models.discriminator import DISCRIMINATORS, Discriminator, discriminator_name

    assert {n: d.checkpoint_key for n, d in DISCRIMINATORS.items()} == {"spatial": "net_dI", "temporal": "net_dV"}
    for alias in ("net_dI", "D_S", "dS", "lamb_g_di", "spatial"):
        assert discriminator_name(alias) == "spatial"
    for alias in ("net_dV", "D_T", "dT", "lamb_g_dv", "temporal"):
        assert discriminator_name(alias) == "temporal"
    with pytest.raises(KeyError):
        discriminator_name("net_g")
    # the flags carry the names
    from config.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    assert {f"lamb_g_{n}" for n in DISCRIMINATORS} <= fields and not {"lamb_g_di", "lamb_g_dv"} & fields
    for name, d in DISCRIMINATORS.items():
        Discriminator(d.channels)(torch.zeros(1, d.channels, 64, 64))
