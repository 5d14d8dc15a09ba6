"""``moderate``: Moderate-DS, keep the images whose distance to their centre is closest to the median.

- [0] Xia et al., "Moderate coreset: a universal method of data selection for real-world data-efficient deep
  learning", ICLR 2023, https://openreview.net/forum?id=7D5EECbOaf9

Without labels, classes are k-means clusters: per cluster the median distance to the centroid is computed, and
images are ranked by |distance - their cluster's median|, smallest first.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy
from optidel.select.strategies.image_clusters import image_kmeans


@register_strategy
class ModerateStrategy(ImageStrategy):
    name: ClassVar[str] = "moderate"
    description: ClassVar[str] = "baseline: Moderate-DS (distance to centre closest to its cluster's median)"
    needs_patches: ClassVar[bool] = True

    def select(self, ctx: SelectionContext) -> SelectionResult:
        idx, km = image_kmeans(ctx)
        median = np.zeros(km.k, np.float32)
        for c in range(km.k):
            members = km.cluster == c
            if members.any():
                median[c] = np.median(km.d1[members])
        gap = np.abs(km.d1 - median[km.cluster])
        order = np.argsort(gap, kind="stable")[: min(ctx.n_images, idx.size)]
        return SelectionResult(
            "image",
            idx[order],
            ranking="closest to the median distance first",
            scores={"median_gap": gap[order]},
            info={"k": km.k},
        )
