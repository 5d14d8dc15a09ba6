"""``optidel select`` drops pool images that duplicate a test image, after the patch stage (whose cache is the pool's)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from select_fakes import FakeGridProposer, make_pool

from optidel.select.outputs.manifest import read_manifest
from optidel.select.pipeline import run_selection, selection_config


@pytest.fixture()
def leaky(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A 24-image pool holding 3 copies of the 6 images of a separate 'test' folder (one as is, two re-encoded)."""
    pool = make_pool(tmp_path / "pool", n=24, size=64, seed=0)
    test = make_pool(tmp_path / "test", n=6, size=64, seed=1)
    shutil.copy(test / "img_000.png", pool / "leak_a.png")
    for name, src, q in (("leak_b.jpg", "img_001.png", 70), ("leak_c.jpg", "img_002.png", 90)):
        buf = io.BytesIO()
        Image.open(test / src).convert("RGB").save(buf, format="JPEG", quality=q)
        (pool / name).write_bytes(buf.getvalue())
    return pool, test, ["leak_a", "leak_b", "leak_c"]


def _run(pool: Path, test: Path, out: Path, **values: object) -> tuple[object, dict]:
    values.setdefault("report.enabled", False)
    cfg = selection_config(pool=[str(pool)], out=out, ratio=0.25, leakage_against=(str(test),), **values)
    run_selection(cfg, proposer=FakeGridProposer())
    return read_manifest(out / "manifest.parquet")


def test_leaking_images_are_dropped_from_patch_selection(leaky, tmp_path: Path) -> None:
    pool, test, leaks = leaky
    cache = tmp_path / "cache"
    table, meta = _run(pool, test, tmp_path / "on", **{"runtime.cache_dir": str(cache)})
    assert meta["n_leaking_pool_images_dropped"] == 3 and meta["n_pool_images_before_leakage_guard"] == 27
    assert meta["n_pool_images"] == 24
    ids = set(table.column("image_id").to_pylist())
    assert not ids & set(leaks) and len(ids) == 24  # no patch of a leaking image is even a candidate
    assert (tmp_path / "on" / "leakage" / "leaks.csv").read_text().count("\n") == 4  # header + 3 pairs
    stores = sorted(p.name for p in cache.glob("patches-*"))
    # the same selection with the guard off computes the same pool's patch stage: its cache folder is shared
    _, meta_off = _run(pool, test, tmp_path / "off", leakage_guard=False, **{"runtime.cache_dir": str(cache)})
    assert meta_off["leakage_guard"] == "off" and meta_off["n_pool_images"] == 27
    assert sorted(p.name for p in cache.glob("patches-*")) == stores  # no new patch stage was run
    assert len(stores) == 2  # the pool's own store and the kept images' (cut from it, not recomputed)


@pytest.mark.parametrize("method", ["random", "full"])
def test_image_level_methods_never_list_leaking_images(leaky, tmp_path: Path, method: str) -> None:
    pool, test, leaks = leaky
    table, meta = _run(pool, test, tmp_path / method, method=method)
    chosen = set(table.column("image_id").to_pylist())
    assert chosen and not chosen & set(leaks)
    assert meta["n_leaking_pool_images_dropped"] == 3
    if method == "full":
        assert len(chosen) == 24


def test_nothing_to_check_leaves_the_run_unchanged(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "pool", n=12, size=48)
    cfg = selection_config(pool=[str(pool)], out=tmp_path / "o", ratio=0.25, **{"report.enabled": False})
    run_selection(cfg, proposer=FakeGridProposer())
    _, meta = read_manifest(tmp_path / "o" / "manifest.parquet")
    assert meta["leakage_checked_against"] == [] and "n_leaking_pool_images_dropped" not in meta
    assert not np.any([p.name == "leakage" for p in (tmp_path / "o").iterdir()])
