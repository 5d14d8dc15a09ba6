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


def plot_per_method(rows: Rows, path: Path) -> Path | None:
    """Bars of mean mIoU +- s.d. over seeds: a group per dataset, a bar per (method, ratio, SSL, label fraction)."""
    plt = _pyplot()
    datasets = sorted({r["dataset"] for r in rows})
    arms = sorted(
        {(r["method"], r["ratio"], r["ssl"], r["label_fraction"]) for r in rows},
        key=lambda a: (a[0] in REFERENCE_METHODS, a),
    )
    if not datasets or not arms:
        return None
    lfs = {a[3] for a in arms}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(arms)) / 3), 4))
    width = 0.8 / len(arms)
    for j, (m, rt, ssl, lf) in enumerate(arms):
        stats = [
            _mean_sd(
                [
                    r["miou"]
                    for r in rows
                    if (r["method"], r["ratio"], r["ssl"], r["label_fraction"], r["dataset"])
                    == (m, rt, ssl, lf, ds)
                ]
            )
            for ds in datasets
        ]
        label = m if m in REFERENCE_METHODS else f"{m} {rt:g} ({ssl})"
        if len(lfs) > 1:
            label += f" lf {lf:g}"
        ax.bar(
            np.arange(len(datasets)) + j * width,
            [s[0] for s in stats],
            width,
            yerr=[s[1] for s in stats],
            label=label,
            capsize=2,
        )
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax.set_ylabel("test mIoU")
    ax.set_ylim(max(0, float(np.nanmin([r["miou"] for r in rows])) - 0.05), None)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("mIoU per method and dataset (mean +- s.d. over seeds)")
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
