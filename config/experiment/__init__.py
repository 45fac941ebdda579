"""Stage files of the coarse-to-fine training sequence (docs/original.md) plus ``tiny`` for CPU tests and demos.

Each stage module defines ``TRAIN`` (overrides of config.config.TrainConfig), ``MODEL`` (overrides of
ModelConfig; audio_channel always comes from the data) and optionally ``DISCRIMINATOR`` (keyword arguments of
models.discriminator.Discriminator). ``load_stage(name)`` returns them as a ``Stage``.
"""
import importlib
from dataclasses import dataclass, field

from utils.errors import UserError

# The official sequence, in order; each stage starts from the previous stage's final.pth.
SEQUENCE = ("frame_64", "frame_128", "frame_256", "clip_288")
STAGES = SEQUENCE + ("tiny", "tiny_clip")
DEFAULT_DISCRIMINATOR = {"block_expansion": 64, "num_blocks": 4, "max_features": 256}


@dataclass
class Stage:
    name: str
    train: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    discriminator: dict = field(default_factory=dict)


def load_stage(name: str) -> Stage:
    """The overrides of stage ``name`` (UserError listing the known stages for an unknown name)."""
    if name not in STAGES:
        raise UserError(f"unknown training stage '{name}' (known: {', '.join(STAGES)})")
    module_name = "tiny" if name == "tiny_clip" else name
    mod = importlib.import_module(f"config.experiment.{module_name}")
    train = dict(getattr(mod, "TRAIN", {}))
    if name == "tiny_clip":
        train.update(getattr(mod, "CLIP_TRAIN", {}))
    train["stage"] = name
    return Stage(name=name, train=train, model=dict(getattr(mod, "MODEL", {})),
                 discriminator={**DEFAULT_DISCRIMINATOR, **getattr(mod, "DISCRIMINATOR", {})})


def previous_stage(name: str) -> str:
    """The stage whose final.pth initialises ``name`` in the official sequence ("" for the first one)."""
    if name in SEQUENCE:
        i = SEQUENCE.index(name)
        return SEQUENCE[i - 1] if i else ""
    return "tiny" if name == "tiny_clip" else ""
