"""The compact-set builder: pool -> patches -> embeddings -> k-means -> scores -> selection -> images -> manifest -> report.

:func:`run_selection` is the Python API of ``optidel select``. Every stage caches its result under ``OUT/cache`` (or
``cache_dir``, which several selections of one pool may share) in
a folder named by a hash of exactly the settings that affect it, so a rerun with the same config only reads, and a
changed config recomputes only the stages downstream of the change::

    OUT/cache/patches-<key>/       patch table + embeddings, checkpointed in shards (optidel.select.patches.store)
                                   key: pool files (path, size, content hash), the proposer/embedder settings of the
                                   config (or an injected proposer's cache_key()), shard_size, proposer_batch;
                                   spec.json records the built proposer's and embedder's own cache_key().
                                   A pool of several sources is computed one source at a time, each into the
                                   store a one-source pool would use, then combined: pools that share a source
                                   (and a cache_dir) run the proposer on it once
    OUT/cache/kmeans-<key>/        centroids, cluster, d1, d2        key: patches key, k, distance, iterations, seed
    OUT/cache/recon-<key>/         MAE reconstruction scores         key: patches key, MAE run files, seed
    OUT/cache/imgemb-<key>/        image-level embeddings            key: patches key (or embedder), kind
    OUT/cache/{images,manifest,report}.json   stamps: the key of what ``images/``, ``manifest.parquet`` and
                                   ``report.html`` currently hold (keys hash the selection itself)

Stage folders are built as ``.NAME-KEY.partial`` and renamed when complete; ``images/`` is rebuilt in
``.images-KEY.partial`` (one atomic PNG at a time, so a killed write resumes) and swapped in. ``DONE`` is removed when
a run starts and written last.

Distributed (``torchrun --nproc-per-node K -m optidel.cli select ...``): every rank computes its share of the
patch shards (rank r: shards r, r + K, ...), rank 0 merges after a barrier (gloo) and runs the rest alone; the
other ranks return after the barrier.

Within one process (or rank), the patch stage's images are computed by ``procs`` worker processes, each with its
own proposer and embedder built from :meth:`SelectionPipeline.model_spec` (default: one per core, at most 4, on a
CPU; 1 on a GPU, under ``torchrun`` and with an injected proposer): see :mod:`optidel.select.patches.workers`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optidel.config import save_config
from optidel.data.image import ImageDecodeError, load_rgb, read_header
from optidel.data.pool import PoolImage, list_pool
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.runtime.atomic import atomic_open, atomic_save_npy, atomic_write_json
from optidel.runtime.progress import track
from optidel.runtime.run_dir import DONE, mark_done
from optidel.runtime.seed import seed_everything
from optidel.select.config import SelectConfig, default_k, validate_config
from optidel.select.outputs.manifest import image_manifest, patch_manifest, write_manifest
from optidel.select.outputs.mosaic import compose, crop, fit_tile, save_png
from optidel.select.patches.store import (
    PatchStore,
    combine_stores,
    embedding_dim,
    merge_shards,
    prefetched,
    process_shards,
)
from optidel.select.patches.types import PatchEmbedder, PatchProposer
from optidel.select.patches.workers import ModelSpec
from optidel.select.rank.cluster import KMeansResult, l2_normalize, run_kmeans
from optidel.select.rank.image_embeddings import (
    ImageEmbeddings,
    mean_patch_embeddings,
    whole_image_embeddings,
)
from optidel.select.rank.scores import margin_score, prototype_score, rank_order, reconstruction_scores
from optidel.select.strategies.base import SelectionContext, SelectionResult, Strategy, get_strategy

STAGE_VERSION = 1
RENDER_BATCH = 128  # output images rendered per batch (their source images are decoded once per batch)
GALLERY = 24


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short hex hash of a JSON-able object (keys sorted)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def file_signature(path: str | Path | None) -> list[Any] | None:
    """``[resolved path, size, mtime_ns]`` of a file, or of every file directly in a folder; None for None."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        return [str(p.resolve())] + [file_signature(c) for c in sorted(p.iterdir()) if c.is_file()]
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    return [str(path), None]


def pool_file_lines(pool: Sequence[PoolImage]) -> list[bytes]:
    """One line per image: uid, resolved path, size and content (SHA-1); :func:`pool_fingerprint` hashes them.

    Content, not modification time: a dataset copied or unpacked again (new mtimes, same bytes) keeps its cached
    SAM patches, which can take hours to recompute; an image whose bytes change invalidates them. Hashing reads every
    file (median 0.14 s for the 900 Kvasir-SEG train images here, files in the page cache).
    """
    lines = []
    for im in pool:
        with im.path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha1").hexdigest()
        lines.append(f"{im.uid}\t{im.path.resolve()}\t{im.path.stat().st_size}\t{digest}\n".encode())
    return lines


def pool_fingerprint(pool: Sequence[PoolImage], lines: Sequence[bytes] | None = None) -> str:
    """Hash of the pool listing (see :func:`pool_file_lines`; pass ``lines`` already computed for ``pool``)."""
    h = hashlib.sha1()
    for line in pool_file_lines(pool) if lines is None else lines:
        h.update(line)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torch.distributed job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def dist_info(timeout_hours: float = 12.0) -> DistInfo:
    """Join the torch.distributed job when run under ``torchrun`` (gloo: only barriers are needed).

    The barrier timeout is ``timeout_hours``: rank 0 waits there for the slowest rank's shards.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import datetime

    import torch.distributed as dist

    here = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=timeout_hours))
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), here)


@dataclass
class OutputMap:
    """Where each selected id went: ``names[i]`` (None if it could not be written) and ``tiles[i]`` (or None)."""

    names: list[str | None]
    tiles: np.ndarray | None
    sizes: list[tuple[int, int]] = field(default_factory=list)  # image level: (w, h) of each source image
    key: str = ""


class SelectionPipeline:
    """The stages of one ``optidel select`` run over one output folder; each stage is computed once and cached.

    Args:
        cfg: the effective config.
        pool: the pool images.
        proposer, embedder: injected objects (tests, the Python API); default: built from the config with
            ``optidel.select.patches.proposers.make_proposer`` / ``make_embedder`` when the patch stage must run.
        dist: the distributed job (see :func:`dist_info`).
        after_shard: called after every patch shard is written (tests inject failures with it).
    """

    def __init__(
        self,
        cfg: SelectConfig,
        pool: list[PoolImage],
        proposer: PatchProposer | None = None,
        embedder: PatchEmbedder | None = None,
        dist: DistInfo | None = None,
        after_shard: Callable[[int], None] | None = None,
    ):
        self.cfg = cfg
        self.pool = pool
        self.out = Path(cfg.out)
        self.cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        self.stamps = self.out / "cache"  # what OUT's own files hold: never in a shared cache_dir
        self._proposer = proposer
        self._embedder = embedder
        self._injected = proposer is not None
        self.dist = dist or DistInfo()
        self.after_shard = after_shard
        self.timings: dict[str, dict[str, Any]] = {}
        self._memo: dict[str, Any] = {}

    # ---------------------------------------------------------------- keys and bookkeeping
    def _record(self, stage: str, seconds: float, cached: bool, compute_seconds: float | None = None) -> None:
        self.timings[stage] = {
            "seconds": round(seconds, 3),
            "cached": cached,
            "compute_seconds": round(compute_seconds if compute_seconds is not None else seconds, 3),
        }

    @property
    def pool_key(self) -> str:
        if "pool_key" not in self._memo:
            self._memo["pool_key"] = pool_fingerprint(self.pool, self.pool_lines)
        return self._memo["pool_key"]

    @property
    def pool_lines(self) -> list[bytes]:
        """Per-image fingerprint lines, computed once per run (every file is read to hash it)."""
        if "pool_lines" not in self._memo:
            self._memo["pool_lines"] = pool_file_lines(self.pool)
        return self._memo["pool_lines"]

    @property
    def device(self) -> str:
        d = self.cfg.device
        if d.startswith("cuda") and ":" not in d and self.dist.world > 1:
            return f"cuda:{self.dist.local_rank}"
        return d

    def proposer_spec(self) -> dict[str, Any]:
        """What identifies the patches and embeddings (for the patch-stage key)."""
        cfg = self.cfg
        if self._injected:
            prop = {"name": self._proposer.name, "key": self._proposer.cache_key()}  # type: ignore[union-attr]
            emb = (
                None
                if self._embedder is None
                else {"name": self._embedder.name, "key": self._embedder.cache_key()}
            )
        else:
            prop = {"kind": cfg.patches, "options": dict(cfg.proposer_options)}
            if cfg.patches == "sam-checkpoint":
                prop["checkpoint"] = file_signature(
                    cfg.sam_checkpoint
                )  # the model type is read from the file
            emb = None
            if cfg.embedder:
                emb = {"spec": cfg.embedder}
                if not cfg.embedder.startswith("timm:"):
                    emb["file"] = file_signature(cfg.embedder)
        return {"proposer": prop, "embedder": emb}

    @property
    def patches_key(self) -> str:
        return self._patches_key(self.pool_key)

    def _patches_key(self, pool_key: str) -> str:
        return stable_hash(
            [
                "patches",
                STAGE_VERSION,
                pool_key,
                self.proposer_spec(),
                self.cfg.shard_size,
                self.cfg.proposer_batch,
            ]
        )

    def source_ranges(self) -> list[tuple[int, int]]:
        """``[lo, hi)`` pool positions of each source (the pool lists sources one after the other)."""
        out: list[tuple[int, int]] = []
        for i, im in enumerate(self.pool):
            if not out or self.pool[out[-1][0]].source != im.source:
                out.append((i, i + 1))
            else:
                out[-1] = (out[-1][0], i + 1)
        return out

    @property
    def kmeans_key(self) -> str:
        c = self.cfg
        parts = [c.k, c.distance, c.kmeans_iters, c.kmeans_init_sample, c.kmeans_points_per_centroid, c.seed]
        return stable_hash(["kmeans", STAGE_VERSION, self.patches_key, parts])

    @property
    def recon_key(self) -> str:
        return stable_hash(
            ["recon", STAGE_VERSION, self.patches_key, file_signature(self.cfg.mae_run), self.cfg.seed]
        )

    def _stage(
        self, name: str, key: str, compute: Callable[[Path], dict[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        """Run ``compute(tmp_dir)`` once per key; the folder is renamed into place when complete."""
        final = self.cache / f"{name}-{key}"
        t0 = time.perf_counter()
        if (final / "done.json").is_file():
            info = json.loads((final / "done.json").read_text())
            self._record(name, time.perf_counter() - t0, True, info.get("seconds"))
            logger.info("%s: cached (%s)", name, final.name)
            return final, info
        tmp = self.cache / f".{name}-{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        info = compute(tmp) or {}
        info["seconds"] = time.perf_counter() - t0
        atomic_write_json(tmp / "done.json", info)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self._record(name, info["seconds"], False)
        return final, info

    def _stamp_matches(self, name: str, key: str, *paths: Path) -> dict[str, Any] | None:
        stamp = self.stamps / f"{name}.json"
        if not stamp.is_file() or not all(p.exists() for p in paths):
            return None
        data = json.loads(stamp.read_text())
        return data if data.get("key") == key else None

    def _write_stamp(self, name: str, data: dict[str, Any]) -> None:
        atomic_write_json(self.stamps / f"{name}.json", data)

    # ---------------------------------------------------------------- patches + embeddings
    def model_spec(self) -> ModelSpec:
        """What builds the config's proposer and embedder (here, and in patch-stage worker processes)."""
        opts = dict(self.cfg.proposer_options)
        if self.cfg.patches == "sam-checkpoint":
            opts.setdefault("checkpoint", self.cfg.sam_checkpoint)
            if self.cfg.sam_model_type:
                opts.setdefault("model_type", self.cfg.sam_model_type)
        opts.setdefault("device", self.device)
        return ModelSpec(
            self.cfg.patches, opts, self.cfg.embedder, self.device, self.cfg.seed, self.cfg.threads
        )

    def _models(self) -> tuple[PatchProposer, PatchEmbedder | None]:
        """The proposer and embedder of the config (``optidel.select.patches.proposers``), built once, on first need."""
        if self._proposer is None:
            self._proposer, self._embedder = self.model_spec().build()
        return self._proposer, self._embedder

    def run_patch_stage(self) -> PatchStore | None:
        """Compute this rank's patch shards; rank 0 merges (after a barrier) and returns the store, others None.

        A pool of several sources is computed source by source, each into its own store keyed by that source's
        images alone (``patches-<key>`` with the key a one-source pool would have), then combined: a later pool
        that shares a source (in the same cache folder) reuses its patches instead of running the proposer again.
        """
        root = self.cache / f"patches-{self.patches_key}"
        t0 = time.perf_counter()
        if PatchStore.is_complete(root):
            if self.dist.rank != 0:
                return None
            store = PatchStore.open(root)
            self._record("patches", time.perf_counter() - t0, True, store.seconds)
            logger.info("patches: cached (%d patches, %s)", len(store), root.name)
            return store
        ranges = self.source_ranges()
        if len(ranges) == 1:
            store = self._source_store(root, self.pool)
            if store is not None:
                self._record("patches", time.perf_counter() - t0, False, store.seconds)
            return store
        parts: list[tuple[int, PatchStore]] = []
        reused = 0
        for lo, hi in ranges:
            sub = self.pool[lo:hi]
            sub_key = pool_fingerprint(sub, self.pool_lines[lo:hi])
            sub_root = self.cache / f"patches-{self._patches_key(sub_key)}"
            if PatchStore.is_complete(sub_root):
                reused += 1
                logger.info("patches: source %s cached (%s)", sub[0].source, sub_root.name)
                st = PatchStore.open(sub_root) if self.dist.rank == 0 else None
            else:
                st = self._source_store(sub_root, sub)
            if st is not None:
                parts.append((lo, st))
        if self.dist.rank != 0:
            return None
        store = combine_stores(root, parts, len(self.pool))
        # compute time of this pool: what the sources cost when computed (0 for none when all were reused)
        self._record("patches", time.perf_counter() - t0, reused == len(ranges), store.seconds)
        return store

    def _source_store(self, root: Path, pool: Sequence[PoolImage]) -> PatchStore | None:
        """Shards of ``pool`` into ``root`` on every rank, merged by rank 0 (returned there; None elsewhere)."""
        proposer, embedder = self._models()
        spec = {
            "spec": self.proposer_spec(),
            "proposer_key": proposer.cache_key(),
            "embedder_key": embedder.cache_key() if embedder else None,
        }
        if self.dist.rank == 0:
            self._check_shard_spec(root, spec)
        self.dist.barrier()  # no rank starts before stale shards are gone
        if self.dist.rank == 0:
            logger.info(
                "patches: proposer %s, embedder %s, %d images%s",
                proposer.name,
                embedder.name if embedder else "(the proposer's own)",
                len(pool),
                f" (source {pool[0].source})" if len(pool) < len(self.pool) else "",
            )
        process_shards(
            pool,
            proposer,
            embedder,
            root,
            self.cfg.shard_size,
            self.dist.rank,
            self.dist.world,
            self.cfg.workers,
            self.cfg.strict,
            self.after_shard,
            self.cfg.proposer_batch,
            procs=self.cfg.procs,
            spec=None if self._injected else self.model_spec(),
        )
        self.dist.barrier()
        if self.dist.rank != 0:
            return None
        return merge_shards(root, len(pool), self.cfg.shard_size, embedding_dim(proposer, embedder))

    @staticmethod
    def _check_shard_spec(root: Path, spec: dict[str, Any]) -> None:
        """Shards on disk from a proposer/embedder whose own ``cache_key()`` differs (its code or defaults changed)
        are deleted, so a resumed stage never mixes two proposers; then ``spec.json`` records the current one."""
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

    def patches(self) -> PatchStore:
        if "patches" not in self._memo:
            if self.dist.rank != 0:
                raise RuntimeError("only rank 0 reads the merged patch store")
            saved = self.dist
            self.dist = DistInfo()  # a lazy call on rank 0 alone computes every shard itself (no barrier)
            try:
                store = self.run_patch_stage()
            finally:
                self.dist = saved
            assert store is not None
            self._memo["patches"] = store
        return self._memo["patches"]

    # ---------------------------------------------------------------- k-means and scores
    def clusters(self) -> KMeansResult:
        if "clusters" in self._memo:
            return self._memo["clusters"]
        store = self.patches()
        cfg = self.cfg

        def compute(d: Path) -> dict[str, Any]:
            n = len(store)
            if n < 2:
                raise ValueError(f"k-means needs at least 2 patches; the pool gave {n}")
            k = min(cfg.k or default_k(n), n)
            logger.info("k-means: %d patches x %d dims, k=%d (%s)", n, store.dim, k, cfg.distance)
            res = run_kmeans(
                store.embeddings,
                k,
                cfg.distance,
                cfg.kmeans_iters,
                cfg.seed,
                cfg.kmeans_init_sample,
                cfg.kmeans_points_per_centroid,
            )
            for name in ("centroids", "cluster", "d1", "d2"):
                atomic_save_npy(d / f"{name}.npy", getattr(res, name))
            return {"k": k, "n": n, "distance": cfg.distance, "inertia": res.inertia}

        d, info = self._stage("kmeans", self.kmeans_key, compute)
        arrays = {name: np.load(d / f"{name}.npy") for name in ("centroids", "cluster", "d1", "d2")}
        res = KMeansResult(
            arrays["centroids"],
            arrays["cluster"],
            arrays["d1"],
            arrays["d2"],
            info["distance"],
            info["inertia"],
        )
        self._memo["clusters"] = res
        return res

    def scores(self) -> dict[str, np.ndarray]:
        if "scores" in self._memo:
            return self._memo["scores"]
        km = self.clusters()
        out = {"margin": margin_score(km.d1, km.d2), "prototype": prototype_score(km.d1)}
        if self.cfg.mae_run:
            store = self.patches()

            def compute(d: Path) -> dict[str, Any]:
                paths = [str(p.path) for p in self.pool]
                s = reconstruction_scores(
                    paths,
                    store.image_index,
                    store.boxes,
                    self.cfg.mae_run,
                    self.cfg.seed,
                    workers=self.cfg.workers,
                    device=self.device,
                )
                atomic_save_npy(d / "scores.npy", s)
                return {"mae_run": str(self.cfg.mae_run)}

            d, _ = self._stage("recon", self.recon_key, compute)
            out["reconstruction"] = np.load(d / "scores.npy")
        else:
            out["reconstruction"] = np.full(km.d1.shape, np.nan, np.float32)
        self._memo["scores"] = out
        return out

    def image_embeddings(self) -> ImageEmbeddings:
        if "image_embeddings" in self._memo:
            return self._memo["image_embeddings"]
        kind = self.cfg.image_embedding
        if kind == "mean":
            store = self.patches()
            key = stable_hash(["imgemb", STAGE_VERSION, self.patches_key, kind])

            def compute(d: Path) -> dict[str, Any]:
                ie = mean_patch_embeddings(store.image_index, store.embeddings, len(self.pool))
                atomic_save_npy(d / "embeddings.npy", ie.embeddings)
                atomic_save_npy(d / "valid.npy", ie.valid)
                return {"kind": kind}
        else:
            key = stable_hash(
                ["imgemb", STAGE_VERSION, self.pool_key, self.proposer_spec()["embedder"], kind]
            )

            def compute(d: Path) -> dict[str, Any]:
                _, embedder = self._models()
                if embedder is None:
                    raise ValueError("image_embedding=whole needs an embedder (--embedder)")
                ie = whole_image_embeddings(self.pool, embedder, self.cfg.workers)
                atomic_save_npy(d / "embeddings.npy", ie.embeddings)
                atomic_save_npy(d / "valid.npy", ie.valid)
                return {"kind": kind}

        d, _ = self._stage("imgemb", key, compute)
        res = ImageEmbeddings(np.load(d / "embeddings.npy", mmap_mode="r"), np.load(d / "valid.npy"), kind)
        self._memo["image_embeddings"] = res
        return res

    def context(self) -> SelectionContext:
        return SelectionContext(
            self.cfg,
            self.pool,
            {
                "patches": self.patches,
                "clusters": self.clusters,
                "scores": self.scores,
                "image_embeddings": self.image_embeddings,
            },
        )

    # ---------------------------------------------------------------- outputs
    def _selection_key(self, result: SelectionResult) -> str:
        h = hashlib.sha1(result.ids.tobytes())
        if result.groups is not None:
            h.update(result.groups.tobytes())
        c = self.cfg
        render = [result.level, c.mosaic_size, c.tile_fit, c.image_copy, STAGE_VERSION]
        base = self.patches_key if result.level == "patch" else self.pool_key
        return stable_hash(["images", base, h.hexdigest(), render])

    def write_images(self, result: SelectionResult) -> OutputMap:
        """Write ``OUT/images/`` (mosaics, single patches, or copied pool images); cached by the selection's key."""
        key = self._selection_key(result)
        images_dir = self.out / "images"
        t0 = time.perf_counter()
        stamp = self._stamp_matches("images", key, images_dir)
        if stamp is not None and all((images_dir / n).is_file() for n in stamp["names"] if n):
            tiles = None if stamp["tiles"] is None else np.asarray(stamp["tiles"], np.int64)
            self._record("images", time.perf_counter() - t0, True, stamp.get("seconds"))
            logger.info("images: cached (%d files)", len({n for n in stamp["names"] if n}))
            return OutputMap(stamp["names"], tiles, [tuple(s) for s in stamp.get("sizes", [])], key)
        tmp = self.out / f".images-{key}.partial"
        tmp.mkdir(parents=True, exist_ok=True)
        if result.level == "patch":
            omap = self._render_patches(result, tmp)
        else:
            omap = self._copy_images(result, tmp)
        omap.key = key
        old = self.out / ".images-old"
        shutil.rmtree(old, ignore_errors=True)
        if images_dir.exists():
            os.replace(images_dir, old)
        os.replace(tmp, images_dir)
        shutil.rmtree(old, ignore_errors=True)
        secs = time.perf_counter() - t0
        self._write_stamp(
            "images",
            {
                "key": key,
                "names": omap.names,
                "seconds": secs,
                "tiles": None if omap.tiles is None else omap.tiles.tolist(),
                "sizes": [list(s) for s in omap.sizes],
            },
        )
        self._record("images", secs, False)
        logger.info("images: %d files in %s (%.1f s)", len({n for n in omap.names if n}), images_dir, secs)
        return omap

    def _render_patches(self, result: SelectionResult, folder: Path) -> OutputMap:
        store = self.patches()
        image_index = store.image_index
        boxes = store.boxes
        cfg = self.cfg
        n = result.ids.size
        names: list[str | None] = [None] * n
        if result.groups is not None:
            tiles = np.full(n, -1, np.int64)
            jobs = []
            for g, row in enumerate(result.groups):
                name = f"mosaic_{g:05d}.png"
                for t, pos in enumerate(row.tolist()):
                    if pos >= 0:
                        names[pos] = name
                        tiles[pos] = t
                jobs.append((name, [int(result.ids[p]) if p >= 0 else -1 for p in row.tolist()]))
            tile_px = cfg.mosaic_size // 2
        else:
            tiles = None
            jobs = []
            for i in range(n):
                names[i] = f"patch_{i:05d}.png"
                jobs.append((names[i], [int(result.ids[i])]))
            tile_px = cfg.mosaic_size
        todo = [j for j in jobs if not (folder / j[0]).is_file()]  # resume a killed write
        for b in track(range(0, len(todo), RENDER_BATCH), f"images ({RENDER_BATCH} per step)"):
            batch = todo[b : b + RENDER_BATCH]
            need = sorted({int(image_index[pid]) for _, pids in batch for pid in pids if pid >= 0})
            images = prefetched(lambda i: load_rgb(self.pool[i].path), need, cfg.workers)
            decoded = dict(zip(need, images, strict=True))
            for name, pids in batch:
                tiles_img = [
                    None
                    if pid < 0
                    else fit_tile(crop(decoded[int(image_index[pid])], boxes[pid]), tile_px, cfg.tile_fit)
                    for pid in pids
                ]
                img = compose(tiles_img, cfg.mosaic_size) if result.groups is not None else tiles_img[0]
                save_png(img, str(folder / name))
        return OutputMap(names, tiles)

    def _copy_images(self, result: SelectionResult, folder: Path) -> OutputMap:
        cfg = self.cfg
        names: list[str | None] = []
        sizes: list[tuple[int, int]] = []
        for i, idx in enumerate(track(result.ids.tolist(), "images")):
            im = self.pool[idx]
            try:
                if cfg.image_copy == "copy":
                    hdr = read_header(im.path)
                    name = f"image_{i:05d}{im.path.suffix.lower()}"
                    if not (folder / name).is_file():
                        with atomic_open(folder / name, "wb") as f, open(im.path, "rb") as src:
                            shutil.copyfileobj(src, f)
                    sizes.append((hdr.width, hdr.height))
                else:
                    name = f"image_{i:05d}.png"
                    img = load_rgb(im.path)
                    if not (folder / name).is_file():
                        save_png(fit_tile(img, cfg.mosaic_size, cfg.tile_fit), str(folder / name))
                    sizes.append((img.shape[1], img.shape[0]))
                names.append(name)
            except ImageDecodeError as e:
                if cfg.strict:
                    raise
                logger.warning("skipping unreadable pool image %s: %s", e.path, e.reason)
                names.append(None)
                sizes.append((0, 0))
        return OutputMap(names, None, sizes)

    def write_manifest(self, result: SelectionResult, omap: OutputMap, meta: dict[str, Any]) -> Path:
        """``OUT/manifest.parquet``: one row per pool patch (patch level) or per selected image (image level)."""
        path = self.out / "manifest.parquet"
        t0 = time.perf_counter()
        extra = (
            [self.kmeans_key, self.recon_key if self.cfg.mae_run else None] if result.level == "patch" else []
        )
        key = stable_hash(["manifest", STAGE_VERSION, omap.key, extra, meta])
        stamp = self._stamp_matches("manifest", key, path)
        if stamp is not None:
            self._record("manifest", time.perf_counter() - t0, True, stamp.get("seconds"))
            return path
        if result.level == "patch":
            store = self.patches()
            km = self.clusters()
            table = patch_manifest(
                store.table,
                km.cluster,
                km.d1,
                km.d2,
                self.scores(),
                result.ids,
                [n or "" for n in omap.names],
                omap.tiles,
            )
        else:
            keep = [i for i, n in enumerate(omap.names) if n]
            ims = [self.pool[int(result.ids[i])] for i in keep]
            rows = {
                "image_index": [int(result.ids[i]) for i in keep],
                "source": [im.source for im in ims],
                "image_id": [im.id for im in ims],
                "image_uid": [im.uid for im in ims],
                "image_path": [str(im.path) for im in ims],
                "image_w": [omap.sizes[i][0] for i in keep],
                "image_h": [omap.sizes[i][1] for i in keep],
            }
            scores = {k: np.asarray(v)[keep] for k, v in result.scores.items()}
            table = image_manifest(rows, [omap.names[i] for i in keep], scores)  # type: ignore[misc]
        write_manifest(table, path, meta)
        secs = time.perf_counter() - t0
        self._write_stamp("manifest", {"key": key, "seconds": secs})
        self._record("manifest", secs, False)
        logger.info("manifest: %d rows -> %s", table.num_rows, path)
        return path


def _source_counts(
    pipe: SelectionPipeline, result: SelectionResult, omap: OutputMap
) -> list[tuple[str, int, int | None, int]]:
    sources = list(dict.fromkeys(im.source for im in pipe.pool))
    pool_imgs = {s: 0 for s in sources}
    for im in pipe.pool:
        pool_imgs[im.source] += 1
    if result.level == "patch":
        pool_patches = pipe.patches().counts("source")
        sel = pipe.patches().counts("source", result.ids)
        return [(s, pool_imgs[s], int(pool_patches.get(s, 0)), int(sel.get(s, 0))) for s in sources]
    sel_img: dict[str, int] = {}
    for i, n in zip(result.ids.tolist(), omap.names, strict=True):
        if n:
            sel_img[pipe.pool[i].source] = sel_img.get(pipe.pool[i].source, 0) + 1
    return [(s, pool_imgs[s], None, sel_img.get(s, 0)) for s in sources]


def _crops(pipe: SelectionPipeline, ids: Sequence[int], caps: Sequence[str]) -> list[tuple[np.ndarray, str]]:
    store = pipe.patches()
    image_index = store.image_index
    boxes = store.boxes
    out = []
    for pid, cap in zip(ids, caps, strict=True):
        try:
            img = load_rgb(pipe.pool[int(image_index[pid])].path)
        except ImageDecodeError:
            continue
        out.append((fit_tile(crop(img, boxes[pid]), 96, "pad"), cap))
    return out


VINFO_MIN_SET = 50  # fewer selected patches give no usable 5-fold estimate over 10 pseudo-classes
VINFO_MAX_SET = 5000  # larger sets and pools are subsampled (seeded): the estimate's cost stays at seconds
VINFO_MAX_POOL = 50000


def selection_vinfo(
    embeddings: np.ndarray, selected: np.ndarray, seed: int, normalize: bool
) -> dict[str, Any] | None:
    """V-information of the selected patches vs random pool subsets of the same size (None: too few selected).

    Args:
        embeddings: (n_patches, D) patch embeddings (may be memory-mapped); selected: (n_patches,) bool.
        seed: seeds the subsamples and :func:`optidel.metrics.vinfo.vinfo_report`.
        normalize: L2-normalise rows first (the selection's cosine geometry).
    """
    from optidel.metrics.vinfo import vinfo_report

    sel = np.flatnonzero(selected)
    if sel.size < VINFO_MIN_SET or sel.size >= len(selected):
        return None
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    if sel.size > VINFO_MAX_SET:
        sel = np.sort(rng.choice(sel, VINFO_MAX_SET, replace=False))
    pool = np.arange(len(selected))
    if pool.size > VINFO_MAX_POOL:
        pool = np.sort(rng.choice(pool, VINFO_MAX_POOL, replace=False))

    def rows(idx: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings[idx], np.float32)
        return l2_normalize(x) if normalize else x

    report = vinfo_report(rows(sel), rows(pool), seed=seed)
    report["estimator"]["n_selected_total"] = int(selected.sum())
    report["estimator"]["n_pool_total"] = int(len(selected))
    return report


def build_report_data(
    pipe: SelectionPipeline,
    strategy: Strategy,
    result: SelectionResult,
    omap: OutputMap,
    summary: dict[str, Any],
) -> Any:
    """Assemble :class:`optidel.select.outputs.report.ReportData` from the pipeline's cached stages."""
    from optidel.select.outputs.report import ReportData, map_sample, pca_2d

    cfg = pipe.cfg
    rows = [(k.replace("_", " "), v) for k, v in summary.items()]
    timings = [
        (
            k,
            v["seconds"],
            f"cached; first computed in {v['compute_seconds']:.1f} s" if v["cached"] else "computed",
        )
        for k, v in pipe.timings.items()
    ]
    data = ReportData(
        title=f"optidel select: {cfg.method} ({result.n_outputs} images)",
        summary=rows,
        timings=timings,
        source_counts=_source_counts(pipe, result, omap),
        score_name=cfg.score,
    )
    data.notes.append(
        f"Ranking: {result.ranking}. Output images in images/, one row per "
        + ("pool patch" if result.level == "patch" else "selected image")
        + " in manifest.parquet."
    )
    if result.level == "patch":
        store = pipe.patches()
        km = pipe.clusters()
        scores = pipe.scores()
        n = len(store)
        selected = np.zeros(n, bool)
        selected[result.ids] = True
        data.scores = {k: np.asarray(v) for k, v in scores.items()}
        data.selected = selected
        if getattr(strategy, "ranks_by_score", False) and result.ids.size:
            data.threshold = float(scores[cfg.score][result.ids[-1]])
        order = rank_order(pipe.context().hardness(), descending=True)
        order = order[np.isfinite(np.asarray(scores[cfg.score])[order])]
        hard, easy = order[:GALLERY].tolist(), order[::-1][:GALLERY].tolist()
        s = scores[cfg.score]
        for rows, attr in ((hard, "hardest"), (easy, "easiest")):
            ids_ = store.values_at("image_id", rows)
            caps = [f"{s[i]:.3g} {str(u).rsplit('/', 1)[-1][:14]}" for i, u in zip(rows, ids_, strict=True)]
            setattr(data, attr, _crops(pipe, rows, caps))
        rows_ = map_sample(n, selected, np.random.default_rng(cfg.seed))
        x = np.asarray(store.embeddings[rows_], np.float32)
        if cfg.distance == "cosine":
            x = l2_normalize(x)
        data.map_xy = pca_2d(x)
        data.map_cluster = km.cluster[rows_]
        data.map_selected = selected[rows_]
        data.failed = [(f["uid"], f["reason"]) for f in store.failed]
        if cfg.vinfo:
            data.vinfo = selection_vinfo(store.embeddings, selected, cfg.seed, cfg.distance == "cosine")
            if data.vinfo is None:
                k = int(selected.sum())
                why = "every patch is selected" if k == n else f"at least {VINFO_MIN_SET} needed"
                data.notes.append(f"V-information not estimated: {k} selected patches ({why}).")
    names = sorted({n for n in omap.names if n})[:8]
    for name in names:
        try:
            data.samples.append((load_rgb(pipe.out / "images" / name), name))
        except ImageDecodeError:
            continue
    return data


def write_selection_report(
    pipe: SelectionPipeline,
    strategy: Strategy,
    result: SelectionResult,
    omap: OutputMap,
    summary: dict[str, Any],
) -> Path:
    """``OUT/report.html`` (skipped when the stamp says it shows this selection already)."""
    from optidel.select.outputs.report import write_report

    path = pipe.out / "report.html"
    t0 = time.perf_counter()
    key = stable_hash(
        [
            "report",
            STAGE_VERSION,
            omap.key,
            pipe.kmeans_key if result.level == "patch" else None,
            pipe.cfg.vinfo,
            {k: v for k, v in summary.items() if k != "runtime (s)"},
        ]
    )
    stamp = pipe._stamp_matches("report", key, path, pipe.out / "report")
    if stamp is not None:
        pipe._record("report", time.perf_counter() - t0, True, stamp.get("seconds"))
        return path
    data = build_report_data(pipe, strategy, result, omap, summary)
    if data.vinfo is not None:
        atomic_write_json(pipe.out / "vinfo.json", data.vinfo)
    else:
        (pipe.out / "vinfo.json").unlink(missing_ok=True)
    write_report(pipe.out, data)
    secs = time.perf_counter() - t0
    pipe._write_stamp("report", {"key": key, "seconds": secs})
    pipe._record("report", secs, False)
    return path


def _summary(
    pipe: SelectionPipeline, strategy: Strategy, result: SelectionResult, omap: OutputMap
) -> dict[str, Any]:
    cfg = pipe.cfg
    s: dict[str, Any] = {
        "method": f"{cfg.method} ({strategy.description})",
        "pool sources": ", ".join(cfg.pool),
        "pool images": len(pipe.pool),
        "ratio": cfg.ratio,
        "output images": len({n for n in omap.names if n}),
    }
    if result.level == "patch":
        store = pipe.patches()
        km = pipe.clusters()
        s.update(
            {
                "unreadable pool images": len(store.failed),
                "patches in pool": len(store),
                "patch proposer": cfg.patches
                if not pipe._injected
                else str(pipe.proposer_spec()["proposer"].get("name")),
                "embedding": f"{cfg.embedder or 'the proposer features'} (dim {store.dim})",
                "N wanted": result.info.get("n_wanted", result.ids.size),
                "N selected patches": int(result.ids.size),
                "k (clusters)": km.k,
                "distance": cfg.distance,
                "score (ranking)": cfg.score,
                "mosaics": f"2x2, {cfg.mosaic_size} px, tiles {cfg.tile_fit}, grouping {cfg.grouping}"
                if result.groups is not None
                else "no (single patches)",
                "dedup threshold": cfg.dedup_threshold,
                "max per image": cfg.max_per_image,
            }
        )
    else:
        s["selected images"] = int(result.ids.size)
        s["image files"] = cfg.image_copy
    s["seed"] = cfg.seed
    return s


def _seed_light(seed: int) -> None:
    """Seed Python and NumPy, and torch only when it is already imported (image-level runs never import it)."""
    import random
    import sys

    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        seed_everything(seed)


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
    dist = dist_info()
    handler = attach_run_log(out, "log.txt" if dist.rank == 0 else f"log.rank{dist.rank}.txt")
    t_start = time.perf_counter()
    try:
        if dist.rank == 0:
            (out / DONE).unlink(missing_ok=True)
            save_config(cfg, out)
        _seed_light(cfg.seed)
        t0 = time.perf_counter()
        pool = list_pool(cfg.pool)
        pipe = SelectionPipeline(cfg, pool, proposer, embedder, dist, after_shard)
        pipe._record("pool listing", time.perf_counter() - t0, False)
        if dist.world > 1 and strategy.needs_patches:
            store = pipe.run_patch_stage()
            if dist.rank != 0:
                return out
            pipe._memo["patches"] = store
        elif dist.rank != 0:
            return out
        logger.info(
            "select: method %s, %d pool images, ratio %g -> %d images",
            cfg.method,
            len(pool),
            cfg.ratio,
            SelectionContext(cfg, pool, {}).n_images,
        )
        t0 = time.perf_counter()
        before = set(pipe.timings)
        result = strategy.select(pipe.context())
        # stages the strategy computed lazily (patches, k-means, ...) are timed on their own rows
        nested = sum(v["seconds"] for k, v in pipe.timings.items() if k not in before)
        pipe._record("selection", max(0.0, time.perf_counter() - t0 - nested), False)
        omap = pipe.write_images(result)
        summary = _summary(pipe, strategy, result, omap)
        meta = {
            "method": cfg.method,
            "level": result.level,
            "score": cfg.score,
            "ratio": cfg.ratio,
            "ranking": result.ranking,
            "n_pool_images": len(pool),
            "n_selected": int(result.ids.size),
            "n_output_images": summary["output images"],
        }
        if result.level == "patch":  # the embeddings behind the manifest's rows (optidel vinfo reads them)
            store = (pipe.cache / f"patches-{pipe.patches_key}").resolve()
            inside = store.is_relative_to(out.resolve())  # then relative to OUT: the folder may be moved
            meta["patch_store"] = str(store.relative_to(out.resolve()) if inside else store)
        pipe.write_manifest(result, omap, meta)
        if cfg.report:
            write_selection_report(pipe, strategy, result, omap, summary)
        else:  # never leave a report of another selection beside this one
            (out / "report.html").unlink(missing_ok=True)
            (out / "vinfo.json").unlink(missing_ok=True)
            shutil.rmtree(out / "report", ignore_errors=True)
            (out / "cache" / "report.json").unlink(missing_ok=True)
        total = time.perf_counter() - t_start
        metrics = {"summary": summary, "stages": pipe.timings, "total_seconds": round(total, 3)}
        atomic_write_json(out / "metrics.json", metrics)
        mark_done(
            out, {"method": cfg.method, "output_images": summary["output images"], "seconds": round(total, 3)}
        )
        logger.info("select: done in %.1f s -> %s (%d images)", total, out, summary["output images"])
        return out
    finally:
        detach_run_log(handler)
        dist.close()


def selection_config(**values: Any) -> SelectConfig:
    """A :class:`SelectConfig` from keyword values (lists become tuples), validated."""
    if "pool" in values and isinstance(values["pool"], str | Path):
        values["pool"] = (str(values["pool"]),)
    if "pool" in values:
        values["pool"] = tuple(str(p) for p in values["pool"])
    if "out" in values:
        values["out"] = str(values["out"])
    cfg = dataclasses.replace(SelectConfig(), **values)
    validate_config(cfg)
    return cfg


__all__ = ["SelectionPipeline", "run_selection", "selection_config", "stable_hash"]
