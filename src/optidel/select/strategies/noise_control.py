"""``noise``: a control, not a selection: round(ratio x pool) images of smooth random colour noise.

Pre-training on it measures what pre-training gives without any image content at equal steps. Where it matches
pre-training on real images, no choice of *which* images can show in the downstream result, whatever the method;
a benchmark of selection methods needs a regime where this control clearly loses to the full pool (BENCHMARKS.md,
"The content control"). Each noise image stands in for a seeded-random pool image (the manifest names it; none of
its pixels is used), so the set has exactly the size of a ``random`` set.
"""

from __future__ import annotations

from typing import ClassVar

from optidel.select.strategies.base import ImageStrategy, SelectionContext, SelectionResult, register_strategy


@register_strategy
class NoiseControlStrategy(ImageStrategy):
    """Seeded-random pool images, written as noise images of ``synthesis.mosaic_size`` px."""

    name: ClassVar[str] = "noise"
    description: ClassVar[str] = "control: ratio x pool images of random colour noise (no image content)"

    def select(self, ctx: SelectionContext) -> SelectionResult:
        ids = ctx.rng("noise-stand-ins").permutation(len(ctx.pool))[: ctx.n_images]
        return SelectionResult("image", ids, ranking="noise in place of random pool images", content="noise")
