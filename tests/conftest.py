"""The tests' shared world (docs/testing.md): the tiny model, its checkpoints, synthetic talking heads, the Dubber
and the live HTTP server the test modules build on. Helpers are plain functions (``from conftest import ...``);
the files are session fixtures, made once per run under pytest's tmp_path_factory.

- ``TINY_MODEL`` / ``TINY_WIDTHS``: THE tiny generator config (that of the tiny synthetic model: mel audio, corrected
  warp, 16x16 coarse grid) and its layer widths; ``OFFICIAL_WARP``: the official warp mode and coarse grid.
- ``tiny_generator(seed, **overrides)`` / ``save_tiny_checkpoint(path, ...)``: THE tiny LawDNet and its checkpoint
  (ours: m = 64, mel); a variant is an override of a ModelConfig field, not another copy.
- ``make_dubber(checkpoint, infer_fn=None, progress=False, **cfg)``: every Dubber of the tests is made here.
- ``LiveServer``: uvicorn serving the app on a free loopback port, in a thread.
- fixtures ``tiny_checkpoint(seed=0, **variant)`` and ``talking_head(name, text, **kw)``: the files, made once per
  session per set of arguments (the same arguments give the same file, shared across modules: read them only).
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
import torch

# THE import of the tiny synthetic model (models/tiny.py)
from models import tiny as synthetic_model

WIDTH_KEYS = ("encoder_channels", "align_channels", "attn_dim", "decoder_channels")


def _tiny_model_config() -> dict:
    with torch.random.fork_rng():          # building it seeds the global RNG: keep the tests' RNG as it was
        return synthetic_model.tiny_lawdnet(audio_sensitive=False).config.to_dict()


TINY_MODEL = _tiny_model_config()
TINY_WIDTHS = {k: TINY_MODEL[k] for k in WIDTH_KEYS}


def _official_warp() -> dict:
    from config.config import ModelConfig

    return dict(warp_mode=ModelConfig.warp_mode, coarse_grid_size=ModelConfig.coarse_grid_size)   # its defaults


OFFICIAL_WARP = _official_warp()


def tiny_generator(seed: int = 0, *, audio_sensitive: bool = False, **overrides):
    """THE tiny LawDNet of the tests (eval mode), initialised after ``torch.manual_seed(seed)``.

    ``overrides``: ModelConfig fields that differ from ``TINY_MODEL`` (e.g. ``**OFFICIAL_WARP``, ``audio_channel=29``).
    ``audio_sensitive``: the synthetic model's rescaled layers, so speech and silence give different mouths.
    """
    from config.config import ModelConfig
    from models import LawDNet

    if audio_sensitive:
        if overrides:
            raise ValueError("the audio-sensitive tiny generator has the synthetic model's config only")
        return synthetic_model.tiny_lawdnet(seed, audio_sensitive=True)
    torch.manual_seed(seed)
    return LawDNet(ModelConfig(**{**TINY_MODEL, **overrides})).eval()


def save_tiny_checkpoint(path, seed: int = 0, *, audio_sensitive: bool = False, **overrides) -> str:
    """``tiny_generator(seed, ...)`` saved as one of our checkpoints (m = 64, mel features); returns the path."""
    from models.checkpoint import save_lawdnet

    path = os.fspath(path)
    save_lawdnet(path, tiny_generator(seed, audio_sensitive=audio_sensitive, **overrides), audio_feature="mel",
                 mouth_region_size=64)
    return path


def make_dubber(checkpoint, *, infer_fn=None, progress: bool = False, **cfg):
    """Every Dubber of the tests: ``cfg`` are the fields of its InferenceConfig (device, batch_size, cache_dir,
    preset, ...)."""
    from config.config import InferenceConfig
    from inference import Dubber

    return Dubber(checkpoint, InferenceConfig(**cfg), infer_fn=infer_fn, progress=progress)


class LiveServer:
    """uvicorn serving ``create_app(config)`` on a socket bound to a free 127.0.0.1 port, in a thread."""

    def __init__(self, **config):
        import uvicorn

        from server_LawDNet import create_app

        self.app = create_app(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=20))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        end = time.time() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < end, "server did not start"
            time.sleep(0.05)

    @property
    def service(self):
        return self.app.state.service

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def _key(*args, **kw) -> str:
    return hashlib.sha256(repr((args, sorted(kw.items()))).encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``tiny_checkpoint(seed=0, audio_sensitive=False, **overrides)`` -> path of ``save_tiny_checkpoint``'s file,
    written once per session per arguments (shared: read it, never write next to it)."""
    made: dict = {}

    def get(seed: int = 0, **variant) -> str:
        key = _key(seed, **variant)
        if key not in made:
            made[key] = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt") / "tiny.pth", seed, **variant)
        return made[key]

    return get


@pytest.fixture(scope="session")
def talking_head(tmp_path_factory):
    """``talking_head(name, text, **kw)`` -> ``make_talking_head``'s result for ``<folder>/<name>``, made once per
    session per arguments (shared: read it; a test that writes next to it, e.g. a template cache in its folder,
    makes its own with ``make_talking_head``)."""
    from utils.synthetic.talking_head import make_talking_head

    made: dict = {}

    def get(name: str, text: str, **kw) -> dict:
        key = _key(name, text, **kw)
        if key not in made:
            made[key] = make_talking_head(tmp_path_factory.mktemp("head") / name, text, **kw)
        return dict(made[key])

    return get
