"""The report's V-information with a Y that is not the hardness criterion itself (``vinfo.json``).

X is the patches' embedding (what the selection scored). Y, in order of preference (the first available is the
headline, ``vinfo.json``'s top level, which the benchmark's rank correlation reads; the others follow under
``alternatives``):

1. ``lesion``: the share of each patch box covered by its image's lesion mask, in 3 bins
   (:func:`optidel.metrics.vinfo_labels.lesion_labels`) - when every pool image has a mask (pools of ``DATASET:train``);
2. ``lowlevel``: k-means (k = 10) of colour/texture statistics of the patch pixels
   (:func:`optidel.metrics.vinfo_labels.lowlevel_features`);
3. ``embedding``: k-means of the same embeddings - circular for margin/prototype-hard sets, shown for comparison.

The pool side is a seeded subsample of at most ``VINFO_LABEL_POOL`` patches (their pixels and masks are read);
the estimator and its family are :func:`optidel.metrics.vinfo.vinfo_report`'s. ``optidel vinfo``
(:mod:`optidel.select.vinfo_command`) reads the same pixels through :func:`vinfo_rows` and :func:`label_sources`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.data.image import ImageDecodeError, load_rgb
from optidel.data.pool import parse_source
from optidel.data.segmentation import is_seg_dataset, load_mask, load_seg_dataset
from optidel.log import logger
from optidel.metrics.embedding import l2_normalize
from optidel.metrics.vinfo import LabelSource, vinfo_report
from optidel.metrics.vinfo_labels import lesion_labels, lowlevel_features, lowlevel_label_source
from optidel.select.outputs.mosaic import crop

VINFO_MIN_SET = 50  # fewer selected patches give no usable 5-fold estimate over 10 pseudo-classes
VINFO_MAX_SET = 5000  # larger sets are subsampled (seeded)
VINFO_LABEL_POOL = 10000  # pool patches whose pixels (and masks) are read for the non-circular labels
LOWLEVEL_K = 10


def mask_paths(pool_sources: Sequence[str], image_paths: Sequence[str | Path | None]) -> list[Path | None]:
    """The lesion mask of each pool image (segmentation-dataset sources), None where it has none.

    Args:
        pool_sources: the selection's pool sources (``PATH:SPLIT`` strings, as in its ``config.yaml``).
        image_paths: the pool images' files in pool order (None for a position that is not needed).
    """
    by_image: dict[str, Path] = {}
    for s in pool_sources:
        src = parse_source(s)
        if is_seg_dataset(src.path):
            for pair in load_seg_dataset(src.path, check_sizes=False).pairs:
                if getattr(pair, "mask", None) is not None:
                    by_image[str(Path(pair.image).resolve())] = Path(pair.mask)
    return [None if p is None else by_image.get(str(Path(p).resolve())) for p in image_paths]


def patch_pixels(
    image_paths: Sequence[str | Path | None],
    image_index: np.ndarray,
    boxes: np.ndarray,
    rows: np.ndarray,
    masks: Sequence[Path | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low-level features and lesion shares of patch ``rows`` (each source image decoded once).

    Args:
        image_paths: the pool images' files (or locators) in pool order; image_index: (n_patches,) int, the
            position of each patch's image in ``image_paths``; boxes: (n_patches, 4) ``x0, y0, x1, y1``;
            rows: (n,) the patches wanted; masks: the mask file of each pool image or None (:func:`mask_paths`).
    Returns:
        features (n, 21) float32; lesion share (n,) float (NaN without a mask); ok (n,) bool (image decoded).
    """
    feats = np.zeros((rows.size, 21), np.float32)
    share = np.full(rows.size, np.nan)
    ok = np.zeros(rows.size, bool)
    order = np.argsort(image_index[rows], kind="stable")
    for img_i in np.unique(image_index[rows]):
        pos = order[image_index[rows][order] == img_i]
        try:
            img = load_rgb(image_paths[int(img_i)])
        except ImageDecodeError:
            continue
        mask = None
        if masks[int(img_i)] is not None:
            try:
                mask = load_mask(masks[int(img_i)])
            except Exception as e:  # a bad mask only costs this image its lesion labels
                logger.warning("vinfo: cannot read mask %s (%s)", masks[int(img_i)], e)
        crops = [crop(img, boxes[rows[p]]) for p in pos]
        feats[pos] = lowlevel_features(crops)
        ok[pos] = True
        if mask is not None and mask.shape == img.shape[:2]:
            share[pos] = [float(crop(mask[..., None], boxes[rows[p]]).mean()) for p in pos]
    return feats, share, ok


def vinfo_rows(selected: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The patch rows of an estimate: the selected ones (a seeded sample of ``VINFO_MAX_SET`` above that) and the
    pool side (every patch, or a seeded sample of ``VINFO_LABEL_POOL``).

    Args:
        selected: (n_patches,) bool.
    Returns:
        set rows (<= VINFO_MAX_SET,) and pool rows (<= VINFO_LABEL_POOL,), both sorted int64.
    """
    sel = np.flatnonzero(selected)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    if sel.size > VINFO_MAX_SET:
        sel = np.sort(rng.choice(sel, VINFO_MAX_SET, replace=False))
    pool_rows = np.arange(len(selected))
    if pool_rows.size > VINFO_LABEL_POOL:
        pool_rows = np.sort(rng.choice(pool_rows, VINFO_LABEL_POOL, replace=False))
    return sel, pool_rows


def label_sources(
    image_paths: Sequence[str | Path | None],
    image_index: np.ndarray,
    boxes: np.ndarray,
    masks: Sequence[Path | None],
    sel: np.ndarray,
    pool_rows: np.ndarray,
    k: int = LOWLEVEL_K,
    seed: int = 0,
) -> tuple[list[LabelSource], np.ndarray, np.ndarray]:
    """The non-circular label sources of set rows ``sel`` against ``pool_rows`` (pixels read by :func:`patch_pixels`).

    Returns:
        the sources (``lesion`` first when every used patch has a lesion share, then ``lowlevel`` with ``k``
        classes), and the set and pool rows they label (rows whose image could not be decoded dropped).
    """
    rows = np.concatenate([sel, pool_rows])
    feats, share, ok = patch_pixels(image_paths, image_index, boxes, rows, masks)
    s_ok, p_ok = ok[: sel.size], ok[sel.size :]
    fs, fp = feats[: sel.size][s_ok], feats[sel.size :][p_ok]
    out = [lowlevel_label_source(fs, fp, k, seed)]
    ss, sp = share[: sel.size][s_ok], share[sel.size :][p_ok]
    if np.isfinite(ss).all() and np.isfinite(sp).all():
        desc = (
            "lesion share of the patch box from the pool's masks, 3 bins: none < 1%, partial 1-50%, mostly >= 50% "
            "(downstream labels)"
        )
        out.insert(0, LabelSource("lesion", desc, lesion_labels(ss), lesion_labels(sp), 3))
    return out, sel[s_ok], pool_rows[p_ok]


def selection_vinfo(ctx: Any, selected: np.ndarray, seed: int, normalize: bool) -> dict[str, Any] | None:
    """V-information of the selected patches vs random pool subsets, headline Y non-circular (module docstring).

    Args:
        ctx: the run's :class:`optidel.select.strategies.base.SelectionContext`.
        selected: (n_patches,) bool; seed: seeds subsamples and estimates; normalize: L2-normalise embeddings.
    Returns:
        the headline :func:`optidel.metrics.vinfo.vinfo_report` dict with ``alternatives`` (the other sources),
        or None when fewer than ``VINFO_MIN_SET`` (or all) patches are selected.
    """
    n_sel = int(selected.sum())
    if n_sel < VINFO_MIN_SET or n_sel >= len(selected):
        return None
    sel, pool_rows = vinfo_rows(selected, seed)
    store = ctx.patches()
    emb = store.embeddings

    def x(idx: np.ndarray) -> np.ndarray:
        v = np.asarray(emb[idx], np.float32)
        return l2_normalize(v) if normalize else v

    paths = [im.path for im in ctx.pool]
    masks = mask_paths(ctx.cfg.pool, paths)
    sources, s_rows, p_rows = label_sources(
        paths, store.image_index, store.boxes, masks, sel, pool_rows, LOWLEVEL_K, seed
    )
    reports = []
    for src in [*sources, None]:  # None: the circular embedding pseudo-labels, for comparison
        rs, rp = (s_rows, p_rows) if src is not None else (sel, pool_rows)
        if rs.size < VINFO_MIN_SET or rp.size <= rs.size:
            continue
        rep = vinfo_report(x(rs), x(rp), seed=seed, labels=src)
        rep["estimator"]["n_selected_total"] = int(selected.sum())
        rep["estimator"]["n_pool_total"] = int(len(selected))
        reports.append(rep)
    if not reports:
        return None
    return reports[0] | {"alternatives": reports[1:]}
