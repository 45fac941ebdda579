"""A distributed sampler that can restart in the middle of an epoch.

Every epoch is a fresh permutation from (seed, epoch), cut to a multiple of batch_size x world_size so every
rank runs the same number of steps (a rank with one batch fewer would hang DDP). Rank r takes every
world_size-th element. ``set_position(epoch, batches_done)`` skips what a resumed run has already trained on.
It yields ``(epoch, index)`` keys: the datasets derive each item's randomness from them.
"""
import torch
from torch.utils.data import Sampler

from utils.errors import UserError


class ResumableSampler(Sampler):
    def __init__(self, length: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.length, self.batch_size, self.rank, self.world_size, self.seed = length, batch_size, rank, world_size, seed
        self.batches_per_epoch = length // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise UserError(f"the training set has {length} items, fewer than batch_size x processes = "
                            f"{batch_size} x {world_size}: raise --augment_num or lower --batch_size")
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, batches_done: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(batches_done)

    def __len__(self):
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        mine = torch.randperm(self.length, generator=g)[:used][self.rank::self.world_size]
        for i in mine[self.start_batch * self.batch_size:].tolist():
            yield (self.epoch, i)
