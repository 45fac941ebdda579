"""DeepSpeech2 test material: tiny weights written as deepspeech.pytorch's Lightning checkpoint, and a plain
torch-functional / numpy reference of the original extraction (see docs/): librosa-style centred STFT (n_fft 320,
hop 160, periodic Hamming, zero padding), log1p, mean / std over the samples given, the conv front-end and
bidirectional LSTMs with summed directions, every second step kept. Shared by tests/test_audio.py and
tests/test_profile.py.
"""
import enum
import sys
import types
from collections import OrderedDict

import numpy as np

SR = 16000


def speech_like(dur, sr=SR, seed=0):
    """Harmonic 'voice' (120 Hz + harmonics, formant-like envelope) modulated at syllable rate, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur * sr)) / sr
    f0 = 120 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) * np.exp(-((k * 120 - 700) / 900.0) ** 2) for k in range(1, 30))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    x = voice * env + 0.01 * rng.standard_normal(len(t))
    return 0.3 * x / np.max(np.abs(x))


def _fake_module(name, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        v.__module__, v.__qualname__ = name, k
        setattr(mod, k, v)
    return mod


def tiny_ds2_state(seed=1, hidden=8, layers=2, classes=29):
    import torch

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def bn(prefix, n, sd):
        sd[prefix + "weight"] = 1 + 0.1 * rnd(n)
        sd[prefix + "bias"] = 0.1 * rnd(n)
        sd[prefix + "running_mean"] = 0.1 * rnd(n)
        sd[prefix + "running_var"] = 1 + 0.2 * rnd(n).abs()
        sd[prefix + "num_batches_tracked"] = torch.tensor(100)

    sd = OrderedDict()
    sd["conv.seq_module.0.weight"] = rnd(32, 1, 41, 11, scale=0.05)
    sd["conv.seq_module.0.bias"] = 0.1 * rnd(32)
    bn("conv.seq_module.1.", 32, sd)
    sd["conv.seq_module.3.weight"] = rnd(32, 32, 21, 11, scale=0.01)
    sd["conv.seq_module.3.bias"] = 0.1 * rnd(32)
    bn("conv.seq_module.4.", 32, sd)
    for i in range(layers):
        n_in = 32 * 41 if i == 0 else hidden
        if i > 0:
            bn(f"rnns.{i}.batch_norm.module.", n_in, sd)
        for sfx in ("", "_reverse"):
            sd[f"rnns.{i}.rnn.weight_ih_l0{sfx}"] = rnd(4 * hidden, n_in, scale=1 / np.sqrt(n_in))
            sd[f"rnns.{i}.rnn.weight_hh_l0{sfx}"] = rnd(4 * hidden, hidden, scale=1 / np.sqrt(hidden))
            sd[f"rnns.{i}.rnn.bias_ih_l0{sfx}"] = 0.1 * rnd(4 * hidden)
            sd[f"rnns.{i}.rnn.bias_hh_l0{sfx}"] = 0.1 * rnd(4 * hidden)
    bn("fc.0.module.0.", hidden, sd)
    sd["fc.0.module.1.weight"] = rnd(classes, hidden, scale=1.0)
    return sd


def write_ds2_checkpoint(path, sd):
    """Lightning layout; hyper_parameters pickled as omegaconf / enum / AttributeDict objects whose packages
    are NOT importable when the test loads the file (as on a machine without Lightning, Hydra, omegaconf)."""
    import torch

    class SpectrogramWindow(enum.Enum):
        hamming = "hamming"
        hann = "hann"

    class AttributeDict(dict):
        pass

    class DictConfig:
        def __init__(self, content):
            self._content = content

        def __getstate__(self):
            return {"_metadata": {"object_type": "SpectConfig"}, "_parent": None, "_content": self._content}

    class AnyNode:
        def __init__(self, val, parent=None):
            self._val, self._parent = val, parent

        def __getstate__(self):
            return {"_val": self._val, "_metadata": {}, "_parent": self._parent}

    mods = {
        "deepspeech_pytorch.enums": _fake_module("deepspeech_pytorch.enums", SpectrogramWindow=SpectrogramWindow),
        "pytorch_lightning.utilities.parsing": _fake_module("pytorch_lightning.utilities.parsing", AttributeDict=AttributeDict),
        "omegaconf.dictconfig": _fake_module("omegaconf.dictconfig", DictConfig=DictConfig),
        "omegaconf.nodes": _fake_module("omegaconf.nodes", AnyNode=AnyNode),
    }
    for name in list(mods):  # pickle imports the parent packages too
        parts = name.split(".")
        for i in range(1, len(parts)):
            mods.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        spect = DictConfig({})
        spect._content = {"sample_rate": AnyNode(16000, spect), "window_size": AnyNode(0.02, spect),
                          "window_stride": AnyNode(0.01, spect), "window": AnyNode(SpectrogramWindow.hamming, spect)}
        model_cfg = DictConfig({"hidden_size": AnyNode(8), "hidden_layers": AnyNode(2)})
        labels = list("_'ABCDEFGHIJKLMNOPQRSTUVWXYZ ")
        ckpt = {"epoch": 16, "global_step": 1234, "pytorch-lightning_version": "1.2.0", "state_dict": sd,
                "hyper_parameters": AttributeDict(labels=labels, model_cfg=model_cfg, precision=16, spect_cfg=spect),
                "optimizer_states": [], "lr_schedulers": []}
        torch.save(ckpt, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def ds2_reference(samples, sd):
    """torch-functional DeepSpeech2: torch.stft spectrogram, F.conv2d/batch_norm, hand-written LSTM, summed dirs."""
    import torch
    import torch.nn.functional as F

    x = torch.tensor(samples, dtype=torch.float64)
    spec = torch.stft(x, 320, hop_length=160, win_length=320, window=torch.hamming_window(320, periodic=True, dtype=torch.float64),
                      center=True, pad_mode="constant", return_complex=True).abs().log1p()
    spec = ((spec - spec.mean()) / spec.std()).float()
    sd = {k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")}

    def bn(v, p):
        return F.batch_norm(v, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0.0, 1e-5)

    h = spec[None, None]
    h = F.hardtanh(bn(F.conv2d(h, sd["conv.seq_module.0.weight"], sd["conv.seq_module.0.bias"], (2, 2), (20, 5)),
                      "conv.seq_module.1."), 0, 20)
    h = F.hardtanh(bn(F.conv2d(h, sd["conv.seq_module.3.weight"], sd["conv.seq_module.3.bias"], (2, 1), (10, 5)),
                      "conv.seq_module.4."), 0, 20)
    seq = h[0].reshape(-1, h.shape[-1]).T.double().numpy()  # (T, 32*41)

    def lstm(s, p, sfx):
        wi, wh = sd[f"{p}weight_ih_l0{sfx}"].double().numpy(), sd[f"{p}weight_hh_l0{sfx}"].double().numpy()
        b = (sd[f"{p}bias_ih_l0{sfx}"] + sd[f"{p}bias_hh_l0{sfx}"]).double().numpy()
        n = wh.shape[1]
        hh, c, out = np.zeros(n), np.zeros(n), []
        sig = lambda v: 1 / (1 + np.exp(-v))
        for v in s:
            z = wi @ v + wh @ hh + b
            i, f, gg, o = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
            c = sig(f) * c + sig(i) * np.tanh(gg)
            hh = sig(o) * np.tanh(c)
            out.append(hh)
        return np.array(out)

    layer = 0
    while f"rnns.{layer}.rnn.weight_ih_l0" in sd:
        p = f"rnns.{layer}."
        if layer > 0:
            seq = bn(torch.tensor(seq, dtype=torch.float32), p + "batch_norm.module.").double().numpy()
        seq = lstm(seq, p + "rnn.", "") + lstm(seq[::-1], p + "rnn.", "_reverse")[::-1]
        layer += 1
    seq = bn(torch.tensor(seq, dtype=torch.float32), "fc.0.module.0.").double().numpy()
    return (seq @ sd["fc.0.module.1.weight"].double().numpy().T)[::2]
