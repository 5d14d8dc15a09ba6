"""The contract between patch proposers / embedders and the selection pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa


@dataclass
class ImagePatches:
    """Patches proposed in one image (P patches; P may be 0).

    Attributes:
        boxes: (P, 4) int32 ``x0, y0, x1, y1`` in the original image's pixels (margin included, clipped, x1/y1 exclusive).
        mask_area: (P,) float32, mask pixels / image pixels (for grid crops: box area / image area).
        pred_iou: (P,) float32, SAM's predicted IoU (NaN when not from SAM).
        stability: (P,) float32, SAM's stability score (NaN when not from SAM).
        embeddings: (P, D) float32 when the proposer embeds as it goes (LiteMedSAM features pooled in each mask), else None.
    """

    boxes: np.ndarray
    mask_area: np.ndarray
    pred_iou: np.ndarray
    stability: np.ndarray
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty(dim: int | None = None) -> ImagePatches:
        z = np.zeros(0, np.float32)
        emb = None if dim is None else np.zeros((0, dim), np.float32)
        return ImagePatches(np.zeros((0, 4), np.int32), z, z.copy(), z.copy(), emb)


class PatchProposer(Protocol):
    """Proposes lesion-like patches in an image (``sam``, ``sam-checkpoint``, ``grid``)."""

    name: str
    embed_dim: int | None  # D when process() also returns embeddings, else None

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes the output (used to key the on-disk cache)."""
        ...

    def process(self, img: np.ndarray) -> ImagePatches:
        """img: (H, W, 3) uint8 -> the image's patches."""
        ...


class PatchEmbedder(Protocol):
    """Embeds patch crops (used when the proposer does not embed, or to override its features)."""

    name: str
    dim: int

    def cache_key(self) -> dict[str, Any]: ...

    def embed(self, img: np.ndarray, patches: ImagePatches) -> np.ndarray:
        """img: (H, W, 3) uint8, patches of it -> (P, D) float32 embeddings."""
        ...


@dataclass(frozen=True)
class ReusedImage:
    """One pool image's patches taken from an earlier store.

    Attributes:
        table: its patch rows (``store.PATCH_SCHEMA``), already renamed for the new pool (index, source, id, uid, path).
        emb: (n patches, D) float32.
        error: why the image was unreadable (then ``table`` has no rows), or None.
        store: the store it came from (its folder name).
    """

    table: pa.Table
    emb: np.ndarray
    error: str | None
    store: str
