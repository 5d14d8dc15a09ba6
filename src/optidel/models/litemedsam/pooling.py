"""Pooling the LiteMedSAM image embedding inside masks and boxes (patch embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from optidel.models.litemedsam.preprocess import FEATURE_SIZE, INPUT_SIZE, STRIDE

if TYPE_CHECKING:
    import torch


def mask_weights(masks: torch.Tensor) -> torch.Tensor:
    """Binary masks in the 256 frame -> the fraction of each embedding cell they cover.

    Args:
        masks: (P, h, w) bool with h, w <= 256 (the top-left part of the frame; the rest counts as outside).

    Returns:
        (P, 64, 64) float32 weights in [0, 1].
    """
    import torch.nn.functional as F

    p, h, w = masks.shape
    m = F.pad(masks.float(), (0, INPUT_SIZE - w, 0, INPUT_SIZE - h))
    return F.avg_pool2d(m[:, None], STRIDE)[:, 0]


def box_weights(boxes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Boxes in the 256 frame -> the fraction of each embedding cell they cover (exact, separable).

    Args:
        boxes: (P, 4) float ``x0, y0, x1, y1`` (x1/y1 exclusive) in 256-frame pixels.

    Returns:
        (P, 64, 64) float32 weights in [0, 1].
    """
    import torch

    b = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
    lo = torch.arange(FEATURE_SIZE, dtype=torch.float32) * STRIDE
    hi = lo + STRIDE

    def cover(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (P,) x (P,) -> (P, 64)
        return (torch.minimum(z[:, None], hi) - torch.maximum(a[:, None], lo)).clamp(0, STRIDE) / STRIDE

    wx = cover(b[:, 0], b[:, 2])
    wy = cover(b[:, 1], b[:, 3])
    return wy[:, :, None] * wx[:, None, :]


def pool_features(features: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """Weighted average of embedding cells, L2-normalised.

    A region with zero total weight (cannot happen for non-empty masks and boxes) gets the mean of the whole
    embedding, so no row is ever a zero vector.

    Args:
        features: (C, 64, 64) image embedding.
        weights: (P, 64, 64) non-negative cell weights.

    Returns:
        (P, C) float32, unit L2 norm.
    """
    import torch

    if weights.shape[0] == 0:
        return np.zeros((0, features.shape[0]), np.float32)
    w = weights.flatten(1).to(features.device, features.dtype)
    empty = w.sum(1) <= 0
    if bool(empty.any()):
        w = w.clone()
        w[empty] = 1.0  # a degenerate region: the whole embedding (documented fallback)
    f = features.reshape(features.shape[0], -1)
    pooled = (w @ f.t()) / w.sum(1, keepdim=True)
    pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.float().cpu().numpy()
