"""Greedy top-N selection along a ranking, with an optional per-image cap and near-duplicate removal.

The paper keeps the "Top-(N) hardest key patches" with N = M x (images of the compact set), M = 4 patches per 2x2
mosaic. :func:`greedy_select` walks the ranking (hardest first for OptiDEL) and accepts a candidate unless

- its source image already has ``max_per_image`` accepted patches, or
- its cosine similarity to an already accepted (so harder) patch exceeds ``dedup_threshold``;

a rejected candidate is replaced by the next one in the ranking, so the result still holds N patches when the pool
allows. Similarities are computed block by block (faiss inner product against the accepted set, a dense matrix
inside the block), so the cost grows with N x block, not with the pool.
"""

from __future__ import annotations

import numpy as np

from optidel.log import logger
from optidel.select.rank.cluster import FaissThreads, faiss_threads, import_faiss

DEDUP_BLOCK = 2048


def greedy_select(
    order: np.ndarray,
    n: int,
    image_index: np.ndarray | None = None,
    max_per_image: int | None = None,
    embeddings: np.ndarray | None = None,
    dedup_threshold: float | None = None,
    block: int = DEDUP_BLOCK,
) -> np.ndarray:
    """The first ``n`` acceptable rows along ``order``.

    Args:
        order: (m,) int row indices, best candidate first (e.g. hardest first).
        n: how many to keep.
        image_index: (n_rows,) int, source image of each row (needed with ``max_per_image``).
        max_per_image: cap of accepted rows per source image, or None.
        embeddings: (n_rows, D) (array or memmap; only candidate rows are read), needed with ``dedup_threshold``.
        dedup_threshold: reject a row whose cosine similarity to an accepted row is above this, or None.
    Returns:
        (k,) int64 accepted rows in ranking order, k = min(n, acceptable rows).
    """
    order = np.asarray(order, dtype=np.int64)
    if n <= 0:
        return np.zeros(0, np.int64)
    use_cap = max_per_image is not None
    use_dedup = dedup_threshold is not None
    if use_cap and image_index is None:
        raise ValueError("max_per_image needs image_index")
    if use_dedup and embeddings is None:
        raise ValueError("dedup_threshold needs embeddings")
    if not use_cap and not use_dedup:
        return order[:n].copy()
    if not use_dedup:
        counts: dict[int, int] = {}
        out: list[int] = []
        for r in order.tolist():
            img = int(image_index[r])  # type: ignore[index]
            c = counts.get(img, 0)
            if c >= max_per_image:  # type: ignore[operator]
                continue
            counts[img] = c + 1
            out.append(r)
            if len(out) == n:
                break
        return np.asarray(out, np.int64)
    return _greedy_dedup(order, n, image_index, max_per_image, embeddings, float(dedup_threshold), block)  # type: ignore[arg-type]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.float32)


def _greedy_dedup(
    order: np.ndarray,
    n: int,
    image_index: np.ndarray | None,
    max_per_image: int | None,
    embeddings: np.ndarray,
    thr: float,
    block: int,
) -> np.ndarray:
    faiss = import_faiss()

    dim = embeddings.shape[1]
    index = faiss.IndexFlatIP(dim)
    counts: dict[int, int] = {}
    out: list[int] = []
    n_dup = 0
    pos = 0
    while len(out) < n and pos < order.size:
        need = n - len(out)
        size = int(min(block, max(64, 2 * need)))
        cand = order[pos : pos + size]
        pos += cand.size
        # rows read in sorted order (cheap on a memmap), then put back in ranking order
        srt = np.argsort(cand, kind="stable")
        x = np.empty((cand.size, dim), np.float32)
        x[srt] = _unit(embeddings[cand[srt]])
        if index.ntotal:
            with FaissThreads(faiss_threads(float(cand.size) * index.ntotal * dim)):
                prior = index.search(x, 1)[0][:, 0]
        else:
            prior = np.full(cand.size, -np.inf, np.float32)
        sims = x @ x.T
        accepted_local: list[int] = []
        for i, r in enumerate(cand.tolist()):
            if max_per_image is not None:
                img = int(image_index[r])  # type: ignore[index]
                if counts.get(img, 0) >= max_per_image:
                    continue
            if prior[i] > thr or (accepted_local and sims[i, accepted_local].max() > thr):
                n_dup += 1
                continue
            accepted_local.append(i)
            out.append(r)
            if max_per_image is not None:
                counts[img] = counts.get(img, 0) + 1
            if len(out) == n:
                break
        if accepted_local:
            index.add(x[accepted_local])
    logger.info("dedup (cosine > %.3f): %d near-duplicates skipped, %d kept", thr, n_dup, len(out))
    return np.asarray(out, np.int64)
