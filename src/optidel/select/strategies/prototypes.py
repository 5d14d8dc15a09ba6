"""``prototypes``: keep the images farthest from their k-means centroid (hard examples).

- [0] Sorscher et al., "Beyond neural scaling laws: beating power law scaling via data pruning", NeurIPS 2022,
  https://arxiv.org/abs/2206.14486 (the self-supervised prototype metric)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy
from optidel.select.strategies.image_clusters import image_kmeans


@register_strategy
class PrototypesStrategy(ImageStrategy):
    name: ClassVar[str] = "prototypes"
    description: ClassVar[str] = (
        "baseline: images farthest from their k-means centroid (Sorscher et al. 2022)"
    )
    needs_patches: ClassVar[bool] = True

    def select(self, ctx: SelectionContext) -> SelectionResult:
        idx, km = image_kmeans(ctx)
        order = np.argsort(-km.d1, kind="stable")[: min(ctx.n_images, idx.size)]
        return SelectionResult(
            "image",
            idx[order],
            ranking="farthest from its centroid first",
            scores={"centre_distance": km.d1[order]},
            info={"k": km.k},
        )
