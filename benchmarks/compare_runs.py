"""Are two pretrain or finetune run folders the same run? (behaviour-unchanged check for refactors)

Compares, for each BEFORE/AFTER pair of run folders:

- **pretrain** (a folder with ``encoder.safetensors``): every tensor of ``encoder.safetensors`` and, for MAE runs,
  ``mae.safetensors`` bit for bit (``torch.equal``), the encoder metadata, and ``metrics.csv``'s step, epoch, loss and
  lr columns (images_per_s and elapsed_s are timings);
- **finetune** (a folder with ``metrics.json``): ``metrics.json`` value for value, except timings and the paths that
  name the run folders themselves (:data:`IGNORED_JSON`), plus ``history.csv`` and ``per_image.csv`` byte for byte.

Prints one line per compared item and exits 1 when anything differs.

Usage:
    .venv/bin/python benchmarks/compare_runs.py BEFORE AFTER [BEFORE AFTER ...]

Example (the check of issue 15: a 50-step pretrain and a probe on DRIVE, run before and after the refactor):
    .venv/bin/python benchmarks/compare_runs.py /tmp/F-pre-before /tmp/F-pre-after /tmp/F-probe-before /tmp/F-probe-after
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

# metrics.json keys (dotted) that differ between two identical runs: wall-clock timings and the run's own paths
IGNORED_JSON = frozenset(
    {
        "total_time_s",
        "train_time_s",
        "train_images_per_s",
        "config.out",
        "config.encoder",
        "encoder.path",
    }
)
METRIC_COLUMNS = ("step", "epoch", "loss", "lr")  # metrics.csv columns that must agree (the rest are timings)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def compare_safetensors(a: Path, b: Path) -> list[str]:
    """Differences between two safetensors files: tensor names, dtypes, shapes, values, metadata."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    diffs = [f"{a.name}: tensor {k} only in one file" for k in sorted(set(ta) ^ set(tb))]
    diffs += [f"{a.name}: {k} differs" for k in sorted(set(ta) & set(tb)) if not torch.equal(ta[k], tb[k])]
    with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
        if fa.metadata() != fb.metadata():
            diffs.append(f"{a.name}: metadata differs ({fa.metadata()} vs {fb.metadata()})")
    print(f"  {a.name}: {len(ta)} tensors, {sum(t.numel() for t in ta.values())} values compared")
    return diffs


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(f)]


def compare_pretrain(a: Path, b: Path) -> list[str]:
    """Differences between two pretrain run folders (weights bit for bit, loss and lr per logged step)."""
    diffs = compare_safetensors(a / "encoder.safetensors", b / "encoder.safetensors")
    if (a / "mae.safetensors").is_file() or (b / "mae.safetensors").is_file():
        diffs += compare_safetensors(a / "mae.safetensors", b / "mae.safetensors")
    ra, rb = _csv_rows(a / "metrics.csv", METRIC_COLUMNS), _csv_rows(b / "metrics.csv", METRIC_COLUMNS)
    print(f"  metrics.csv: {len(ra)} rows x {METRIC_COLUMNS} compared")
    if ra != rb:
        diffs.append(f"metrics.csv differs in {METRIC_COLUMNS} ({len(ra)} vs {len(rb)} rows)")
    return diffs


def compare_finetune(a: Path, b: Path) -> list[str]:
    """Differences between two finetune run folders (metrics.json less timings and paths; the two CSVs)."""
    ja = _flatten(json.loads((a / "metrics.json").read_text()))
    jb = _flatten(json.loads((b / "metrics.json").read_text()))
    keys = sorted((set(ja) | set(jb)) - IGNORED_JSON)
    diffs = [f"metrics.json: {k}: {ja.get(k)!r} vs {jb.get(k)!r}" for k in keys if ja.get(k) != jb.get(k)]
    print(f"  metrics.json: {len(keys)} values compared (ignored: {', '.join(sorted(IGNORED_JSON))})")
    for name in ("history.csv", "per_image.csv"):
        same = (a / name).read_bytes() == (b / name).read_bytes()
        print(f"  {name}: {'identical' if same else 'DIFFERENT'}")
        if not same:
            diffs.append(f"{name} differs")
    return diffs


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two run folders of the same kind (pretrain or finetune)."""
    if (a / "encoder.safetensors").is_file():
        return compare_pretrain(a, b)
    if (a / "metrics.json").is_file():
        return compare_finetune(a, b)
    raise SystemExit(
        f"error: {a} is neither a pretrain run (encoder.safetensors) nor a finetune run (metrics.json)"
    )


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__)
        return 2
    failed = False
    for before, after in zip(argv[::2], argv[1::2], strict=True):
        a, b = Path(before), Path(after)
        print(f"{a} vs {b}")
        diffs = compare(a, b)
        for d in diffs:
            print(f"  DIFFERENT: {d}")
        print(f"  -> {'same' if not diffs else f'{len(diffs)} difference(s)'}")
        failed |= bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
