"""The patch + embedding stage: propose patches in every pool image, embed them, checkpoint in shards, merge.

On disk (``ROOT`` is ``OUT/cache/patches-<key>``, the key hashing the pool and the proposer/embedder settings)::

    ROOT/shard_00012.parquet   patch rows of images [12 * S, 13 * S) (S = shard_size), written last, atomically
    ROOT/emb_00012.npy         their embeddings (P_12, D) float32, written first, atomically
    ROOT/patches.parquet       after the merge: every patch row, ``patch_id`` = row number
    ROOT/embeddings.npy        after the merge: (n_patches, D) float32, read back memory-mapped
    ROOT/done.json             written last by the merge: counts, unreadable images, compute seconds

A shard is complete when its ``.parquet`` exists, so a run killed mid-way loses at most the shard it was working on
and a rerun computes only the missing shards. Shards are fixed ranges of images, independent of the number of
processes: under ``torchrun`` rank r of K computes shards r, r + K, r + 2K, ... (round-robin over shards, so
ranks get similar work and a resumed run may use another K); rank 0 merges after a barrier. Within a process the
images may be computed by worker processes (:mod:`optidel.select.patches.workers`); the process itself still writes
its shards, in order. The merged
``embeddings.npy`` is filled shard by shard, so neither the merge nor any later stage holds all embeddings in RAM;
the shard files are deleted once the merge is complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optidel.data.image import ImageDecodeError
from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.runtime.atomic import atomic_open, atomic_save_npy, atomic_write_json
from optidel.runtime.progress import make_progress
from optidel.select.patches.compute import (
    ImageResult,
    PatchStageError,
    compute_images,
    embedding_dim,
)
from optidel.select.patches.types import PatchEmbedder, PatchProposer, ReusedImage
from optidel.select.patches.workers import ModelSpec, PatchWorkers, resolve_procs, threads_per_proc

PATCH_SCHEMA = pa.schema(
    [
        ("image_index", pa.int64()),  # position of the image in the pool listing
        ("source", pa.string()),
        ("image_id", pa.string()),
        ("image_uid", pa.string()),
        ("image_path", pa.string()),
        ("image_w", pa.int32()),
        ("image_h", pa.int32()),
        ("x0", pa.int32()),
        ("y0", pa.int32()),
        ("x1", pa.int32()),
        ("y1", pa.int32()),
        ("mask_area", pa.float32()),
        ("pred_iou", pa.float32()),
        ("stability", pa.float32()),
    ]
)
META_KEY = b"optidel"
STRING_COLUMNS = ("source", "image_id", "image_uid", "image_path")  # kept dictionary-encoded in memory


def n_shards(n_images: int, shard_size: int) -> int:
    return (n_images + shard_size - 1) // shard_size


def shard_file(root: Path, s: int) -> Path:
    return root / f"shard_{s:05d}.parquet"


def emb_file(root: Path, s: int) -> Path:
    return root / f"emb_{s:05d}.npy"


def shards_of_rank(total: int, rank: int, world: int) -> range:
    """Shards computed by ``rank`` of ``world`` processes: rank, rank + world, ..."""
    return range(rank, total, world)


@dataclass
class PatchStore:
    """The merged patch table and its memory-mapped embeddings.

    Attributes:
        root: the stage folder.
        table: one row per patch (:data:`PATCH_SCHEMA` plus ``patch_id``), in pool order.
        embeddings: (n_patches, D) float32, memory-mapped read-only.
        n_images: pool images (including unreadable ones).
        failed: ``{"index", "uid", "path", "reason"}`` of every unreadable image.
        seconds: compute time of the stage, summed over shards (and processes).
    """

    root: Path
    table: pa.Table
    embeddings: np.ndarray
    n_images: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def column(self, name: str) -> np.ndarray:
        """A numeric column as a NumPy array (string columns: use :meth:`values_at`, they stay dictionary-encoded)."""
        return self.table.column(name).to_numpy(zero_copy_only=False)

    def values_at(self, name: str, rows: Sequence[int] | np.ndarray) -> list[Any]:
        """``name`` of the given rows as Python values (cheap for a few rows of a large table)."""
        return self.table.column(name).take(pa.array(np.asarray(rows, np.int64))).to_pylist()

    def counts(self, name: str, rows: np.ndarray | None = None) -> dict[Any, int]:
        """How often each value of column ``name`` occurs (among ``rows`` when given)."""
        import pyarrow.compute as pc

        col = self.table.column(name)
        if rows is not None:
            col = col.take(pa.array(np.asarray(rows, np.int64)))
        vc = pc.value_counts(col.combine_chunks() if col.num_chunks else col)
        return {v["values"]: int(v["counts"]) for v in vc.to_pylist()}

    @property
    def image_index(self) -> np.ndarray:
        return self.column("image_index").astype(np.int64, copy=False)

    @property
    def boxes(self) -> np.ndarray:
        """(n, 4) int32 ``x0, y0, x1, y1``."""
        return np.stack(
            [self.column(c).astype(np.int32, copy=False) for c in ("x0", "y0", "x1", "y1")], axis=1
        )

    @staticmethod
    def is_complete(root: Path) -> bool:
        return (Path(root) / "done.json").is_file()

    @classmethod
    def open(cls, root: str | Path) -> PatchStore:
        root = Path(root)
        info = json.loads((root / "done.json").read_text())
        table = pq.read_table(root / "patches.parquet", read_dictionary=list(STRING_COLUMNS))
        path = root / "embeddings.npy"
        emb = np.load(path, mmap_mode="r") if info["n_patches"] > 0 else np.load(path)
        if emb.shape[0] != table.num_rows:
            raise PatchStageError(f"{root}: {table.num_rows} patch rows but {emb.shape[0]} embeddings")
        return cls(
            root,
            table,
            emb,
            int(info["n_images"]),
            list(info.get("failed", [])),
            float(info.get("seconds", 0)),
        )


def shard_rows(
    items: Sequence[tuple[int, PoolImage]],
    results: Iterable[ImageResult],
    dim: int,
    strict: bool = False,
    on_image: Callable[[], None] | None = None,
) -> tuple[pa.Table, np.ndarray, list[dict[str, Any]]]:
    """The patch rows of some pool images from their results (one per item, in any order).

    Returns:
        table: patch rows (:data:`PATCH_SCHEMA`) in pool order; emb: (P, dim) float32; failed: unreadable images.
    Raises:
        ImageDecodeError: for an unreadable image when ``strict``.
    """
    by_index = dict(items)
    got: dict[int, ImageResult] = {}
    failed: list[dict[str, Any]] = []
    for r in results:
        im = by_index[r.index]
        if r.error is not None:
            if strict:
                raise ImageDecodeError(im.path, r.error)
            logger.warning("skipping unreadable pool image %s: %s", im.path, r.error)
            failed.append({"index": r.index, "uid": im.uid, "path": str(im.path), "reason": r.error})
        got[r.index] = r
        if on_image:
            on_image()
        if len(got) == len(by_index):
            break
    if len(got) != len(by_index):
        raise PatchStageError(f"results for {len(got)} of {len(by_index)} images")
    cols: dict[str, list[Any]] = {f.name: [] for f in PATCH_SCHEMA}
    embs: list[np.ndarray] = []
    for index, im in items:
        r = got[index]
        if r.patches is None or r.emb is None:
            continue
        n = len(r.patches)
        cols["image_index"] += [index] * n
        cols["source"] += [im.source] * n
        cols["image_id"] += [im.id] * n
        cols["image_uid"] += [im.uid] * n
        cols["image_path"] += [str(im.path)] * n
        cols["image_w"] += [r.w] * n
        cols["image_h"] += [r.h] * n
        for j, c in enumerate(("x0", "y0", "x1", "y1")):
            cols[c] += r.patches.boxes[:, j].tolist()
        for c in ("mask_area", "pred_iou", "stability"):
            cols[c] += np.asarray(getattr(r.patches, c), np.float32).reshape(n).tolist()
        embs.append(r.emb)
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in PATCH_SCHEMA}, schema=PATCH_SCHEMA)
    emb_all = np.concatenate(embs, axis=0) if embs else np.zeros((0, dim), np.float32)
    return table, np.ascontiguousarray(emb_all, np.float32), failed


def extract_shard(
    items: Sequence[tuple[int, PoolImage]],
    proposer: PatchProposer,
    embedder: PatchEmbedder | None,
    dim: int,
    workers: int = 1,
    strict: bool = False,
    on_image: Callable[[], None] | None = None,
    batch_size: int = 1,
) -> tuple[pa.Table, np.ndarray, list[dict[str, Any]]]:
    """Patches and embeddings of some pool images, computed in this process (see :func:`compute_images` and
    :func:`shard_rows`). items: (pool index, image) pairs."""
    results = compute_images([(i, im.path) for i, im in items], proposer, embedder, dim, workers, batch_size)
    return shard_rows(items, results, dim, strict, on_image)


def _write_shard(root: Path, s: int, table: pa.Table, emb: np.ndarray, meta: dict[str, Any]) -> None:
    atomic_save_npy(emb_file(root, s), emb)  # first: the parquet file marks the shard complete
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_open(shard_file(root, s), "wb") as f:
        pq.write_table(table, f)


def _shard_meta(root: Path, s: int) -> dict[str, Any]:
    md = pq.read_schema(shard_file(root, s)).metadata or {}
    return json.loads(md.get(META_KEY, b"{}"))


def _missing_shards(
    pool: Sequence[PoolImage], root: Path, shard_size: int, rank: int, world: int
) -> dict[int, list[tuple[int, PoolImage]]]:
    """This rank's shards not yet on disk, in order: shard -> its (pool index, image) items."""
    root.mkdir(parents=True, exist_ok=True)
    mine = list(shards_of_rank(n_shards(len(pool), shard_size), rank, world))
    todo = [s for s in mine if not shard_file(root, s).is_file()]
    if len(todo) < len(mine):
        logger.info(
            "patch stage: %d of %d shards already on disk, resuming", len(mine) - len(todo), len(mine)
        )
    return {
        s: [(i, pool[i]) for i in range(s * shard_size, min(len(pool), (s + 1) * shard_size))] for s in todo
    }


def process_shards(
    pool: Sequence[PoolImage],
    proposer: PatchProposer,
    embedder: PatchEmbedder | None,
    root: str | Path,
    shard_size: int = 64,
    rank: int = 0,
    world: int = 1,
    workers: int = 1,
    strict: bool = False,
    after_shard: Callable[[int], None] | None = None,
    batch_size: int = 1,
    procs: int | None = 1,
    spec: ModelSpec | None = None,
    reused: Mapping[int, ReusedImage] | None = None,
) -> list[int]:
    """Compute this rank's missing shards (see the module docstring); returns the shards computed now.

    ``reused``: images whose patches come from an earlier store (:mod:`optidel.select.patches.reuse`), by pool
    index; they are not proposed again, and their rows take their place in the shard.

    ``after_shard(s)`` is called after shard ``s`` is on disk (tests use it to inject a failure after K shards).
    ``procs``: worker processes that compute the images, each building its models from ``spec``
    (:mod:`optidel.select.patches.workers`; None = its default for the images to compute, 1 without a ``spec``);
    1 computes them here with ``proposer`` and ``embedder``.
    """
    root = Path(root)
    dim = embedding_dim(proposer, embedder)
    shards = _missing_shards(pool, root, shard_size, rank, world)
    todo = list(shards)
    reused = reused or {}
    n_todo_images = sum(len(items) for items in shards.values())
    compute = {s: [it for it in items if it[0] not in reused] for s, items in shards.items()}
    n_compute = sum(len(items) for items in compute.values())
    done_now: list[int] = []
    images_done, t_start = 0, time.perf_counter()
    k = 1 if spec is None else resolve_procs(procs, n_compute, spec.device, world > 1)
    with ExitStack() as stack:
        stream: Iterator[ImageResult] | None = None
        if k > 1:
            assert spec is not None
            threads = threads_per_proc(spec.threads, k)
            logger.info("patch stage: %d worker processes x %s torch threads", k, threads)
            pw = stack.enter_context(PatchWorkers(replace(spec, threads=threads), k, workers, batch_size))
            stream = pw.results([[(i, im.path) for i, im in compute[s]] for s in todo if compute[s]])
        prog = stack.enter_context(make_progress())
        task = prog.add_task(f"patches ({proposer.name})", total=n_todo_images)
        for s in todo:
            t0 = time.perf_counter()
            items = shards[s]
            lo, hi = items[0][0], items[-1][0] + 1
            if not compute[s]:
                table, emb, failed = shard_rows([], [], dim)
            elif stream is None:
                table, emb, failed = extract_shard(
                    compute[s],
                    proposer,
                    embedder,
                    dim,
                    workers,
                    strict,
                    lambda: prog.advance(task),
                    batch_size,
                )
            else:
                table, emb, failed = shard_rows(compute[s], stream, dim, strict, lambda: prog.advance(task))
            given = [(i, im) for i, im in items if i in reused]
            if given:
                table, emb, failed = _with_reused(table, emb, failed, given, reused, strict)
                prog.advance(task, len(given))
            secs = time.perf_counter() - t0
            meta = {"images": [lo, hi], "failed": failed, "seconds": secs, "rank": rank, "reused": len(given)}
            _write_shard(root, s, table, emb, meta)
            done_now.append(s)
            images_done += hi - lo
            elapsed = time.perf_counter() - t_start
            eta = elapsed / images_done * (n_todo_images - images_done)
            logger.info(
                "patch shard %d (%d/%d of this run): images %d-%d, %d patches, %.1f s; eta %.0f s",
                s,
                len(done_now),
                len(todo),
                lo,
                hi - 1,
                table.num_rows,
                secs,
                eta,
            )
            if after_shard is not None:
                after_shard(s)
    return done_now


def _with_reused(
    table: pa.Table,
    emb: np.ndarray,
    failed: list[dict[str, Any]],
    given: Sequence[tuple[int, PoolImage]],
    reused: Mapping[int, ReusedImage],
    strict: bool,
) -> tuple[pa.Table, np.ndarray, list[dict[str, Any]]]:
    """A shard's computed rows plus the rows of its reused images ``given``, in pool order (stable within an image)."""
    for i, im in given:
        r = reused[i]
        if r.error is not None:
            if strict:
                raise ImageDecodeError(im.path, r.error)
            logger.warning("skipping unreadable pool image %s: %s", im.path, r.error)
            failed = failed + [{"index": i, "uid": im.uid, "path": str(im.path), "reason": r.error}]
    tables = [table] + [reused[i].table for i, _ in given]
    embs = [emb] + [reused[i].emb for i, _ in given]
    merged = pa.concat_tables(tables)
    order = np.argsort(merged.column("image_index").to_numpy(), kind="stable")
    emb_all = np.concatenate(embs, axis=0)[order] if merged.num_rows else emb
    return (
        merged.take(pa.array(order, pa.int64())),
        np.ascontiguousarray(emb_all, np.float32),
        sorted(failed, key=lambda f: f["index"]),
    )


def _write_store(
    root: Path,
    parts: Iterable[tuple[pa.Table, np.ndarray]],
    n_total: int,
    dim: int,
    info: dict[str, Any],
) -> None:
    """Write ``patches.parquet`` (``patch_id`` = row number) and ``embeddings.npy`` from (table, (P, dim)) parts
    taken one at a time, then ``done.json`` (``info`` plus ``n_patches`` and ``dim``) last."""
    final = root / "embeddings.npy"
    tmp = root / ".embeddings.npy.tmp"
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_total, dim))
    schema = PATCH_SCHEMA.append(pa.field("patch_id", pa.int64()))
    n = 0
    with atomic_open(root / "patches.parquet", "wb") as f, pq.ParquetWriter(f, schema) as writer:
        for t, e in parts:  # one part in memory at a time
            t = t.select(PATCH_SCHEMA.names).cast(PATCH_SCHEMA)
            t = t.append_column("patch_id", pa.array(np.arange(n, n + t.num_rows, dtype=np.int64)))
            writer.write_table(t)
            mm[n : n + e.shape[0]] = e
            n += e.shape[0]
    if n != n_total:
        raise PatchStageError(f"{root}: wrote {n} embedding rows, expected {n_total}")
    mm.flush()
    del mm
    os.replace(tmp, final)
    atomic_write_json(root / "done.json", {**info, "n_patches": n, "dim": dim})


def merge_shards(root: str | Path, n_images: int, shard_size: int, dim: int) -> PatchStore:
    """Concatenate all shards into ``patches.parquet`` + ``embeddings.npy``, one shard in memory at a time; write
    ``done.json``; delete the shards. Raises :class:`PatchStageError` when a shard is missing."""
    root = Path(root)
    total = n_shards(n_images, shard_size)
    missing = [s for s in range(total) if not shard_file(root, s).is_file()]
    if missing:
        raise PatchStageError(f"{root}: shards {missing[:10]} are missing; rerun the patch stage")
    metas = [_shard_meta(root, s) for s in range(total)]
    n_total = sum(pq.read_metadata(shard_file(root, s)).num_rows for s in range(total))

    def parts() -> Iterator[tuple[pa.Table, np.ndarray]]:
        for s in range(total):
            t = pq.read_table(shard_file(root, s)).replace_schema_metadata(None)
            e = np.load(emb_file(root, s))
            if e.shape[0] != t.num_rows or (e.shape[0] and e.shape[1] != dim):
                raise PatchStageError(
                    f"{emb_file(root, s)}: {e.shape} does not match its {t.num_rows} rows x {dim}"
                )
            yield t, e

    failed = [f for m in metas for f in m.get("failed", [])]
    info = {
        "n_images": n_images,
        "failed": failed,
        "seconds": sum(float(m.get("seconds", 0.0)) for m in metas),
        "n_shards": total,
    }
    _write_store(root, parts(), n_total, dim, info)
    for s in range(total):
        for p in (shard_file(root, s), emb_file(root, s)):
            p.unlink(missing_ok=True)
    logger.info(
        "patch stage: %d patches from %d images (%d unreadable), dim %d", n_total, n_images, len(failed), dim
    )
    return PatchStore.open(root)


def combine_stores(root: str | Path, parts: Sequence[tuple[int, PatchStore]], n_images: int) -> PatchStore:
    """One store for a pool made of several sources, from each source's own complete store.

    Args:
        root: the combined stage folder.
        parts: (index of the source's first image in the pool, its store) in pool order; the stores' ``image_index``
            count from 0 within their source and are shifted here.
        n_images: pool images.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dims = {st.dim for _, st in parts if len(st)}
    if len(dims) > 1:
        raise PatchStageError(f"{root}: the sources' embeddings differ in width {sorted(dims)}")
    dim = dims.pop() if dims else (parts[0][1].dim if parts else 0)

    def shifted() -> Iterator[tuple[pa.Table, np.ndarray]]:
        for lo, st in parts:
            t = st.table.drop_columns(["patch_id"])
            idx = pa.array(st.image_index + lo, type=pa.int64())
            yield (
                t.set_column(t.schema.get_field_index("image_index"), "image_index", idx),
                np.asarray(st.embeddings, np.float32),
            )

    failed = [{**f, "index": int(f["index"]) + lo} for lo, st in parts for f in st.failed]
    info = {
        "n_images": n_images,
        "failed": failed,
        "seconds": sum(st.seconds for _, st in parts),
        "sources": [{"first_image": lo, "store": st.root.name} for lo, st in parts],
    }
    _write_store(root, shifted(), sum(len(st) for _, st in parts), dim, info)
    return PatchStore.open(root)
