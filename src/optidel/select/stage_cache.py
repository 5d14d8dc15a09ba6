"""Cache keys, stage folders, stamps and timings of one ``optidel select`` run (:class:`StageCache`).

Every stage caches its result under ``OUT/cache`` (or ``runtime.cache_dir``, which several selections of one pool may
share) in a folder named by a hash of exactly the settings that affect it, so a rerun with the same config only reads,
and a changed config recomputes only the stages downstream of the change::

    cache/patches-<key>/       patch table + embeddings, checkpointed in shards (optidel.select.patches.store)
                               key: pool files (path, size, content hash), the proposer/embedder settings of the
                               config (or an injected proposer's cache_key()), shard_size, proposer_batch;
                               spec.json records the built proposer's and embedder's own cache_key();
                               images.tsv + reuse.json let a later pool reuse its images one by one
                               (optidel.select.patches.reuse).
    cache/kmeans-<key>/        centroids, cluster, d1, d2        key: patches key, k, distance, iterations, seed
    cache/recon-<key>/         MAE reconstruction scores         key: patches key, MAE run files, seed
    cache/imgemb-<key>/        image-level embeddings            key: patches key (or embedder), kind
    OUT/cache/{images,manifest,report}.json   stamps: the key of what ``images/``, ``manifest.parquet`` and
                               ``report.html`` currently hold (keys hash the selection itself)

Stage folders are built as ``.NAME-KEY.partial`` and renamed when complete. The patch-stage key is what keeps hours
of SAM compute reusable: its recipe (:meth:`StageCache.patches_key_for`) must not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optidel.data.pool import PoolImage
from optidel.data.sources.locator import real_file, resolved
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json
from optidel.select.config import SelectConfig

if TYPE_CHECKING:
    from optidel.select.patches.types import PatchEmbedder, PatchProposer
    from optidel.select.strategies.base import SelectionResult

STAGE_VERSION = 1
# 2: a ``context`` square too large for its image is cut to fit instead of letterboxed (optidel.select.outputs.mosaic)
CONTEXT_RENDER = 2


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
    file once per run.
    """
    lines = []
    digests: dict[Path, tuple[int, str]] = {}  # slices/frames/tiles of one file: its bytes are hashed once
    for im in pool:
        # a plain image's line is unchanged; an item's names its locator (window ...)
        file = real_file(im.path)
        if file not in digests:
            with file.open("rb") as f:
                digests[file] = (file.stat().st_size, hashlib.file_digest(f, "sha1").hexdigest())
        size, digest = digests[file]
        lines.append(f"{im.uid}\t{resolved(im.path)}\t{size}\t{digest}\n".encode())
    return lines


def pool_fingerprint(pool: Sequence[PoolImage], lines: Sequence[bytes] | None = None) -> str:
    """Hash of the pool listing (see :func:`pool_file_lines`; pass ``lines`` already computed for ``pool``)."""
    h = hashlib.sha1()
    for line in pool_file_lines(pool) if lines is None else lines:
        h.update(line)
    return h.hexdigest()[:16]


class StageCache:
    """The stage caches of one run: keys, folders, stamps (what ``OUT``'s own files hold) and per-stage timings.

    Args:
        cfg: the effective config.
        pool: the pool images.
        injected: the proposer and embedder passed in instead of the config's (their ``cache_key()`` then replaces
            the config's proposal settings in the patch-stage key), or None.
    """

    def __init__(
        self,
        cfg: SelectConfig,
        pool: Sequence[PoolImage],
        injected: tuple[PatchProposer, PatchEmbedder | None] | None = None,
    ):
        self.cfg = cfg
        self.pool = pool
        self.injected = injected
        out = Path(cfg.out)
        self.root = Path(cfg.runtime.cache_dir) if cfg.runtime.cache_dir else out / "cache"
        self.stamps = out / "cache"  # what OUT's own files hold: never in a shared cache_dir
        self.timings: dict[str, dict[str, Any]] = {}
        self._pool_lines: list[bytes] | None = None
        self._pool_key: str | None = None

    # ---------------------------------------------------------------- timings
    def record(self, stage: str, seconds: float, cached: bool, compute_seconds: float | None = None) -> None:
        """Time of ``stage`` in this run (``compute_seconds``: what it cost when computed, for cached stages)."""
        self.timings[stage] = {
            "seconds": round(seconds, 3),
            "cached": cached,
            "compute_seconds": round(compute_seconds if compute_seconds is not None else seconds, 3),
        }

    # ---------------------------------------------------------------- keys
    @property
    def pool_lines(self) -> list[bytes]:
        """Per-image fingerprint lines, computed once per run (every file is read to hash it)."""
        if self._pool_lines is None:
            self._pool_lines = pool_file_lines(self.pool)
        return self._pool_lines

    @property
    def pool_key(self) -> str:
        if self._pool_key is None:
            self._pool_key = pool_fingerprint(self.pool, self.pool_lines)
        return self._pool_key

    def proposer_spec(self) -> dict[str, Any]:
        """What identifies the patches and embeddings (for the patch-stage key)."""
        p = self.cfg.proposal
        if self.injected is not None:
            proposer, embedder = self.injected
            prop = {"name": proposer.name, "key": proposer.cache_key()}
            emb = None if embedder is None else {"name": embedder.name, "key": embedder.cache_key()}
        else:
            prop = {"kind": p.patches, "options": dict(p.proposer_options)}
            if p.patches == "sam-checkpoint":
                prop["checkpoint"] = file_signature(p.sam_checkpoint)  # the model type is read from the file
            emb = None
            if p.embedder:
                emb = {"spec": p.embedder}
                if not p.embedder.startswith("timm:"):
                    emb["file"] = file_signature(p.embedder)
        return {"proposer": prop, "embedder": emb}

    def patches_key_for(self, pool_key: str) -> str:
        """The patch-stage key of a pool (or one source of it) whose fingerprint is ``pool_key``. Never change it."""
        spec = self.proposer_spec()
        size, batch = self.cfg.runtime.shard_size, self.cfg.proposal.proposer_batch
        return stable_hash(["patches", STAGE_VERSION, pool_key, spec, size, batch])

    @property
    def patches_key(self) -> str:
        return self.patches_key_for(self.pool_key)

    def patches_dir(self, pool_key: str | None = None) -> Path:
        """``cache/patches-<key>`` of the whole pool (or of the pool whose fingerprint is ``pool_key``)."""
        return self.root / f"patches-{self.patches_key_for(pool_key or self.pool_key)}"

    @property
    def kmeans_key(self) -> str:
        c = self.cfg.cluster
        parts = [
            c.k,
            c.distance,
            c.kmeans_iters,
            c.kmeans_init_sample,
            c.kmeans_points_per_centroid,
            self.cfg.seed,
        ]
        return stable_hash(["kmeans", STAGE_VERSION, self.patches_key, parts])

    @property
    def recon_key(self) -> str:
        mae = file_signature(self.cfg.scoring.mae_run)
        return stable_hash(["recon", STAGE_VERSION, self.patches_key, mae, self.cfg.seed])

    def imgemb_key(self, kind: str) -> str:
        """Image-level embeddings: from the patch store (``mean``) or from one whole-image pass of the embedder."""
        if kind == "mean":
            return stable_hash(["imgemb", STAGE_VERSION, self.patches_key, kind])
        return stable_hash(["imgemb", STAGE_VERSION, self.pool_key, self.proposer_spec()["embedder"], kind])

    def images_key(self, result: SelectionResult) -> str:
        """What ``images/`` holds: the selection (ids, groups) and how it is rendered."""
        h = hashlib.sha1(result.ids.tobytes())
        if result.groups is not None:
            h.update(result.groups.tobytes())
        s = self.cfg.synthesis
        render = [result.level, s.mosaic_size, s.tile_fit, s.image_copy, STAGE_VERSION]
        if result.content != "pool":
            render.append(result.content)  # the same ids written as noise are other images
        if s.tile_fit == "context":
            render.append(CONTEXT_RENDER)  # its rendering changed once: images of the old one are not reused
        base = self.patches_key if result.level == "patch" else self.pool_key
        return stable_hash(["images", base, h.hexdigest(), render])

    def manifest_key(self, images_key: str, level: str, meta: dict[str, Any]) -> str:
        extra = (
            [self.kmeans_key, self.recon_key if self.cfg.scoring.mae_run else None]
            if level == "patch"
            else []
        )
        return stable_hash(["manifest", STAGE_VERSION, images_key, extra, meta])

    def report_key(self, images_key: str, level: str, summary: dict[str, Any]) -> str:
        kmeans = self.kmeans_key if level == "patch" else None
        shown = {k: v for k, v in summary.items() if k != "runtime (s)"}
        return stable_hash(["report", STAGE_VERSION, images_key, kmeans, self.cfg.report.vinfo, shown])

    # ---------------------------------------------------------------- folders and stamps
    def stage(
        self, name: str, key: str, compute: Callable[[Path], dict[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        """Run ``compute(tmp_dir)`` once per key; the folder is renamed into place when complete."""
        final = self.root / f"{name}-{key}"
        t0 = time.perf_counter()
        if (final / "done.json").is_file():
            info = json.loads((final / "done.json").read_text())
            self.record(name, time.perf_counter() - t0, True, info.get("seconds"))
            logger.info("%s: cached (%s)", name, final.name)
            return final, info
        tmp = self.root / f".{name}-{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        info = compute(tmp) or {}
        info["seconds"] = time.perf_counter() - t0
        atomic_write_json(tmp / "done.json", info)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self.record(name, info["seconds"], False)
        return final, info

    def stamp(self, name: str, key: str, *paths: Path) -> dict[str, Any] | None:
        """The stamp ``name`` when it holds ``key`` and every one of ``paths`` exists, else None."""
        stamp = self.stamps / f"{name}.json"
        if not stamp.is_file() or not all(p.exists() for p in paths):
            return None
        data = json.loads(stamp.read_text())
        return data if data.get("key") == key else None

    def write_stamp(self, name: str, data: dict[str, Any]) -> None:
        atomic_write_json(self.stamps / f"{name}.json", data)

    def drop_stamp(self, name: str) -> None:
        (self.stamps / f"{name}.json").unlink(missing_ok=True)
