"""Every cell of a benchmark's grid as one markdown table: a row per arm and seed, a column per dataset x labels.

``results.md`` summarises over seeds (mean +- s.d., paired intervals); BENCHMARKS.md also records each cell, and this
prints that table from ``results.csv`` so it is regenerated, not copied by hand. Rows are ordered by seed, then by
SSL method, then by the arm's first appearance in ``results.csv`` (run order); a fine-tuning not finished yet is
``-``.

Usage:
    .venv/bin/python benchmarks/cells_table.py runs/benchmark-endoscopy/results.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

DATASET_NAMES = {"kvasir-seg": "Kvasir-SEG", "polypgen": "PolypGen C5+C6", "busi": "BUSI", "drive": "DRIVE"}
ARCH_NAMES = {"resnet18": "ResNet-18", "vit_tiny_patch16_224": "ViT-Tiny/8"}


def arm_label(row: dict[str, str]) -> str:
    """The row label: ``optidel (MAE 5%)``, ``full (MAE, whole pool)``, ``random-init (ViT-Tiny/8)``,
    ``mean-mask prior (no model)``."""
    method, ssl = row["method"], row["ssl"].upper() if row["ssl"] != "simclr" else "SimCLR"
    if method == "random-init":
        return f"random-init ({ARCH_NAMES.get(row['arch'], row['arch'])})"
    if method == "mean-mask prior":
        return "mean-mask prior (no model)"
    ratio = float(row["ratio"])
    return f"{method} ({ssl}, whole pool)" if ratio >= 1 else f"{method} ({ssl} {ratio:.0%})"


def cells_markdown(rows: list[dict[str, str]]) -> str:
    """The table (see the module docstring) of ``results.csv`` rows."""
    columns = list(dict.fromkeys((r["dataset"], float(r["label_fraction"])) for r in rows))
    columns.sort(key=lambda c: (list(DATASET_NAMES).index(c[0]) if c[0] in DATASET_NAMES else 99, c[1]))
    arms = list(dict.fromkeys((r["ssl"], arm_label(r)) for r in rows))
    seeds = sorted({int(r["seed"]) for r in rows})
    cell = {
        (int(r["seed"]), r["ssl"], arm_label(r), r["dataset"], float(r["label_fraction"])): r for r in rows
    }
    head = [f"{DATASET_NAMES.get(d, d)} {lf:.0%}" for d, lf in columns]
    lines = ["| arm | seed | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(columns)]
    for seed in seeds:
        for ssl in sorted({s for s, _ in arms}, key=lambda s: (s != "-", s != "mae", s)):
            for s, label in arms:
                if s != ssl or not any((seed, ssl, label, d, lf) in cell for d, lf in columns):
                    continue
                values = [cell.get((seed, ssl, label, d, lf)) for d, lf in columns]
                text = [f"{float(v['miou']):.3f}" if v else "-" for v in values]
                lines.append(f"| {label} | {seed} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    with Path(argv[0]).open(newline="") as f:
        print(cells_markdown(list(csv.DictReader(f))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
