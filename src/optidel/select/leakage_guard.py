"""The leakage guard inside ``optidel select``: pool images that duplicate a test image are dropped after the patch stage.

Which test images: the test split of every segmentation dataset the pool takes another split of (``DATASET:train``
-> ``DATASET:test``) plus ``leakage_against`` (the benchmark passes its downstream datasets' test splits). The check
is :func:`optidel.data.leakage.check_pool` (exact and near duplicates; fingerprints cached in the stage cache
folder), its pairs are written to ``OUT/leakage/`` (``leaks.csv``, ``gallery.html``, ``gallery.png``,
``summary.json``) and counted in the manifest metadata. ``leakage_guard = false`` turns it off.

Why after the patch stage: the patch-stage cache is keyed by the pool's files (hours of SAM compute). The guard runs
the patch stage on the pool as given (same ``patches-<key>`` as without the guard), then re-roots the run on the
kept images: the kept pool's store is the full store's rows of the kept images (image indices renumbered), written
where the kept pool's own patch stage would write it, so k-means, scores, selection, images and manifest see only the
kept images and are keyed by them, and image-level methods (``random``, ``full`` ...) list only the kept images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from optidel.data.leakage import LeakageCheck, check_pool, downstream_test_splits, write_check
from optidel.log import logger
from optidel.select.patches.store import PatchStore, combine_stores


def leakage_targets(pool_sources: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    """The test sources a pool is checked against: its datasets' test splits, then ``extra`` (no repeats)."""
    out = downstream_test_splits(pool_sources)
    for e in extra:
        if e not in out:
            out.append(e)
    return out


def subset_store(store: PatchStore, keep: np.ndarray, root: Path) -> PatchStore:
    """The rows of ``store`` whose image is kept, image indices renumbered to the kept images' positions.

    Args:
        store: the full pool's store.
        keep: (n_images,) bool, kept pool images.
        root: the folder to write (reused when already complete).
    """
    if PatchStore.is_complete(root):
        return PatchStore.open(root)
    new_index = np.cumsum(keep) - 1  # old pool position -> kept position
    rows = np.flatnonzero(keep[store.image_index])
    table = store.table.take(pa.array(rows, pa.int64()))
    idx = pa.array(new_index[store.image_index[rows]], pa.int64())
    table = table.set_column(table.schema.get_field_index("image_index"), "image_index", idx)
    failed = [{**f, "index": int(new_index[int(f["index"])])} for f in store.failed if keep[int(f["index"])]]
    view = PatchStore(
        store.root,
        table,
        np.asarray(store.embeddings[rows], np.float32),
        int(keep.sum()),
        failed,
        store.seconds,
    )
    return combine_stores(root, [(0, view)], int(keep.sum()))


def exclude_leaking(
    pipe: Any, needs_patches: bool, rebuild: Callable[[list[Any]], Any]
) -> tuple[Any, dict[str, Any]]:
    """Check the pool and, when images leak, a pipeline over the kept images (``pipe`` itself when none do).

    Args:
        pipe: the run's :class:`optidel.select.pipeline.SelectionPipeline` over the pool as given.
        needs_patches: the strategy reads patches (then the kept pipeline gets the full store's kept rows).
        rebuild: kept pool images -> a pipeline like ``pipe`` over them.
    Returns:
        (the pipeline to run the selection on, manifest metadata: targets checked and images dropped).
    """
    cfg = pipe.cfg
    if not cfg.leakage_guard:
        return pipe, {"leakage_guard": "off"}
    targets = leakage_targets(tuple(cfg.pool), tuple(cfg.leakage_against))
    if not targets:
        return pipe, {"leakage_guard": "on", "leakage_checked_against": []}
    check: LeakageCheck = check_pool(
        [im.uid for im in pipe.pool],
        [im.path for im in pipe.pool],
        targets,
        cache_dir=pipe.cache.root / "leakage",
    )
    summary = write_check(pipe.out / "leakage", check)
    leaking = check.leaking()
    meta: dict[str, Any] = {
        "leakage_guard": "on",
        "leakage_checked_against": targets,
        "n_leaking_pool_images_dropped": int(leaking.sum()),
        "n_pool_images_before_leakage_guard": len(pipe.pool),
    }
    if not leaking.any():
        return pipe, meta
    logger.warning(
        "leakage guard: dropping %d of %d pool images that duplicate a test image (%d pairs; see %s)",
        int(leaking.sum()),
        len(pipe.pool),
        summary["n_pairs"],
        pipe.out / "leakage" / "leaks.csv",
    )
    keep = ~leaking
    kept = rebuild([im for im, k in zip(pipe.pool, keep, strict=True) if k])
    kept.cache.timings = pipe.cache.timings
    if needs_patches:
        kept.use_patch_store(subset_store(pipe.patches(), keep, kept.cache.patches_dir()))
    return kept, meta
