"""``optidel-grid``: OptiDEL with plain grid patches instead of SAM's (ablation: does SAM's patch proposal matter?)."""

from __future__ import annotations

from typing import ClassVar

from optidel.select.config import SelectConfig
from optidel.select.strategies.base import force, register_strategy
from optidel.select.strategies.optidel import OptidelStrategy


@register_strategy
class OptidelGridStrategy(OptidelStrategy):
    """Hardest grid patches, in mosaics."""

    name: ClassVar[str] = "optidel-grid"
    description: ClassVar[str] = "ablation: like optidel, with grid patches instead of SAM patches"

    def resolve_config(self, cfg: SelectConfig) -> SelectConfig:
        return force(cfg, self.name, **{"proposal.patches": "grid"})
