"""``mosaic-random``: random patches in mosaics (ablation: does hardness matter, given the synthesis?)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.strategies.base import PatchStrategy, SelectionContext, register_strategy


@register_strategy
class MosaicRandomStrategy(PatchStrategy):
    """Random patches (seeded), in mosaics."""

    name: ClassVar[str] = "mosaic-random"
    description: ClassVar[str] = "ablation: random patches tiled 2x2 into mosaics"

    def ranking(self, ctx: SelectionContext) -> tuple[np.ndarray, str]:
        return ctx.rng("mosaic-random").permutation(len(ctx.patches())), "random order"
