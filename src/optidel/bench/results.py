"""The benchmark's results read back from its finished runs: one row per fine-tuning, per-image counts, centres.

Everything here reads small files only (a fine-tuning's ``DONE``, ``metrics.json`` and ``per_image.csv``, a
pre-training's ``DONE``, a selection's ``vinfo.json``), so tables can be rewritten from a folder that holds no
encoders.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from optidel.bench.grid import RANDOM_INIT, Arm, FinetuneCell, RunLayout
from optidel.metrics.normdel import normdel

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
PRIOR = "mean-mask prior"
REFERENCE_METHODS = (RANDOM_INIT, PRIOR)
CENTRES_FILE = "centers.csv"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _pretrain_info(layout: RunLayout, arm: Arm) -> tuple[int | None, int | None]:
    """(images, steps) of an arm's pre-training from its ``DONE`` (None when that folder is absent here)."""
    if not arm.pretrained:
        return 0, 0
    done = _read_json(layout.pretrain_dir(arm) / "DONE")
    return done.get("n_images"), done.get("steps")


def _cell_row(layout: RunLayout, cell: FinetuneCell, m: dict[str, Any]) -> dict[str, Any]:
    arm = cell.arm
    floors = m.get("floors", {})
    n_img, steps = _pretrain_info(layout, arm)
    ratio = arm.ratio if arm.pretrained else 0.0
    miou = m["test"]["miou"]
    return {
        "method": arm.label,
        "ratio": ratio,
        "ssl": arm.ssl,  # random init: the SSL method whose architecture it has (its reference)
        "seed": arm.seed,
        "arch": m.get("encoder", {}).get("arch", arm.arch),
        "dataset": cell.dataset,
        "label_fraction": cell.label_fraction,
        "miou": miou,
        "iou_fg": m["test"].get("iou_fg"),
        "dice_fg": m["test"].get("dice_fg"),
        "normdel": float(normdel(miou, ratio)) if arm.pretrained else float("nan"),
        "floor_all_background": floors.get("all-background", {}).get("miou"),
        "floor_all_foreground": floors.get("all-foreground", {}).get("miou"),
        "floor_mean_mask_prior": floors.get(PRIOR, {}).get("miou"),
        "pretrain_images": n_img,
        "pretrain_steps": steps,
        "run_dir": str(layout.finetune_dir(cell)),
    }


def _prior_row(cell: FinetuneCell, prior: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    return {
        **{c: None for c in COLUMNS},
        "method": PRIOR,
        "ratio": 0.0,
        "ssl": "-",
        "seed": cell.arm.seed,
        "arch": "-",
        "dataset": cell.dataset,
        "label_fraction": cell.label_fraction,
        "miou": prior.get("miou"),
        "iou_fg": prior.get("iou_fg"),
        "dice_fg": prior.get("dice_fg"),
        "normdel": float("nan"),
        "run_dir": str(run_dir),
    }


def collect_rows(layout: RunLayout, cells: Iterable[FinetuneCell]) -> list[dict[str, Any]]:
    """One row per finished fine-tuning (``COLUMNS``), plus one ``mean-mask prior`` row per (dataset, fraction, seed).

    A cell counts when :meth:`RunLayout.cell_done` holds; its row comes from ``metrics.json`` alone (plus the
    pre-training's ``DONE`` for the image and step counts, left empty when absent).
    """
    rows = []
    priors: dict[tuple[str, float, int], dict[str, Any]] = {}
    for cell in cells:
        if not layout.cell_done(cell):
            continue
        d = layout.finetune_dir(cell)
        m = _read_json(d / "metrics.json")
        if "test" not in m:
            continue
        rows.append(_cell_row(layout, cell, m))
        key = (cell.dataset, cell.label_fraction, cell.arm.seed)
        prior = m.get("floors", {}).get(PRIOR)
        if key not in priors and prior is not None:
            priors[key] = _prior_row(cell, prior, d)
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


def read_centres(dataset_dir: str | Path) -> dict[str, str] | None:
    """{image id: centre} from a dataset's ``centers.csv`` (``id,center`` rows; PolypGen has one), else None."""
    p = Path(dataset_dir) / CENTRES_FILE
    if not p.is_file():
        return None
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "center"} <= set(reader.fieldnames):
            return None
        return {r["id"]: r["center"] for r in reader}


def read_set_vinfo(select_dir: str | Path) -> float | None:
    """The selected set's V-information (nats) from a selection's ``vinfo.json``, or None when it has none."""
    v = _read_json(Path(select_dir) / "vinfo.json")
    value = v.get("set", {}).get("vinfo_nats") if isinstance(v.get("set"), dict) else None
    return float(value) if isinstance(value, int | float) else None
