"""``easy``: the easiest patches in mosaics (ablation: the opposite of hard-sample selection).

Sorscher et al. 2022 predict that keeping easy samples is the better choice only for small pools; the theory
experiments (docs/PAPER.md) compare hard, easy and random.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.rank.scores import rank_order
from optidel.select.strategies.base import PatchStrategy, SelectionContext, register_strategy


@register_strategy
class EasyStrategy(PatchStrategy):
    """Easiest patches first, in mosaics."""

    name: ClassVar[str] = "easy"
    ranks_by_score: ClassVar[bool] = True
    description: ClassVar[str] = "ablation: the easiest patches (by --score) in mosaics"

    def ranking(self, ctx: SelectionContext) -> tuple[np.ndarray, str]:
        return rank_order(ctx.hardness(), descending=False), f"easiest first by {ctx.cfg.scoring.score}"
