"""The loss curve of a pre-training run (``RUN/loss.png``), drawn from its ``metrics.csv`` with matplotlib's Agg."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from optidel.log import logger
from optidel.runtime.atomic import atomic_write_bytes
from optidel.ssl.metrics_log import METRICS

if TYPE_CHECKING:
    from optidel.ssl.config import PretrainConfig

__all__ = ["LOSS_PNG", "plot_loss_curve", "read_metrics", "write_loss_png"]

LOSS_PNG = "loss.png"


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as dicts of floats (incomplete rows, e.g. from a killed run, are skipped)."""
    rows: list[dict[str, float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(v) for k, v in row.items() if k is not None})
            except (TypeError, ValueError):
                continue
    return rows


def plot_loss_curve(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> None:
    """Loss (left axis) and learning rate (right axis, dashed) against the optimisation step; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics_csv)
    fig = Figure(figsize=(6, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], color="tab:blue", lw=1.5, label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    ax.grid(alpha=0.3)
    if rows and "lr" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r["lr"] for r in rows], color="tab:gray", lw=1, ls="--")
        ax2.set_ylabel("learning rate", color="tab:gray")
    ax.set_title(title or Path(metrics_csv).parent.name, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(out_png, buf.getvalue())


def write_loss_png(out: Path, cfg: PretrainConfig) -> None:
    """Draw ``RUN/loss.png`` from ``RUN/metrics.csv``; a failure is logged, never raised (a plot must not end a run)."""
    try:
        plot_loss_curve(
            out / METRICS, out / LOSS_PNG, title=f"{out.name}: {cfg.ssl} {cfg.arch}, {cfg.img_size} px"
        )
    except Exception as e:  # a plot must never break a run
        logger.warning("could not draw %s: %s", out / LOSS_PNG, e)
