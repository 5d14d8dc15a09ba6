"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Every writer goes to a temporary file in the same folder, flushes and fsyncs it, then ``os.replace``-s it into place.
An OS error on the way (a full disk, a read-only folder) removes the temporary file, leaves the previous ``path``
untouched and is raised as a one-line :class:`~optidel.runtime.errors.RunFileError` naming ``path`` (and, for a full
disk, the free space), which is still an ``OSError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from optidel.runtime.errors import OptidelError, RunFileError, os_errors


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only if the block succeeds.

    Raises:
        RunFileError: an OS error while creating, writing or renaming (``path`` keeps its previous content).
    """
    path = Path(path)
    with os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OptidelError):
            # name the file being written (a write error has no file name, a failed rename names the temporary)
            raise RunFileError(OSError(e.errno, e.strerror or str(e)), path) from e
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file (load it back with ``weights_only=True``)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def atomic_save_npy(path: str | Path, array: Any) -> None:
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.save(f, array)
