"""Image-level embeddings for image-level strategies (MedDEL, SemDeDup, prototypes, moderate coresets ...).

Two kinds, chosen by ``image_embedding`` in the config:

- ``mean`` (default): the mean of an image's patch embeddings, L2-normalised (streamed over the memory-mapped patch
  embeddings; no extra model pass). An image without patches (or unreadable) gets a zero row and ``valid = False``.
- ``whole``: the embedder run once per image on a single box covering the whole image (needs an embedder; with
  the proposer's own features use ``mean``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optidel.data.image import ImageDecodeError, load_rgb
from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.metrics.embedding import l2_normalize
from optidel.select.patches.compute import prefetched
from optidel.select.patches.types import ImagePatches, PatchEmbedder
from optidel.select.rank.cluster import iter_chunks


@dataclass
class ImageEmbeddings:
    """One embedding per pool image.

    Attributes:
        embeddings: (n_images, D) float32, unit norm for valid rows, zeros otherwise.
        valid: (n_images,) bool, False for unreadable images and images without patches.
        kind: ``mean`` or ``whole``.
    """

    embeddings: np.ndarray
    valid: np.ndarray
    kind: str


def mean_patch_embeddings(
    image_index: np.ndarray, patch_embeddings: np.ndarray, n_images: int, chunk: int = 65536
) -> ImageEmbeddings:
    """Per-image mean of the patch embeddings, L2-normalised.

    Args:
        image_index: (n_patches,) int, image of each patch (values in ``[0, n_images)``).
        patch_embeddings: (n_patches, D) (array or memmap, read in chunks).
        n_images: number of pool images.
    Returns:
        :class:`ImageEmbeddings` of kind ``mean``.
    """
    image_index = np.asarray(image_index, np.int64)
    dim = patch_embeddings.shape[1]
    sums = np.zeros((n_images, dim), np.float64)
    counts = np.bincount(image_index, minlength=n_images)[:n_images]
    for sl in iter_chunks(image_index.size, chunk):
        idx = image_index[sl]
        x = np.asarray(patch_embeddings[sl], np.float64)
        if idx.size > 1 and np.any(np.diff(idx) < 0):
            np.add.at(sums, idx, x)
        else:  # patch tables are in pool order: one reduceat per chunk
            uniq, starts = np.unique(idx, return_index=True)
            sums[uniq] += np.add.reduceat(x, starts, axis=0)
    valid = counts > 0
    means = np.zeros((n_images, dim), np.float32)
    means[valid] = l2_normalize((sums[valid] / counts[valid, None]).astype(np.float32))
    return ImageEmbeddings(means, valid, "mean")


def whole_image_embeddings(
    pool: Sequence[PoolImage], embedder: PatchEmbedder, workers: int = 1
) -> ImageEmbeddings:
    """The embedder on one full-image box per pool image (unreadable images: zero row, ``valid = False``)."""

    def load(im: PoolImage) -> np.ndarray | None:
        try:
            return load_rgb(im.path)
        except ImageDecodeError as e:
            logger.warning("image embedding: skipping %s (%s)", e.path, e.reason)
            return None

    out = np.zeros((len(pool), embedder.dim), np.float32)
    valid = np.zeros(len(pool), bool)
    for i, img in enumerate(prefetched(load, pool, workers)):
        if img is None:
            continue
        h, w = img.shape[:2]
        nan = np.full(1, np.nan, np.float32)
        box = ImagePatches(np.array([[0, 0, w, h]], np.int32), np.ones(1, np.float32), nan, nan.copy())
        out[i] = l2_normalize(np.asarray(embedder.embed(img, box), np.float32).reshape(1, -1))[0]
        valid[i] = True
    return ImageEmbeddings(out, valid, "whole")
