"""The generator's reference features, computed once per template and reference set instead of once per frame.

``ref_in_conv`` and the appearance branch see only the 5 reference crops, which stay the same for every frame
dubbed with one reference set, so ``LawDNet.encode_references`` runs once per set and every batch reuses its
output (models/lawdnet.py). A template may use several reference sets (e.g. one per shot), so entries are keyed
by the tuple of reference frame indices. The cache lives on the prepared template (inference.PreparedTemplate),
so whatever keeps the template in memory (a Python caller, the server's template store) keeps its features; it
belongs to one model runner: another runner (another model, device or precision) starts it afresh.
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Iterable

import torch


class ReferenceFeatureCache:
    max_entries = 16    # bounded (least recently used goes first): a film can have hundreds of shots

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, torch.Tensor] = {}    # insertion order = use order
        self._owner = None                        # weakref to the runner the entries were computed with

    def get(self, runner, indices: Iterable[int], references: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Features of the reference set ``indices`` for ``runner``; ``references()`` gives its (1, 15, Hc, Wc)
        crops and is called only when the set is not cached yet."""
        key = tuple(int(i) for i in indices)
        with self._lock:   # concurrent jobs on one template: the first computes, the others wait and reuse
            if self._owner is None or self._owner() is not runner:
                self._entries.clear()
                self._owner = weakref.ref(runner)
            feats = self._entries.pop(key, None)
            if feats is None:
                feats = runner.encode_references(references())
                while len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = feats
            return feats

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)
