"""Scaling of any numeric pixel array to uint8 (the high-bit rule of :mod:`optidel.data.image`).

Shared by the Pillow path (``data/image.py``) and the tifffile/DICOM/NIfTI readers in ``data/sources``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

HighBit = Literal["minmax", "full"]


def scale_to_uint8(arr: np.ndarray, high_bit: HighBit = "minmax") -> np.ndarray:
    """Scale any numeric array to uint8 by the high-bit rule (module docstring); the container's bits come from
    the dtype (``full`` scales unsigned 16-bit by ``v / 257``)."""
    bits = 8 * arr.dtype.itemsize if np.issubdtype(arr.dtype, np.integer) else 32
    return _to_uint8(arr, high_bit, bits)


def _to_uint8(arr: np.ndarray, high_bit: HighBit, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if high_bit == "full" and np.issubdtype(arr.dtype, np.integer):
        scaled = a / float(2**bits - 1) * 255.0
    else:
        finite = np.isfinite(a)
        if not finite.any():
            return np.zeros(arr.shape, np.uint8)
        lo, hi = float(a[finite].min()), float(a[finite].max())
        scaled = np.zeros_like(a) if hi <= lo else (np.where(finite, a, lo) - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


__all__ = ["HighBit", "scale_to_uint8", "_to_uint8"]
