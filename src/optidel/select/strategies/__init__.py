"""Selection strategies (``--method``), one file each, registered by name.

==============  ======  ==========================================================================================
name            level   what it keeps
==============  ======  ==========================================================================================
optidel         patch   the hardest patches (``--score``), tiled 2x2 into mosaics (the paper's method)
hard-only       patch   ablation: the hardest patches as single images, no mosaics (same image count)
easy            patch   ablation: the easiest patches, in mosaics
mosaic-random   patch   ablation: random patches, in mosaics
optidel-grid    patch   ablation: optidel with grid patches instead of SAM
random          image   baseline: ratio x pool images at random
full            image   reference: every pool image
==============  ======  ==========================================================================================

See :mod:`optidel.select.strategies.base` for the interface and how to add one.
"""

from optidel.select.strategies import (  # noqa: F401  (each module registers its strategy)
    easy,
    full_pool,
    hard_only,
    mosaic_random,
    optidel,
    optidel_grid,
    random_images,
)
from optidel.select.strategies.base import (
    STRATEGIES,
    ImageStrategy,
    PatchStrategy,
    SelectionContext,
    SelectionResult,
    Strategy,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = [
    "STRATEGIES",
    "ImageStrategy",
    "PatchStrategy",
    "SelectionContext",
    "SelectionResult",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]
