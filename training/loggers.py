"""Scalar and image logging on rank 0: tensorboard (default), wandb (``--logger wandb``; WANDB_MODE=offline
works without network) or none."""
import os
import re

import torch

from utils.errors import UserError

# Lazy imports below: tensorboard and wandb are optional (only the chosen --logger is imported).


def image_grid(masked, fake, real, max_rows=4):
    """(3, rows*H, 3*W) grid, one row per sample: masked source | generated | target, values in [0, 1]."""
    n = min(max_rows, fake.shape[0])
    rows = [torch.cat([masked[i], fake[i], real[i]], dim=2) for i in range(n)]
    return torch.cat(rows, dim=1).detach().float().clamp(0, 1).cpu()


class TrainLogger:
    def __init__(self, kind, log_dir, project, run_name, config, enabled=True):
        self.kind = kind if enabled else "none"
        self._tb = self._wandb = None
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=os.path.join(log_dir, "tensorboard"))
            self._tb.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(_flat(config).items())), 0)
        elif self.kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise UserError("--logger wandb needs the wandb package (pip install wandb)") from None
            run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{project}-{run_name}")[:60]
            self._wandb = wandb.init(project=re.sub(r"[^A-Za-z0-9_.-]", "-", project), name=run_name, id=run_id,
                                     dir=log_dir, config=_flat(config), resume="allow")

    def scalars(self, values: dict, step: int):
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        elif self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def image(self, name, grid, step):
        if self._tb is not None:
            self._tb.add_image(name, grid, step)
        elif self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(grid.permute(1, 2, 0).numpy())}, step=step)

    def close(self):
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
