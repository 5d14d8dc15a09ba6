"""Paired differences between any two methods of a finished benchmark, after the fact (not pre-registered).

A benchmark's ``results.md`` pairs only the comparisons its config names (``comparisons``, written before its numbers
existed). A question that comes up later, e.g. OptiDEL against SemDeDup, needs the same paired bootstrap over seeds
and test images, on the same informative datasets; this prints it with ``optidel.bench.tables.choices_table``, the
function ``results.md`` uses, from ``results.csv`` and the fine-tunings' ``per_image.csv``. Label what it prints as
post hoc wherever it is quoted.

Usage:
    .venv/bin/python benchmarks/pair_arms.py RUN_DIR A:B [A:B ...] [--ssl mae] [--label-fractions 0.1 1]

RUN_DIR is a benchmark folder or its kept small files (``benchmarks/cpu-endoscopy-runs``): the fine-tunings are
looked up under RUN_DIR/finetune/ whatever folder ``results.csv`` names. Example (BENCHMARKS.md, session 15):
    .venv/bin/python benchmarks/pair_arms.py benchmarks/cpu-endoscopy-runs optidel:semdedup optidel-cover:semdedup
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from optidel.bench.config import BenchmarkConfig
from optidel.bench.tables import choices_table, informativeness
from optidel.config import load_config


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """``results.csv`` of RUN_DIR as the rows the table functions take, each ``run_dir`` re-rooted at RUN_DIR."""
    rows = []
    with open(run_dir / "results.csv", newline="") as f:
        for r in csv.DictReader(f):
            for key in ("ratio", "label_fraction", "miou"):
                r[key] = float(r[key])
            r["seed"] = int(r["seed"])
            cell = r["run_dir"].replace("\\", "/").split("/finetune/", 1)
            if len(cell) == 2:
                r["run_dir"] = str(run_dir / "finetune" / cell[1])
            rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument(
        "pairs", nargs="+", help="A:B method labels as results.csv writes them (e.g. optidel:semdedup)"
    )
    ap.add_argument("--ssl", default="mae")
    ap.add_argument("--label-fractions", type=float, nargs="+", default=[0.1, 1.0])
    args = ap.parse_args(argv)
    if not (args.run_dir / "results.csv").is_file():
        ap.error(f"{args.run_dir}: no results.csv (run `optidel benchmark --tables-only` first)")
    pairs = []
    for p in args.pairs:
        a, sep, b = p.partition(":")
        if not sep or not a or not b:
            ap.error(f"{p!r}: expected A:B")
        pairs.append((a, b))
    cfg = load_config(BenchmarkConfig, args.run_dir / "config.yaml")
    rows = read_rows(args.run_dir)
    datasets = sorted({r["dataset"] for r in rows})
    methods = {r["method"] for r in rows}
    if unknown := sorted({m for pair in pairs for m in pair} - methods):
        ap.error(
            f"{args.run_dir}: no method {unknown[0]!r} in results.csv (it has: {', '.join(sorted(methods))})"
        )
    for lf in args.label_fractions:
        kept = [ds for ds in datasets if informativeness(rows, ds, args.ssl, lf).informative]
        print(f"\n{args.ssl}, label fraction {lf:g}; informative: {', '.join(kept) or 'none'} (post hoc)\n")
        lines = choices_table(rows, tuple(pairs), datasets, kept, args.ssl, lf, cfg.n_boot, cfg.goal)
        print("\n".join(lines) if lines else "(no arm pair ran on these settings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
