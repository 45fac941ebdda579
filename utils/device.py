"""Device strings given by users (cpu, cuda, cuda:N) -> torch.device, with one clear error."""
from __future__ import annotations

import torch

from utils.errors import UserError


def torch_device(device: str):
    """``torch.device`` for a user-given string; UserError when CUDA (or that GPU index) is not there."""
    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, ValueError) as e:
        raise UserError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return dev
