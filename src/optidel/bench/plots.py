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


_DODGE = 0.014  # log10 step between the dodged methods of plot_vs_ratio (15 methods span a factor of 1.6)


def _ordered_methods(rows: Rows) -> list[str]:
    """The selection methods in ``rows`` (not the reference rows): the full pool first, then by name."""
    return sorted(
        {r["method"] for r in rows if r["method"] not in REFERENCE_METHODS}, key=lambda m: (m != FULL, m)
    )


def _method_colours(rows: Rows) -> dict[str, Any]:
    """One colour per selection method (tab20, in ``_ordered_methods`` order), the same in every picture of a grid."""
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    return {m: palette(i % 20) for i, m in enumerate(_ordered_methods(rows))}


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
    colour = _method_colours(rows)
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
    """mIoU against the retained ratio, one panel per dataset: each selection method's mean over seeds with +- s.d.
    whiskers, joined by a line where it ran at several ratios; full-pool pre-training at ratio 1 (and as a dotted
    level), random init as a dashed level.

    A grid runs most methods at one ratio (5%), so their points would sit on one another: each method's points are
    shifted sideways by a small fixed factor of their own (a dodge, the same in every panel), and the x ticks stay at
    the true ratios. Colours are the per-arm picture's (``_method_colours``), and one legend outside the panels names
    them, so that no panel's points hide behind it.
    """
    plt = _pyplot()
    sub = [r for r in rows if r["label_fraction"] == lf and r["ssl"] in (ssl, "-")]
    datasets = sorted({r["dataset"] for r in sub})
    methods = _ordered_methods(sub)
    if not datasets or not methods:
        return None
    colour = _method_colours(rows)
    dodged = [m for m in methods if m != FULL]
    shift = {m: 10 ** (_DODGE * (k - (len(dodged) - 1) / 2)) for k, m in enumerate(dodged)}
    ratios = sorted({r["ratio"] for r in sub if r["method"] not in REFERENCE_METHODS})
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(2.6 + 3.6 * len(datasets), 3.8), squeeze=False, layout="constrained"
    )
    handles: dict[str, Any] = {}
    for ax, ds in zip(axes[0], datasets, strict=True):
        here = [r for r in sub if r["dataset"] == ds]
        for m in methods:
            xs = sorted({r["ratio"] for r in here if r["method"] == m})
            if not xs:
                continue
            stats = [_mean_sd([r["miou"] for r in here if r["method"] == m and r["ratio"] == x]) for x in xs]
            means = [mu for mu, _ in stats]
            handles[m] = ax.errorbar(
                [x * shift.get(m, 1.0) for x in xs],
                means,
                yerr=[sd for _, sd in stats],
                color=colour[m],
                marker="*" if m == FULL else "o",
                markersize=8 if m == FULL else (6 if len(xs) > 1 else 4),
                linestyle="-" if len(xs) > 1 else "none",
                linewidth=1.5,
                elinewidth=0.8,
                capsize=2,
            )
            if m == FULL:
                ax.axhline(means[0], color=colour[m], linestyle=":", linewidth=1)
        init = [r["miou"] for r in here if r["method"] == RANDOM_INIT]
        if init:
            handles[RANDOM_INIT] = ax.axhline(
                float(np.mean(init)), color="black", linestyle="--", linewidth=1
            )
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{x:.0%}" for x in ratios])
        ax.minorticks_off()
        ax.grid(axis="y", linewidth=0.3)
        ax.set_xlabel("retained ratio of the pool (points dodged sideways)", fontsize=8)
        ax.set_title(ds)
    axes[0][0].set_ylabel("test mIoU, mean +- s.d. over seeds")
    fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=7)
    fig.suptitle(f"{ssl}, {lf:.0%} of the labels", fontsize=9)
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
