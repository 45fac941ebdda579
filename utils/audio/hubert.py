"""HuBERT / wav2vec2 features from a local Hugging Face model folder (docs/original.md, 'HuBERT').

The folder is what ``save_pretrained`` writes (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
optionally ``preprocessor_config.json``); it is loaded with ``local_files_only=True``, nothing is downloaded.
Any speech encoder ``transformers.AutoModel`` maps to a 320-sample (20 ms) frame rate works (HuBERT, wav2vec2,
WavLM, data2vec-audio); a CTC fine-tuned folder loads its encoder and ignores the CTC head.

Alignment: the conv feature encoder has a 400-sample receptive field and a 320-sample stride. The audio is
padded by (400 - 320) / 2 = 40 samples of real context (or silence) on each side, so 50 Hz frame k is centred on
the middle of the 20 ms slot [320 k, 320 (k + 1)) and F video frames give exactly 2F encoder frames; the last
hidden states of frames 2i and 2i+1 are averaged -> row i (25 fps). Long audio is processed in chunks (with
a few seconds of overlap as context) so attention memory stays bounded.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from utils.audio.base import AudioFrontEnd
from utils.device import torch_device
from utils.errors import UserError
from utils.media.timebase import FRAME_SAMPLES, SAMPLE_RATE

# Lazy import below: transformers (an optional dependency, seconds of start-up) loads only when a HuBERT front-end
# is built.

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


def _padded_slice(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """x[start:stop] with zeros where the range leaves the array."""
    out = np.zeros(stop - start, dtype=x.dtype)
    a, b = max(start, 0), min(stop, len(x))
    if b > a:
        out[a - start:b - start] = x[a:b]
    return out


class HubertFrontEnd(AudioFrontEnd):
    """Last hidden state of a HuBERT / wav2vec2 encoder, pairs of 50 Hz frames averaged to 25 fps."""

    name = "hubert"
    context_samples = 2 * SAMPLE_RATE  # look-ahead given to the last chunk
    chunk_frames = 750  # video frames per forward pass (30 s)
    chunk_context = 50  # extra video frames on each side of a chunk (2 s)

    def __init__(self, model_dir: str, device: str = "cpu"):
        try:
            import transformers
        except ImportError:
            raise UserError("hubert audio features need the 'transformers' package: "
                            "pip install 'transformers>=4.40,<5'") from None

        self.path = os.fspath(model_dir)
        self.device = torch_device(device)
        if not os.path.isfile(os.path.join(self.path, "config.json")):
            raise UserError(f"{self.path}: no config.json; expected a Hugging Face HuBERT/wav2vec2 folder "
                            f"(save_pretrained output); pass it with --audio_model_path")
        if not any(os.path.isfile(os.path.join(self.path, f)) for f in _WEIGHT_FILES):
            raise UserError(f"{self.path}: no model weights ({' or '.join(_WEIGHT_FILES[:2])}) in the folder")
        try:
            config = transformers.AutoConfig.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{self.path}: unreadable config.json ({e})") from None
        strides = list(getattr(config, "conv_stride", []) or [])
        kernels = list(getattr(config, "conv_kernel", []) or [])
        if not strides or len(strides) != len(kernels) or not hasattr(config, "hidden_size"):
            raise UserError(f"{self.path}: model type {config.model_type!r} is not a HuBERT/wav2vec2-style speech encoder")
        self.stride = int(np.prod(strides))
        if self.stride * 2 != FRAME_SAMPLES:
            raise UserError(f"{self.path}: encoder frame stride is {self.stride} samples; need 320 (50 Hz at 16 kHz)")
        # Receptive field of the strided conv stack.
        rf, jump = 1, 1
        for k, s in zip(kernels, strides):
            rf += (int(k) - 1) * jump
            jump *= int(s)
        self.receptive_field = rf
        self.pad = max(0, (rf - self.stride) // 2)
        self.do_normalize = self._read_do_normalize(config)
        try:
            model = transformers.AutoModel.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise UserError(f"{self.path}: cannot load the model weights ({type(e).__name__}: {e})") from None
        self.model = model.to(self.device).eval()
        self.dim = int(config.hidden_size)
        self._torch = torch

    def _read_do_normalize(self, config) -> bool:
        pre = os.path.join(self.path, "preprocessor_config.json")
        if os.path.isfile(pre):
            try:
                with open(pre, encoding="utf-8") as f:
                    return bool(json.load(f).get("do_normalize", False))
            except (OSError, ValueError):
                raise UserError(f"{pre}: unreadable JSON") from None
        # Without a feature-extractor config: layer-norm encoders (large models) were trained on normalised audio.
        return getattr(config, "feat_extract_norm", "group") == "layer"

    def _encode(self, wave: np.ndarray) -> np.ndarray:
        """Waveform -> (frames, dim) last hidden state."""
        torch = self._torch
        x = wave.astype(np.float32)
        if self.do_normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        with torch.inference_mode():
            t = torch.from_numpy(x)[None].to(self.device)
            return self.model(t).last_hidden_state[0].float().cpu().numpy()

    def compute(self, samples: np.ndarray, num_frames: int) -> np.ndarray:
        rows = []
        for start in range(0, num_frames, self.chunk_frames):
            stop = min(num_frames, start + self.chunk_frames)
            a = max(0, start - self.chunk_context)
            # Right context: real audio only (never invent trailing silence), at most chunk_context frames.
            b = max(stop, min(stop + self.chunk_context, -(-len(samples) // FRAME_SAMPLES)))
            n = b - a  # video frames encoded in this pass
            # 2n encoder frames: (2n - 1) strides plus one receptive field, starting `pad` samples early.
            s0 = a * FRAME_SAMPLES - self.pad
            wave = _padded_slice(samples, s0, s0 + (2 * n - 1) * self.stride + self.receptive_field)
            hidden = self._encode(wave)
            if hidden.shape[0] < 2 * n:
                raise RuntimeError(f"encoder gave {hidden.shape[0]} frames for {n} video frames")
            pairs = hidden[: 2 * n].reshape(n, 2, -1).mean(axis=1)
            rows.append(pairs[start - a: stop - a])
        return np.concatenate(rows, axis=0)
