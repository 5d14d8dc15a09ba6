"""Inference of a segmentation model: foreground masks of a split, and the per-epoch validation predictor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optidel.downstream.splits import SplitArrays
from optidel.log import logger
from optidel.metrics.segmentation import SegmentationScores

__all__ = ["FROZEN_FEATURE_CACHE_BYTES", "predict", "score", "to_input", "validation_predictor"]


def to_input(images: np.ndarray):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


def predict(model: Any, images: np.ndarray, mean, std, batch_size: int):
    """Predicted foreground masks. images: (N, H, W, 3) uint8 -> (N, H, W) bool."""
    import torch

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = (to_input(images[i : i + batch_size]) - m) / s
            out.append(model(x).argmax(dim=1).numpy().astype(bool))
    return np.concatenate(out, axis=0)


FROZEN_FEATURE_CACHE_BYTES = 1 << 30  # probe mode keeps the validation features in memory up to this size


def validation_predictor(
    model: Any,
    images: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    max_bytes: int = FROZEN_FEATURE_CACHE_BYTES,
) -> Callable[[], np.ndarray]:
    """A function that predicts the validation masks with the model's current weights.

    A frozen encoder (probe mode) sees the same validation images every epoch, so its features are computed once
    and only the head runs each epoch; the predictions are the same as :func:`predict`'s, at a fraction of the cost.
    When the features would take more than ``max_bytes`` (or the encoder trains), every call runs the whole model.

    images: (N, H, W, 3) uint8; the function returns (N, H, W) bool.
    """
    import torch

    def full() -> np.ndarray:
        return predict(model, images, mean, std, batch_size)

    if not getattr(model, "freeze_encoder", False) or len(images) == 0:
        return full
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    size = tuple(images.shape[1:3])
    model.eval()
    cached: list[list[Any]] = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            feats = model.features((to_input(images[i : i + batch_size]) - m) / s)
            if i == 0:
                per_image = sum(f.numel() * f.element_size() for f in feats) / feats[0].shape[0]
                if per_image * len(images) > max_bytes:
                    logger.info(
                        "validation features (%.0f MiB) exceed the cache budget; the encoder reruns every epoch",
                        per_image * len(images) / 2**20,
                    )
                    return full
            cached.append(feats)

    def from_cache() -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return np.concatenate([model.decode(f, size).argmax(dim=1).numpy().astype(bool) for f in cached])

    return from_cache


def score(pred: np.ndarray, data: SplitArrays) -> SegmentationScores:
    """The scores of predicted masks ``pred`` ((N, S, S) bool) against a split's masks (inside its valid pixels)."""
    s = SegmentationScores()
    s.update(pred, data.masks, data.valid, data.ids)
    return s
