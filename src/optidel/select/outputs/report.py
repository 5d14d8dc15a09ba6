"""``report.html`` of a selection run: what was chosen, from where, and how hard it was — readable at a glance.

Written into ``OUT/report.html`` (self-contained: every figure embedded as base64) with the figures also saved as
PNGs in ``OUT/report/``:

- a summary table (pool images, patches, N, k, output images, runtime per stage);
- counts per source (pool vs selected);
- score histograms of the pool with the selected share and the selection threshold;
- a 2-D PCA map of the patch embeddings coloured by cluster and by selection;
- patch level: the selected patches per k-means cluster beside plain OptiDEL's selection (coverage);
- galleries of the hardest and easiest patches with their scores, and sample output images;
- the V-information of the selected patches against random subsets of the pool of the same size, with Y from a
  source other than the hardness score (lesion masks, low-level statistics; the circular embedding clusters as an
  alternative; :mod:`optidel.select.stages.vinfo_labels`; also written to ``OUT/vinfo.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optidel.runtime.atomic import atomic_write_bytes, atomic_write_text
from optidel.select.outputs.html import (
    html_page,
    html_table,
    img_tag,
    note,
    png_bytes_of_figure,
    section,
)

MAX_MAP_POINTS = 20000


@dataclass
class ReportData:
    """Everything the report shows (assembled by the pipeline).

    Attributes:
        title: page title.
        summary: (label, value) rows.
        timings: (stage, seconds now, note) rows.
        source_counts: rows (source, pool images, pool patches or None, selected images/patches).
        scores: patch level: ``{name: (n_patches,)}`` raw scores (NaN columns are skipped).
        selected: patch level: (n_patches,) bool.
        score_name: the ranking score.
        threshold: the ranking score of the last selected patch (the selection boundary), or None.
        hardest / easiest: (crop (h, w, 3) uint8, caption) for the galleries.
        gallery_note: what a gallery thumbnail shows (printed under each gallery).
        samples: (output image (h, w, 3) uint8, caption).
        map_xy: (m, 2) PCA coordinates of a sample of patches, with ``map_cluster`` (m,) and ``map_selected`` (m,).
        failed: unreadable pool images (uid, reason).
        notes: free text lines shown under the summary.
        vinfo: the :func:`optidel.metrics.vinfo.vinfo_report` dict of the selected patches (headline Y), with
            ``alternatives``: the same for the other label sources (``optidel.select.stages.vinfo_labels``), or None.
        cluster_counts: patch level: ``{"pool", "selected", "optidel"}`` -> (K,) patches per k-means cluster (from
            :func:`optidel.select.strategies.optidel_cover.cluster_coverage`), or None.
    """

    title: str
    summary: list[tuple[str, Any]]
    timings: list[tuple[str, Any, str]] = field(default_factory=list)
    source_counts: list[tuple[str, int, int | None, int]] = field(default_factory=list)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    selected: np.ndarray | None = None
    score_name: str = "margin"
    threshold: float | None = None
    hardest: list[tuple[np.ndarray, str]] = field(default_factory=list)
    easiest: list[tuple[np.ndarray, str]] = field(default_factory=list)
    gallery_note: str = ""
    samples: list[tuple[np.ndarray, str]] = field(default_factory=list)
    map_xy: np.ndarray | None = None
    map_cluster: np.ndarray | None = None
    map_selected: np.ndarray | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    vinfo: dict[str, Any] | None = None
    cluster_counts: dict[str, np.ndarray] | None = None


def pca_2d(x: np.ndarray) -> np.ndarray:
    """x: (m, D) -> (m, 2) coordinates on the two leading principal components (SVD of the centred rows)."""
    x = np.asarray(x, np.float64)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    xc = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    xy = xc @ comps.T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy


def map_sample(n: int, selected: np.ndarray, rng: np.random.Generator, m: int = MAX_MAP_POINTS) -> np.ndarray:
    """Sorted row indices for the embedding map: every selected row plus random others, at most ``m`` in all."""
    sel = np.flatnonzero(selected)
    if n <= m:
        return np.arange(n)
    rest = np.setdiff1d(np.arange(n), sel, assume_unique=True)
    k = max(0, m - sel.size)
    pick = rng.choice(rest, size=min(k, rest.size), replace=False)
    return np.sort(np.concatenate([sel[:m], pick]))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _fig_histograms(data: ReportData) -> bytes | None:
    names = [k for k, v in data.scores.items() if v.size and np.isfinite(v).any()]
    if not names:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        v = data.scores[name]
        ok = np.isfinite(v)
        bins = np.histogram_bin_edges(v[ok], bins=60)
        ax.hist(v[ok], bins=bins, color="#9bb7d4", label="pool")
        if data.selected is not None and data.selected.any():
            s = ok & data.selected
            ax.hist(v[s], bins=bins, color="#d62728", alpha=0.85, label="selected")
        if name == data.score_name and data.threshold is not None and np.isfinite(data.threshold):
            ax.axvline(data.threshold, color="k", ls="--", lw=1, label=f"threshold {data.threshold:.4g}")
        hard = {"margin": "small = hard", "prototype": "large = hard", "reconstruction": "large = hard"}.get(
            name, ""
        )
        ax.set_title(f"{name} ({hard})" + ("  [ranking]" if name == data.score_name else ""), fontsize=10)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes_of_figure(fig)


def _fig_map(data: ReportData) -> bytes | None:
    if data.map_xy is None or data.map_xy.shape[0] < 2:
        return None
    plt = _plt()
    xy, cl, sel = data.map_xy, data.map_cluster, data.map_selected
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    axes[0].scatter(
        xy[:, 0], xy[:, 1], c=(cl % 20) if cl is not None else "#777", cmap="tab20", s=3, linewidths=0
    )
    axes[0].set_title(
        f"patch embeddings (PCA), coloured by k-means cluster ({len(np.unique(cl)) if cl is not None else 0} shown)",
        fontsize=10,
    )
    if sel is not None:
        axes[1].scatter(xy[~sel, 0], xy[~sel, 1], c="#c9d6e3", s=3, linewidths=0, label="pool")
        axes[1].scatter(xy[sel, 0], xy[sel, 1], c="#d62728", s=8, linewidths=0, label="selected")
        axes[1].legend(fontsize=8, markerscale=3)
    axes[1].set_title("selected patches", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return png_bytes_of_figure(fig)


def _fig_sources(data: ReportData) -> bytes | None:
    if not data.source_counts:
        return None
    plt = _plt()
    names = [r[0] for r in data.source_counts]
    pool = np.array([r[2] if r[2] is not None else r[1] for r in data.source_counts], float)
    chosen = np.array([r[3] for r in data.source_counts], float)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(names) + 2), 3.2))
    ax.bar(x - 0.2, 100 * pool / max(pool.sum(), 1), width=0.4, color="#9bb7d4", label="pool share %")
    ax.bar(x + 0.2, 100 * chosen / max(chosen.sum(), 1), width=0.4, color="#d62728", label="selected share %")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("% of total")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes_of_figure(fig)


def _fig_gallery(items: list[tuple[np.ndarray, str]], cols: int = 8, size: float = 1.6) -> bytes | None:
    if not items:
        return None
    plt = _plt()
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.35)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (img, cap) in zip(axes.ravel(), items, strict=False):
        ax.imshow(img)
        ax.set_title(cap, fontsize=7)
    fig.tight_layout()
    return png_bytes_of_figure(fig)


def coverage_rows(counts: dict[str, np.ndarray]) -> list[tuple[str, Any, Any]]:
    """Summary rows of :attr:`ReportData.cluster_counts`: (what, this selection, plain OptiDEL)."""
    pool = np.asarray(counts["pool"])
    rows: list[tuple[str, Any, Any]] = []
    cols = [np.asarray(counts["selected"]), np.asarray(counts["optidel"])]
    rows.append(("selected patches", *(int(c.sum()) for c in cols)))
    rows.append((f"clusters covered (of {int((pool > 0).sum())})", *(int((c > 0).sum()) for c in cols)))
    rows.append(("largest cluster share %", *(f"{100 * c.max() / max(c.sum(), 1):.1f}" for c in cols)))
    top = np.argsort(-pool, kind="stable")[: max(1, int(np.ceil(0.1 * (pool > 0).sum())))]
    rows.append(
        (
            f"share % in the {top.size} largest clusters (pool: {100 * pool[top].sum() / max(pool.sum(), 1):.1f})",
            *(f"{100 * c[top].sum() / max(c.sum(), 1):.1f}" for c in cols),
        )
    )
    return rows


def _fig_coverage(data: ReportData) -> bytes | None:
    c = data.cluster_counts
    if c is None or np.asarray(c["pool"]).size == 0:
        return None
    plt = _plt()
    pool = np.asarray(c["pool"], float)
    order = np.argsort(-pool, kind="stable")
    x = np.arange(order.size)
    fig, ax = plt.subplots(figsize=(min(16, 4 + 0.06 * order.size), 3.4))
    ax.plot(x, 100 * pool[order] / max(pool.sum(), 1), color="#777", lw=1, label="pool share %")
    for key, color, label in (
        ("optidel", "#1f77b4", "plain optidel"),
        ("selected", "#d62728", "this selection"),
    ):
        v = np.asarray(c[key], float)[order]
        ax.bar(x, 100 * v / max(v.sum(), 1), width=1.0, alpha=0.55, color=color, label=f"{label} share %")
    ax.set_xlabel("k-means cluster, largest first")
    ax.set_ylabel("% of patches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes_of_figure(fig)


def _vinfo_section(v: dict[str, Any], headline: bool = True) -> str:
    """One V-information table: the selected set against random subsets of the pool of the same size; its Y and V."""
    s, r, est = v["set"], v["random"], v["estimator"]
    lo, hi = s["vinfo_ci95_nats"]
    rlo, rhi = r["vinfo_p2.5_p97.5_nats"]
    rows = [
        (
            "selected patches",
            est["n_set"],
            f"{s['h_y_nats']:.3f}",
            f"{s['h_y_given_x_nats']:.3f}",
            f"{s['vinfo_nats']:.3f} (95% CI {lo:.3f}-{hi:.3f})",
        ),
        (
            f"random subsets ({r['n_draws']} draws)",
            est["n_set"],
            f"{r['h_y_mean_nats']:.3f}",
            f"{r['h_y_given_x_mean_nats']:.3f}",
            f"{r['vinfo_mean_nats']:.3f} (2.5-97.5%: {rlo:.3f}-{rhi:.3f})",
        ),
    ]
    source = est.get("label_source", "embedding")
    circular = est.get("circular", source == "embedding")
    caveat = (
        "CIRCULAR: Y is k-means of the same embeddings whose centroid distances define margin/prototype hardness, "
        "so hard patches are hard to label by construction; shown for comparison, not as a verdict."
        if circular
        else "Y is not built from the hardness score: a set that covers more of Y and keeps it predictable from "
        "the embedding scores higher."
    )
    title = f"V-information, Y = {source}" + ("" if headline else " (alternative)")
    return section(
        title,
        html_table(rows, ["set", "n", "H_V(Y|0) nats", "H_V(Y|X) nats", "I_V nats"]),
        note(v["verdict"]),
        note(
            f"Y: {est['labels']} ({est['n_pool']} pool patches). X: the patch embeddings. V: {est['family']}; "
            f"{est['cross_fitting_folds']}-fold cross-fitted. {caveat} See docs/theory.md."
        ),
    )


def write_report(out_dir: str | Path, data: ReportData) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/report/*.png``; returns the HTML path."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "report"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: dict[str, bytes | None] = {
        "sources": _fig_sources(data),
        "scores": _fig_histograms(data),
        "embedding_map": _fig_map(data),
        "hardest": _fig_gallery(data.hardest),
        "easiest": _fig_gallery(data.easiest),
        "samples": _fig_gallery(data.samples, cols=4, size=3.0),
        "cluster_coverage": _fig_coverage(data),
    }
    for name, png in figs.items():
        path = fig_dir / f"{name}.png"
        if png is not None:
            atomic_write_bytes(path, png)
        else:
            path.unlink(missing_ok=True)

    def fig(name: str, alt: str) -> str:
        png = figs.get(name)
        return img_tag(png, alt) if png is not None else note("(nothing to show)")

    parts = [section("Summary", html_table(data.summary), *[note(n) for n in data.notes])]
    if data.timings:
        parts.append(
            section("Runtime per stage", html_table(data.timings, ["stage", "seconds (this run)", "note"]))
        )
    if data.source_counts:
        parts.append(
            section(
                "Counts per source",
                html_table(
                    [(s, pi, "-" if pp is None else pp, sel) for s, pi, pp, sel in data.source_counts],
                    ["source", "pool images", "pool patches", "selected"],
                ),
                fig("sources", "pool vs selected share per source"),
            )
        )
    if figs["scores"] is not None:
        parts.append(
            section(
                "Hardness scores",
                note(
                    f"Ranking score: {data.score_name}. Red: the selected patches; dashed: the selection threshold."
                ),
                fig("scores", "score histograms"),
            )
        )
    if figs["embedding_map"] is not None:
        parts.append(section("Embedding map", fig("embedding_map", "PCA map of the patch embeddings")))
    if data.cluster_counts is not None:
        parts.append(
            section(
                "Coverage of the k-means clusters",
                html_table(coverage_rows(data.cluster_counts), ["", "this selection", "plain optidel"]),
                note(
                    "Selected patches per k-means cluster of the patch embeddings, beside the top-N hardest "
                    "(plain optidel, same N, score and filters), from the same cached clusters and scores."
                ),
                fig("cluster_coverage", "selected patches per cluster"),
            )
        )
    if data.vinfo is not None:
        for i, v in enumerate([data.vinfo, *data.vinfo.get("alternatives", [])]):
            parts.append(_vinfo_section(v, headline=i == 0))
    explain = [note(data.gallery_note)] if data.gallery_note else []
    if data.hardest:
        parts.append(
            section(f"Hardest patches (by {data.score_name})", fig("hardest", "hardest patches"), *explain)
        )
    if data.easiest:
        parts.append(
            section(f"Easiest patches (by {data.score_name})", fig("easiest", "easiest patches"), *explain)
        )
    if data.samples:
        parts.append(section("Sample output images", fig("samples", "sample output images")))
    if data.failed:
        parts.append(
            section(
                f"Unreadable pool images ({len(data.failed)})",
                html_table(data.failed[:200], ["image", "reason"]),
            )
        )
    path = out_dir / "report.html"
    atomic_write_text(path, html_page(data.title, parts, subtitle="optidel select"))
    return path
