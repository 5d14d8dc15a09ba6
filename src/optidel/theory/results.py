"""The experiments' outputs: theory points, ``results.csv`` rows, the plot and the printed summary."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.runtime.atomic import atomic_open, atomic_write_text
from optidel.theory.config import RESULT_COLUMNS, TheoryConfig, n_kept


@dataclasses.dataclass(frozen=True)
class TheoryPoint:
    """One theory point: the saddle point and the error it predicts for the experiment's target."""

    strategy: str
    alpha_t: float
    f: float
    error: float
    overlap: float
    kappa: float
    R: float
    S: float


# ----------------------------------------------------------------------------------------------------------------------
# table and plots
# ----------------------------------------------------------------------------------------------------------------------


def results_rows(
    cfg: TheoryConfig, sim: dict[float, np.ndarray], theory: Sequence[TheoryPoint] = ()
) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` (columns :data:`RESULT_COLUMNS`): simulation means first, then theory points."""
    rows: list[dict[str, Any]] = []
    for a in cfg.alpha_ts:
        errs = sim[float(a)]  # (repeats, strategies, n_f)
        n = errs.shape[0]
        for i, s in enumerate(cfg.strategies):
            for j, f in enumerate(cfg.fs):
                e = errs[:, i, j]
                std = float(e.std(ddof=1)) if n > 1 else float("nan")
                rows.append(
                    {
                        "experiment": cfg.experiment,
                        "strategy": s,
                        "alpha_t": float(a),
                        "f": float(f),
                        "error": float(e.mean()),
                        "error_std": std,
                        "error_sem": std / math.sqrt(n) if n > 1 else float("nan"),
                        "n_repeats": n,
                        "source": "sim",
                        "theta_deg": cfg.theta_deg,
                        "n_dim": cfg.n_dim,
                        "n_kept": n_kept(float(a), float(f), cfg.n_dim),
                        "overlap": float(np.mean(np.cos(np.pi * e))),
                        "kappa": float("nan"),
                    }
                )
    for p in theory:
        rows.append(
            {
                "experiment": cfg.experiment,
                "strategy": p.strategy,
                "alpha_t": p.alpha_t,
                "f": p.f,
                "error": p.error,
                "error_std": float("nan"),
                "error_sem": float("nan"),
                "n_repeats": 0,
                "source": "theory",
                "theta_deg": cfg.theta_deg,
                "n_dim": cfg.n_dim,
                "n_kept": p.alpha_t * p.f * cfg.n_dim,
                "overlap": p.overlap,
                "kappa": p.kappa,
            }
        )
    return rows


def write_results_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Write the rows atomically (floats with full precision, NaN as empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read ``results.csv`` back (numbers as floats, empty as NaN)."""
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if k in ("experiment", "strategy", "source"):
                    row[k] = v
                else:
                    row[k] = float(v) if v != "" else float("nan")
            out.append(row)
    return out


_STYLE = {"hard": ("o", "-"), "random": ("s", "--"), "easy": ("^", ":")}


def plot_results(cfg: TheoryConfig, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Error vs kept fraction ``f`` (log-log), one panel per strategy, one colour per alpha_t.

    Simulation means are points with error bars (standard error over repeats); theory curves are lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(cfg.strategies)
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(4.2 * len(strategies) + 1.6, 3.8), sharey=True, squeeze=False
    )
    cmap = plt.get_cmap("viridis")
    colours = {float(a): cmap(i / max(1, len(cfg.alpha_ts) - 1) * 0.9) for i, a in enumerate(cfg.alpha_ts)}
    target = "w_down" if cfg.bias_shift is not None else "teacher"
    for ax, s in zip(axes[0], strategies, strict=True):
        marker, ls = _STYLE.get(s, ("o", "-"))
        for a in map(float, cfg.alpha_ts):
            c = colours[a]
            sim = sorted(
                (r for r in rows if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a),
                key=lambda r: r["f"],
            )
            th = sorted(
                (r for r in rows if r["source"] == "theory" and r["strategy"] == s and r["alpha_t"] == a),
                key=lambda r: r["f"],
            )
            if th:
                ax.plot([r["f"] for r in th], [r["error"] for r in th], ls, color=c, lw=1.4)
            if sim:
                yerr = [0.0 if math.isnan(r["error_sem"]) else r["error_sem"] for r in sim]
                ax.errorbar(
                    [r["f"] for r in sim],
                    [r["error"] for r in sim],
                    yerr=yerr,
                    fmt=marker,
                    color=c,
                    ms=4,
                    capsize=2,
                    label=f"$\\alpha_t$ = {a:g}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("kept fraction f")
        ax.set_title(f"{cfg.experiment}: {s} pruning")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel(f"test error vs {target}  (arccos R / $\\pi$)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="k", lw=1.4))
    labels.append("theory (replica)")
    axes[0][-1].legend(
        handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0
    )
    fig.suptitle(
        f"N = {cfg.n_dim}, $\\theta$ = {cfg.theta_deg:g}$^\\circ$, {cfg.repeats} repeats"
        + (f", each example x{cfg.redundancy}" if cfg.redundancy > 1 else "")
        + (f", target w_down (shift {cfg.bias_shift:g})" if cfg.bias_shift is not None else ""),
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())


def summary_lines(cfg: TheoryConfig, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Human-readable lines: for the largest alpha_t, the simulated error of each strategy at a few f values."""
    a = float(max(cfg.alpha_ts))
    lines = [f"alpha_t = {a:g}: simulated error (mean over {cfg.repeats} repeats) [theory]"]
    theory = {
        (r["strategy"], round(r["f"], 9)): r["error"]
        for r in rows
        if r["source"] == "theory" and r["alpha_t"] == a
    }
    for f in cfg.fs[:: max(1, cfg.n_fs // 6)]:
        parts = []
        for s in cfg.strategies:
            sim = [
                r
                for r in rows
                if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a and r["f"] == f
            ]
            th = theory.get((s, round(float(f), 9)))
            parts.append(f"{s} {sim[0]['error']:.4f}" + (f" [{th:.4f}]" if th is not None else ""))
        lines.append(f"  f = {f:.4f}: " + ", ".join(parts))
    return lines
