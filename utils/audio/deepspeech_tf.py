"""TF DeepSpeech v0.1 ("dp1") features without TensorFlow: read the frozen graph, run the network in PyTorch.

The official ``output_graph.pb`` (Mozilla DeepSpeech v0.1.x, the AD-NeRF / DINet feature extractor) is a
GraphDef whose trained weights are Const nodes. We parse it with tensorboard's copy of the TF protos and rebuild
the network (docs/original.md, 'TF DeepSpeech features'):

* input: 26 MFCCs at 100 Hz (python_speech_features defaults, ``numcep=26``), every second frame kept (50 Hz),
  9 frames of zero context on both sides -> 19 x 26 = 494 values per step, whole matrix normalised by its global
  mean / std;
* ``h1/b1``, ``h2/b2``, ``h3/b3``: dense layers with ReLU clipped at 20;
* a bidirectional LSTM (TF BasicLSTMCell, gates i, j, f, o, forget bias 1.0), the two directions concatenated;
* ``h5/b5``: dense + clipped ReLU; ``h6/b6``: the 29 logits (space, a-z, apostrophe, CTC blank), pre-softmax;
* every second 50 Hz step kept -> one 29-d vector per 25 fps video frame.

Weights are found by node name: bare names (``h1``, ``b1``, ``bidirectional_rnn/fw/basic_lstm_cell/kernel``)
or the same names under any scope prefix (``deepspeech/h1``); LSTM weights may be called ``kernel/bias``
(TF >= 1.2) or ``weights/biases`` (TF 1.0/1.1), and the cell ``basic_lstm_cell``, ``lstm_cell`` or
``lstm_fused_cell``.
"""
from __future__ import annotations

import os
import re

import numpy as np
import torch
from torch import nn

from utils.audio.base import AudioFrontEnd
from utils.device import torch_device
from utils.errors import UserError
from utils.media.timebase import SAMPLE_RATE

# Lazy imports below: python_speech_features, protobuf and tensorboard's graph reader are needed only for the TF
# DeepSpeech front-end (optional dependencies).

N_MFCC = 26
RELU_CLIP = 20.0
FORGET_BIAS = 1.0  # BasicLSTMCell's default, hard-coded in DeepSpeech v0.1
DENSE_KEYS = ("h1", "b1", "h2", "b2", "h3", "b3", "h5", "b5", "h6", "b6")
_LSTM_RE = re.compile(r"(?:^|/)(fw|bw)/(?:basic_lstm_cell|lstm_cell|lstm_fused_cell)/(kernel|weights|bias|biases)$")


# ------------------------------------------------------------------------------------------- features


def mfcc_50hz(samples_16k: np.ndarray) -> np.ndarray:
    """(T50, 26) MFCCs: python_speech_features defaults with numcep=26, every second 100 Hz frame kept.

    Samples are scaled to int16 range (what the model was trained on) but not cast, so nothing is truncated.
    """
    from python_speech_features import mfcc

    x = np.asarray(samples_16k, dtype=np.float64) * 32768.0
    return mfcc(x, samplerate=SAMPLE_RATE, numcep=N_MFCC)[::2]


def context_windows(feats: np.ndarray, n_context: int = 9) -> np.ndarray:
    """(T, C) -> (T, (2 n_context + 1) C): zero-padded overlapping windows, globally mean/std normalised."""
    t, c = feats.shape
    padded = np.concatenate([np.zeros((n_context, c)), feats, np.zeros((n_context, c))])
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * n_context + 1, axis=0)  # (T, C, 2n+1)
    out = win.transpose(0, 2, 1).reshape(t, -1)  # time-major inside the window: frame by frame, 26 coeffs each
    std = out.std()
    return (out - out.mean()) / (std if std > 1e-8 else 1.0)


# -------------------------------------------------------------------------------------------- graph


def read_graph_weights(path: str) -> dict[str, np.ndarray]:
    """Const weights of a DeepSpeech v0.1 frozen graph, keyed ``h1``.. ``b6``, ``fw_kernel``, ``fw_bias``, ...

    ``bw_*`` keys are absent for a unidirectional graph. Raises UserError when the file is not a GraphDef or
    lacks the expected nodes, or when their shapes do not chain.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.util import tensor_util

    graph = graph_pb2.GraphDef()
    try:
        with open(path, "rb") as f:
            graph.ParseFromString(f.read())
    except (DecodeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: not a TensorFlow GraphDef (.pb) file ({e})") from None
    consts = {n.name: n for n in graph.node if n.op == "Const"}
    if not consts:
        raise UserError(f"{path}: no Const nodes found; expected the frozen DeepSpeech v0.1 output_graph.pb")

    def pick(names: list[str], what: str) -> str | None:
        if not names:
            return None
        names = sorted(names, key=lambda s: (s.count("/"), s))
        if len(names) > 1 and names[0].count("/") == names[1].count("/"):
            raise UserError(f"{path}: ambiguous weights for {what}: {names[0]!r} and {names[1]!r}")
        return names[0]

    found: dict[str, str] = {}
    for key in DENSE_KEYS:
        name = pick([n for n in consts if n == key or n.endswith("/" + key)], key)
        if name:
            found[key] = name
    groups: dict[str, list[str]] = {}
    for n in consts:
        m = _LSTM_RE.search(n)
        if m:
            kind = "kernel" if m.group(2) in ("kernel", "weights") else "bias"
            groups.setdefault(f"{m.group(1)}_{kind}", []).append(n)
    for key, names in groups.items():
        found[key] = pick(names, key)
    missing = [k for k in (*DENSE_KEYS, "fw_kernel", "fw_bias") if k not in found]
    if "bw_kernel" in found or "bw_bias" in found:
        missing += [k for k in ("bw_kernel", "bw_bias") if k not in found]
    if missing:
        raise UserError(f"{path}: not a DeepSpeech v0.1 graph, missing weight nodes {', '.join(missing)} "
                        f"(expected h1..h6/b1..b6 and bidirectional_rnn/fw|bw/basic_lstm_cell/kernel|bias)")
    w = {k: np.asarray(tensor_util.make_ndarray(consts[name].attr["value"].tensor), dtype=np.float32)
         for k, name in found.items()}
    _check_shapes(path, w)
    return w


def _check_shapes(path: str, w: dict[str, np.ndarray]) -> None:
    def fail(msg):
        raise UserError(f"{path}: DeepSpeech weights do not fit together: {msg}")

    for i in ("1", "2", "3", "5", "6"):
        h, b = w["h" + i], w["b" + i]
        if h.ndim != 2 or b.shape != (h.shape[1],):
            fail(f"h{i} {h.shape} / b{i} {b.shape}")
    for a, b in (("1", "2"), ("2", "3")):
        if w["h" + a].shape[1] != w["h" + b].shape[0]:
            fail(f"h{a} {w['h' + a].shape} -> h{b} {w['h' + b].shape}")
    n_in = w["h1"].shape[0]
    if n_in % N_MFCC or (n_in // N_MFCC) % 2 == 0:
        fail(f"h1 input size {n_in} is not 26 MFCCs x an odd context window")
    h3 = w["h3"].shape[1]
    dirs = ("fw", "bw") if "bw_kernel" in w else ("fw",)
    cell = w["fw_bias"].shape[0] // 4
    for d in dirs:
        k, bias = w[d + "_kernel"], w[d + "_bias"]
        if bias.shape != (4 * cell,) or k.shape != (h3 + cell, 4 * cell):
            fail(f"{d} LSTM kernel {k.shape} / bias {bias.shape} for input {h3} and cell {cell}")
    if w["h5"].shape[0] != cell * len(dirs):
        fail(f"h5 {w['h5'].shape} after a {len(dirs)}-direction LSTM of size {cell}")
    if w["h5"].shape[1] != w["h6"].shape[0]:
        fail(f"h5 {w['h5'].shape} -> h6 {w['h6'].shape}")


# ------------------------------------------------------------------------------------------ network


def build_network(w: dict[str, np.ndarray]):
    """PyTorch module computing (T, 494) normalised windows -> (T, 29) logits from the graph weights."""
    class DeepSpeechV1(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.ModuleList()
            for i in ("1", "2", "3"):
                self.dense.append(_linear(w["h" + i], w["b" + i]))
            h3 = w["h3"].shape[1]
            cell = w["fw_bias"].shape[0] // 4
            self.bidirectional = "bw_kernel" in w
            self.lstm = nn.LSTM(h3, cell, bidirectional=self.bidirectional)
            for d, suffix in (("fw", ""), ("bw", "_reverse")):
                if d == "bw" and not self.bidirectional:
                    continue
                w_ih, w_hh, b = _tf_lstm_to_torch(w[d + "_kernel"], w[d + "_bias"], h3)
                getattr(self.lstm, "weight_ih_l0" + suffix).data.copy_(torch.from_numpy(w_ih))
                getattr(self.lstm, "weight_hh_l0" + suffix).data.copy_(torch.from_numpy(w_hh))
                getattr(self.lstm, "bias_ih_l0" + suffix).data.copy_(torch.from_numpy(b))
                getattr(self.lstm, "bias_hh_l0" + suffix).data.zero_()
            self.dense5 = _linear(w["h5"], w["b5"])
            self.logits = _linear(w["h6"], w["b6"])

        def forward(self, x):  # x: (T, n_input)
            for layer in self.dense:
                x = torch.clamp(layer(x), 0.0, RELU_CLIP)
            x, _ = self.lstm(x[:, None, :])  # time-major, batch 1
            x = torch.clamp(self.dense5(x[:, 0, :]), 0.0, RELU_CLIP)
            return self.logits(x)

    def _linear(h, b):
        layer = nn.Linear(h.shape[0], h.shape[1])
        layer.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(h.T)))  # TF stores (in, out)
        layer.bias.data.copy_(torch.from_numpy(b))
        return layer

    return DeepSpeechV1().eval()


def _tf_lstm_to_torch(kernel: np.ndarray, bias: np.ndarray, n_in: int):
    """TF kernel (in + H, 4H) with gate blocks i, j, f, o -> torch W_ih (4H, in), W_hh (4H, H), bias, gates i, f, g, o.

    TF adds the forget bias inside the cell; torch has no such term, so it is folded into the f-gate bias.
    """
    cell = bias.shape[0] // 4
    i, j, f, o = (slice(k * cell, (k + 1) * cell) for k in range(4))
    order = [i, f, j, o]
    k = np.concatenate([kernel[:, s] for s in order], axis=1)  # (in + H, 4H) in torch order
    b = np.concatenate([bias[s] for s in order]).astype(np.float32)
    b[cell:2 * cell] += FORGET_BIAS
    return (np.ascontiguousarray(k[:n_in].T, dtype=np.float32), np.ascontiguousarray(k[n_in:].T, dtype=np.float32), b)


# ---------------------------------------------------------------------------------------- front-end


class DeepSpeechFrontEnd(AudioFrontEnd):
    """29 DeepSpeech v0.1 logits per video frame (row i = 50 Hz step 2i, as the original decimates)."""

    name = "deepspeech"
    context_samples = SAMPLE_RATE  # 1 s of real look-ahead for the backward LSTM

    def __init__(self, graph_path: str, device: str = "cpu"):
        self.path = os.fspath(graph_path)
        self.device = torch_device(device)
        w = read_graph_weights(self.path)
        self.n_context = (w["h1"].shape[0] // N_MFCC - 1) // 2
        self.dim = int(w["h6"].shape[1])
        self.net = build_network(w).to(self.device)

    def compute(self, samples: np.ndarray, num_frames: int) -> np.ndarray:
        windows = context_windows(mfcc_50hz(samples), self.n_context)
        with torch.inference_mode():
            x = torch.from_numpy(windows.astype(np.float32)).to(self.device)
            logits = self.net(x).float().cpu().numpy()
        return logits[::2]
