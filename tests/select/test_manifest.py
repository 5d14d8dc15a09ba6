"""The manifest: schema, nulls where a column does not apply, round trip with metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from optidel.select.outputs.manifest import (
    MANIFEST_SCHEMA,
    image_manifest,
    patch_manifest,
    read_manifest,
    write_manifest,
)
from optidel.select.patches.store import PATCH_SCHEMA

REQUIRED = [
    "patch_id",
    "source",
    "image_id",
    "image_uid",
    "image_path",
    "image_w",
    "image_h",
    "x0",
    "y0",
    "x1",
    "y1",
    "mask_area",
    "pred_iou",
    "stability",
    "cluster",
    "d1",
    "d2",
    "score_margin",
    "score_prototype",
    "score_reconstruction",
    "selected",
    "rank",
    "output_image",
    "tile",
]


def patch_table(n: int) -> pa.Table:
    cols = {
        "image_index": np.arange(n) // 2,
        "source": ["s"] * n,
        "image_id": [f"im{i // 2}" for i in range(n)],
        "image_uid": [f"s/im{i // 2}" for i in range(n)],
        "image_path": [f"/p/im{i // 2}.png" for i in range(n)],
        "image_w": np.full(n, 50),
        "image_h": np.full(n, 40),
        "x0": np.arange(n),
        "y0": np.zeros(n),
        "x1": np.arange(n) + 10,
        "y1": np.full(n, 10),
        "mask_area": np.full(n, 0.1),
        "pred_iou": np.full(n, 0.9),
        "stability": np.full(n, 0.95),
    }
    t = pa.table({f.name: pa.array(cols[f.name]).cast(f.type) for f in PATCH_SCHEMA})
    return t.append_column("patch_id", pa.array(np.arange(n, dtype=np.int64)))


def test_schema_has_required_columns() -> None:
    assert set(REQUIRED) <= set(MANIFEST_SCHEMA.names)


def test_patch_manifest_rows_and_nulls(tmp_path: Path) -> None:
    n = 6
    d1 = np.linspace(0.1, 0.6, n, dtype=np.float32)
    d2 = d1 + 0.05
    t = patch_manifest(
        patch_table(n),
        np.arange(n) % 2,
        d1,
        d2,
        {"margin": d2 - d1, "prototype": d1},
        np.array([4, 1]),
        ["mosaic_00000.png", "mosaic_00000.png"],
        np.array([0, 1]),
    )
    assert t.num_rows == n and t.schema == MANIFEST_SCHEMA
    d = t.to_pydict()
    assert d["selected"] == [False, True, False, False, True, False]
    assert d["rank"] == [None, 1, None, None, 0, None]
    assert d["output_image"][4] == "mosaic_00000.png" and d["output_image"][0] is None
    assert d["tile"] == [None, 1, None, None, 0, None]
    assert all(np.isnan(v) for v in d["score_reconstruction"])  # no MAE run
    assert np.allclose(d["score_margin"], 0.05)
    write_manifest(t, tmp_path / "m.parquet", {"method": "optidel"})
    back, meta = read_manifest(tmp_path / "m.parquet")
    assert meta == {"method": "optidel"} and back.schema.remove_metadata() == MANIFEST_SCHEMA
    nan_col = "score_reconstruction"  # NaN != NaN: compare it apart
    assert back.drop_columns([nan_col]).to_pydict() == t.drop_columns([nan_col]).to_pydict()
    assert np.isnan(back.column(nan_col).to_numpy()).all()


def test_image_manifest() -> None:
    rows = {
        "image_index": [3, 0],
        "source": ["a", "a"],
        "image_id": ["x", "y"],
        "image_uid": ["a/x", "a/y"],
        "image_path": ["/x.png", "/y.png"],
        "image_w": [30, 20],
        "image_h": [10, 40],
    }
    t = image_manifest(rows, ["image_00000.png", "image_00001.png"])
    d = t.to_pydict()
    assert t.schema == MANIFEST_SCHEMA and t.num_rows == 2
    assert d["patch_id"] == [None, None] and d["rank"] == [0, 1] and d["selected"] == [True, True]
    assert d["x1"] == [30, 20] and d["y1"] == [10, 40] and d["tile"] == [None, None]
