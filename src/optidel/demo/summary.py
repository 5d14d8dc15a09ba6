"""The demo's summary: one row per arm of its grid, and one sentence that says what the rows mean.

The rows come from the benchmark runner's result rows (:mod:`optidel.bench.results`); the comparisons are the
benchmark's paired bootstrap over seeds and test images (:mod:`optidel.bench.tables`). A difference is called a
difference only when its 95% interval excludes 0 *and* it exceeds twice the larger seed s.d. of the two arms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optidel.bench.grid import FULL, RANDOM_INIT
from optidel.bench.results import PRIOR
from optidel.bench.tables import paired_counts
from optidel.metrics.bootstrap import Interval, paired_miou_difference

SSL_NAMES = {"mae": "MAE", "simclr": "SimCLR"}
Rows = list[dict[str, Any]]


def arm_label(method: str, ratio: float, ssl: str) -> str:
    """``MAE on optidel 25%`` for (optidel, 0.25, mae); ``MAE on the full pool``; ``random init``."""
    if method == RANDOM_INIT:
        return "random init"
    name = SSL_NAMES.get(ssl, ssl)
    if method == FULL:
        return f"{name} on the full pool"
    return f"{name} on {method} {ratio * 100:.3g}%"


def _stats(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summary_rows(rows: Rows) -> Rows:
    """One row per arm (random init first): label, seeds, mean and s.d. of miou / iou_fg / dice_fg, run folders."""
    arms = sorted(
        {(r["method"], r["ratio"], r["ssl"]) for r in rows if r["method"] != PRIOR},
        key=lambda a: (a[0] != RANDOM_INIT, a[0] != FULL, a),
    )
    out = []
    for m, rt, ssl in arms:
        rs = sorted(
            (r for r in rows if (r["method"], r["ratio"], r["ssl"]) == (m, rt, ssl)), key=lambda r: r["seed"]
        )
        row: dict[str, Any] = {
            "encoder": arm_label(m, rt, ssl),
            "method": m,
            "ratio": rt,
            "ssl": ssl,
            "seeds": [r["seed"] for r in rs],
            "runs": {r["seed"]: r["run_dir"] for r in rs},
        }
        for k in ("miou", "iou_fg", "dice_fg"):
            row[k], row[f"{k}_sd"] = _stats([r[k] for r in rs])
        out.append(row)
    priors = [r["miou"] for r in rows if r["method"] == PRIOR]
    floors = {PRIOR: float(np.mean(priors))} if priors else {}
    for r in out:
        r["floors"] = floors
    return out


def _compare(a: dict[str, Any], b: dict[str, Any], n_boot: int) -> dict[str, Any] | None:
    """a - b: paired CI over their common seeds and test images, and whether it beats twice the seed spread."""
    pair = paired_counts(a["runs"], b["runs"])
    if pair is None:
        return None
    iv = paired_miou_difference(*pair, n_boot=n_boot)
    spread = 2 * max(a["miou_sd"], b["miou_sd"])
    n_seeds = pair[0].shape[0]
    clear = iv.excludes_zero() and abs(iv.estimate) > spread and n_seeds > 1
    return {
        "a": a["encoder"],
        "b": b["encoder"],
        "interval": iv,
        "spread": spread,
        "seeds": n_seeds,
        "clear": clear,
    }


def comparisons(rows: Rows, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Each pre-trained arm against random init, then each selection against random selection at its ratio."""
    by = {(r["method"], r["ratio"]): r for r in rows}
    init = next((r for r in rows if r["method"] == RANDOM_INIT), None)
    pairs = [(r, init) for r in rows if r["method"] != RANDOM_INIT and init is not None]
    pairs += [
        (r, by[("random", r["ratio"])])
        for r in rows
        if r["method"] not in (RANDOM_INIT, "random", FULL) and ("random", r["ratio"]) in by
    ]
    return [c for a, b in pairs if (c := _compare(a, b, n_boot)) is not None]


def _clause(c: dict[str, Any]) -> str:
    """One comparison in words: a clear difference, one whose interval excludes 0 but which the seed spread (or a
    single seed) leaves unclear, or none; the numbers are a - b."""
    iv: Interval = c["interval"]
    diff = f"{iv.estimate:+.3f} mIoU, 95% CI [{iv.low:+.3f}, {iv.high:+.3f}]"
    if c["clear"]:
        verb = "beats" if iv.estimate > 0 else "is worse than"
        return f"{c['a']} {verb} {c['b']} ({diff}, more than twice the seed s.d.)"
    if iv.excludes_zero():
        verb = "ahead of" if iv.estimate > 0 else "behind"
        why = f"less than twice the seed s.d., {c['spread']:.3f}" if c["seeds"] > 1 else "one seed"
        return f"{c['a']} is {verb} {c['b']} but not clearly ({diff}; {why})"
    spread = f"; twice the seed s.d. is {c['spread']:.3f}" if c["seeds"] > 1 else ""
    return f"{c['a']} and {c['b']} are not distinguishable ({diff}{spread})"


def verdict(comps: list[dict[str, Any]], n_seeds: int, synthetic: bool) -> str:
    """The one sentence that says what the table means, with the number of seeds behind it."""
    if not comps:
        return f"With {n_seeds} seed(s) and no paired runs to compare, the table shows the pipeline ran, nothing more."
    head = f"Over {n_seeds} seed{'s' if n_seeds != 1 else ''}" + (" on a SYNTHETIC task" if synthetic else "")
    caveat = "" if n_seeds > 1 else " (one seed: no spread, so no difference can be called real)"
    return f"{head}{caveat}: " + "; ".join(_clause(c) for c in comps) + "."


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: what ran, the table, the verdict, and where the details are."""
    task = f"`{Path(summary['dataset']).name}`" + (
        " (**SYNTHETIC** generated data)" if summary["synthetic"] else ""
    )
    lines = [
        "# optidel demo",
        "",
        f"Pool: {', '.join(f'`{p}`' for p in summary['pool'])}. Segmentation task: {task}.",
        f"Grid: {summary['grid']}. Every pre-training runs the same number of steps. Test-set metrics "
        "(mean +- s.d. over seeds):",
        "",
        "| encoder | seeds | miou | iou_fg | dice_fg |",
        "|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        cells = [f"{r[k]:.3f} +- {r[k + '_sd']:.3f}" for k in ("miou", "iou_fg", "dice_fg")]
        lines.append(f"| {r['encoder']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    for name, v in (summary["rows"][0]["floors"] if summary["rows"] else {}).items():
        lines.append(f"| floor: {name} (no model) | | {v:.3f} | | |")
    lines += [
        "",
        "miou = mean IoU over {background, foreground} on the whole test set; iou_fg, dice_fg = per-image means.",
        "",
        f"**What this means:** {summary['verdict']}",
        "",
        "A small, short run: it shows what optidel measures and how, not the paper's claim at scale"
        + (
            " (the task is synthetic: its numbers say nothing about medical images)"
            if summary["synthetic"]
            else ""
        )
        + ". Measured comparisons on real data: BENCHMARKS.md. All tables of this run: `results.md`; the selection "
        f"report: `{summary['report']}`.",
        "",
        f"Time: {summary['total_s']:.0f} s for this call.",
        "",
    ]
    return "\n".join(lines)
