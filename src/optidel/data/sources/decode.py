"""Decode any item a source lists: a locator (``FILE::FORMAT:...``) or a plain file of a medical format.

``optidel.data.image.load_rgb`` / ``load_gray`` call these for everything Pillow is not the reader of, so every
command (pools, datasets, the array cache, select's worker processes) reads the medical formats the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.sources import dicom, nifti, tiff, wsi
from optidel.data.sources.item import SkipFile
from optidel.data.sources.locator import Locator, parse_locator

MEDICAL = "dicom", "nifti", "wsi"


def plain_format(path: Path) -> str | None:
    """``dicom`` / ``nifti`` / ``wsi`` for a plain file of those formats, else None (Pillow / TIFF path)."""
    if nifti.is_nifti(path):
        return "nifti"
    if path.suffix.lower() in wsi.WSI_EXTENSIONS:
        return "wsi"
    if dicom.looks_like_dicom(path):
        return "dicom"
    return None


def _plain_locator(path: Path) -> Locator:
    """A plain medical file read as its first item with default choices."""
    fmt = plain_format(path)
    if fmt == "dicom":
        return Locator(path, "dicom", (("frame", "0"),))
    if fmt == "nifti":
        try:
            shape = nifti.volume_shape(path)
        except Exception as e:  # SkipFile or a nibabel error: named below
            raise ImageDecodeError(path, getattr(e, "reason", str(e))) from e
        if shape[2] > 1 and min(shape[:2]) > 1:
            raise ImageDecodeError(
                path, f"a 3D volume {shape}: give its folder as a pool (each slice becomes an item)"
            )
        return Locator(path, "nifti", (("slice", "0"), ("axis", "2")))
    if fmt == "wsi":
        raise ImageDecodeError(path, "a whole-slide image: give its folder as a pool (it is cut into tiles)")
    raise ImageDecodeError(path, "not a medical image format")


def _check_file(loc: Locator) -> None:
    try:
        size = loc.file.stat().st_size
    except OSError as e:
        raise ImageDecodeError(loc.file, f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise ImageDecodeError(loc.file, "empty file (0 bytes)")


def decode_rgb_with_fraction(path: str | Path) -> tuple[np.ndarray, float]:
    """RGB of an item and its foreground fraction (share of pixels above the window's low end).

    Returns:
        rgb: (H, W, 3) uint8; fraction: float.
    Raises:
        ImageDecodeError: naming the file (and item) and the reason.
    """
    loc = parse_locator(path) or _plain_locator(Path(path))
    _check_file(loc)
    window = loc.get("window", "auto") or "auto"
    try:
        if loc.fmt == "dicom":
            return dicom.decode_frame(loc.file, loc.get_int("frame"), window)
        if loc.fmt == "nifti":
            return nifti.decode_slice(loc.file, loc.get_int("axis", 2), loc.get_int("slice"), window)
        if loc.fmt == "tiff":
            rgb = tiff.load_tiff_rgb(loc.file, loc.get_int("page"))
            return rgb, float(np.count_nonzero(rgb.max(axis=2))) / max(1, rgb.shape[0] * rgb.shape[1])
        if loc.fmt == "wsi":
            rgb = wsi.read_tile(
                loc.file, loc.get_int("level"), loc.get_int("x"), loc.get_int("y"), loc.get_int("size", 512)
            )
            return rgb, 1.0
    except ImageDecodeError as e:
        raise ImageDecodeError(path, e.reason) from e
    raise ImageDecodeError(path, f"unknown source format {loc.fmt!r}")


def decode_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an item (see :func:`decode_rgb_with_fraction`)."""
    return decode_rgb_with_fraction(path)[0]


def decode_labels(path: str | Path) -> np.ndarray:
    """Stored label values of a mask item (DICOM frame, NIfTI label slice, TIFF page): (H, W) int64."""
    loc = parse_locator(path) or _plain_locator(Path(path))
    _check_file(loc)
    try:
        if loc.fmt == "dicom":
            return dicom.decode_labels(loc.file, loc.get_int("frame"))
        if loc.fmt == "nifti":
            return nifti.decode_label_slice(loc.file, loc.get_int("axis", 2), loc.get_int("slice"))
        if loc.fmt == "tiff":
            arr, _ = tiff.read_plane(loc.file, loc.get_int("page"))
            return np.asarray(arr[..., 0] if arr.ndim == 3 else arr, dtype=np.int64)
    except ImageDecodeError as e:
        raise ImageDecodeError(path, e.reason) from e
    raise ImageDecodeError(path, f"{loc.fmt} items cannot be masks")


def provenance(path: str | Path) -> tuple[str | None, str | None]:
    """(item, window) of a pool path for manifests: ``("slice=12,axis=2", "lung")``; (None, None) for plain
    files. ``item`` lists the locator's parameters other than the window, e.g. ``frame=3`` or
    ``level=0,x=1024,y=2048,size=512``."""
    loc = parse_locator(path)
    if loc is None:
        return None, None
    item = ",".join(f"{k}={v}" for k, v in loc.params if k not in ("window", "label"))
    return f"{loc.fmt}:{item}", loc.get("window")


def item_size(path: str | Path) -> tuple[int, int, str]:
    """(width, height, format) of an item from headers only (volumes: the shape; slides: the tile size)."""
    loc = parse_locator(path) or _plain_locator(Path(path))
    _check_file(loc)
    try:
        if loc.fmt == "dicom":
            info = dicom.read_info(loc.file)
            return info.columns, info.rows, "DICOM"
        if loc.fmt == "nifti":
            shape = nifti.volume_shape(loc.file)
            axis = loc.get_int("axis", 2)
            d0, d1 = (d for i, d in enumerate(shape) if i != axis)
            return d0, d1, "NIfTI"  # the slice is shown transposed: rows = the second remaining axis
        if loc.fmt == "tiff":
            _, _, (w, h) = tiff.tiff_info(loc.file)
            return w, h, "TIFF"
        if loc.fmt == "wsi":
            s = loc.get_int("size", 512)
            return s, s, "WSI"
    except SkipFile as e:
        raise ImageDecodeError(path, e.reason) from e
    raise ImageDecodeError(path, f"unknown source format {loc.fmt!r}")
