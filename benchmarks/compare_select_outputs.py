"""Compare two ``optidel select`` output folders: the manifest (every column, pyarrow) and ``images/`` (bytes).

Used to show that a refactoring changed no behaviour: run the same ``optidel select`` (same seed) before and after,
then compare the two folders: every manifest column and every key of its metadata, and every image file.
``config.yaml`` (its layout may change), ``metrics.json`` (timings), ``log.txt`` and the report are not compared.

Usage::

    python benchmarks/compare_select_outputs.py /tmp/C-before /tmp/C-after
    # prints "equal" (exit 0) or the differing columns / metadata keys / image files (exit 1)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def compare_manifests(a: Path, b: Path) -> list[str]:
    """Differences between two ``manifest.parquet`` files: schema, row count, each differing column, metadata."""
    ta, tb = pq.read_table(a), pq.read_table(b)
    diffs = []
    if ta.schema.names != tb.schema.names:
        diffs.append(f"columns: {ta.schema.names} != {tb.schema.names}")
    if ta.num_rows != tb.num_rows:
        diffs.append(f"rows: {ta.num_rows} != {tb.num_rows}")
    for name in ta.schema.names:
        same_shape = name in tb.schema.names and ta.num_rows == tb.num_rows
        if same_shape and not columns_equal(ta.column(name), tb.column(name)):
            diffs.append(f"column {name!r} differs")
    ma, mb = _meta(ta), _meta(tb)
    for key in sorted(set(ma) | set(mb)):
        if key not in mb or key not in ma:
            diffs.append(f"metadata {key!r} only in {a if key in ma else b}")
        elif ma[key] != mb[key]:
            diffs.append(f"metadata {key!r}: {ma[key]!r} != {mb[key]!r}")
    return diffs


def columns_equal(x: pa.ChunkedArray, y: pa.ChunkedArray) -> bool:
    """Same type, same nulls and same values, NaN equal to NaN (pyarrow's ``equals`` says NaN != NaN)."""
    if x.type != y.type:
        return False
    if not pa.types.is_floating(x.type):
        return x.equals(y)
    xa, ya = x.combine_chunks(), y.combine_chunks()
    if not xa.is_null().equals(ya.is_null()):
        return False
    xv = xa.fill_null(0).to_numpy(zero_copy_only=False)
    yv = ya.fill_null(0).to_numpy(zero_copy_only=False)
    return bool(np.array_equal(xv, yv, equal_nan=True))


def _meta(table) -> dict:  # type: ignore[no-untyped-def]
    raw = (table.schema.metadata or {}).get(b"optidel")
    return json.loads(raw) if raw else {}


def compare_images(a: Path, b: Path) -> list[str]:
    """Differences between two ``images/`` folders: file names, then bytes."""
    na = {p.name for p in a.iterdir() if p.is_file()}
    nb = {p.name for p in b.iterdir() if p.is_file()}
    diffs = [f"only in {a}: {n}" for n in sorted(na - nb)] + [f"only in {b}: {n}" for n in sorted(nb - na)]
    diffs += [f"image {n} differs" for n in sorted(na & nb) if (a / n).read_bytes() != (b / n).read_bytes()]
    return diffs


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Every difference between two select output folders (empty: equal)."""
    return compare_manifests(a / "manifest.parquet", b / "manifest.parquet") + compare_images(
        a / "images", b / "images"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    diffs = compare_outputs(args.before, args.after)
    n_rows = pq.read_metadata(args.before / "manifest.parquet").num_rows
    n_img = sum(1 for p in (args.before / "images").iterdir() if p.is_file())
    if diffs:
        print("\n".join(diffs))
        return 1
    print(f"equal: manifest.parquet ({n_rows} rows, every column) and images/ ({n_img} files, bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
