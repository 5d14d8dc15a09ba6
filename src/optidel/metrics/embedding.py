"""Embedding-row helpers shared by the selection (k-means, image embeddings, report) and `optidel vinfo`."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of x: (n, D) scaled to unit L2 norm (zero rows stay zero); float32, a new array."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)
