"""The report stage: the run summary, ``OUT/report.html`` (with ``report/``) and ``vinfo.json``.

Everything the report shows comes from the run's cached stages through the :class:`SelectionContext` (patches,
k-means, scores); the page is written by :mod:`optidel.select.outputs.report`. A stamp
(``OUT/cache/report.json``) skips the rewrite when the page shows this selection already.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from optidel.data.image import ImageDecodeError, load_rgb
from optidel.metrics.embedding import l2_normalize
from optidel.runtime.atomic import atomic_write_json
from optidel.select.outputs.mosaic import bar_fraction, box_cut, context_box, render_tile
from optidel.select.outputs.report import ReportData, map_sample, pca_2d, write_report
from optidel.select.rank.scores import rank_order
from optidel.select.stage_cache import StageCache
from optidel.select.stages.images import OutputMap
from optidel.select.stages.vinfo_labels import VINFO_MIN_SET, selection_vinfo
from optidel.select.strategies.base import SelectionContext, SelectionResult, Strategy
from optidel.select.strategies.optidel_cover import cluster_coverage

GALLERY = 24


def run_summary(
    ctx: SelectionContext, cache: StageCache, strategy: Strategy, result: SelectionResult, omap: OutputMap
) -> dict[str, Any]:
    """The rows of the report's summary table and of ``metrics.json``."""
    cfg = ctx.cfg
    s: dict[str, Any] = {
        "method": f"{cfg.method} ({strategy.description})",
        "pool sources": ", ".join(cfg.pool),
        "pool images": len(ctx.pool),
        "ratio": cfg.ratio,
        "output images": len({n for n in omap.names if n}),
    }
    if result.level == "patch":
        store = ctx.patches()
        km = ctx.clusters()
        p, syn, sc = cfg.proposal, cfg.synthesis, cfg.scoring
        proposer = str(cache.proposer_spec()["proposer"].get("name")) if cache.injected else p.patches
        s.update(
            {
                "unreadable pool images": len(store.failed),
                "patches in pool": len(store),
                "patch proposer": proposer,
                "embedding": f"{p.embedder or 'the proposer features'} (dim {store.dim})",
                "N wanted": result.info.get("n_wanted", result.ids.size),
                "N selected patches": int(result.ids.size),
                "k (clusters)": km.k,
                "distance": cfg.cluster.distance,
                "score (ranking)": sc.score,
                "mosaics": f"2x2, {syn.mosaic_size} px, tiles {syn.tile_fit}, grouping {syn.grouping}"
                if result.groups is not None
                else "no (single patches)",
                "black bars": _black_bars(
                    store,
                    result.ids,
                    syn.tile_fit,
                    syn.mosaic_size // 2 if result.groups is not None else syn.mosaic_size,
                ),
                **(
                    {"boxes cut by the frame": _boxes_cut(store, result.ids)}
                    if syn.tile_fit == "context"
                    else {}
                ),
                "dedup threshold": sc.dedup_threshold,
                "max per image": sc.max_per_image,
            }
        )
    else:
        s["selected images"] = int(result.ids.size)
        s["image files"] = (
            f"noise, {cfg.synthesis.mosaic_size} px (no pool pixel)"
            if result.content == "noise"
            else cfg.synthesis.image_copy
        )
    s["seed"] = cfg.seed
    return s


def _black_bars(store: Any, ids: np.ndarray, fit: str, tile: int) -> str:
    """How much of the selected patches' tiles (``tile`` px) stays black under ``fit`` (:func:`bar_fraction`)."""
    if not ids.size:
        return "none"
    boxes, w, h = store.boxes[ids], store.column("image_w")[ids], store.column("image_h")[ids]
    bars = np.asarray([bar_fraction(b, int(hh), int(ww), fit) for b, ww, hh in zip(boxes, w, h, strict=True)])
    # bars under one tile pixel wide are the resize's rounding, not a letterbox
    boxed = int((bars >= 1 / tile).sum())
    return f"{bars.mean():.1%} of the tiles' area ({boxed} of {ids.size} tiles letterboxed)"


def _boxes_cut(store: Any, ids: np.ndarray) -> str:
    """How many ``context`` tiles cut their box to fit the frame, and how much of those boxes (:func:`box_cut`)."""
    boxes, w, h = store.boxes[ids], store.column("image_w")[ids], store.column("image_h")[ids]
    cut = np.asarray([box_cut(b, int(hh), int(ww)) for b, ww, hh in zip(boxes, w, h, strict=True)])
    cut = cut[cut > 0]
    if not cut.size:
        return f"0 of {ids.size}"
    why = "boxes longer than their image's shorter side"
    return f"{cut.size} of {ids.size} ({why}; {cut.mean():.1%} of such a box cut)"


def _source_counts(
    ctx: SelectionContext, result: SelectionResult, omap: OutputMap
) -> list[tuple[str, int, int | None, int]]:
    sources = list(dict.fromkeys(im.source for im in ctx.pool))
    pool_imgs = {s: 0 for s in sources}
    for im in ctx.pool:
        pool_imgs[im.source] += 1
    if result.level == "patch":
        pool_patches = ctx.patches().counts("source")
        sel = ctx.patches().counts("source", result.ids)
        return [(s, pool_imgs[s], int(pool_patches.get(s, 0)), int(sel.get(s, 0))) for s in sources]
    sel_img: dict[str, int] = {}
    for i, n in zip(result.ids.tolist(), omap.names, strict=True):
        if n:
            sel_img[ctx.pool[i].source] = sel_img.get(ctx.pool[i].source, 0) + 1
    return [(s, pool_imgs[s], None, sel_img.get(s, 0)) for s in sources]


THUMB = 96  # px of a gallery thumbnail
GALLERY_NOTES = {
    "context": "Each patch as its mosaic tile shows it (tile_fit context): the square around it in its source image, "
    "with the patch's own box in yellow.",
    "pad": "Each patch's box as its mosaic tile shows it (tile_fit pad): resized, aspect kept, on black.",
    "stretch": "Each patch's box as its mosaic tile shows it (tile_fit stretch): resized to the square.",
}
OUTLINE = np.array([255, 214, 0], np.uint8)  # the patch's box drawn on a context thumbnail


def _crops(ctx: SelectionContext, ids: list[int], caps: list[str]) -> list[tuple[np.ndarray, str]]:
    """Gallery thumbnails of patches, filled as the run's tiles are (``synthesis.tile_fit``); with ``context`` the
    patch's own box is outlined inside its square."""
    store = ctx.patches()
    image_index = store.image_index
    boxes = store.boxes
    fit = ctx.cfg.synthesis.tile_fit
    out = []
    for pid, cap in zip(ids, caps, strict=True):
        try:
            img = load_rgb(ctx.pool[int(image_index[pid])].path)
        except ImageDecodeError:
            continue
        thumb = render_tile(img, boxes[pid], THUMB, fit)
        if fit == "context":
            thumb = _outline(thumb, boxes[pid], context_box(boxes[pid], *img.shape[:2]))
        out.append((thumb, cap))
    return out


def _outline(thumb: np.ndarray, box: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """thumb (T, T, 3) showing the square ``region`` of its image -> a copy with ``box`` drawn 1 px wide."""
    t = thumb.shape[0]
    rx0, ry0, rx1, _ = region
    s = t / (rx1 - rx0)
    x0, y0, x1, y1 = (
        int(np.clip(round((v - o) * s), 0, t - 1)) for v, o in zip(box, (rx0, ry0, rx0, ry0), strict=True)
    )
    out = thumb.copy()
    out[[y0, y1], x0 : x1 + 1] = OUTLINE
    out[y0 : y1 + 1, [x0, x1]] = OUTLINE
    return out


def _patch_sections(
    data: ReportData, ctx: SelectionContext, strategy: Strategy, result: SelectionResult
) -> None:
    """The patch-level parts of the report: score histograms, galleries, the embedding map, V-information."""
    cfg = ctx.cfg
    score = cfg.scoring.score
    store = ctx.patches()
    km = ctx.clusters()
    scores = ctx.scores()
    n = len(store)
    selected = np.zeros(n, bool)
    selected[result.ids] = True
    data.scores = {k: np.asarray(v) for k, v in scores.items()}
    data.selected = selected
    if getattr(strategy, "ranks_by_score", False) and result.ids.size:
        data.threshold = float(scores[score][result.ids[-1]])
    order = rank_order(ctx.hardness(), descending=True)
    order = order[np.isfinite(np.asarray(scores[score])[order])]
    hard, easy = order[:GALLERY].tolist(), order[::-1][:GALLERY].tolist()
    s = scores[score]
    data.gallery_note = GALLERY_NOTES[cfg.synthesis.tile_fit]
    for rows, attr in ((hard, "hardest"), (easy, "easiest")):
        ids_ = store.values_at("image_id", rows)
        caps = [f"{s[i]:.3g} {str(u).rsplit('/', 1)[-1][:14]}" for i, u in zip(rows, ids_, strict=True)]
        setattr(data, attr, _crops(ctx, rows, caps))
    rows_ = map_sample(n, selected, np.random.default_rng(cfg.seed))
    x = np.asarray(store.embeddings[rows_], np.float32)
    cosine = cfg.cluster.distance == "cosine"
    data.map_xy = pca_2d(l2_normalize(x) if cosine else x)
    data.map_cluster = km.cluster[rows_]
    data.map_selected = selected[rows_]
    data.cluster_counts = cluster_coverage(ctx, result.ids)  # beside plain optidel's
    data.failed = [(f["uid"], f["reason"]) for f in store.failed]
    if cfg.report.vinfo:
        data.vinfo = selection_vinfo(ctx, selected, cfg.seed, cosine)  # Y not built from the hardness
        if data.vinfo is None:
            k = int(selected.sum())
            why = "every patch is selected" if k == n else f"at least {VINFO_MIN_SET} needed"
            data.notes.append(f"V-information not estimated: {k} selected patches ({why}).")


def build_report_data(
    ctx: SelectionContext,
    cache: StageCache,
    strategy: Strategy,
    result: SelectionResult,
    omap: OutputMap,
    summary: dict[str, Any],
) -> ReportData:
    """Assemble :class:`optidel.select.outputs.report.ReportData` from the run's cached stages."""
    cfg = ctx.cfg
    timings = [
        (
            k,
            v["seconds"],
            f"cached; first computed in {v['compute_seconds']:.1f} s" if v["cached"] else "computed",
        )
        for k, v in cache.timings.items()
    ]
    data = ReportData(
        title=f"optidel select: {cfg.method} ({result.n_outputs} images)",
        summary=[(k.replace("_", " "), v) for k, v in summary.items()],
        timings=timings,
        source_counts=_source_counts(ctx, result, omap),
        score_name=cfg.scoring.score,
    )
    data.notes.append(
        f"Ranking: {result.ranking}. Output images in images/, one row per "
        + ("pool patch" if result.level == "patch" else "selected image")
        + " in manifest.parquet."
    )
    if result.level == "patch":
        _patch_sections(data, ctx, strategy, result)
    for name in sorted({n for n in omap.names if n})[:8]:
        try:
            data.samples.append((load_rgb(Path(cfg.out) / "images" / name), name))
        except ImageDecodeError:
            continue
    return data


def write_selection_report(
    ctx: SelectionContext,
    cache: StageCache,
    strategy: Strategy,
    result: SelectionResult,
    omap: OutputMap,
    summary: dict[str, Any],
) -> Path:
    """``OUT/report.html`` (skipped when the stamp says it shows this selection already)."""
    out = Path(ctx.cfg.out)
    path = out / "report.html"
    t0 = time.perf_counter()
    key = cache.report_key(omap.key, result.level, summary)
    stamp = cache.stamp("report", key, path, out / "report")
    if stamp is not None:
        cache.record("report", time.perf_counter() - t0, True, stamp.get("seconds"))
        return path
    data = build_report_data(ctx, cache, strategy, result, omap, summary)
    if data.vinfo is not None:
        atomic_write_json(out / "vinfo.json", data.vinfo)
    else:
        (out / "vinfo.json").unlink(missing_ok=True)
    write_report(out, data)
    secs = time.perf_counter() - t0
    cache.write_stamp("report", {"key": key, "seconds": secs})
    cache.record("report", secs, False)
    return path


def remove_report(out: Path, cache: StageCache) -> None:
    """``report.enabled = False``: never leave a report of another selection beside this one."""
    (out / "report.html").unlink(missing_ok=True)
    (out / "vinfo.json").unlink(missing_ok=True)
    shutil.rmtree(out / "report", ignore_errors=True)
    cache.drop_stamp("report")
