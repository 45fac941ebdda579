"""utils.atomic.atomic_write: the target appears only when the block succeeds."""
import os

import pytest

from utils.atomic import atomic_write


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_write(target, "w") as f:
        f.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"              # old content intact, no truncated file
    assert os.listdir(target.parent) == ["out.json"]   # and no temporary left behind
