"""``semdedup``: SemDeDup, semantic de-duplication, its threshold searched to hit the ratio.

- [0] Abbas et al., "SemDeDup: Data-efficient learning at web-scale through semantic deduplication", 2023,
  https://arxiv.org/abs/2303.09540

k-means over image embeddings; inside each cluster, of every pair with cosine similarity above 1 - eps only the image
least similar to the cluster centroid is kept (the paper's choice: keep the less prototypical one). The threshold is
bisected so that at least round(ratio x pool) images survive; the surplus is trimmed, most prototypical first.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy
from optidel.select.strategies.image_clusters import image_kmeans, search_threshold, within_cluster_dedup


@register_strategy
class SemDeDupStrategy(ImageStrategy):
    name: ClassVar[str] = "semdedup"
    description: ClassVar[str] = (
        "baseline: SemDeDup (drop near-duplicates in each cluster; threshold searched)"
    )
    needs_patches: ClassVar[bool] = True

    def select(self, ctx: SelectionContext) -> SelectionResult:
        idx, km = image_kmeans(ctx)
        emb = np.asarray(ctx.image_embeddings().embeddings[idx], np.float32)
        n = min(ctx.n_images, idx.size)
        key = -km.d1  # farthest from the centroid (least prototypical) survives

        def kept_at(t: float) -> np.ndarray:
            return within_cluster_dedup(emb, km.cluster, key, t)

        thr, kept = search_threshold(kept_at, n)
        chosen = np.flatnonzero(kept)
        chosen = chosen[np.argsort(-km.d1[chosen], kind="stable")][:n]
        return SelectionResult(
            "image",
            idx[chosen],
            ranking="least prototypical first",
            scores={"centre_distance": km.d1[chosen]},
            info={"similarity_threshold": round(float(thr), 4), "k": km.k},
        )
