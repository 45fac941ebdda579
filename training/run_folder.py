"""A stage's result folder belongs to one run at a time: a new run never mixes with or deletes an earlier one.

``check`` (every process, reads only, before anything is loaded): a folder that already holds a run's
checkpoints is refused unless ``--resume`` (continue it) or ``--overwrite`` (start it over) says what to do, and
a result root that cannot be written is refused before any work. ``claim`` (rank 0, after every input has been
checked): creates the folder, takes an exclusive lock (a second run in the same folder at the same time is an
error), removes the ``.tmp_*`` files a kill during a save left behind, and with ``--overwrite`` removes the old
run's files. So a run that stops on a bad input leaves the folder exactly as it was.
"""
import os
import shutil

from training.checkpoints import FINAL, UNREADABLE, list_checkpoints
from utils.atomic import TMP_PREFIX
from utils.errors import UserError

# Lazy import below: fcntl is POSIX-only; it is needed only to lock a result folder.

LOCK = ".lock"
# what a run writes (and --overwrite removes); anything else in the folder is left alone
RUN_FILES = ("config.json", FINAL)
RUN_DIRS = ("tensorboard", "wandb")


def earlier_run(folder):
    """Description of the run whose checkpoints ``folder`` holds ("" when there is none)."""
    steps = [s for s, _ in list_checkpoints(folder)]
    final = os.path.isfile(os.path.join(folder, FINAL))
    if not steps and not final:
        return ""
    parts = [f"checkpoints up to step {steps[-1]}"] if steps else []
    return ", ".join(parts + ([FINAL] if final else []))


def check(folder, resume, overwrite):
    if resume and overwrite:
        raise UserError("--resume continues the run in the result folder and --overwrite starts it over: pass one")
    ancestor = os.path.abspath(folder)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"cannot create the result folder {folder}: {ancestor} is a file (check --result_root "
                        "and --name)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the result folder {folder}: no write permission in {ancestor} (choose "
                        "another --result_root)")
    if ancestor == os.path.abspath(folder) and not resume and not overwrite:
        found = earlier_run(folder)
        if found:
            raise UserError(f"{folder} already holds a training run ({found}): pass --resume to continue it or "
                            "--overwrite to start it over (or choose another --name)")


class Claim:
    """The open lock on a result folder (released by close() or when the process ends)."""

    def __init__(self, folder, overwrite, log):
        try:
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write the result folder {folder}: {e.strerror}") from None
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise UserError(f"another training run is using {folder} right now: wait for it to finish or choose "
                            "another --name") from None
        for name in os.listdir(folder):                  # partial files of a save that was killed
            if name.startswith(TMP_PREFIX):
                os.remove(os.path.join(folder, name))
                log(f"removed {name}, left by an interrupted save")
        if overwrite:
            removed = [p for _, p in list_checkpoints(folder)]
            removed += [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(UNREADABLE)]
            removed += [p for p in (os.path.join(folder, n) for n in RUN_FILES) if os.path.isfile(p)]
            removed += [p for p in (os.path.join(folder, n) for n in RUN_DIRS) if os.path.isdir(p)]
            if removed:
                log(f"--overwrite: removing the earlier run in {folder} ({len(removed)} files/folders)")
            for p in removed:
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
