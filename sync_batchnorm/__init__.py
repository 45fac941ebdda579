"""Compatibility names for the original's vendored ``sync_batchnorm`` package, on top of torch.nn.SyncBatchNorm.

The original networks declare ``SynchronizedBatchNorm{1,2,3}d`` modules and the trainer calls ``convert_model``.
Here the classes are plain BatchNorm subclasses (standard state_dict keys, they run on CPU and in one process);
``convert_model`` swaps them for torch.nn.SyncBatchNorm only where that can work: an initialised process group and
a module on CUDA. Everywhere else it returns the module unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SynchronizedBatchNorm1d", "SynchronizedBatchNorm2d", "SynchronizedBatchNorm3d", "convert_model"]


class SynchronizedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that ``convert_model`` turns into SyncBatchNorm under distributed CUDA training."""


class SynchronizedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that ``convert_model`` turns into SyncBatchNorm under distributed CUDA training."""


class SynchronizedBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that ``convert_model`` turns into SyncBatchNorm under distributed CUDA training."""


def _distributed_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _on_cuda(module: nn.Module) -> bool:
    tensors = list(module.parameters()) + list(module.buffers())
    return bool(tensors) and all(t.is_cuda for t in tensors)


def convert_model(module: nn.Module, process_group=None) -> nn.Module:
    """Convert every BatchNorm in ``module`` to torch.nn.SyncBatchNorm when a process group is initialised and the
    module lives on CUDA (SyncBatchNorm has no CPU kernel); otherwise return ``module`` itself, unchanged."""
    if not (_distributed_ready() and _on_cuda(module)):
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
