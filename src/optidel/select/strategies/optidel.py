"""``optidel``: the hardest patches of the pool, four to a 2x2 mosaic (OptiDEL, arXiv 2408.07107).

Patches (SAM / LiteMedSAM) are ranked hardest first by the configured score (``margin`` by default: a small gap
between the nearest and second-nearest k-means centroid), the top N = 4 x round(ratio x pool) are kept, and every
four are tiled into one image. With ``mosaic = False`` it is the hard-only ablation.

- [0] OptiDEL: Optimizing Data-Efficient Learning via V-information, https://arxiv.org/abs/2408.07107
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.rank.scores import rank_order
from optidel.select.strategies.base import PatchStrategy, SelectionContext, register_strategy


@register_strategy
class OptidelStrategy(PatchStrategy):
    """Hardest patches first, in mosaics."""

    name: ClassVar[str] = "optidel"
    ranks_by_score: ClassVar[bool] = True
    description: ClassVar[str] = (
        "hardest patches (by --score) tiled 2x2 into mosaics: the OptiDEL compact set"
    )

    def ranking(self, ctx: SelectionContext) -> tuple[np.ndarray, str]:
        return rank_order(ctx.hardness(), descending=True), f"hardest first by {ctx.cfg.scoring.score}"
