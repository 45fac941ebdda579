"""The one checkpoint reader/writer of the project.

Official LawDNet files look like ``{'epoch', 'state_dict': {'net_g': {'module.<key>': tensor}, ...}, ...}``.
Ours keep the same nesting (so the official tools can read them) and add what inference needs, so that a
checkpoint alone is enough to dub a video::

    {'format': 'lawdnet-v1', 'model_config': {...}, 'audio_feature': 'mel', 'mouth_region_size': 64,
     'profile': 'lawdnet', 'state_dict': {'net_g': ..., 'net_dI': ..., 'net_dV': ...}, 'optimizer': ..., ...}

``profile`` is the preprocessing profile the generator was trained with (config/profile.py); official files
mean ``official``, ours written before profiles existed mean ``lawdnet`` (what they were trained with).

Writes are atomic (temporary file in the same folder, fsync, rename), so a process killed mid-save never
leaves a truncated file under the final name.
"""
import os
import pickle
import re
import warnings
import zipfile

import torch

from config.config import ModelConfig
from config.profile import LAWDNET, OFFICIAL, get_profile
from models.lawdnet import LawDNet
from utils.atomic import atomic_write
from utils.errors import UserError

FORMAT = "lawdnet-v1"


def read_checkpoint(path, map_location="cpu"):
    """torch.load with one-line errors for missing, truncated or foreign files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"checkpoint path is a folder, expected a .pth file: {path}")
    if os.path.getsize(path) == 0:
        raise UserError(f"checkpoint is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():      # the weights-only unpickler warns about pickle protocols
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"cannot read checkpoint {path}: {_unpickling_reason(str(e))}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "zip" in msg.lower() or "central directory" in msg.lower() or isinstance(e, EOFError):
            raise UserError(f"checkpoint is truncated or not a PyTorch file: {path} ({msg})") from None
        raise UserError(f"cannot read checkpoint {path}: {msg}") from None
    except Exception as e:  # pickle errors: a file that is not a plain tensor checkpoint
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def _unpickling_reason(msg):
    """Our reason for a failed weights-only load. torch's own message advises re-running with
    weights_only=False, which would execute whatever code the file holds: never give that advice here."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
    if found:
        return (f"it holds Python objects other than tensors ({found.group(1)}), so it is not a plain weight "
                "file; re-save it from a trusted copy with torch.save(model.state_dict(), path)")
    return "not a PyTorch checkpoint (unreadable data; a truncated download or another kind of file?)"


def save_checkpoint(obj, path):
    """Atomically write ``obj`` to ``path`` (temp file + fsync + os.replace)."""
    with atomic_write(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def strip_module_prefix(state_dict):
    """Remove the DDP ``module.`` prefix where present (official files always have it)."""
    return {k[7:] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def _generator_state(ckpt, path):
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"].get("net_g", ckpt["state_dict"])
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("net_g"), dict):
        sd = ckpt["net_g"]
    else:
        raise UserError(f"{path} is not a LawDNet checkpoint (no state_dict/net_g entry)")
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"{path} is not a LawDNet checkpoint (net_g is not a tensor state dict)")
    return strip_module_prefix(sd)


def _config_from_state(sd, path):
    """Infer the architecture of an official (config-less) checkpoint from its tensor shapes."""
    try:
        C = sd["source_in_conv.2.conv.weight"].shape[0]
        n_layers = len({k.split(".")[1] for k in sd if k.startswith("lawLayer_list.")})
        return ModelConfig(
            source_channel=sd["source_in_conv.0.conv.weight"].shape[1],
            ref_channel=sd["ref_in_conv.0.conv.weight"].shape[1],
            audio_channel=sd["audio_encoder.0.conv.weight"].shape[1],
            audio_window=5,
            warp_layer_num=n_layers,
            num_kpoints=sd["lawLayer_list.0.radius_layer.0.weight"].shape[0] // C,
            warp_mode="official",
            encoder_channels=(sd["source_in_conv.0.conv.weight"].shape[0],
                              sd["source_in_conv.1.conv.weight"].shape[0], C),
            align_channels=sd["trans_conv.0.conv.weight"].shape[0],
            attn_dim=sd["cross_attention.query_proj.weight"].shape[0],
            decoder_channels=sd["out_conv.0.conv.weight"].shape[0],
            attn_grid=tuple(sd["cross_attention.positional_encoding_video"].shape[1:]),
        )
    except KeyError as e:
        raise UserError(f"{path} is not a LawDNet generator checkpoint (missing {e.args[0]})") from None


def checkpoint_info(ckpt, path="<checkpoint>"):
    """What inference needs to know: model config, audio front-end, mouth size, preprocessing profile, official
    or ours."""
    sd = _generator_state(ckpt, path)
    if ckpt.get("format") == FORMAT:
        return {"official": False, "model_config": ModelConfig.from_dict(ckpt["model_config"]),
                "audio_feature": ckpt.get("audio_feature", ""),
                "mouth_region_size": int(ckpt.get("mouth_region_size", 0)),
                "profile": str(ckpt.get("profile") or LAWDNET), "state_dict": sd}
    # Official files carry no metadata: DeepSpeech-PyTorch v2 features, m = 288 (docs/original.md), and the
    # original's preprocessing.
    return {"official": True, "model_config": _config_from_state(sd, path), "audio_feature": "deepspeech2",
            "mouth_region_size": 288, "profile": OFFICIAL, "state_dict": sd}


def load_lawdnet(path, device="cpu", warp_mode=None, return_info=False, **config_overrides):
    """A ready, eval-mode generator from an official checkpoint or one of ours.

    ``warp_mode`` overrides the stored mode (official files default to "official", the only mode their
    weights are valid in); ``config_overrides`` set fields official files cannot record (coarse_grid_size).
    """
    info = checkpoint_info(read_checkpoint(path), path)
    cfg = info["model_config"]
    overrides = dict(config_overrides)
    if warp_mode is not None:
        overrides["warp_mode"] = warp_mode
    cfg = ModelConfig(**{**cfg.to_dict(), **overrides})
    model = LawDNet(cfg)
    try:
        model.load_state_dict(info["state_dict"], strict=True)
    except RuntimeError as e:
        detail = key_diff(model.state_dict(), info["state_dict"]) or str(e).splitlines()[-1].strip()[:300]
        raise UserError(f"{path}: weights do not fit the LawDNet architecture ({detail})") from None
    info["model_config"] = cfg
    model = model.to(device).eval()
    return (model, info) if return_info else model


def key_diff(expected, got):
    """'missing N: a, b, c ...; wrong shape N: ...; unexpected N: ...' (empty when the keys and shapes agree)."""
    groups = (("missing", sorted(set(expected) - set(got))),
              ("wrong shape", sorted(k for k in set(expected) & set(got)
                                     if tuple(expected[k].shape) != tuple(got[k].shape))),
              ("unexpected", sorted(set(got) - set(expected))))
    return "; ".join(f"{name} {len(keys)}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                     for name, keys in groups if keys)


def lawdnet_checkpoint(model, audio_feature, mouth_region_size, profile=None, **extra):
    """Our checkpoint dict for a generator trained with ``profile`` (default lawdnet); add discriminators /
    optimisers through ``extra``."""
    state = {"net_g": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    state.update(extra.pop("state_dict", {}))
    return {"format": FORMAT, "model_config": model.config.to_dict(), "audio_feature": audio_feature,
            "mouth_region_size": int(mouth_region_size), "profile": get_profile(profile).name, "state_dict": state,
            **extra}


def save_lawdnet(path, model, audio_feature, mouth_region_size, profile=None, **extra):
    save_checkpoint(lawdnet_checkpoint(model, audio_feature, mouth_region_size, profile, **extra), path)
