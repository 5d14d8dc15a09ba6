"""The manifest stage: ``OUT/manifest.parquet``, one row per pool patch (patch level) or per selected image."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.select.outputs.manifest import image_manifest, patch_manifest, write_manifest
from optidel.select.patches.store import PatchStore
from optidel.select.rank.cluster import KMeansResult
from optidel.select.stage_cache import StageCache
from optidel.select.stages.images import OutputMap
from optidel.select.strategies.base import SelectionResult


def image_rows(
    pool: Sequence[PoolImage], result: SelectionResult, omap: OutputMap
) -> tuple[dict[str, list], list[int]]:
    """Image level: the manifest columns of the selected images that were written, and their positions in ``result``."""
    keep = [i for i, n in enumerate(omap.names) if n]
    ims = [pool[int(result.ids[i])] for i in keep]
    rows = {
        "image_index": [int(result.ids[i]) for i in keep],
        "source": [im.source for im in ims],
        "image_id": [im.id for im in ims],
        "image_uid": [im.uid for im in ims],
        "image_path": [str(im.path) for im in ims],
        "image_w": [omap.sizes[i][0] for i in keep],
        "image_h": [omap.sizes[i][1] for i in keep],
    }
    return rows, keep


def write_manifest_stage(
    out: Path,
    cache: StageCache,
    pool: Sequence[PoolImage],
    result: SelectionResult,
    omap: OutputMap,
    meta: dict[str, Any],
    ranked: Callable[[], tuple[PatchStore, KMeansResult, dict[str, np.ndarray]]] | None,
) -> Path:
    """Write ``out/manifest.parquet`` unless its stamp says it holds this selection already.

    Args:
        ranked: patch level: gives the patch store, k-means and scores behind the rows; None at image level.
    """
    path = out / "manifest.parquet"
    t0 = time.perf_counter()
    key = cache.manifest_key(omap.key, result.level, meta)
    stamp = cache.stamp("manifest", key, path)
    if stamp is not None:
        cache.record("manifest", time.perf_counter() - t0, True, stamp.get("seconds"))
        return path
    if result.level == "patch":
        assert ranked is not None, "a patch-level manifest needs the patch store, k-means and scores"
        store, km, scores = ranked()
        table = patch_manifest(
            store.table,
            km.cluster,
            km.d1,
            km.d2,
            scores,
            result.ids,
            [n or "" for n in omap.names],
            omap.tiles,
        )
    else:
        rows, keep = image_rows(pool, result, omap)
        scores = {k: np.asarray(v)[keep] for k, v in result.scores.items()}
        table = image_manifest(rows, [omap.names[i] for i in keep], scores)  # type: ignore[misc]
    write_manifest(table, path, meta)
    secs = time.perf_counter() - t0
    cache.write_stamp("manifest", {"key": key, "seconds": secs})
    cache.record("manifest", secs, False)
    logger.info("manifest: %d rows -> %s", table.num_rows, path)
    return path
