"""``random``: round(ratio x pool) pool images drawn uniformly at random (seeded): the standard baseline."""

from __future__ import annotations

from typing import ClassVar

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy


@register_strategy
class RandomImagesStrategy(ImageStrategy):
    """A seeded uniform sample of pool images."""

    name: ClassVar[str] = "random"
    description: ClassVar[str] = "baseline: ratio x pool images drawn at random"

    def select(self, ctx: SelectionContext) -> SelectionResult:
        ids = ctx.rng("random-images").permutation(len(ctx.pool))[: ctx.n_images]
        return SelectionResult("image", ids, ranking="random order")
