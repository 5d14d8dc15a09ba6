"""Plain multi-scale crops: the "does SAM matter?" ablation of OptiDEL's patch extraction.

Squares of side ``scale x short side`` (default 1/2 and 1/4) at 50% overlap, covering the whole image (the last row
and column of each scale are aligned with the far edges). With ``jitter`` > 0 every box is shifted by a random offset
of up to ``jitter x stride`` (clipped to the image), from a generator seeded by ``seed`` and the image's pixels, so an
image gets the same crops in every run. No SAM, no scores (``pred_iou`` and ``stability`` are NaN), no embeddings:
use an embedder (``optidel.select.patches.embedders``; by default LiteMedSAM features pooled in each box).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from optidel.select.patches.types import ImagePatches


class GridProposer:
    """Multi-scale sliding-window crops.

    Args:
        scales: box sides as fractions of the image's short side, each in (0, 1].
        overlap: fraction of a side shared by neighbouring boxes, in [0, 1).
        jitter: random shift of each box, as a fraction of the stride (0: none).
        seed: seed of the jitter (combined with a checksum of the image's pixels).
        max_patches: keep at most this many boxes (largest scale first; None: all).
        device: accepted for a uniform factory interface; unused (no model).

    Examples:
        >>> patches = GridProposer(scales=(0.5,)).process(np.zeros((100, 200, 3), np.uint8))
        >>> patches.boxes.tolist()
        [[0, 0, 50, 50], [25, 0, 75, 50], ...]
    """

    name = "grid"
    embed_dim: int | None = None

    def __init__(
        self,
        scales: tuple[float, ...] = (0.5, 0.25),
        overlap: float = 0.5,
        jitter: float = 0.0,
        seed: int = 0,
        max_patches: int | None = None,
        device: str = "cpu",
    ) -> None:
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be fractions of the short side in (0, 1], got {scales}")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        if max_patches is not None and max_patches < 1:
            raise ValueError(f"max_patches must be >= 1 or None, got {max_patches}")
        self.scales = tuple(float(s) for s in scales)
        self.overlap = float(overlap)
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.max_patches = max_patches

    def cache_key(self) -> dict[str, Any]:
        return {
            "proposer": "grid",
            "version": 1,
            "scales": list(self.scales),
            "overlap": self.overlap,
            "jitter": self.jitter,
            "seed": self.seed,
            "max_patches": self.max_patches,
        }

    def process(self, img: np.ndarray) -> ImagePatches:
        """img: (H, W, 3) uint8 -> the grid boxes (``mask_area`` = box area / image area; scores NaN)."""
        from optidel.select.patches.box_prompts import grid_boxes

        h, w = int(img.shape[0]), int(img.shape[1])
        short = min(h, w)
        sizes = tuple(max(1, round(s * short)) for s in self.scales)
        boxes = grid_boxes((h, w), sizes, self.overlap).astype(np.float64)
        if self.jitter > 0 and len(boxes):
            rng = np.random.default_rng([self.seed, zlib.crc32(np.ascontiguousarray(img).tobytes())])
            side = boxes[:, 2:] - boxes[:, :2]  # (K, 2) width, height
            shift = rng.uniform(-1, 1, side.shape) * self.jitter * side * (1 - self.overlap)
            lim = np.array([w, h], np.float64)
            start = np.clip(boxes[:, :2] + shift, 0, lim - side)
            boxes = np.concatenate([start, start + side], axis=1)
        if self.max_patches is not None:
            boxes = boxes[: self.max_patches]
        b = np.round(boxes).astype(np.int32)
        area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / float(h * w)).astype(np.float32)
        nan = np.full(len(b), np.nan, np.float32)
        return ImagePatches(boxes=b, mask_area=area, pred_iou=nan, stability=nan.copy(), embeddings=None)
