"""Selection strategies (``--method``), one file each, registered by name.

==============  ======  ==========================================================================================
name            level   what it keeps
==============  ======  ==========================================================================================
optidel         patch   the hardest patches (``--score``), tiled 2x2 into mosaics (the paper's method)
optidel-cover   patch   the hardest patches of every k-means cluster (size-based quotas, CCS), diverse mosaics
hard-only       patch   ablation: the hardest patches as single images, no mosaics (same image count)
easy            patch   ablation: the easiest patches, in mosaics
mosaic-random   patch   ablation: random patches, in mosaics
optidel-grid    patch   ablation: optidel with grid patches instead of SAM
random          image   baseline: ratio x pool images at random
meddel          image   baseline: MedDEL (k-means; drop outliers and near-duplicates, threshold searched)
semdedup        image   baseline: SemDeDup (drop near-duplicates in each cluster, threshold searched)
prototypes      image   baseline: images farthest from their k-means centroid (Sorscher et al. 2022)
moderate        image   baseline: Moderate-DS (distance to the centre closest to its cluster's median)
full            image   reference: every pool image
noise           image   control: ratio x pool images of random colour noise, no image content
==============  ======  ==========================================================================================

See :mod:`optidel.select.strategies.base` for the interface and how to add one.
"""

from optidel.select.strategies import (  # noqa: F401  (each module registers its strategy)
    easy,
    full_pool,
    hard_only,
    meddel,
    moderate,
    mosaic_random,
    noise_control,
    optidel,
    optidel_cover,
    optidel_grid,
    prototypes,
    random_images,
    semdedup,
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
