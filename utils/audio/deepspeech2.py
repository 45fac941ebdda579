"""DeepSpeech2 ("dp2") features from deepspeech.pytorch's LibriSpeech_Pretrained_v3.ckpt, in plain PyTorch.

The checkpoint is a PyTorch-Lightning file (``state_dict`` + ``hyper_parameters`` holding omegaconf / enum
objects). Neither Lightning, Hydra nor omegaconf is needed: :func:`load_checkpoint` unpickles every class it does
not know into an inert placeholder (:class:`_Opaque`) and only real torch tensors are rebuilt, so nothing in
the file can execute code. The network sizes come from the state_dict shapes; the spectrogram settings from
``hyper_parameters['spect_cfg']`` when readable (defaults: 16 kHz, 20 ms Hamming window, 10 ms hop).

Network (see docs/original.md), rebuilt with the same parameter names so the state_dict loads as is:

* spectrogram: centred STFT (zero padding), n_fft = win = 320, hop 160, periodic Hamming, magnitude -> log1p,
  normalised by its global mean / std over the real samples (a silent input, std 0, gives zeros instead of NaN:
  the original failed there);
* ``conv.seq_module``: Conv2d(1->32, (41, 11), stride (2, 2), pad (20, 5)) -> BN -> Hardtanh(0, 20) ->
  Conv2d(32->32, (21, 11), stride (2, 1), pad (10, 5)) -> BN -> Hardtanh(0, 20); 50 Hz, channels x freq flattened;
* ``rnns.k``: (sequence-wise BatchNorm1d on the input of layers >= 1) -> bidirectional LSTM, directions summed;
  (a unidirectional checkpoint instead has ``lookahead``: depth-wise Conv1d over future steps + Hardtanh);
* ``fc.0.module``: BatchNorm1d -> Linear(hidden -> 29, no bias): the pre-softmax logits used as features
  (labels: ``_`` blank, apostrophe, A-Z, space).

Every second 50 Hz step is kept -> 25 Hz (row i = step 2i, as the original). Runs in float32, or under fp16
autocast on GPU with ``precision="fp16"`` (the original's default; the official preprocessing profile).

Length: the original ran on whole files, so this front-end does too (nothing is cut, the statistics and the
backward LSTMs see every sample given) and a file of n samples gives its ceil(C/2) rows, C = floor(n/160)//2 + 1
(one more than frames for an exact F*640-sample file, as the original); ``windows`` builds the per-frame windows over
all of them, as the original did, so the last frames' windows match. Only when those rows are fewer than the
frames asked for (a video longer than its audio) is the audio padded with silence, still normalised over the
real samples.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import types

import numpy as np
import torch
from scipy.signal import get_window
from torch import nn

from utils.audio.base import AudioFrontEnd
from utils.device import torch_device
from utils.errors import UserError
from utils.media.timebase import FRAME_SAMPLES, SAMPLE_RATE

DEFAULT_SPECT = {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming"}


# ---------------------------------------------------------------------------------------- unpickling


class _Opaque(dict):
    """Stand-in for any class the checkpoint refers to that we do not import (omegaconf, Lightning, enums...).

    It accepts constructor arguments, dict items and pickled state and just keeps them; :func:`to_plain` turns
    a tree of these into plain dicts / lists / values.
    """

    _pickle_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = dict.__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self._state = state

    def __reduce__(self):  # never re-pickled
        raise TypeError("placeholder objects cannot be pickled")

    def __repr__(self):
        return f"<{self._pickle_name} args={self._args!r} state={type(self._state).__name__}>"


_OPAQUE_CLASSES: dict[tuple[str, str], type] = {}

# Classes/functions a torch checkpoint legitimately needs; everything else becomes an _Opaque placeholder.
_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
                  "bytearray", "bool", "slice", "range", "object"}
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch.nn.parameter", "Parameter"), ("torch", "Size"),
    ("torch", "device"), ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Tensor"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
    ("numpy", "dtype"), ("_codecs", "encode"), ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch.serialization", "_get_layout"),
}


def _is_torch_storage_or_dtype(module: str, name: str) -> bool:
    return module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype))


def _opaque_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[key] = type(name, (_Opaque,), {"_pickle_name": f"{module}.{name}"})
    return _OPAQUE_CLASSES[key]


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _SAFE_GLOBALS or _is_torch_storage_or_dtype(module, name) or module == "numpy.dtypes":
            return super().find_class(module, name)
        return _opaque_class(module, name)


# torch.load(pickle_module=...) needs an object with Unpickler and load().
_pickle_module = types.SimpleNamespace(
    Unpickler=_PlainUnpickler,
    load=lambda f, **kw: _PlainUnpickler(f, **kw).load(),
    __name__="lawdnet_plain_pickle",
)


def to_plain(obj, _seen=None):
    """Turn a tree of placeholders (omegaconf DictConfig / nodes, enums, AttributeDict) into plain values."""
    if _seen is None:
        _seen = set()
    if isinstance(obj, _Opaque):
        if id(obj) in _seen:
            return None
        _seen.add(id(obj))
        state = obj._state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1])
            state = merged
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf container
                return to_plain(state["_content"], _seen)
            if "_val" in state:  # omegaconf value node
                return to_plain(state["_val"], _seen)
            out = {k: to_plain(v, _seen) for k, v in dict(obj).items()}
            out.update({k: to_plain(v, _seen) for k, v in state.items() if not str(k).startswith("_")})
            return out
        if len(obj):
            return {k: to_plain(v, _seen) for k, v in dict(obj).items()}
        if len(obj._args) == 1:  # enum member rebuilt from its value, e.g. SpectrogramWindow('hamming')
            return to_plain(obj._args[0], _seen)
        if obj._pickle_name == "builtins.getattr" and len(obj._args) == 2:  # enum member pickled by name
            return obj._args[1]
        return obj._pickle_name
    if isinstance(obj, dict):
        return {k: to_plain(v, _seen) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, _seen) for v in obj]
    return obj


def load_checkpoint(path: str) -> tuple[dict, dict]:
    """(state_dict of float tensors, plain hyper_parameters dict) of a deepspeech.pytorch Lightning checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_pickle_module, weights_only=False)
    except Exception as e:  # any failure to read the user's file is reported as one line naming it
        raise UserError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path}: not a deepspeech.pytorch Lightning checkpoint (no 'state_dict' entry)")
    state = {}
    for k, v in ckpt["state_dict"].items():
        if isinstance(v, torch.Tensor):
            state[k[len("model."):] if k.startswith("model.") else k] = v
    try:  # hyper-parameters only refine the spectrogram settings; sizes come from the weights
        hparams = to_plain(ckpt.get("hyper_parameters", {}))
    except (RecursionError, TypeError, ValueError):
        hparams = {}
    return state, hparams if isinstance(hparams, dict) else {}


# ------------------------------------------------------------------------------------------ network


def _conv_out(n: int, kernel: int, stride: int, pad: int) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def build_network(state: dict, n_freq: int, path: str = "checkpoint"):
    """The DeepSpeech2 module sized from ``state`` shapes, weights loaded; (1, 1, n_freq, T) -> (T50, classes)."""
    def need(key):
        if key not in state:
            raise UserError(f"{path}: not a deepspeech.pytorch DeepSpeech checkpoint (missing {key})")
        return state[key]

    w_hh = need("rnns.0.rnn.weight_hh_l0")
    hidden = int(w_hh.shape[1])
    gates = int(w_hh.shape[0]) // hidden
    rnn_cls = {4: nn.LSTM, 3: nn.GRU, 1: nn.RNN}.get(gates)
    if rnn_cls is None or w_hh.shape[0] % hidden:
        raise UserError(f"{path}: unexpected recurrent weight shape {tuple(w_hh.shape)}")
    n_layers = 0
    while f"rnns.{n_layers}.rnn.weight_ih_l0" in state:
        n_layers += 1
    bidirectional = "rnns.0.rnn.weight_ih_l0_reverse" in state
    classes = int(need("fc.0.module.1.weight").shape[0])
    f2 = _conv_out(_conv_out(n_freq, 41, 2, 20), 21, 2, 10)
    rnn_in = int(need("rnns.0.rnn.weight_ih_l0").shape[1])
    if rnn_in != 32 * f2:
        raise UserError(f"{path}: first RNN takes {rnn_in} inputs but a {n_freq}-bin spectrogram gives {32 * f2}; "
                        f"spectrogram settings do not match the weights")

    class SequenceWise(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):  # (T, N, H) -> module on (T*N, H)
            t, n = x.shape[:2]
            return self.module(x.reshape(t * n, -1)).reshape(t, n, -1)

    class BatchRNN(nn.Module):
        def __init__(self, n_in, batch_norm):
            super().__init__()
            self.batch_norm = SequenceWise(nn.BatchNorm1d(n_in)) if batch_norm else None
            self.rnn = rnn_cls(n_in, hidden, bidirectional=bidirectional, bias=True)

        def forward(self, x):
            if self.batch_norm is not None:
                x = self.batch_norm(x)
            x, _ = self.rnn(x)
            if bidirectional:  # sum the two directions: (T, N, 2H) -> (T, N, H)
                x = x.reshape(x.shape[0], x.shape[1], 2, -1).sum(2)
            return x

    class Lookahead(nn.Module):
        def __init__(self, context):
            super().__init__()
            self.context = context
            self.conv = nn.Conv1d(hidden, hidden, kernel_size=context, groups=hidden, bias=False)

        def forward(self, x):  # (T, N, H): each step sees itself and the next context-1 steps
            y = nn.functional.pad(x.permute(1, 2, 0), (0, self.context - 1))
            return self.conv(y).permute(2, 0, 1)

    class DeepSpeech2(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Module()
            self.conv.seq_module = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
                nn.BatchNorm2d(32), nn.Hardtanh(0, 20),
                nn.Conv2d(32, 32, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
                nn.BatchNorm2d(32), nn.Hardtanh(0, 20))
            self.rnns = nn.Sequential(*[BatchRNN(rnn_in if i == 0 else hidden, i > 0) for i in range(n_layers)])
            self.lookahead = None
            if not bidirectional:
                context = int(need("lookahead.0.conv.weight").shape[-1])
                self.lookahead = nn.Sequential(Lookahead(context), nn.Hardtanh(0, 20))
            self.fc = nn.Sequential(SequenceWise(nn.Sequential(nn.BatchNorm1d(hidden),
                                                               nn.Linear(hidden, classes, bias=False))))

        def forward(self, spect):  # (1, 1, F, T) -> (T50, classes)
            x = self.conv.seq_module(spect)
            n, c, f, t = x.shape
            x = x.reshape(n, c * f, t).permute(2, 0, 1)  # (T, N, C*F), channel-major features
            for rnn in self.rnns:
                x = rnn(x)
            if self.lookahead is not None:
                x = self.lookahead(x)
            return self.fc(x)[:, 0, :]

    net = DeepSpeech2()
    result = net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                                 strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {len(missing)} DeepSpeech2 weights, e.g. {missing[:3]}")
    return net.eval()


# -------------------------------------------------------------------------------------- spectrogram


def spectrogram(samples: np.ndarray, sample_rate: int = 16000, window_size: float = 0.02,
                window_stride: float = 0.01, window: str = "hamming", num_real: int | None = None) -> np.ndarray:
    """(n_fft//2+1, T) normalised log1p magnitude spectrogram (centred frames, zero padded), as the original.

    Mean and std are those of the first ``num_real`` samples' spectrogram (default: all): with zero-padded
    centred frames, padding the samples with silence only appends frames, so this is the spectrogram of the
    real samples, normalised as the original did, plus the padding's frames."""
    n_fft = int(sample_rate * window_size)
    hop = int(sample_rate * window_stride)
    win = get_window(window, n_fft, fftbins=True)  # periodic, as librosa's stft builds it
    x = np.pad(np.asarray(samples, dtype=np.float64), (n_fft // 2, n_fft // 2))
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[: n_frames * hop: hop]
    mag = np.abs(np.fft.rfft(frames * win, n=n_fft, axis=1)).T
    spect = np.log1p(mag)
    real = spect if num_real is None else spect[:, : 1 + int(num_real) // hop]
    std = real.std(ddof=1) if real.size > 1 else 0.0  # torch.std is the unbiased estimate
    return (spect - real.mean()) / (std if std > 1e-8 else 1.0)


def original_rows(num_samples: int, hop: int = 160) -> int:
    """Rows the original extraction gives for a file of ``num_samples``: ceil(C/2) with C = floor(n/hop)//2 + 1
    (1 + n//hop centred frames, the stride-2 conv, every second step)."""
    c = (int(num_samples) // hop) // 2 + 1
    return (c + 1) // 2


# ---------------------------------------------------------------------------------------- front-end


class DeepSpeech2FrontEnd(AudioFrontEnd):
    """Pre-softmax DeepSpeech2 logits per video frame (row i = 50 Hz step 2i), extracted as the original did."""

    name = "deepspeech2"
    # right context a caller streaming chunks should give (utils/audio/streaming.py); rows() itself never cuts
    context_samples = SAMPLE_RATE
    window_rows_past_end = True

    def __init__(self, ckpt_path: str, device: str = "cpu", precision: str = "fp32"):
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        self.path = os.fspath(ckpt_path)
        self.device = torch_device(device)
        self.autocast = precision == "fp16" and self.device.type == "cuda"   # the CPU always runs fp32
        state, hparams = load_checkpoint(self.path)
        spect = dict(DEFAULT_SPECT)
        cfg = hparams.get("spect_cfg")
        if isinstance(cfg, dict):
            spect.update({k: cfg[k] for k in DEFAULT_SPECT if cfg.get(k) is not None})
        if int(spect["sample_rate"]) != SAMPLE_RATE:
            raise UserError(f"{self.path}: model expects {spect['sample_rate']} Hz audio; only 16 kHz models are supported")
        self.spect_cfg = spect
        self.hop = int(spect["sample_rate"] * spect["window_stride"])
        self.labels = hparams.get("labels")
        n_freq = int(spect["sample_rate"] * spect["window_size"]) // 2 + 1
        self.net = build_network(state, n_freq, self.path).to(self.device)
        self.dim = int(self.net.fc[0].module[1].out_features)

    def rows(self, x: np.ndarray, num_frames: int) -> np.ndarray:
        """Every row of the whole input (see the module doc), padded with silence only when too short."""
        n = len(x)
        if original_rows(n, self.hop) < num_frames:
            x = np.pad(x, (0, num_frames * FRAME_SAMPLES - n))
        return self._checked(self._logits(x, n), num_frames)

    def _logits(self, samples: np.ndarray, num_real: int) -> np.ndarray:
        cfg = self.spect_cfg
        spect = spectrogram(samples, int(cfg["sample_rate"]), float(cfg["window_size"]), float(cfg["window_stride"]),
                            str(cfg["window"]), num_real=num_real)
        amp = torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            x = torch.from_numpy(spect.astype(np.float32))[None, None].to(self.device)
            logits = self.net(x).float().cpu().numpy()
        return logits[::2]
