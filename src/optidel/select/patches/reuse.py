"""Per-image reuse of patches across stores: a pool that differs from an earlier one by some images (images added
to or removed from a folder, a file replaced, a folder moved or copied) runs the proposer only on the images that
are new.

A patch store is keyed by its whole pool (:mod:`optidel.select.stage_cache`), so any change to the pool's image
list gives a new store. Each complete store therefore also records which images it holds and how they were
computed (written by :func:`record_images`)::

    ROOT/images.tsv    one line per pool image, in pool order: uid, resolved path, size, SHA-1 of the content
    ROOT/reuse.json    what makes two stores' patches interchangeable: the proposer/embedder spec (the one in
                       ``spec.json``) and ``proposer_batch``

:func:`find_reusable` looks through the other stores of the same cache folder for images of a new pool with the
same size and content hash (wherever the file lies: the patches depend on its bytes alone), computed by the same
proposer/embedder spec and batch size, and returns their patch rows and embeddings (or the reason they were
unreadable) by pool index. Only plain image files are reused: an item inside a DICOM/NIfTI/whole-slide file is
decoded with settings that its line does not record.
Written by hand: this is optidel's own cache layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from optidel.data.sources.decode import plain_format
from optidel.data.sources.locator import is_locator
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json, atomic_write_text
from optidel.select.patches.store import PATCH_SCHEMA, PatchStore
from optidel.select.patches.types import ReusedImage

IMAGES_FILE = "images.tsv"
REUSE_FILE = "reuse.json"
# the columns that name the image in its pool: rewritten for the new pool
IMAGE_COLUMNS = ("image_index", "source", "image_id", "image_uid", "image_path")


def reuse_signature(spec: Mapping[str, Any], proposer_batch: int) -> dict[str, Any]:
    """What two stores must share for their patches to be interchangeable, as JSON."""
    return json.loads(
        json.dumps({"spec": spec, "proposer_batch": proposer_batch}, sort_keys=True, default=str)
    )


def record_images(root: Path, lines: Sequence[bytes], signature: Mapping[str, Any]) -> None:
    """Write ``images.tsv`` and ``reuse.json`` into a complete store (once; a store's images never change)."""
    if (root / REUSE_FILE).is_file() and (root / IMAGES_FILE).is_file():
        return
    atomic_write_text(root / IMAGES_FILE, b"".join(lines).decode())
    atomic_write_json(root / REUSE_FILE, dict(signature))  # last: marks the record complete


def _identity(line: bytes) -> tuple[str, ...] | None:
    """(size, content hash) of a plain image file's line; None for an item inside a file."""
    parts = line.decode().rstrip("\n").split("\t")
    if len(parts) != 4 or is_locator(parts[1]) or plain_format(Path(parts[1])) is not None:
        return None
    return tuple(parts[2:])


def find_reusable(
    cache_root: Path,
    root: Path,
    pool: Sequence[Any],
    lines: Sequence[bytes],
    signature: Mapping[str, Any],
) -> dict[int, ReusedImage]:
    """Patches of ``pool``'s images found in the other complete stores under ``cache_root`` (see the module docstring).

    Args:
        cache_root: the cache folder that holds the ``patches-*`` stores.
        root: the store being computed (not searched).
        pool: the pool images (``PoolImage``) of that store; lines: their :func:`pool_file_lines`.
        signature: :func:`reuse_signature` of the store being computed.
    Returns:
        {pool index: ReusedImage} for every image found.
    """
    wanted: dict[tuple[str, ...], list[int]] = {}  # identity -> pool indices (a pool may hold a file twice)
    for i, line in enumerate(lines):
        key = _identity(line)
        if key is not None:
            wanted.setdefault(key, []).append(i)
    found: dict[int, ReusedImage] = {}
    if not wanted or not cache_root.is_dir():
        return found
    for donor in sorted(cache_root.glob("patches-*")):
        if donor == root or not (donor / REUSE_FILE).is_file() or not PatchStore.is_complete(donor):
            continue
        try:
            if json.loads((donor / REUSE_FILE).read_text()) != dict(signature):
                continue
            donor_lines = (donor / IMAGES_FILE).read_bytes().splitlines(keepends=True)
        except (OSError, ValueError):
            continue
        matches: dict[int, list[int]] = {}  # donor image index -> pool indices
        for j, line in enumerate(donor_lines):
            todo = wanted.pop(_identity(line) or (), [])
            if todo:
                matches[j] = todo
        if not matches:
            continue
        found.update(_take(PatchStore.open(donor), matches, pool))
        logger.info("patches: %d images reused from %s", sum(len(v) for v in matches.values()), donor.name)
        if not wanted:
            break
    return found


def _take(store: Any, matches: Mapping[int, list[int]], pool: Sequence[Any]) -> dict[int, ReusedImage]:
    """The rows and embeddings of the donor images ``matches`` (donor index -> pool indices), renamed for ``pool``."""
    index = store.image_index
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], list(matches), side="left")
    ends = np.searchsorted(index[order], list(matches), side="right")
    errors = {int(f["index"]): str(f["reason"]) for f in store.failed}
    table = store.table.drop_columns(["patch_id"])
    out: dict[int, ReusedImage] = {}
    for (j, targets), a, b in zip(matches.items(), starts, ends, strict=True):
        rows = order[a:b]
        for i in targets:
            out[i] = _renamed(store, table.take(pa.array(rows, pa.int64())), rows, pool[i], i, errors.get(j))
    return out


def _renamed(store: Any, t: pa.Table, rows: np.ndarray, im: Any, i: int, error: str | None) -> ReusedImage:
    """Donor rows ``t`` (the store's rows ``rows``) as the rows of pool image ``im`` at pool index ``i``."""
    n = t.num_rows
    values = {
        "image_index": pa.array([i] * n, pa.int64()),
        "source": pa.array([im.source] * n, pa.string()),
        "image_id": pa.array([im.id] * n, pa.string()),
        "image_uid": pa.array([im.uid] * n, pa.string()),
        "image_path": pa.array([str(im.path)] * n, pa.string()),
    }
    for c in IMAGE_COLUMNS:
        t = t.set_column(t.schema.get_field_index(c), c, values[c])
    t = t.select(PATCH_SCHEMA.names).cast(PATCH_SCHEMA)
    emb = np.asarray(store.embeddings[rows], np.float32).reshape(n, store.dim)
    return ReusedImage(t, emb, error, store.root.name)
