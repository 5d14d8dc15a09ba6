"""Errors of the data layer: each is an :class:`~optidel.runtime.errors.OptidelError` (one line naming the file and
the problem) and keeps the builtin base it always had, so existing ``except ValueError`` handlers still catch it.

They live in one module so that the readers (``image``, ``sources``), the pools and the fetch/convert/archive steps
can share them without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from optidel.runtime.errors import OptidelError


class ImageDecodeError(OptidelError, ValueError):
    """An image file (or an item inside a file) that cannot be used; ``path`` and ``reason`` say which and why."""

    exit_code = 2

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PoolError(OptidelError, ValueError):
    """A pool source that cannot be used (missing folder, unknown split, no images, an unfinished selection)."""

    exit_code = 2


class MaskError(OptidelError, ValueError):
    """Masks that cannot be used as they are (all empty in a split, a label value that no mask holds)."""

    exit_code = 2


class FetchError(OptidelError, RuntimeError):
    """A download, checksum, archive or target-folder problem; the message names the file and the problem."""


class UnsafeArchiveError(FetchError):
    """An archive entry that would write outside the target, is a link or a device file, or is too large."""


class ManualDownloadRequired(FetchError):
    """The dataset has no direct public download; the message says where to get it and how to pass it in."""

    exit_code = 2


class ConversionError(OptidelError, ValueError):
    """The extracted archive (or folder) does not have the layout a converter expects."""
