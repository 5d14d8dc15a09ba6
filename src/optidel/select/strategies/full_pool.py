"""``full``: every pool image (the full-data pre-training reference; ``ratio`` is ignored)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy


@register_strategy
class FullPoolStrategy(ImageStrategy):
    """All pool images, in pool order."""

    name: ClassVar[str] = "full"
    description: ClassVar[str] = "reference: all pool images (ratio ignored)"

    def select(self, ctx: SelectionContext) -> SelectionResult:
        return SelectionResult("image", np.arange(len(ctx.pool)), ranking="pool order")
