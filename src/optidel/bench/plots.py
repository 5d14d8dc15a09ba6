"""Benchmark plots: mIoU per method and dataset (bars), and mIoU against the retained ratio (lines per method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optidel.bench.grid import FULL, RANDOM_INIT
from optidel.bench.results import REFERENCE_METHODS

Rows = list[dict[str, Any]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return (
        (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
        if values
        else (np.nan, 0.0)
    )


def _arm_label(method: str, ratio: float, ssl: str) -> str:
    """``optidel 5% (mae)``, ``full (mae)``, ``random-init (simclr)``, ``mean-mask prior``."""
    if method in REFERENCE_METHODS:
        return method if ssl == "-" else f"{method} ({ssl})"
    return f"{method} ({ssl})" if method == FULL else f"{method} {ratio:.0%} ({ssl})"


def plot_per_method(rows: Rows, path: Path) -> Path | None:
    """Test mIoU of every arm: a panel per (label fraction, dataset), a row per arm (method, ratio, SSL method).

    Each row shows the mean over seeds with +- s.d. whiskers and the seeds as small dots, so the panels can zoom to
    the arms' range without the misleading bars of a truncated axis. Arms keep one row order in every panel (the
    reference rows, random init and the mean-mask prior, last, in grey); the full pool of each SSL method is a dotted
    line and random init a dashed one, for reading every arm against them.
    """
    plt = _pyplot()
    datasets = sorted({r["dataset"] for r in rows})
    lfs = sorted({r["label_fraction"] for r in rows})
    arms = sorted(
        {(r["method"], r["ratio"], r["ssl"]) for r in rows},
        key=lambda a: (a[0] in REFERENCE_METHODS, a[2], a[0] != FULL, a[0], a[1]),
    )
    if not datasets or not arms:
        return None
    methods = list(dict.fromkeys(a[0] for a in arms if a[0] not in REFERENCE_METHODS))
    palette = plt.get_cmap("tab20")
    colour = {m: palette(i % 20) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(
        len(lfs),
        len(datasets),
        figsize=(2.2 + 3.2 * len(datasets), 0.8 + 0.26 * len(arms) * len(lfs)),
        squeeze=False,
        sharey=True,
    )
    ys = np.arange(len(arms))[::-1]
    for i, lf in enumerate(lfs):
        for j, ds in enumerate(datasets):
            ax = axes[i][j]
            here = [r for r in rows if r["dataset"] == ds and r["label_fraction"] == lf]
            lo, hi = np.inf, -np.inf
            for y, (m, rt, ssl) in zip(ys, arms, strict=True):
                values = [r["miou"] for r in here if (r["method"], r["ratio"], r["ssl"]) == (m, rt, ssl)]
                if not values:
                    continue
                mean, sd = _mean_sd(values)
                c = "0.5" if m in REFERENCE_METHODS else colour[m]
                ax.errorbar(mean, y, xerr=sd, fmt="o", color=c, capsize=2, markersize=5)
                ax.scatter(values, [y] * len(values), s=6, color=c, alpha=0.5, zorder=3)
                lo, hi = min(lo, mean - sd, *values), max(hi, mean + sd, *values)
                if m == FULL:
                    ax.axvline(mean, color=c, linestyle=":", linewidth=1)
                if m == RANDOM_INIT:
                    ax.axvline(mean, color="black", linestyle="--", linewidth=0.8)
            if np.isfinite(lo):
                pad = max(0.01, 0.08 * (hi - lo))
                ax.set_xlim(lo - pad, hi + pad)
            ax.grid(axis="x", linewidth=0.3)
            ax.set_title(f"{ds}, {lf:.0%} labels", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == len(lfs) - 1:
                ax.set_xlabel("test mIoU", fontsize=8)
    labels = [_arm_label(*a) for a in arms]
    for i in range(len(lfs)):
        axes[i][0].set_yticks(ys, labels, fontsize=7)
    fig.suptitle(
        "test mIoU per arm: mean +- s.d. over seeds (small dots: the seeds); dotted: full pool, dashed: random init",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_vs_ratio(rows: Rows, ssl: str, lf: float, path: Path) -> Path | None:
    """mIoU (mean over seeds) against the retained ratio, one panel per dataset: a line per selection method, full-pool
    pre-training at ratio 1 (and as a dotted level), random init as a dashed level."""
    plt = _pyplot()
    sub = [r for r in rows if r["label_fraction"] == lf and r["ssl"] in (ssl, "-")]
    datasets = sorted({r["dataset"] for r in sub})
    methods = sorted({r["method"] for r in sub if r["method"] not in REFERENCE_METHODS})
    if not datasets or not methods:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        here = [r for r in sub if r["dataset"] == ds]
        for m in methods:
            xs = sorted({r["ratio"] for r in here if r["method"] == m})
            ys = [np.mean([r["miou"] for r in here if r["method"] == m and r["ratio"] == x]) for x in xs]
            if not xs:
                continue
            ax.plot(
                xs, ys, marker="*" if m == FULL else "o", label=m, linestyle="-" if len(xs) > 1 else "none"
            )
            if m == FULL:
                ax.axhline(ys[0], color="gray", linestyle=":", linewidth=1)
        init = [r["miou"] for r in here if r["method"] == RANDOM_INIT]
        if init:
            ax.axhline(float(np.mean(init)), color="black", linestyle="--", linewidth=1, label=RANDOM_INIT)
        ax.set_xscale("log")
        ax.set_xlabel("retained ratio of the pool")
        ax.set_title(ds)
    axes[0][0].set_ylabel("test mIoU (mean over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{ssl}, label fraction {lf:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(rows: Rows, folder: Path) -> list[Path]:
    """``miou_per_method.png`` and ``miou_vs_ratio_<ssl>_lf<fraction>.png`` per setting; returns those written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [plot_per_method(rows, folder / "miou_per_method.png")]
    for ssl, lf in sorted(
        {(r["ssl"], r["label_fraction"]) for r in rows if r["method"] not in REFERENCE_METHODS}
    ):
        written.append(plot_vs_ratio(rows, ssl, lf, folder / f"miou_vs_ratio_{ssl}_lf{lf:g}.png"))
    return [p for p in written if p is not None]
