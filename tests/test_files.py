"""atomic_write: the one helper that writes checkpoints, logs and cache records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omama_core.files import atomic_write


def test_writes_and_replaces_a_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old")
    result = atomic_write(path, lambda temporary: open(temporary, "w").write("new"))
    assert result == path and path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]  # no temporary file left


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("old")

    def half_write(temporary: str) -> None:
        open(temporary, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_write)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_the_temporary_keeps_the_suffix_so_numpy_writes_where_asked(tmp_path):
    """np.savez appends .npz to a name without it: the rename must find the file it wrote."""
    path = tmp_path / "000001.npz"
    atomic_write(path, lambda temporary: np.savez(temporary, a=np.arange(3)))
    with np.load(path) as stored:
        assert stored["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000001.npz"]


def test_the_temporary_is_in_the_same_folder(tmp_path):
    seen = []
    atomic_write(tmp_path / "x.bin", lambda temporary: (seen.append(temporary), open(temporary, "wb").close()))
    assert len(seen) == 1 and Path(seen[0]).parent == tmp_path and Path(seen[0]).name != "x.bin"
