"""benchmarks/cells_table.py: every cell of a grid, one row per arm and seed, from results.csv."""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cells_table.py"
COLUMNS = ["method", "ratio", "ssl", "seed", "arch", "dataset", "label_fraction", "miou"]
ROWS = [
    ("random-init", 0, "mae", 0, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5204),
    ("optidel", 0.05, "mae", 0, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5681),
    ("optidel", 0.05, "mae", 0, "vit_tiny_patch16_224", "busi", 1.0, 0.6749),
    ("full", 1, "mae", 1, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5801),
    ("random", 0.2, "simclr", 0, "resnet18", "busi", 1.0, 0.6),
    ("mean-mask prior", 0, "-", 0, "-", "kvasir-seg", 0.1, 0.528),
]


def _load():
    spec = importlib.util.spec_from_file_location("cells_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_table_has_a_row_per_arm_and_seed_and_marks_missing_cells() -> None:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(COLUMNS)
    w.writerows(ROWS)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    lines = _load().cells_markdown(rows).splitlines()
    assert lines[0] == "| arm | seed | Kvasir-SEG 10% | BUSI 100% |"
    assert lines[2:] == [
        "| mean-mask prior (no model) | 0 | 0.528 | - |",  # no model first, then MAE, then SimCLR arms
        "| random-init (ViT-Tiny/8) | 0 | 0.520 | - |",
        "| optidel (MAE 5%) | 0 | 0.568 | 0.675 |",
        "| random (SimCLR 20%) | 0 | - | 0.600 |",
        "| full (MAE, whole pool) | 1 | 0.580 | - |",
    ]
