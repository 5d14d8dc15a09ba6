"""Benchmark tables: ``results.csv`` (one row per fine-tuning), ``results.md`` (means, NormDEL, paired CIs), plots."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optidel.metrics.bootstrap import Interval, paired_miou_difference
from optidel.metrics.normdel import normdel
from optidel.runtime.atomic import atomic_write_text
from optidel.runtime.run_dir import is_done

if TYPE_CHECKING:
    from optidel.bench.runner import BenchmarkRunner

COLUMNS = [
    "method",
    "ratio",
    "ssl",
    "seed",
    "arch",
    "dataset",
    "label_fraction",
    "miou",
    "iou_fg",
    "dice_fg",
    "normdel",
    "floor_all_background",
    "floor_all_foreground",
    "floor_mean_mask_prior",
    "pretrain_images",
    "pretrain_steps",
    "run_dir",
]
REFERENCE_METHODS = ("random-init", "mean-mask prior")


def _pretrain_info(runner: BenchmarkRunner, arm) -> tuple[int | None, int | None]:
    if arm.method == "random-init":
        return 0, 0
    d = runner.pretrain_dir(arm)
    try:
        done = json.loads((d / "DONE").read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        done = {}
    n = done.get("n_images")
    steps = done.get("steps")
    return n, steps


def collect_rows(runner: BenchmarkRunner) -> list[dict[str, Any]]:
    """One row per finished fine-tuning, plus one ``mean-mask prior`` reference row per (dataset, fraction, seed)."""
    rows = []
    priors: dict[tuple[str, float, int], dict[str, Any]] = {}
    for cell in runner.finetune_cells():
        d = runner.finetune_dir(cell)
        if not is_done(d):
            continue
        m = json.loads((d / "metrics.json").read_text())
        arm = cell.arm
        floors = m.get("floors", {})
        n_img, steps = _pretrain_info(runner, arm)
        ratio = 0.0 if arm.method == "random-init" else arm.ratio
        row = {
            "method": arm.method,
            "ratio": ratio,
            "ssl": "-" if arm.method == "random-init" else arm.ssl,
            "seed": arm.seed,
            "arch": m.get("encoder", {}).get("arch", arm.arch),
            "dataset": cell.dataset,
            "label_fraction": cell.label_fraction,
            "miou": m["test"]["miou"],
            "iou_fg": m["test"]["iou_fg"],
            "dice_fg": m["test"]["dice_fg"],
            "normdel": float(normdel(m["test"]["miou"], ratio))
            if arm.method != "random-init"
            else float("nan"),
            "floor_all_background": floors.get("all-background", {}).get("miou"),
            "floor_all_foreground": floors.get("all-foreground", {}).get("miou"),
            "floor_mean_mask_prior": floors.get("mean-mask prior", {}).get("miou"),
            "pretrain_images": n_img,
            "pretrain_steps": steps,
            "run_dir": str(d),
        }
        rows.append(row)
        key = (cell.dataset, cell.label_fraction, arm.seed)
        if key not in priors and row["floor_mean_mask_prior"] is not None:
            prior = floors["mean-mask prior"]
            priors[key] = {
                **{c: None for c in COLUMNS},
                "method": "mean-mask prior",
                "ratio": 0.0,
                "ssl": "-",
                "seed": arm.seed,
                "arch": "-",
                "dataset": cell.dataset,
                "label_fraction": cell.label_fraction,
                "miou": prior.get("miou"),
                "iou_fg": prior.get("iou_fg"),
                "dice_fg": prior.get("dice_fg"),
                "normdel": float("nan"),
                "run_dir": str(d),
            }
    return rows + list(priors.values())


def per_image_counts(run_dir: str | Path) -> dict[str, np.ndarray] | None:
    """{image id: (4,) tp, fp, fn, tn} from a fine-tuning's ``per_image.csv`` (None when it has no counts)."""
    p = Path(run_dir) / "per_image.csv"
    if not p.is_file():
        return None
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"tp", "fp", "fn", "tn"} <= set(reader.fieldnames):
            return None
        return {r["id"]: np.array([int(r[k]) for k in ("tp", "fp", "fn", "tn")]) for r in reader}


def compare(
    rows: list[dict[str, Any]], method: str, ratio: float, baseline: str, n_boot: int
) -> dict[tuple[str, str, float], Interval | None]:
    """Paired bootstrap mIoU(method) - mIoU(baseline) per (dataset, ssl, label fraction), over seeds and images."""
    by_key: dict[tuple, dict[int, str]] = defaultdict(dict)
    for r in rows:
        if r["method"] == "mean-mask prior":  # no model, no per-image counts of its own
            continue
        by_key[(r["method"], r["ratio"], r["dataset"], r["ssl"], r["label_fraction"])][r["seed"]] = r[
            "run_dir"
        ]
    out: dict[tuple[str, str, float], Interval | None] = {}
    for (m, rt, ds, ssl, lf), runs in by_key.items():
        if m != method or rt != ratio:
            continue
        base_ssl = "-" if baseline == "random-init" else ssl  # random init has no SSL method
        base = [k for k in by_key if k[0] == baseline and k[2:] == (ds, base_ssl, lf)]
        if not base:
            continue
        base_runs = by_key[base[0]]
        seeds = sorted(set(runs) & set(base_runs))
        if not seeds:
            out[(ds, ssl, lf)] = None
            continue
        a_counts = [per_image_counts(runs[s]) for s in seeds]
        b_counts = [per_image_counts(base_runs[s]) for s in seeds]
        if any(c is None for c in a_counts + b_counts):
            out[(ds, ssl, lf)] = None
            continue
        ids = sorted(set.intersection(*(set(c) for c in a_counts + b_counts)))
        a = np.stack([[c[i] for i in ids] for c in a_counts])
        b = np.stack([[c[i] for i in ids] for c in b_counts])
        out[(ds, ssl, lf)] = paired_miou_difference(a, b, n_boot=n_boot)
    return out


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def _ci(iv: Interval | None) -> str:
    if iv is None:
        return "-"
    star = " *" if iv.excludes_zero() else ""
    return f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]{star}"


def results_markdown(rows: list[dict[str, Any]], name: str, n_boot: int = 2000) -> str:
    """Per dataset and averaged: mean +- std over seeds of miou, NormDEL, differences to random init, random, full."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["ssl"], r["label_fraction"], r["method"], r["ratio"])].append(r)
    methods = sorted({(r["method"], r["ratio"]) for r in rows if r["method"] not in REFERENCE_METHODS})
    comps = {
        (m, rt, b): compare(rows, m, rt, b, n_boot)
        for m, rt in methods
        for b in ("random-init", "random", "full")
        if m != b
    }
    random_ratio = {rt for m, rt in methods if m == "random"}
    lines = [f"# Benchmark results: {name}", ""]
    lines.append(
        "miou = mean IoU over {background, foreground} on each test set (mean +- std over seeds, n = seeds). "
        "NormDEL = 100 / (1 + exp(-miou * exp(-ratio))). Differences are paired bootstrap estimates over seeds and "
        "test images with 95% intervals (* = the interval excludes 0). Reference rows: random init (no "
        "pre-training) and the mean-mask prior (no model)."
    )
    datasets = sorted({r["dataset"] for r in rows})
    settings = sorted({(r["ssl"], r["label_fraction"]) for r in rows if r["ssl"] != "-"})
    for ssl, lf in settings:
        lines += ["", f"## {ssl}, label fraction {lf:g}", ""]
        avg: dict[tuple[str, float], list[float]] = defaultdict(list)
        for ds in datasets:
            lines += [
                f"### {ds}",
                "",
                "| method | ratio | n | miou | NormDEL | vs random init | vs random | vs full |",
                "|---|---|---|---|---|---|---|---|",
            ]
            keys = [(m, rt) for m, rt in methods] + [(m, 0.0) for m in REFERENCE_METHODS]
            for m, rt in keys:
                rs = groups.get((ds, ssl if m not in REFERENCE_METHODS else "-", lf, m, rt), [])
                if not rs:
                    continue
                mi = np.array([r["miou"] for r in rs], float)
                nd = np.array([r["normdel"] for r in rs], float)
                vs_i, vs_r, vs_f = (
                    None if m in REFERENCE_METHODS else comps.get((m, rt, b), {}).get((ds, ssl, lf))
                    for b in ("random-init", "random", "full")
                )
                if m == "random" and rt in random_ratio:
                    vs_r = None
                std = f" +- {mi.std(ddof=1):.3f}" if len(mi) > 1 else ""
                lines.append(
                    f"| {m} | {rt:g} | {len(mi)} | {mi.mean():.3f}{std} | {_fmt(float(np.nanmean(nd)) if np.isfinite(nd).any() else None, 2)} "
                    f"| {_ci(vs_i)} | {_ci(vs_r)} | {_ci(vs_f)} |"
                )
                avg[(m, rt)].append(float(mi.mean()))
            lines.append("")
        if len(datasets) > 1:
            lines += [
                "### average over datasets",
                "",
                "| method | ratio | datasets | mean miou | NormDEL |",
                "|---|---|---|---|---|",
            ]
            for (m, rt), vals in avg.items():
                if len(vals) != len(datasets):
                    continue
                mean = float(np.mean(vals))
                nd = _fmt(float(normdel(mean, rt)), 2) if m not in REFERENCE_METHODS else "-"
                lines.append(f"| {m} | {rt:g} | {len(vals)} | {mean:.3f} | {nd} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def write_plots(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """``miou_per_method.png`` (bars +- std per dataset) and ``miou_vs_ratio.png`` (lines per method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    datasets = sorted({r["dataset"] for r in rows})
    arms = sorted(
        {(r["method"], r["ratio"], r["ssl"]) for r in rows}, key=lambda a: (a[0] in REFERENCE_METHODS, a)
    )
    if not datasets or not arms:
        return written
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) * max(1, len(arms)) / 3), 4))
    width = 0.8 / len(arms)
    for j, (m, rt, ssl) in enumerate(arms):
        means, stds = [], []
        for ds in datasets:
            v = [
                r["miou"]
                for r in rows
                if (r["method"], r["ratio"], r["ssl"], r["dataset"]) == (m, rt, ssl, ds)
            ]
            means.append(np.mean(v) if v else np.nan)
            stds.append(np.std(v, ddof=1) if len(v) > 1 else 0)
        label = m if m in REFERENCE_METHODS else f"{m} {rt:g} ({ssl})"
        ax.bar(np.arange(len(datasets)) + j * width, means, width, yerr=stds, label=label, capsize=2)
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax.set_ylabel("test mIoU")
    lo = np.nanmin([r["miou"] for r in rows])
    ax.set_ylim(max(0, lo - 0.05), None)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("mIoU per method and dataset (mean +- std over seeds)")
    fig.tight_layout()
    p = folder / "miou_per_method.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    written.append(p)

    ratios = sorted({r["ratio"] for r in rows if r["method"] not in REFERENCE_METHODS})
    if len(ratios) > 1:
        fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), squeeze=False)
        for ax, ds in zip(axes[0], datasets, strict=True):
            for m in sorted({r["method"] for r in rows if r["method"] not in REFERENCE_METHODS}):
                pts = sorted((r["ratio"], r["miou"]) for r in rows if r["method"] == m and r["dataset"] == ds)
                if not pts:
                    continue
                xs = sorted({x for x, _ in pts})
                ys = [np.mean([y for x2, y in pts if x2 == x]) for x in xs]
                ax.plot(xs, ys, marker="o", label=m)
            ax.set_xscale("log")
            ax.set_xlabel("retained ratio")
            ax.set_title(ds)
        axes[0][0].set_ylabel("test mIoU")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        p = folder / "miou_vs_ratio.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        written.append(p)
    return written


def rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_tables(runner: BenchmarkRunner) -> Path:
    """Rewrite ``results.csv``, ``results.md`` and ``plots/`` from every finished fine-tuning."""
    rows = collect_rows(runner)
    out = runner.out
    atomic_write_text(out / "results.csv", rows_csv(rows))
    atomic_write_text(out / "results.md", results_markdown(rows, runner.cfg.name, runner.cfg.n_boot))
    if rows:
        write_plots(rows, out / "plots")
    return out / "results.csv"
