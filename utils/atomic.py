"""Atomic file writes: the one place that writes "temporary file next to the target, then rename".

A reader never sees a half-written file under the final name, and a process killed mid-write leaves at most a
hidden ``.tmp_<name>.*`` file behind (named after its target, so the owner of a folder can remove them), never a
truncated output.
"""
import contextlib
import os
import tempfile

TMP_PREFIX = ".tmp_"


@contextlib.contextmanager
def atomic_write(path, mode="wb", fsync=False, **open_kwargs):
    """``with atomic_write(p, "w") as f: f.write(...)`` -> ``p`` appears only if the block succeeds."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}.", suffix=os.path.splitext(path)[1],
                               dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def remove_stale_temps(path):
    """Remove the temporary files that killed atomic writes of ``path`` left next to it; returns their names."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f"{TMP_PREFIX}{os.path.basename(path)}."
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
                    removed.append(name)
    return removed
