"""The one way embbench replaces a file: write beside it, then rename over it.

run.json after every cell, capacity.csv after every variant, the cache's ceilings and reference
embeddings, the ONNX exports: each may be read while it is written (a report of a running run,
another run sharing the cache) or cut short by a kill. Written aside and renamed in the same
folder (atomic on POSIX), a reader sees the old file or the new one, never half of one, and two
writers leave one whole file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temporary file beside `target`, then rename it into place.

    The temporary is named `.{stem}.*.tmp`, so that a caller holding a lock on `target` can
    remove what a killed writer left (onnx_export.remove_stale_temporaries). The file is made
    0644: mkstemp's 0600 would hide a shared cache's entry from other users, and a server's
    workers may run as another user.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(0o644)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())  # the data on disk before the name points at it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(target: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text)

    write_atomically(target, write)
