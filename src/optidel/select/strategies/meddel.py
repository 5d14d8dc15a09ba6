"""``meddel``: MedDEL's image-level selection, its duplicate threshold searched to hit the ratio.

- [0] MedDEL: "Data-effective learning for medical image segmentation" (ACM MM 2024), https://arxiv.org/abs/2401.17542

Embeddings -> k-means; inside each cluster, images farther than ``meddel_eps`` (cosine distance) from the centre are
outliers and dropped; of every pair with cosine similarity above eta only one is kept. The paper's prose keeps the
one nearer the centre (``meddel_keep=nearer``, the default); its pseudocode deletes the nearer one
(``meddel_keep=farther``). eta is bisected so that at least round(ratio x pool) images survive; any surplus is trimmed
by dropping the images farthest from their centre. If outlier removal alone leaves too few images, outliers are
added back, nearest first (logged).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.log import logger
from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy
from optidel.select.strategies.image_clusters import image_kmeans, search_threshold, within_cluster_dedup


@register_strategy
class MedDELStrategy(ImageStrategy):
    name: ClassVar[str] = "meddel"
    description: ClassVar[str] = (
        "baseline: MedDEL (k-means, drop outliers and near-duplicates; threshold searched)"
    )
    needs_patches: ClassVar[bool] = True

    def select(self, ctx: SelectionContext) -> SelectionResult:
        idx, km = image_kmeans(ctx)
        emb = np.asarray(ctx.image_embeddings().embeddings[idx], np.float32)
        n = min(ctx.n_images, idx.size)
        inlier = km.d1 <= ctx.cfg.scoring.meddel_eps
        if inlier.sum() < n:
            extra = np.argsort(np.where(inlier, np.inf, km.d1), kind="stable")[: n - inlier.sum()]
            logger.warning(
                "meddel: eps %.3g leaves %d images < %d wanted; keeping %d nearest outliers",
                ctx.cfg.scoring.meddel_eps,
                inlier.sum(),
                n,
                extra.size,
            )
            inlier[extra] = True
        cand = np.flatnonzero(inlier)
        key = km.d1[cand] if ctx.cfg.scoring.meddel_keep == "nearer" else -km.d1[cand]

        def kept_at(t: float) -> np.ndarray:
            return within_cluster_dedup(emb[cand], km.cluster[cand], key, t)

        eta, kept = search_threshold(kept_at, n)
        chosen = cand[kept]
        chosen = chosen[np.argsort(km.d1[chosen], kind="stable")][
            :n
        ]  # surplus: drop the farthest from centre
        return SelectionResult(
            "image",
            idx[chosen],
            ranking="nearest to its cluster centre first",
            scores={"centre_distance": km.d1[chosen]},
            info={
                "eta": round(float(eta), 4),
                "eps": ctx.cfg.scoring.meddel_eps,
                "k": km.k,
                "outliers": int((~inlier).sum()),
            },
        )
