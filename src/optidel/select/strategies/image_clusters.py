"""Shared machinery of the image-level coreset baselines: k-means over image embeddings, within-cluster
near-duplicate removal, and a threshold search that hits the wanted ratio."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optidel.select.config import default_k
from optidel.select.rank.cluster import KMeansResult, run_kmeans
from optidel.select.strategies.base import SelectionContext


def image_kmeans(ctx: SelectionContext) -> tuple[np.ndarray, KMeansResult]:
    """k-means (faiss, k-means++ init, cosine) over the valid pool images' embeddings.

    Returns:
        (valid image indices (m,), clusters of those m images). k = ``image_k`` or the default for m points.
    """
    ie = ctx.image_embeddings()
    idx = np.flatnonzero(ie.valid)
    if idx.size == 0:
        raise ValueError("no pool image has an embedding (no readable image with patches)")
    emb = np.asarray(ie.embeddings[idx], np.float32)
    k = ctx.cfg.cluster.image_k or default_k(idx.size)
    k = max(1, min(k, idx.size))
    km = run_kmeans(
        emb, k, "cosine", ctx.cfg.cluster.kmeans_iters, ctx.cfg.seed, ctx.cfg.cluster.kmeans_init_sample
    )
    return idx, km


def within_cluster_dedup(
    emb: np.ndarray, cluster: np.ndarray, order_key: np.ndarray, threshold: float
) -> np.ndarray:
    """Greedy near-duplicate removal inside each cluster.

    Members are visited in ascending ``order_key``; a member is kept unless its cosine similarity to a kept member of
    the same cluster exceeds ``threshold``. So of a duplicate pair, the one with the smaller key survives.

    Args:
        emb: (n, D) unit-norm embeddings; cluster: (n,) cluster ids; order_key: (n,) float.
    Returns:
        (n,) bool, True = kept.
    """
    keep = np.zeros(cluster.shape[0], bool)
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        members = members[np.argsort(order_key[members], kind="stable")]
        sims = emb[members] @ emb[members].T
        kept_local: list[int] = []
        for j in range(members.size):
            if not kept_local or sims[j, kept_local].max() <= threshold:
                kept_local.append(j)
        keep[members[kept_local]] = True
    return keep


def search_threshold(
    kept_at: Callable[[float], np.ndarray], n_wanted: int, lo: float = -1.0, hi: float = 1.0, iters: int = 30
) -> tuple[float, np.ndarray]:
    """Bisect the similarity threshold so that at least ``n_wanted`` items are kept, with as few extra as possible.

    ``kept_at(t)`` returns the kept mask at threshold t; more is kept as t grows (t = 1 keeps every non-identical
    item). Returns (threshold, kept mask at it).
    """
    best_t, best = hi, kept_at(hi)
    if best.sum() < n_wanted:
        return best_t, best
    for _ in range(iters):
        mid = (lo + hi) / 2
        kept = kept_at(mid)
        if kept.sum() >= n_wanted:
            hi, best_t, best = mid, mid, kept
            if kept.sum() == n_wanted:
                break
        else:
            lo = mid
    return best_t, best
