"""Numbered training checkpoints in a stage's result folder: save (atomic), keep the last K, find the newest
readable one.

Files: ``<result>/checkpoint_step{global_step:09d}.pth``; the last one of a stage is also written as
``<result>/final.pth`` (the next stage's init_from). Reading goes through models.checkpoint.read_checkpoint:
a truncated or corrupt newest file raises UserError there, and we fall back to the previous file with a warning.
"""
import os
import re
import sys

from models.checkpoint import read_checkpoint, save_checkpoint
from utils.errors import UserError

_NAME = re.compile(r"^checkpoint_step(\d{9})\.pth$")
FINAL = "final.pth"
UNREADABLE = ".unreadable"


def checkpoint_path(folder, step):
    return os.path.join(folder, f"checkpoint_step{int(step):09d}.pth")


def list_checkpoints(folder):
    """[(step, path)] of the numbered checkpoints in ``folder``, oldest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := _NAME.match(n))]
    return sorted(found)


def save_numbered(obj, folder, step, keep_last):
    """Write checkpoint ``step`` atomically, then delete older ones beyond the ``keep_last`` newest. Only older
    steps are ever pruned: the file just written always stays."""
    path = checkpoint_path(folder, step)
    save_checkpoint(obj, path)
    older = [p for s, p in list_checkpoints(folder) if s < step]
    for old in older[:max(0, len(older) - (max(1, int(keep_last)) - 1))]:
        try:
            os.remove(old)
        except FileNotFoundError:
            pass
    return path


def newest_readable(folder, log=None, set_aside=False):
    """(path, checkpoint dict) of the newest numbered checkpoint that reads back, or (None, None).

    Unreadable files (truncated by a crash on a file system without atomic rename, a full disk, ...) are
    skipped with a warning naming them; ``set_aside`` renames them to ``<name>.unreadable`` (kept for
    inspection, no longer counted as the run's newest step)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    for step, path in reversed(list_checkpoints(folder)):
        try:
            ckpt = read_checkpoint(path)
        except UserError as e:
            log(f"warning: skipping unreadable checkpoint ({e}); trying the previous one")
            if set_aside:
                os.replace(path, path + UNREADABLE)
            continue
        if not isinstance(ckpt, dict) or "global_step" not in ckpt:
            log(f"warning: skipping {path}: not a training checkpoint (no global_step)")
            continue
        return path, ckpt
    return None, None
