"""The patch + embedding stage of a run: this rank's shards, the merge on rank 0, one store per pool source.

Distributed (``torchrun --nproc-per-node K -m optidel.cli select ...``): every rank computes its share of the patch
shards (rank r: shards r, r + K, ...), rank 0 merges after a barrier and runs the rest alone. Within one process
(or rank) the images are computed by ``runtime.procs`` worker processes, each with its own proposer and embedder
built from :meth:`PatchModels.spec` (see :mod:`optidel.select.patches.workers`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json
from optidel.runtime.distributed import DistContext
from optidel.select.config import SelectConfig
from optidel.select.patches.compute import embedding_dim
from optidel.select.patches.reuse import REUSE_FILE, find_reusable, record_images, reuse_signature
from optidel.select.patches.store import PatchStore, combine_stores, merge_shards, process_shards
from optidel.select.patches.types import PatchEmbedder, PatchProposer
from optidel.select.patches.workers import ModelSpec
from optidel.select.stage_cache import StageCache, pool_fingerprint


class PatchModels:
    """The run's proposer and embedder: injected ones (tests, the Python API), or built from the config on first need.

    Args:
        cfg: the effective config.
        device: the torch device they run on.
        proposer, embedder: injected objects (None: :meth:`spec` builds them).
    """

    def __init__(
        self,
        cfg: SelectConfig,
        device: str,
        proposer: PatchProposer | None = None,
        embedder: PatchEmbedder | None = None,
    ):
        self.cfg = cfg
        self.device = device
        self.injected = proposer is not None
        self._proposer = proposer
        self._embedder = embedder

    def injected_pair(self) -> tuple[PatchProposer, PatchEmbedder | None] | None:
        """The injected (proposer, embedder), or None when they come from the config."""
        return (self._proposer, self._embedder) if self.injected and self._proposer is not None else None

    def spec(self) -> ModelSpec:
        """What builds the config's proposer and embedder (here, and in patch-stage worker processes)."""
        p = self.cfg.proposal
        opts = dict(p.proposer_options)
        if p.patches == "sam-checkpoint":
            opts.setdefault("checkpoint", p.sam_checkpoint)
            if p.sam_model_type:
                opts.setdefault("model_type", p.sam_model_type)
        opts.setdefault("device", self.device)
        return ModelSpec(p.patches, opts, p.embedder, self.device, self.cfg.seed, self.cfg.runtime.threads)

    def get(self) -> tuple[PatchProposer, PatchEmbedder | None]:
        """The proposer and embedder (``optidel.select.patches.proposers``), built once, on first need."""
        if self._proposer is None:
            self._proposer, self._embedder = self.spec().build()
        return self._proposer, self._embedder


def source_ranges(pool: Sequence[PoolImage]) -> list[tuple[int, int]]:
    """``[lo, hi)`` pool positions of each source (the pool lists sources one after the other)."""
    out: list[tuple[int, int]] = []
    for i, im in enumerate(pool):
        if not out or pool[out[-1][0]].source != im.source:
            out.append((i, i + 1))
        else:
            out[-1] = (out[-1][0], i + 1)
    return out


def check_shard_spec(root: Path, spec: dict[str, Any]) -> None:
    """Shards on disk from a proposer/embedder whose own ``cache_key()`` differs (its code or defaults changed) are
    deleted, so a resumed stage never mixes two proposers; then ``spec.json`` records the current one."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "spec.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(spec, default=str)):
            stale = sorted(root.glob("shard_*.parquet")) + sorted(root.glob("emb_*.npy"))
            logger.warning(
                "patches: the proposer/embedder changed since the shards in %s were written; recomputing "
                "(%d stale shard files removed)",
                root,
                len(stale) // 2,
            )
            for f in stale:
                f.unlink(missing_ok=True)
    atomic_write_json(path, spec)


class PatchStage:
    """Compute (or read) the pool's patch store.

    Args:
        cfg: the effective config; pool: the pool images; cache: the run's stage cache; models: proposer/embedder.
        dist: the distributed job (a single process: rank 0 of 1).
        after_shard: called after every patch shard is written (tests inject failures with it).
    """

    def __init__(
        self,
        cfg: SelectConfig,
        pool: Sequence[PoolImage],
        cache: StageCache,
        models: PatchModels,
        dist: DistContext,
        after_shard: Callable[[int], None] | None = None,
    ):
        self.cfg = cfg
        self.pool = pool
        self.cache = cache
        self.models = models
        self.dist = dist
        self.after_shard = after_shard

    def run(self) -> PatchStore | None:
        """Compute this rank's patch shards; rank 0 merges (after a barrier) and returns the store, others None.

        A pool of several sources is computed source by source, each into its own store keyed by that source's
        images alone (``patches-<key>`` with the key a one-source pool would have), then combined: a later pool
        that shares a source (in the same cache folder) reuses its patches instead of running the proposer again.
        """
        root = self.cache.patches_dir()
        t0 = time.perf_counter()
        ranges = source_ranges(self.pool)
        if PatchStore.is_complete(root):
            if self.dist.rank != 0:
                return None
            if len(ranges) == 1:  # a store of an earlier version learns its images
                self._record_images(root, self.cache.pool_lines)
            store = PatchStore.open(root)
            self.cache.record("patches", time.perf_counter() - t0, True, store.seconds)
            logger.info("patches: cached (%d patches, %s)", len(store), root.name)
            return store
        if len(ranges) == 1:
            store = self._source_store(root, self.pool, self.cache.pool_lines)
            if store is not None:
                self.cache.record("patches", time.perf_counter() - t0, False, store.seconds)
            return store
        parts: list[tuple[int, PatchStore]] = []
        reused = 0
        for lo, hi in ranges:
            sub, sub_lines = self.pool[lo:hi], self.cache.pool_lines[lo:hi]
            sub_root = self.cache.patches_dir(pool_fingerprint(sub, sub_lines))
            if PatchStore.is_complete(sub_root):
                reused += 1
                logger.info("patches: source %s cached (%s)", sub[0].source, sub_root.name)
                st = None
                if self.dist.rank == 0:
                    self._record_images(sub_root, sub_lines)
                    st = PatchStore.open(sub_root)
            else:
                st = self._source_store(sub_root, sub, sub_lines)
            if st is not None:
                parts.append((lo, st))
        if self.dist.rank != 0:
            return None
        store = combine_stores(root, parts, len(self.pool))
        # compute time of this pool: what the sources cost when computed (0 for none when all were reused)
        self.cache.record("patches", time.perf_counter() - t0, reused == len(ranges), store.seconds)
        return store

    def _record_images(self, root: Path, lines: Sequence[bytes]) -> None:
        """Let later pools reuse the images of a complete store, by the ``spec.json`` it was computed with
        (:func:`optidel.select.patches.reuse.record_images`); stores of earlier versions learn them when read."""
        spec_file = root / "spec.json"
        if (root / REUSE_FILE).is_file() or not spec_file.is_file():
            return
        try:
            spec = json.loads(spec_file.read_text())
        except (OSError, ValueError):
            return
        record_images(root, lines, reuse_signature(spec, self.cfg.proposal.proposer_batch))

    def _source_store(
        self, root: Path, pool: Sequence[PoolImage], lines: Sequence[bytes]
    ) -> PatchStore | None:
        """Shards of ``pool`` into ``root`` on every rank, merged by rank 0 (returned there; None elsewhere).

        Images already computed in another store of the cache folder by the same proposer/embedder are taken from
        it (:func:`optidel.select.patches.reuse.find_reusable`), not proposed again.
        """
        proposer, embedder = self.models.get()
        spec = {
            "spec": self.cache.proposer_spec(),
            "proposer_key": proposer.cache_key(),
            "embedder_key": embedder.cache_key() if embedder else None,
        }
        signature = reuse_signature(spec, self.cfg.proposal.proposer_batch)
        if self.dist.rank == 0:
            check_shard_spec(root, spec)
        self.dist.barrier()  # no rank starts before stale shards are gone
        reused = find_reusable(self.cache.root, root, pool, lines, signature)
        if self.dist.rank == 0:
            logger.info(
                "patches: proposer %s, embedder %s, %d images%s",
                proposer.name,
                embedder.name if embedder else "(the proposer's own)",
                len(pool),
                f" (source {pool[0].source})" if len(pool) < len(self.pool) else "",
            )
        rt = self.cfg.runtime
        process_shards(
            pool,
            proposer,
            embedder,
            root,
            rt.shard_size,
            self.dist.rank,
            self.dist.world,
            rt.workers,
            rt.strict,
            self.after_shard,
            self.cfg.proposal.proposer_batch,
            procs=rt.procs,
            spec=None if self.models.injected else self.models.spec(),
            reused=reused,
        )
        self.dist.barrier()
        if self.dist.rank != 0:
            return None
        store = merge_shards(root, len(pool), rt.shard_size, embedding_dim(proposer, embedder))
        self._record_images(root, lines)
        return store
