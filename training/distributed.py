"""Process-group set-up for torchrun (any number of nodes) and plain single-process runs.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; LOCAL_RANK picks the GPU (the original used the global rank).
NCCL on GPUs, gloo on CPU. Without torchrun (no WORLD_SIZE) nothing is initialised and the helpers below
degrade to single-process no-ops.
"""
import datetime
import hashlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from utils.errors import UserError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    def close(self):
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(flag: str, local_rank: int, world_size: int) -> torch.device:
    """``flag`` "" = cuda:LOCAL_RANK when CUDA is present else cpu; "cuda:N" is honoured in single-process runs."""
    if not flag:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(flag)
    except RuntimeError:
        raise UserError(f"--device: not a torch device: '{flag}'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {flag}: CUDA is not available on this machine")
        if world_size > 1:           # one process per GPU: the launcher's LOCAL_RANK decides
            dev = torch.device(f"cuda:{local_rank}")
        elif dev.index is None:
            dev = torch.device("cuda:0" if local_rank == 0 else f"cuda:{local_rank}")
        if dev.index >= torch.cuda.device_count():
            raise UserError(f"device {dev} does not exist ({torch.cuda.device_count()} visible GPUs)")
    return dev


def init_distributed(device_flag: str = "", timeout_min: int = 30) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_flag, local, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return DistInfo(0, 1, local, device, False)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, device, owns)


def barrier(info: DistInfo):
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, info: DistInfo):
    """List of every rank's ``obj`` (on every rank)."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict, info: DistInfo) -> dict:
    """Average of scalar logs over ranks (every rank must call it at the same step)."""
    if not values:
        return {}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    if info.distributed:
        dist.all_reduce(t)
        t /= info.world_size
    return dict(zip(keys, t.tolist()))


def seed_everything(seed: int, rank: int = 0):
    """Same torch seed on every rank (identical initial weights), per-rank python/numpy streams."""
    torch.manual_seed(seed)
    np.random.seed((seed + rank) % 2 ** 32)
    random.seed(seed + rank)


def rng_state() -> dict:
    """The global RNG states of this process, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                       int(np_state[3]), float(np_state[4])],
             "python": [py_state[0], torch.tensor(py_state[1], dtype=torch.int64), py_state[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(int(x) for x in p[1].tolist()), p[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def parameter_hash(*modules) -> str:
    """sha1 of all parameters and buffers (float32 bytes, sorted names): equal hashes = identical weights."""
    h = hashlib.sha1()
    for mod in modules:
        for name, t in sorted(mod.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()
