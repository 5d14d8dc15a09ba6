"""``optidel-cover``: OptiDEL's hardest patches, spread over the k-means clusters (coverage-aware hardness).

Plain OptiDEL [0] keeps the top N patches by hardness over the whole pool. At a 5% ratio the margin-hardest patches
can pile up on a few cluster boundaries, and the data-pruning literature finds that score-only selection at high
pruning rates falls below random, while selection stratified over the data distribution beats it (CCS [1]). This
strategy keeps hardness as the criterion *within* each cluster and decides *how many* each cluster gets by coverage.

The rule (N = 4 x round(ratio x pool images) patches with mosaics; k-means clusters c = 1..K of sizes n_c; hardness
by ``scoring.score`` as in ``optidel``):

1. Coverage budget B = round(``cover_fraction`` x N).
2. Quotas: every cluster first gets ``min(cover_min, n_c)`` (when the minima alone exceed B, the largest clusters
   get theirs first); the rest of B is shared in proportion to ``n_c ** cover_exponent`` (largest remainder,
   capped at n_c, what a full cluster cannot take goes to the others). ``cover_exponent`` = 1: proportional to
   cluster size (the pool's own distribution: stratified sampling); 0: equal shares (CCS's even allocation over
   strata [1]); the default 0.5 lies between (square-root sampling: large clusters still get more, small ones are
   not drowned).
3. Within each cluster the q_c hardest patches are taken.
4. The remaining N - B patches are the hardest of the rest of the pool, over all clusters (plain OptiDEL).

Reduction: ``cover_fraction = 0`` gives B = 0, so step 4 alone picks the global top N: exactly ``optidel`` (same
ranking, same patches; tested). ``cover_fraction = 1`` is pure stratified hardest-per-cluster selection.

The mosaics draw their four tiles from four different clusters wherever the counts allow (``synthesis.grouping``
is forced to ``diverse``). ``scoring.max_per_image`` and ``scoring.dedup_threshold`` apply as for ``optidel``: a
rejected patch is replaced by the next in this strategy's order (its quota patches first, then the global
hardness order), so with those filters the quotas hold only approximately.

- [0] OptiDEL: Optimizing Data-Efficient Learning via V-information, https://arxiv.org/abs/2408.07107
- [1] Zheng, Liu, Li, Fang, Prakash. Coverage-centric Coreset Selection for High Pruning Rates. ICLR 2023.
  https://arxiv.org/abs/2210.15809
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from optidel.config import ConfigError
from optidel.select.config import TILES_PER_MOSAIC, SelectConfig
from optidel.select.rank.scores import rank_order
from optidel.select.strategies.base import PatchStrategy, SelectionContext, force, register_strategy

if TYPE_CHECKING:
    from optidel.select.strategies.base import SelectionResult


def cover_quotas(sizes: np.ndarray, budget: int, exponent: float, minimum: int) -> np.ndarray:
    """How many patches each cluster gets from a coverage budget (steps 1-2 of the module docstring).

    Args:
        sizes: (K,) int cluster sizes n_c (0 allowed: such a cluster gets 0).
        budget: B, at most ``sizes.sum()`` (larger is clipped).
        exponent: shares ~ ``n_c ** exponent``.
        minimum: every non-empty cluster's floor (``min(minimum, n_c)``).
    Returns:
        (K,) int64 quotas, ``0 <= q_c <= n_c``, summing to ``min(budget, sizes.sum())``.
    """
    sizes = np.asarray(sizes, np.int64)
    budget = int(min(max(budget, 0), sizes.sum()))
    q = np.zeros(sizes.size, np.int64)
    floor = np.minimum(max(minimum, 0), sizes)
    if floor.sum() >= budget:  # the minima alone use the budget: largest clusters first (ties: lower index)
        for c in np.lexsort((np.arange(sizes.size), -sizes)):
            take = min(int(floor[c]), budget - int(q.sum()))
            if take <= 0:
                break
            q[c] = take
        return q
    q[:] = floor
    weight = np.where(sizes > 0, np.power(sizes.astype(np.float64), exponent), 0.0)
    left = budget - int(q.sum())
    while left > 0:  # water-filling: share by weight among clusters with room, cap, repeat with what is left
        room = sizes - q
        w = np.where(room > 0, weight, 0.0)
        target = left * w / w.sum()
        add = np.minimum(np.floor(target).astype(np.int64), room)
        rest = left - int(add.sum())
        if rest > 0:  # largest remainders (ties: larger cluster, then lower index) among those with room left
            frac = np.where(room - add > 0, target - np.floor(target), -1.0)
            for c in np.lexsort((np.arange(sizes.size), -sizes, -frac))[:rest]:
                if frac[c] >= 0:
                    add[c] += 1
        if add.sum() == 0:  # cannot happen while some cluster has room; guards the loop
            break
        q += add
        left = budget - int(q.sum())
    return q


def cover_order(
    cluster: np.ndarray, hardness: np.ndarray, n: int, fraction: float, exponent: float, minimum: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``optidel-cover`` ranking of all patches (steps 1-4 of the module docstring).

    Args:
        cluster: (P,) int k-means cluster of each patch; hardness: (P,) larger = harder.
        n: N, patches wanted; fraction, exponent, minimum: ``cover_fraction``, ``cover_exponent``, ``cover_min``.
    Returns:
        order: (P,) int64, the selection's N patches first (hardest first), then the rest by global hardness;
        quotas: (K,) int64 coverage quotas per cluster (K = cluster.max() + 1).
    """
    cluster = np.asarray(cluster, np.int64)
    glob = rank_order(hardness, descending=True)
    sizes = np.bincount(cluster, minlength=int(cluster.max()) + 1 if cluster.size else 0)
    budget = int(round(fraction * min(n, cluster.size)))
    quotas = cover_quotas(sizes, budget, exponent, minimum)
    pos = np.empty(cluster.size, np.int64)
    pos[glob] = np.arange(cluster.size)  # global hardness rank of each patch
    by_cluster = np.lexsort((pos, cluster))  # clusters in turn, hardest first inside each
    starts = np.searchsorted(cluster[by_cluster], np.arange(sizes.size))
    rank_in_cluster = np.empty(cluster.size, np.int64)
    rank_in_cluster[by_cluster] = np.arange(cluster.size) - np.repeat(starts, sizes)
    in_quota = rank_in_cluster < quotas[cluster]
    rest = glob[~in_quota[glob]]
    n_fill = max(0, min(n, cluster.size) - int(in_quota.sum()))
    chosen = np.concatenate([np.flatnonzero(in_quota), rest[:n_fill]])
    chosen = chosen[np.argsort(pos[chosen], kind="stable")]
    order = np.concatenate([chosen, rest[n_fill:]])
    return order, quotas


@register_strategy
class OptidelCoverStrategy(PatchStrategy):
    """Hardest patches within each k-means cluster, clusters covered by size-based quotas; diverse mosaics."""

    name: ClassVar[str] = "optidel-cover"
    description: ClassVar[str] = (
        "coverage-aware OptiDEL: the hardest patches of every k-means cluster (quota ~ size^exponent), "
        "mosaics of four clusters"
    )

    def resolve_config(self, cfg: SelectConfig) -> SelectConfig:
        s = cfg.scoring
        if not 0 <= s.cover_fraction <= 1:
            raise ConfigError(f"scoring.cover_fraction: {s.cover_fraction} is not in [0, 1]")
        if not np.isfinite(s.cover_exponent) or s.cover_exponent < 0:
            raise ConfigError(f"scoring.cover_exponent: {s.cover_exponent} must be a number >= 0")
        if s.cover_min < 0:
            raise ConfigError(f"scoring.cover_min: {s.cover_min} < 0")
        return force(cfg, self.name, **{"synthesis.grouping": "diverse"})

    def ranking(self, ctx: SelectionContext) -> tuple[np.ndarray, str]:
        s = ctx.cfg.scoring
        n = ctx.n_images * TILES_PER_MOSAIC if ctx.cfg.synthesis.mosaic else ctx.n_images
        order, _ = cover_order(
            ctx.clusters().cluster, ctx.hardness(), n, s.cover_fraction, s.cover_exponent, s.cover_min
        )
        desc = (
            f"hardest first by {s.score} within each k-means cluster, {s.cover_fraction:g} of N spread over the "
            f"clusters by size^{s.cover_exponent:g} (at least {s.cover_min} each), the rest by global hardness"
        )
        return order, desc

    def select(self, ctx: SelectionContext) -> SelectionResult:
        result = super().select(ctx)
        cl = ctx.clusters().cluster
        result.info["clusters_covered"] = int(np.unique(cl[result.ids]).size)
        result.info["clusters"] = int(np.unique(cl).size)
        return result


def cluster_coverage(ctx: SelectionContext, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cluster counts of a patch selection beside plain ``optidel``'s on the same cached clusters and scores.

    Args:
        ctx: the run's context (its k-means and scores are reused, nothing is recomputed).
        ids: (N,) selected patch ids.
    Returns:
        ``{"pool": (K,), "selected": (K,), "optidel": (K,)}`` int64 counts per cluster (pool patches, this
        selection, plain OptiDEL's selection with the same N, filters and score).
    """
    from optidel.select.strategies.optidel import OptidelStrategy

    cl = np.asarray(ctx.clusters().cluster, np.int64)
    k = int(cl.max()) + 1 if cl.size else 0
    plain = OptidelStrategy().select(ctx).ids
    return {
        "pool": np.bincount(cl, minlength=k),
        "selected": np.bincount(cl[np.asarray(ids, np.int64)], minlength=k),
        "optidel": np.bincount(cl[plain], minlength=k),
    }
