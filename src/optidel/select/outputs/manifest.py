"""``manifest.parquet``: which pool pixels went into which compact-set image, and why.

Patch-level methods (optidel and its ablations) write **one row per patch of the pool**; image-level methods (random,
full, and later meddel, semdedup ...) write **one row per selected image**. One schema serves both
(:data:`MANIFEST_SCHEMA`); columns that do not apply are null.

=====================  ==========================================================================================
column                 meaning
=====================  ==========================================================================================
patch_id               row of the pool's patch table (null for image-level rows)
image_index            position of the source image in the pool listing
source, image_id       pool source label and image id (``optidel.data.pool``); ``image_uid`` = ``source/id``
image_path             the source image file
image_w, image_h       source image size in pixels
x0, y0, x1, y1         the patch box in source pixels (x1/y1 exclusive); the whole image for image-level rows
mask_area              SAM mask pixels / image pixels (box area / image area for grid patches)
pred_iou, stability    SAM's predicted IoU and stability score (NaN for grid patches)
cluster, d1, d2        k-means cluster and distances to the nearest / second-nearest centroid
score_margin           d2 - d1 (small = hard)
score_prototype        d1 (large = hard)
score_reconstruction   MAE reconstruction error (large = hard; NaN without ``--mae-run``)
selected               whether the row is in the compact set
rank                   position in the method's ranking among the selected (0 = first chosen: the hardest for
                       optidel and hard-only, the easiest for easy, random order for random methods); null if not
                       selected
output_image           file name under ``images/`` that holds it, null if not selected
tile                   0-3 (top-left, top-right, bottom-left, bottom-right) in a 2x2 mosaic, else null
image_item             the item inside the source file, e.g. ``nifti:slice=12,axis=2``, ``dicom:frame=3``,
                       ``dicom:frame=0,slice=5`` (series), ``tiff:page=1``, ``wsi:level=0,x=1024,y=2048,size=512``;
                       null for ordinary image files (``image_path`` then is the file; else it is the locator)
image_window           the intensity window the item was read with (``auto``, ``lung``, ``40:400``, ``p1-99``); null
                       for ordinary image files
=====================  ==========================================================================================

The file's schema metadata (key ``optidel``) holds JSON: method, level, score, ratio, counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optidel.data.sources.decode import provenance
from optidel.runtime.atomic import atomic_open
from optidel.select.patches.store import PATCH_SCHEMA

# one row per pool patch: the patch table's columns (provenance and SAM scores), then clustering, scores, selection
MANIFEST_SCHEMA = pa.schema(
    [("patch_id", pa.int64()), *PATCH_SCHEMA]
    + [
        ("cluster", pa.int32()),
        ("d1", pa.float32()),
        ("d2", pa.float32()),
        ("score_margin", pa.float32()),
        ("score_prototype", pa.float32()),
        ("score_reconstruction", pa.float32()),
        ("selected", pa.bool_()),
        ("rank", pa.int64()),
        ("output_image", pa.string()),
        ("tile", pa.int8()),
        ("image_item", pa.string()),
        ("image_window", pa.string()),
    ]
)
META_KEY = b"optidel"
ROW_GROUP = 1_000_000


def _nullable(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_, mask=~np.asarray(valid, bool))


def _strings(n: int, at: np.ndarray, values: Sequence[str]) -> pa.Array:
    arr = np.full(n, None, dtype=object)
    arr[np.asarray(at, np.int64)] = list(values)
    return pa.array(arr, type=pa.string())


def _provenance(paths: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
    """``image_item`` / ``image_window`` of each row, from its ``image_path`` (computed once per distinct path)."""
    col = paths.combine_chunks() if isinstance(paths, pa.ChunkedArray) else paths
    enc = col if pa.types.is_dictionary(col.type) else col.dictionary_encode()
    found = [provenance(v) for v in enc.dictionary.to_pylist()]
    return {
        "image_item": pa.array([f[0] for f in found], pa.string()).take(enc.indices),
        "image_window": pa.array([f[1] for f in found], pa.string()).take(enc.indices),
    }


def patch_manifest(
    patches: pa.Table,
    cluster: np.ndarray,
    d1: np.ndarray,
    d2: np.ndarray,
    scores: dict[str, np.ndarray],
    selected_ids: np.ndarray,
    output_image: Sequence[str],
    tile: np.ndarray | None,
) -> pa.Table:
    """One row per pool patch.

    Args:
        patches: the pool's patch table (``optidel.select.patches.store``), n rows with ``patch_id``.
        cluster, d1, d2: (n,) from k-means.
        scores: ``{"margin", "prototype", "reconstruction"}`` -> (n,) float (missing keys become NaN).
        selected_ids: (N,) patch ids in rank order.
        output_image: N file names, aligned with ``selected_ids``.
        tile: (N,) int tile positions, or None (no mosaics).
    """
    n = patches.num_rows
    sel = np.asarray(selected_ids, np.int64)
    if len(output_image) != sel.size:
        raise ValueError(f"{sel.size} selected ids but {len(output_image)} output names")
    selected = np.zeros(n, bool)
    selected[sel] = True
    rank = np.zeros(n, np.int64)
    rank[sel] = np.arange(sel.size)
    tiles = np.zeros(n, np.int8)
    if tile is not None:
        tiles[sel] = np.asarray(tile, np.int8)
    nan = np.full(n, np.nan, np.float32)
    cols: dict[str, Any] = {
        name: patches.column(name) for name in patches.column_names if name in MANIFEST_SCHEMA.names
    }
    cols.update(
        {
            "cluster": pa.array(np.asarray(cluster, np.int32)),
            "d1": pa.array(np.asarray(d1, np.float32)),
            "d2": pa.array(np.asarray(d2, np.float32)),
            "score_margin": pa.array(np.asarray(scores.get("margin", nan), np.float32)),
            "score_prototype": pa.array(np.asarray(scores.get("prototype", nan), np.float32)),
            "score_reconstruction": pa.array(np.asarray(scores.get("reconstruction", nan), np.float32)),
            "selected": pa.array(selected),
            "rank": _nullable(rank, selected, pa.int64()),
            "output_image": _strings(n, sel, output_image),
            "tile": _nullable(tiles, selected if tile is not None else np.zeros(n, bool), pa.int8()),
            **_provenance(patches.column("image_path")),
        }
    )
    # string columns may stay dictionary-encoded here (a large pool's patch table is); write_manifest casts per batch
    arrays = [
        cols[f.name] if pa.types.is_dictionary(cols[f.name].type) else cols[f.name].cast(f.type)
        for f in MANIFEST_SCHEMA
    ]
    return pa.table(arrays, names=MANIFEST_SCHEMA.names)


def image_manifest(
    rows: dict[str, Sequence[Any]],
    output_image: Sequence[str],
    scores: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """One row per selected image (image-level methods), in rank order.

    Args:
        rows: ``image_index, source, image_id, image_uid, image_path, image_w, image_h`` lists (N each).
        output_image: N file names under ``images/``.
        scores: optional per-selected-image scores named like the manifest columns (``margin`` ...).
    """
    n = len(output_image)
    cols: dict[str, Any] = {}
    for f in MANIFEST_SCHEMA:
        if f.name in rows:
            cols[f.name] = pa.array(list(rows[f.name]), type=f.type)
    w = np.asarray(rows["image_w"], np.int32)
    h = np.asarray(rows["image_h"], np.int32)
    zeros = np.zeros(n, np.int32)
    cols.update({"x0": pa.array(zeros), "y0": pa.array(zeros), "x1": pa.array(w), "y1": pa.array(h)})
    cols["selected"] = pa.array(np.ones(n, bool))
    cols["rank"] = pa.array(np.arange(n, dtype=np.int64))
    cols["output_image"] = pa.array(list(output_image), type=pa.string())
    for name, arr in (scores or {}).items():
        cols[f"score_{name}"] = pa.array(np.asarray(arr, np.float32))
    if "image_path" in rows:
        cols.update(_provenance(pa.array([str(p) for p in rows["image_path"]], pa.string())))
    arrays = [cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in MANIFEST_SCHEMA]
    return pa.table(arrays, schema=MANIFEST_SCHEMA)


def write_manifest(table: pa.Table, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write the manifest atomically, in :data:`MANIFEST_SCHEMA` (Parquet, row groups of at most 1M rows), with
    ``meta`` as JSON schema metadata."""
    schema = MANIFEST_SCHEMA.with_metadata(
        {META_KEY: json.dumps(meta or {}, sort_keys=True, default=str).encode()}
    )
    with atomic_open(path, "wb") as f, pq.ParquetWriter(f, schema) as writer:
        for batch in table.to_batches(
            max_chunksize=ROW_GROUP
        ):  # dictionary strings are decoded one batch at a time
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))


def read_manifest(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """The manifest table and its metadata dict."""
    table = pq.read_table(path)
    md = (table.schema.metadata or {}).get(META_KEY, b"{}")
    return table, json.loads(md)
