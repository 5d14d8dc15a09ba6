"""TIFF through tifffile, for what Pillow cannot decode or would decode with a loss.

Pillow stays the fast path for ordinary TIFFs (``optidel.data.image``); this module reads the rest:

- 3 (or more) samples per pixel whose header says greyscale (``MinIsBlack``), as CVC-ClinicDB's original frames are
  stored: the first three samples are read as R, G, B;
- planar configuration ``separate``, 12/16/32-bit integer and float samples (scaled to 8 bits by the high-bit rule
  of ``optidel.data.image``: the image's own min-max by default), ``MinIsWhite`` (inverted), palette images;
- multi-page files and OME-TIFF: the 2D planes of the first series; each plane is an item
  (``FILE::tiff:page=K``) unless ``tiff_pages=first``.

A pyramidal TIFF (several resolution levels) is a whole-slide image and goes to :mod:`optidel.data.sources.wsi`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.sources.scaling import scale_to_uint8

TIFF_EXTENSIONS = (".tif", ".tiff")


def _tifffile():
    import tifffile

    return tifffile


def tiff_info(path: Path) -> tuple[int, int, tuple[int, int]]:
    """(number of 2D planes in the first series, number of pyramid levels, (width, height) of a plane).

    Raises:
        ImageDecodeError: not a TIFF tifffile can read.
    """
    tf = _tifffile()
    try:
        with tf.TiffFile(path) as t:
            s = t.series[0]
            axes, shape = s.axes, s.shape
            n = 1
            for ax, dim in zip(axes, shape, strict=True):
                if ax not in "YXS":
                    n *= int(dim)
            h, w = int(shape[axes.index("Y")]), int(shape[axes.index("X")])
            return n, len(s.levels), (w, h)
    except (tf.TiffFileError, OSError, ValueError, IndexError, KeyError) as e:
        raise ImageDecodeError(path, f"not a readable TIFF ({e})") from e


def read_plane(path: Path, index: int = 0) -> tuple[np.ndarray, int]:
    """The raw plane ``index`` of the first series and its photometric code.

    Returns:
        plane: (H, W) or (H, W, S) in the stored dtype; photometric: the TIFF tag value.
    """
    tf = _tifffile()
    try:
        with tf.TiffFile(path) as t:
            s = t.series[0]
            pages = s.pages
            if len(pages) > 1 and int(np.prod(s.shape)) == len(pages) * int(np.prod(pages[0].shape)):
                # one plane per page (stacks, OME-TIFF planes): read only the page asked for
                if not 0 <= index < len(pages):
                    raise ImageDecodeError(path, f"page {index} does not exist (the file has {len(pages)})")
                page = pages[index]
                arr = page.asarray()
                photometric = int(t.pages[0].photometric)
                if arr.ndim == 3 and int(t.pages[0].planarconfig) == 2:  # separate planes: (S, H, W)
                    arr = np.moveaxis(arr, 0, -1)
                return np.ascontiguousarray(arr), photometric
            axes = s.axes
            arr = s.asarray(level=0)
            photometric = int(t.pages[0].photometric)
    except ImageDecodeError:
        raise
    except (tf.TiffFileError, OSError, ValueError, IndexError, KeyError, RuntimeError) as e:
        kind = (
            "truncated or corrupt data" if "runcat" in str(e) or "EOF" in str(e) else "undecodable TIFF data"
        )
        raise ImageDecodeError(path, f"{kind} ({e})") from e
    # move the sample axis last, flatten every other non-YX axis into planes
    other = [i for i, a in enumerate(axes) if a not in "YXS"]
    order = other + [axes.index("Y"), axes.index("X")] + ([axes.index("S")] if "S" in axes else [])
    arr = np.transpose(arr, order)
    planes = arr.reshape((-1, *arr.shape[len(other) :])) if other else arr[None]
    if not 0 <= index < planes.shape[0]:
        raise ImageDecodeError(path, f"page {index} does not exist (the file has {planes.shape[0]})")
    return np.ascontiguousarray(planes[index]), photometric


def _scale(arr: np.ndarray, high_bit: str) -> np.ndarray:

    return scale_to_uint8(arr, high_bit)  # type: ignore[arg-type]


def plane_to_rgb(arr: np.ndarray, photometric: int, high_bit: str = "minmax") -> np.ndarray:
    """A raw plane to RGB.

    Args:
        arr: (H, W) or (H, W, S).
        photometric: 0 MinIsWhite, 1 MinIsBlack, 2 RGB, 3 palette (already expanded by tifffile), others as RGB.
    Returns:
        (H, W, 3) uint8.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        g = _scale(arr, high_bit)
        if photometric == 0:
            g = 255 - g
        return np.repeat(g[..., None], 3, axis=2)
    if arr.ndim != 3:
        raise ValueError(f"unexpected plane shape {arr.shape}")
    if arr.shape[2] == 2:  # grey + alpha
        g = _scale(arr[..., 0], high_bit)
        return np.repeat(g[..., None], 3, axis=2)
    return np.ascontiguousarray(_scale(arr[..., :3], high_bit))


def plane_to_gray(arr: np.ndarray, photometric: int) -> np.ndarray:
    """A raw plane to one channel (masks): (H, W) uint8; several samples are combined as luminance (ITU-R 601)."""
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = plane_to_rgb(arr, photometric).astype(np.float32)
        return np.rint(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., 0]
    g = _scale(arr, "minmax") if arr.dtype != np.uint8 else arr
    return 255 - g if photometric == 0 else np.ascontiguousarray(g)


def load_tiff_rgb(path: Path, page: int = 0, high_bit: str = "minmax") -> np.ndarray:
    """Decode one plane of a TIFF to (H, W, 3) uint8, or raise :class:`ImageDecodeError`."""
    arr, photometric = read_plane(path, page)
    try:
        return plane_to_rgb(arr, photometric, high_bit)
    except ValueError as e:
        raise ImageDecodeError(path, f"unsupported TIFF layout ({e})") from e


def load_tiff_gray(path: Path, page: int = 0) -> np.ndarray:
    """Decode one plane of a TIFF as a mask: (H, W) uint8."""
    arr, photometric = read_plane(path, page)
    return plane_to_gray(arr, photometric)
