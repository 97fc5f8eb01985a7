"""Writing files so that a reader never sees half of one: the one atomic-write helper."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(temporary) to write a temporary file in `path`'s folder, then rename it to
    `path` (os.replace: atomic on one file system), so a killed process leaves either the old
    file or the new one. On an error the temporary file is removed and the error re-raised.

    The temporary name keeps `path`'s suffix (writers such as np.savez append ".npz"
    otherwise) and is unique per call (two writers never share one). The folder must exist.
    Example: atomic_write(path, lambda temporary: torch.save(payload, temporary)).
    Returns `path` as a Path.
    """
    path = Path(path)
    temporary = path.with_name(f"{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
