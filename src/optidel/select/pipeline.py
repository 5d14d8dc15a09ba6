"""The compact-set builder: pool -> patches -> embeddings -> k-means -> scores -> selection -> images -> manifest -> report.

:func:`run_selection` is the Python API of ``optidel select``; :class:`SelectionPipeline` holds the stage order and
nothing else. The stages live in :mod:`optidel.select.stages` (one module each); their cache keys, folders, stamps
and timings in :class:`optidel.select.stage_cache.StageCache` (its docstring shows the cache layout). ``DONE`` is
removed when a run starts and written last; the output folder is locked for the whole run
(:func:`optidel.runtime.lock.run_lock`), so a second ``optidel select`` on the same ``--out`` stops at once.

Distributed (``torchrun --nproc-per-node K -m optidel.cli select ...``): every rank computes its share of the patch
shards (:mod:`optidel.select.stages.patches`), rank 0 merges after a barrier (gloo; the barrier waits up to 12 h for
the slowest rank) and runs the rest alone; the other ranks return after the barrier.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from optidel.config import layer_config, save_config
from optidel.data.pool import PoolImage, list_pool
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.runtime.atomic import atomic_write_json
from optidel.runtime.distributed import DistContext, init_distributed
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import DONE, mark_done
from optidel.runtime.seed import seed_everything
from optidel.select.config import SelectConfig, validate_config
from optidel.select.leakage_guard import exclude_leaking
from optidel.select.patches.store import PatchStore
from optidel.select.patches.types import PatchEmbedder, PatchProposer
from optidel.select.rank.cluster import KMeansResult
from optidel.select.rank.image_embeddings import ImageEmbeddings
from optidel.select.stage_cache import StageCache
from optidel.select.stages.images import OutputMap, write_images
from optidel.select.stages.manifest import write_manifest_stage
from optidel.select.stages.patches import PatchModels, PatchStage
from optidel.select.stages.ranking import cluster_stage, image_embedding_stage, score_stage
from optidel.select.stages.report import remove_report, run_summary, write_selection_report
from optidel.select.strategies.base import SelectionContext, SelectionResult, Strategy, get_strategy

BARRIER_TIMEOUT = datetime.timedelta(
    hours=12
)  # rank 0 waits at the merge barrier for the slowest rank's shards


def join_job() -> DistContext:
    """This process's place in a ``torchrun`` job (rank 0 of 1 otherwise); gloo, since only barriers are needed.

    The compute device is the config's (:attr:`SelectionPipeline.device`), not the context's.
    """
    return init_distributed(device="cpu", backend="gloo", timeout=BARRIER_TIMEOUT)


class SelectionPipeline:
    """The stages of one ``optidel select`` run over one output folder; each is computed once, on first need.

    Args:
        cfg: the effective config.
        pool: the pool images.
        proposer, embedder: injected objects (tests, the Python API); default: built from the config with
            ``optidel.select.patches.proposers.make_proposer`` / ``make_embedder`` when the patch stage must run.
        dist: the distributed job (see :func:`join_job`; default: a single process).
        after_shard: called after every patch shard is written (tests inject failures with it).
    """

    def __init__(
        self,
        cfg: SelectConfig,
        pool: list[PoolImage],
        proposer: PatchProposer | None = None,
        embedder: PatchEmbedder | None = None,
        dist: DistContext | None = None,
        after_shard: Callable[[int], None] | None = None,
    ):
        self.cfg = cfg
        self.pool = pool
        self.out = Path(cfg.out)
        self.dist = dist or DistContext()
        self.models = PatchModels(cfg, self.device, proposer, embedder)
        self.cache = StageCache(cfg, pool, self.models.injected_pair())
        self.after_shard = after_shard
        self._store: PatchStore | None = None
        self._clusters: KMeansResult | None = None
        self._scores: dict[str, np.ndarray] | None = None
        self._image_embeddings: ImageEmbeddings | None = None
        self.extra_meta: dict[str, Any] = {}  # more manifest metadata (the leakage guard's counts)

    @property
    def device(self) -> str:
        """The config's device; a bare ``cuda`` under ``torchrun`` is this rank's GPU."""
        d = self.cfg.runtime.device
        if d.startswith("cuda") and ":" not in d and self.dist.world > 1:
            return f"cuda:{self.dist.local_rank}"
        return d

    def patch_stage(self, dist: DistContext | None = None) -> PatchStage:
        return PatchStage(self.cfg, self.pool, self.cache, self.models, dist or self.dist, self.after_shard)

    def run_patch_stage(self) -> PatchStore | None:
        """Every rank's share of the patch stage; rank 0 gets the merged store (kept for the later stages)."""
        store = self.patch_stage().run()
        if store is not None:
            self._store = store
        return store

    def patches(self) -> PatchStore:
        """The pool's patch store (a lazy call on rank 0 alone computes every shard itself, with no barrier)."""
        if self._store is None:
            if self.dist.rank != 0:
                raise RuntimeError("only rank 0 reads the merged patch store")
            store = self.patch_stage(DistContext(device=self.dist.device)).run()
            assert store is not None
            self._store = store
        return self._store

    def use_patch_store(self, store: PatchStore) -> None:
        """Use ``store`` as this pool's patch store (the leakage guard's kept images, cut from the full pool's)."""
        self._store = store

    def clusters(self) -> KMeansResult:
        if self._clusters is None:
            self._clusters = cluster_stage(self.cfg, self.cache, self.patches())
        return self._clusters

    def scores(self) -> dict[str, np.ndarray]:
        if self._scores is None:
            km = self.clusters()
            self._scores = score_stage(self.cfg, self.cache, self.pool, self.patches, km, self.device)
        return self._scores

    def image_embeddings(self) -> ImageEmbeddings:
        if self._image_embeddings is None:
            self._image_embeddings = image_embedding_stage(
                self.cfg, self.cache, self.pool, self.patches, lambda: self.models.get()[1]
            )
        return self._image_embeddings

    def context(self) -> SelectionContext:
        providers = {
            "patches": self.patches,
            "clusters": self.clusters,
            "scores": self.scores,
            "image_embeddings": self.image_embeddings,
        }
        return SelectionContext(self.cfg, self.pool, providers)

    def select(self, strategy: Strategy, ctx: SelectionContext) -> SelectionResult:
        """Run the strategy; the stages it computes lazily (patches, k-means ...) are timed on their own rows."""
        t0 = time.perf_counter()
        before = set(self.cache.timings)
        result = strategy.select(ctx)
        nested = sum(v["seconds"] for k, v in self.cache.timings.items() if k not in before)
        self.cache.record("selection", max(0.0, time.perf_counter() - t0 - nested), False)
        return result

    def manifest_meta(self, result: SelectionResult, n_outputs: int) -> dict[str, Any]:
        """The manifest's metadata; at patch level it names the patch store behind its rows (optidel vinfo reads it)."""
        cfg = self.cfg
        meta: dict[str, Any] = {
            "method": cfg.method,
            "level": result.level,
            "score": cfg.scoring.score,
            "ratio": cfg.ratio,
            "ranking": result.ranking,
            "n_pool_images": len(self.pool),
            "n_selected": int(result.ids.size),
            "n_output_images": n_outputs,
        }
        meta.update(self.extra_meta)
        if result.level == "patch":
            store = self.cache.patches_dir().resolve()
            inside = store.is_relative_to(self.out.resolve())  # then relative to OUT: the folder may be moved
            meta["patch_store"] = str(store.relative_to(self.out.resolve()) if inside else store)
        return meta

    def write_outputs(
        self, strategy: Strategy, ctx: SelectionContext, result: SelectionResult
    ) -> dict[str, Any]:
        """images/, manifest.parquet and (unless disabled) report.html; returns the run summary."""
        omap: OutputMap = write_images(self.cfg, self.cache, self.pool, result, self.patches)
        summary = run_summary(ctx, self.cache, strategy, result, omap)
        meta = self.manifest_meta(result, summary["output images"])
        ranked = (
            (lambda: (self.patches(), self.clusters(), self.scores())) if result.level == "patch" else None
        )
        write_manifest_stage(self.out, self.cache, self.pool, result, omap, meta, ranked)
        if self.cfg.report.enabled:
            write_selection_report(ctx, self.cache, strategy, result, omap, summary)
        else:
            remove_report(self.out, self.cache)
        return summary


def _select_and_write(
    cfg: SelectConfig,
    strategy: Strategy,
    dist: DistContext,
    injected: tuple[PatchProposer | None, PatchEmbedder | None],
    after_shard: Callable[[int], None] | None,
) -> dict[str, Any] | None:
    """The run's stages in order; returns the summary on rank 0 (None on the other ranks)."""
    out = Path(cfg.out)
    if dist.rank == 0:
        (out / DONE).unlink(missing_ok=True)
        save_config(cfg, out)
    seed_everything(cfg.seed, import_torch=False)  # torch is seeded only if a stage already loaded it
    t0 = time.perf_counter()
    pool = list_pool(cfg.pool, options=cfg.sources)
    pipe = SelectionPipeline(cfg, pool, injected[0], injected[1], dist, after_shard)
    pipe.cache.record("pool listing", time.perf_counter() - t0, False)
    if dist.world > 1 and strategy.needs_patches:
        pipe.run_patch_stage()
    if dist.rank != 0:
        return None
    # after the patch stage (its cache stays the pool's): the run goes on over the images that leak into no test set
    pipe, leakage_meta = exclude_leaking(
        pipe, strategy.needs_patches, lambda kept: SelectionPipeline(cfg, kept, *injected, dist, after_shard)
    )
    pipe.extra_meta.update(leakage_meta)
    ctx = pipe.context()
    logger.info(
        "select: method %s, %d pool images, ratio %g -> %d images",
        cfg.method,
        len(pool),
        cfg.ratio,
        ctx.n_images,
    )
    result = pipe.select(strategy, ctx)
    summary = pipe.write_outputs(strategy, ctx, result)
    return {"summary": summary, "stages": pipe.cache.timings}


def run_selection(
    cfg: SelectConfig,
    proposer: PatchProposer | None = None,
    embedder: PatchEmbedder | None = None,
    after_shard: Callable[[int], None] | None = None,
) -> Path:
    """Build the compact set described by ``cfg`` in ``cfg.out``; returns that folder.

    Args:
        cfg: the selection config (see :class:`optidel.select.config.SelectConfig`).
        proposer, embedder: use these objects instead of building them from the config (the patch-stage cache key
            then hashes their ``cache_key()``).
        after_shard: called with the shard number after each patch shard is written.
    Returns:
        the output folder: ``images/``, ``manifest.parquet``, ``report.html``, ``report/``, ``config.yaml``,
        ``metrics.json``, ``log.txt``, ``cache/`` and, written last, ``DONE``.
    Raises:
        optidel.runtime.lock.RunFolderLocked: another run holds ``cfg.out`` (the message names it).

    Examples:
        >>> from optidel.config import resolve_config
        >>> cfg = resolve_config(SelectConfig, overrides=["pool=[data/kvasir-seg:train]", "out=runs/sel"])
        >>> run_selection(cfg)  # doctest: +SKIP
    """
    validate_config(cfg)
    strategy = get_strategy(cfg.method)
    cfg = strategy.resolve_config(cfg)
    validate_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dist = join_job()
    try:  # rank 0 holds the folder; the other ranks of its own job write only their shards and log
        with run_lock(out, command="optidel select") if dist.rank == 0 else nullcontext():
            handler = attach_run_log(out, "log.txt" if dist.rank == 0 else f"log.rank{dist.rank}.txt")
            t_start = time.perf_counter()
            try:
                done = _select_and_write(cfg, strategy, dist, (proposer, embedder), after_shard)
                if done is None:
                    return out
                total = time.perf_counter() - t_start
                n_images = done["summary"]["output images"]
                atomic_write_json(out / "metrics.json", {**done, "total_seconds": round(total, 3)})
                mark_done(out, {"method": cfg.method, "output_images": n_images, "seconds": round(total, 3)})
                logger.info("select: done in %.1f s -> %s (%d images)", total, out, n_images)
                return out
            finally:
                detach_run_log(handler)
    finally:
        dist.close()


def selection_config(**values: Any) -> SelectConfig:
    """A :class:`SelectConfig` from keyword values, validated.

    Keys are top-level fields, sections (``runtime={"shard_size": 8}``) or dotted keys given as a mapping
    (``**{"runtime.shard_size": 8}``); the old flat keys (``shard_size=8``) still work with a deprecation warning
    naming the new key (:attr:`SelectConfig.RENAMED`, applied by :func:`optidel.config.layer_config`).
    """
    if "pool" in values and isinstance(values["pool"], str | Path):
        values["pool"] = (str(values["pool"]),)
    if "pool" in values:
        values["pool"] = tuple(str(p) for p in values["pool"])
    if "out" in values:
        values["out"] = str(values["out"])
    cfg = layer_config(SelectConfig, base=values)
    validate_config(cfg)
    return cfg


__all__ = ["SelectionPipeline", "join_job", "run_selection", "selection_config"]
