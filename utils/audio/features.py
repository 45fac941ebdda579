"""Front-end registry: the names of the audio front-ends (AUDIO_FEATURES, their one list), build one by name and
extract a file's features."""
from __future__ import annotations

import os

import numpy as np

from utils.audio.base import AudioFrontEnd
from utils.audio.mel import MelFrontEnd
from utils.errors import UserError
from utils.media.audio_io import load_audio
from utils.media.timebase import SAMPLE_RATE

# Lazy imports below: the learned front-ends (torch; the TF-graph reader, transformers) load only when one is built,
# so modules needing just AUDIO_FEATURES or mel start fast.

AUDIO_FEATURES = ("mel", "deepspeech", "deepspeech2", "hubert")
# Feature width of each audio front-end (hubert depends on the model; 768 for base, 1024 for large).
AUDIO_FEATURE_DIMS = {"mel": 80, "deepspeech": 29, "deepspeech2": 29, "hubert": 768}

# Which weights each learned front-end needs (used in error messages).
MODEL_HELP = {
    "deepspeech": "the TF DeepSpeech v0.1 frozen graph output_graph.pb",
    "deepspeech2": "deepspeech.pytorch's LibriSpeech_Pretrained_v3.ckpt (PyTorch-Lightning checkpoint)",
    "hubert": "a local Hugging Face HuBERT or wav2vec2 model folder (config.json + weights)",
}


def _require_model_path(name: str, model_path: str, want_dir: bool) -> str:
    kind = "folder" if want_dir else "file"
    hint = f"'{name}' audio features need {MODEL_HELP[name]}; pass it with --audio_model_path"
    if not model_path:
        raise UserError(f"no model given: {hint}")
    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise UserError(f"{path}: not found; {hint}")
    if want_dir and not os.path.isdir(path):
        raise UserError(f"{path}: expected a model {kind}; {hint}")
    if not want_dir and not os.path.isfile(path):
        raise UserError(f"{path}: expected a model {kind}; {hint}")
    return path


def get_frontend(name: str, model_path: str = "", device: str = "cpu", precision: str = "fp32") -> AudioFrontEnd:
    """Build the front-end ``name`` (one of AUDIO_FEATURES); ``model_path`` holds its weights.

    ``precision="fp16"`` runs DeepSpeech2 under fp16 autocast on GPU, as the original did (the official
    profile's ``audio_precision``); the other front-ends always run in float32."""
    key = str(name).strip().lower()
    if key not in AUDIO_FEATURES:
        raise UserError(f"unknown audio feature {name!r}; choose one of {', '.join(AUDIO_FEATURES)}")
    if key == "mel":
        return MelFrontEnd()
    if key == "deepspeech":
        from utils.audio.deepspeech_tf import DeepSpeechFrontEnd

        return DeepSpeechFrontEnd(_require_model_path(key, model_path, want_dir=False), device=device)
    if key == "deepspeech2":
        from utils.audio.deepspeech2 import DeepSpeech2FrontEnd

        return DeepSpeech2FrontEnd(_require_model_path(key, model_path, want_dir=False), device=device,
                                   precision=precision)
    from utils.audio.hubert import HubertFrontEnd

    return HubertFrontEnd(_require_model_path(key, model_path, want_dir=True), device=device)


def extract_features(audio_path: str, name: str = "mel", model_path: str = "", num_frames: int | None = None,
                     device: str = "cpu", resampler: str = "polyphase", precision: str = "fp32") -> np.ndarray:
    """Load ``audio_path`` (any format, resampled to 16 kHz with ``resampler``) and return its (num_frames, dim)
    features. ``resampler`` and ``precision`` are a preprocessing profile's ``resampler`` and
    ``audio_precision`` (config/profile.py); the defaults are the lawdnet profile's.

    Builds the front-end on every call; to process many files keep one ``get_frontend(...)`` object instead.
    """
    frontend = get_frontend(name, model_path, device, precision)
    return frontend(load_audio(audio_path, SAMPLE_RATE, resampler), num_frames)
