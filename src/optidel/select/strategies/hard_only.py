"""``hard-only``: the hardest patches as they are, no mosaics (ablation: does the 2x2 synthesis matter?).

Keeps the image budget: round(ratio x pool) images, each one of the hardest patches resized to ``mosaic_size``.
"""

from __future__ import annotations

from typing import ClassVar

from optidel.select.config import SelectConfig
from optidel.select.strategies.base import force, register_strategy
from optidel.select.strategies.optidel import OptidelStrategy


@register_strategy
class HardOnlyStrategy(OptidelStrategy):
    """Hardest patches, one per output image."""

    name: ClassVar[str] = "hard-only"
    description: ClassVar[str] = (
        "ablation: the hardest patches as single images (no mosaics), same image count"
    )

    def resolve_config(self, cfg: SelectConfig) -> SelectConfig:
        return force(cfg, self.name, **{"synthesis.mosaic": False})
