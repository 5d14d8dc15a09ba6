"""The strategy interface: a strategy turns a :class:`SelectionContext` into a :class:`SelectionResult`.

A strategy only decides *what* is selected; the pipeline (``optidel.select.pipeline``) computes the inputs on demand
(patches, embeddings, clusters, scores, image embeddings — each cached on disk) and writes the outputs (images,
manifest, report) from the result. Two levels:

- patch level (:class:`PatchStrategy`): rank the pool's patches, keep the top N = 4 x images (optionally capped per
  image and de-duplicated), group them into 2x2 mosaics (or keep them as single images: the hard-only ablation);
- image level (:class:`ImageStrategy`): choose pool images (random, full; later MedDEL, SemDeDup, prototypes,
  moderate coresets — these read ``ctx.image_embeddings()``).

Add a strategy: one file in this folder with a subclass decorated by :func:`register_strategy`, imported in
``strategies/__init__.py``.
"""

from __future__ import annotations

import dataclasses
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from optidel.config import ConfigError
from optidel.log import logger
from optidel.select.config import TILES_PER_MOSAIC, SelectConfig, n_target_images

if TYPE_CHECKING:
    from optidel.data.pool import PoolImage
    from optidel.select.patches.store import PatchStore
    from optidel.select.rank.cluster import KMeansResult
    from optidel.select.rank.image_embeddings import ImageEmbeddings

Level = Literal["patch", "image"]


@dataclass
class SelectionResult:
    """What a strategy selected.

    Attributes:
        level: ``patch`` (ids are patch ids) or ``image`` (ids are pool image indices).
        ids: (N,) int64 in rank order (rank 0 first).
        groups: (G, 4) int64 positions into ``ids`` making 2x2 mosaics (-1 = empty tile), or None: one output
            image per id.
        ranking: what the order means, for the manifest and report (e.g. ``"hardest first by margin"``).
        scores: image level only: optional per-selected-image scores, ``{name: (N,)}`` (manifest ``score_<name>``).
        info: anything worth reporting (counts, thresholds).
        content: image level: ``pool`` writes the chosen pool images; ``noise`` writes noise images in their place
            (the ``noise`` control).
    """

    level: Level
    ids: np.ndarray
    groups: np.ndarray | None = None
    ranking: str = ""
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    content: Literal["pool", "noise"] = "pool"

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, np.int64)
        if self.groups is not None:
            self.groups = np.asarray(self.groups, np.int64).reshape(-1, TILES_PER_MOSAIC)
            used = self.groups[self.groups >= 0]
            if (
                used.size != self.ids.size
                or np.unique(used).size != used.size
                or (used.size and used.max() >= self.ids.size)
            ):
                raise ValueError("groups must use every selected position exactly once")

    @property
    def n_outputs(self) -> int:
        return int(self.groups.shape[0]) if self.groups is not None else int(self.ids.size)


class SelectionContext:
    """What a strategy may ask for; everything expensive is computed on first use and cached on disk.

    Attributes:
        cfg: the effective config.
        pool: the pool images, in pool order.
    """

    def __init__(self, cfg: SelectConfig, pool: list[PoolImage], providers: dict[str, Callable[[], Any]]):
        self.cfg = cfg
        self.pool = pool
        self._providers = providers
        self._memo: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        if name not in self._memo:
            self._memo[name] = self._providers[name]()
        return self._memo[name]

    @property
    def n_images(self) -> int:
        """Images of the compact set: round(ratio x pool images), at least 1."""
        return n_target_images(len(self.pool), self.cfg.ratio)

    def rng(self, purpose: str) -> np.random.Generator:
        """A generator seeded by (seed, purpose): independent streams for independent random choices."""
        return np.random.default_rng([self.cfg.seed % (2**32), zlib.crc32(purpose.encode())])

    def patches(self) -> PatchStore:
        """The pool's patch table and memory-mapped embeddings."""
        return self._get("patches")

    def clusters(self) -> KMeansResult:
        """k-means over the patch embeddings (cluster, d1, d2 per patch)."""
        return self._get("clusters")

    def scores(self) -> dict[str, np.ndarray]:
        """``{"margin", "prototype", "reconstruction"}`` -> (n_patches,) float32 (reconstruction NaN without a run)."""
        return self._get("scores")

    def hardness(self, score: str | None = None) -> np.ndarray:
        """(n_patches,) larger = harder, by ``score`` (default: the config's)."""
        from optidel.select.rank.scores import hardness

        name = score or self.cfg.scoring.score
        return hardness(name, self.scores()[name])

    def image_embeddings(self) -> ImageEmbeddings:
        """One embedding per pool image (mean of its patches, or a whole-image pass: ``image_embedding``)."""
        return self._get("image_embeddings")


class Strategy(ABC):
    """A selection method. Subclasses set ``name``, ``level``, ``description`` and implement :meth:`select`."""

    name: ClassVar[str]
    level: ClassVar[Level]
    description: ClassVar[str] = ""
    needs_patches: ClassVar[bool] = True  # whether the patch + embedding stage must run

    def resolve_config(self, cfg: SelectConfig) -> SelectConfig:
        """The effective config (a strategy may force options, e.g. hard-only forces ``mosaic = False``)."""
        return cfg

    @abstractmethod
    def select(self, ctx: SelectionContext) -> SelectionResult: ...


def force(cfg: SelectConfig, method: str, **values: Any) -> SelectConfig:
    """``cfg`` with ``values`` forced by a method (logged when they change the user's setting).

    Keys are dotted (``**{"synthesis.mosaic": False}``) or top-level (``ratio=...``).
    """

    def get(key: str) -> Any:
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    changed = {k: v for k, v in values.items() if get(k) != v}
    if changed:
        logger.info("method %s sets %s", method, ", ".join(f"{k}={v}" for k, v in changed.items()))
    top: dict[str, Any] = {}
    for key, v in values.items():
        section, _, name = key.rpartition(".")
        if not section:
            top[name] = v
            continue
        top[section] = dataclasses.replace(top.get(section, getattr(cfg, section)), **{name: v})
    return dataclasses.replace(cfg, **top)


class PatchStrategy(Strategy):
    """Rank patches, keep the top N, group them into 2x2 mosaics (or single images when ``mosaic`` is off).

    N = 4 x round(ratio x pool images) with mosaics, so the compact set holds ratio x pool images; without mosaics
    N = round(ratio x pool images) patches, one per output image (the same image budget).
    """

    level: ClassVar[Level] = "patch"
    ranks_by_score: ClassVar[bool] = (
        False  # True when the order follows the --score (the report draws a threshold)
    )

    @abstractmethod
    def ranking(self, ctx: SelectionContext) -> tuple[np.ndarray, str]:
        """(order over all patch ids, best candidate first; a short description of the order)."""

    def select(self, ctx: SelectionContext) -> SelectionResult:
        from optidel.select.outputs.mosaic import group_diverse, group_random
        from optidel.select.rank.selection import greedy_select

        cfg = ctx.cfg
        store = ctx.patches()
        n = ctx.n_images * TILES_PER_MOSAIC if cfg.synthesis.mosaic else ctx.n_images
        order, desc = self.ranking(ctx)
        ids = greedy_select(
            order,
            n,
            image_index=store.image_index if cfg.scoring.max_per_image is not None else None,
            max_per_image=cfg.scoring.max_per_image,
            embeddings=store.embeddings if cfg.scoring.dedup_threshold is not None else None,
            dedup_threshold=cfg.scoring.dedup_threshold,
        )
        if ids.size < n:
            msg = f"only {ids.size} of the N = {n} patches wanted could be chosen (pool has {len(store)} patches)"
            if cfg.runtime.strict:
                raise ConfigError(msg)
            logger.warning(msg)
        if ids.size == 0:
            raise ConfigError("no patch could be selected: the pool has no patches")
        groups = None
        if cfg.synthesis.mosaic:
            rng = ctx.rng("grouping")
            if cfg.synthesis.grouping == "diverse":
                groups = group_diverse(ctx.clusters().cluster[ids], rng, TILES_PER_MOSAIC)
            else:
                groups = group_random(ids.size, rng, TILES_PER_MOSAIC)
        return SelectionResult("patch", ids, groups, desc, info={"n_wanted": n})


class ImageStrategy(Strategy):
    """Choose whole pool images; the chosen files are copied (or resized) into ``images/``."""

    level: ClassVar[Level] = "image"
    needs_patches: ClassVar[bool] = False


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available as ``--method cls.name``."""
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy {cls.name!r} registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def get_strategy(name: str) -> Strategy:
    """An instance of the registered strategy ``name``; :class:`ConfigError` listing the known ones otherwise."""
    import optidel.select.strategies  # noqa: F401  (registers the built-in strategies)

    if name not in STRATEGIES:
        raise ConfigError(
            f"method: unknown selection method {name!r}; known: {', '.join(sorted(STRATEGIES))}"
        )
    return STRATEGIES[name]()


def available_strategies() -> dict[str, str]:
    """name -> one-line description of every registered strategy."""
    import optidel.select.strategies  # noqa: F401

    return {k: STRATEGIES[k].description for k in sorted(STRATEGIES)}
