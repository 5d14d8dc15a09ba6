"""``metrics.csv`` of a pre-training run: one row every ``log_every`` steps, cut back to the checkpoint on resume."""

from __future__ import annotations

import csv
from pathlib import Path

from optidel.runtime.atomic import atomic_write_text

__all__ = ["METRICS", "METRIC_COLUMNS", "MetricsLog"]

METRICS = "metrics.csv"
METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_s", "elapsed_s")


class MetricsLog:
    """``metrics.csv``: header plus one row per logged step; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until_step: int):
        self.path = path
        kept: list[dict[str, str]] = []
        if keep_until_step > 0 and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(row["step"]) <= keep_until_step and all(
                            row.get(c) not in (None, "") for c in METRIC_COLUMNS
                        ):
                            kept.append({c: row[c] for c in METRIC_COLUMNS})
                    except (KeyError, TypeError, ValueError):
                        continue
        lines = [",".join(METRIC_COLUMNS)] + [",".join(r[c] for c in METRIC_COLUMNS) for r in kept]
        atomic_write_text(path, "\n".join(lines) + "\n")
        self.rows = kept

    def append(
        self, step: int, epoch: float, loss: float, lr: float, images_per_s: float, elapsed_s: float
    ) -> None:
        row = {
            "step": str(step),
            "epoch": f"{epoch:.4f}",
            "loss": f"{loss:.6f}",
            "lr": f"{lr:.6e}",
            "images_per_s": f"{images_per_s:.2f}",
            "elapsed_s": f"{elapsed_s:.2f}",
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(",".join(row[c] for c in METRIC_COLUMNS) + "\n")
            f.flush()
        self.rows.append(row)
