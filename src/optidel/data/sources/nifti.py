"""NIfTI (and MGH) volumes through nibabel: 2D slices along one axis, windowed per volume.

- **Axis** (option ``slice_axis``): ``auto`` is the acquisition's slice axis: the header's ``slice_dim`` when set,
  else the voxel axis whose spacing is clearly (> 1.2x) the largest (thick slices), else the third voxel axis;
  ``axial`` / ``coronal`` / ``sagittal`` pick the voxel axis the affine points along S-I / A-P / L-R; ``0``-``2``
  name a voxel axis.
- **Window** is computed over the whole volume (``auto`` = percentiles 0.5-99.5), so every slice of a volume shares
  one intensity scale; CT presets assume Hounsfield units (nibabel applies ``scl_slope`` / ``scl_inter``).
- A 4D volume contributes its first 3D volume. A slice is shown transposed and flipped (``flipud(slice.T)``), as a
  viewer shows a RAS-ordered volume.

A volume is decoded once per process and its windowed 8-bit copy kept in a small LRU cache (512 MiB), so a pool's
slices, read in order, cost one decode per volume, while memory holds at most a few volumes, never the pool.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.sources.item import SkipFile
from optidel.data.sources.window import apply_window, parse_window

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
CACHE_BYTES = 512 * 2**20
AXIS_NAMES = {"sagittal": "LR", "coronal": "AP", "axial": "SI"}

_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES)


def stem(path: Path) -> str:
    """File name without its (double) extension: ``ct.nii.gz`` -> ``ct``."""
    name = path.name
    for s in NIFTI_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return path.stem


def _errors():
    import nibabel as nib

    return (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError, MemoryError)


def _load(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except _errors() as e:
        raise SkipFile(path, f"unreadable volume header ({str(e).splitlines()[0] if str(e) else e!r})") from e


def volume_shape(path: Path) -> tuple[int, int, int]:
    """(X, Y, Z) of the first 3D volume; raises :class:`SkipFile` for unreadable headers."""
    shape = tuple(int(s) for s in _load(path).shape)
    if len(shape) < 2:
        raise SkipFile(path, f"not an image volume (shape {shape})")
    return (*shape[:3], *(1,) * (3 - len(shape[:3])))  # type: ignore[return-value]


def check_complete(path: Path) -> None:
    """Refuse a NIfTI file whose data is shorter than its header says (a cut download), without decoding it.

    Uncompressed: the file size against ``vox_offset + voxels x itemsize``; ``.gz``: the gzip trailer's
    uncompressed size (ISIZE, the last 4 bytes) against the same number -- a cut stream ends in data, not in its
    trailer. Other formats are checked when decoded.

    Raises:
        SkipFile: "truncated or corrupt volume (...)".
    """
    import nibabel as nib

    img = _load(path)
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return
    offset = getattr(
        img.dataobj, "offset", None
    )  # where the reader starts (the header may say 0: "right after me")
    if offset is None:
        return
    expected = int(offset) + int(np.prod(img.shape)) * img.header.get_data_dtype().itemsize
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as f:
            f.seek(-4, 2)
            isize = int.from_bytes(f.read(4), "little")
        if isize != expected % 2**32:
            raise SkipFile(
                path, f"truncated or corrupt volume (the gzip stream does not hold the {expected} bytes)"
            )
    elif path.stat().st_size < expected:
        raise SkipFile(path, f"truncated volume ({path.stat().st_size} bytes, the header needs {expected})")


def choose_axis(path: Path, option: str = "auto") -> int:
    """The voxel axis to slice along (see module docstring)."""
    import nibabel as nib

    if option in ("0", "1", "2"):
        return int(option)
    img = _load(path)
    if option in AXIS_NAMES:
        codes = nib.aff2axcodes(img.affine)
        for i, c in enumerate(codes[:3]):
            if c in AXIS_NAMES[option]:
                return i
        raise SkipFile(path, f"the affine has no {option} axis (orientation {''.join(codes)})")
    try:
        slice_dim = img.header.get_dim_info()[2]
    except (AttributeError, TypeError):
        slice_dim = None
    if slice_dim is not None and 0 <= int(slice_dim) < 3:
        return int(slice_dim)
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * 3
    zooms = zooms[:3]
    k = int(np.argmax(zooms))
    others = [z for i, z in enumerate(zooms) if i != k]
    if zooms[k] > 1.2 * max(others):
        return k
    return 2


def _volume(path: Path, kind: str, window: str, axis: int) -> np.ndarray:
    """The whole first 3D volume, windowed to uint8 (``kind="image"``) or as int64 labels (``kind="labels"``),
    with the slicing ``axis`` moved first and contiguous (a slice is then one contiguous block)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, kind, window, axis)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        img = _load(path)
        try:
            data = np.asanyarray(img.dataobj)
        except _errors() as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ImageDecodeError(path, f"truncated or corrupt volume ({msg})") from e
        while data.ndim > 3:
            data = data[..., 0]
        while data.ndim < 3:
            data = data[..., None]
        if kind == "labels":
            vol = np.rint(np.asarray(data, dtype=np.float64)).astype(np.int64)
        else:
            vol = apply_window(np.asarray(data, dtype=np.float32), parse_window(window))
        if not 0 <= axis < 3:
            raise ImageDecodeError(path, f"axis {axis} does not exist (a 3D volume has axes 0-2)")
        vol = np.ascontiguousarray(np.moveaxis(vol, axis, 0))
        _cache[key] = vol
        while sum(v.nbytes for v in _cache.values()) > CACHE_BYTES and len(_cache) > 1:
            _cache.popitem(last=False)
        return vol


def _take(vol: np.ndarray, axis: int, index: int, path: Path) -> np.ndarray:
    """Slice ``index`` of a volume whose slicing axis is first (see :func:`_volume`), shown as a viewer does."""
    if not 0 <= index < vol.shape[0]:
        raise ImageDecodeError(
            path, f"slice {index} along axis {axis} does not exist ({vol.shape[0]} slices)"
        )
    return np.ascontiguousarray(np.flipud(vol[index].T))


def decode_slice(path: Path, axis: int, index: int, window: str = "auto") -> tuple[np.ndarray, float]:
    """One slice as RGB and its foreground fraction.

    Returns:
        rgb: (H, W, 3) uint8; fraction: share of pixels above the window's low end.
    """
    try:
        vol = _volume(path, "image", window, axis)
    except SkipFile as e:
        raise ImageDecodeError(path, e.reason) from e
    grey = _take(vol, axis, index, path)
    return np.repeat(grey[..., None], 3, axis=2), float(np.count_nonzero(grey)) / max(1, grey.size)


def decode_label_slice(path: Path, axis: int, index: int) -> np.ndarray:
    """One slice of a label volume: (H, W) int64."""
    try:
        vol = _volume(path, "labels", "none", axis)
    except SkipFile as e:
        raise ImageDecodeError(path, e.reason) from e
    return _take(vol, axis, index, path)


def slice_fractions(path: Path, axis: int, window: str) -> np.ndarray:
    """Foreground fraction of every slice along ``axis`` (for ``drop_empty``): (n_slices,) float."""
    vol = _volume(path, "image", window, axis)
    flat = vol.reshape(vol.shape[0], -1)
    return np.count_nonzero(flat, axis=1) / max(1, flat.shape[1])
