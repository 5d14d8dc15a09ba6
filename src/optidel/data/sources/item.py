"""What a source yields: 2D items with a stable id and provenance, and the files it skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SkipFile(Exception):
    """A file a source cannot use; ``reason`` says why. Listing collects these (``data info`` / ``verify`` /
    ``select`` name them); they are never raised to the user."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class SourceItem:
    """One 2D item of a pool folder.

    Attributes:
        id: stable id inside the folder: the file's relative path without extension for a one-item file (as for
            ordinary images), plus ``/frame_0003``, ``/slice_012``, ``/page_0002`` or ``/L0_x001024_y002048`` for
            items inside a file, and ``<folder>/slice_0005`` for a DICOM series.
        path: the file, or a locator ``FILE::FORMAT:...`` (``optidel.data.sources.locator``) naming the item.
        fmt: ``image`` (Pillow or the TIFF fallback), ``tiff``, ``dicom``, ``nifti`` or ``wsi``.
    """

    id: str
    path: Path
    fmt: str


@dataclass(frozen=True)
class Skipped:
    """A file (or link) left out of a listing, and why."""

    path: Path
    reason: str
    fmt: str = "other"
