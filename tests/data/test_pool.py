"""Pools: folder trees, several sources, stable ids, dataset splits (never the test split by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from optidel.data.pool import PoolError, list_pool, parse_source


def _img(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16)).save(p)


def test_parse_source() -> None:
    assert parse_source("data/kvasir:train").split == "train"
    assert parse_source("data/kvasir:train").path == Path("data/kvasir")
    assert parse_source("data/kvasir").split is None
    assert parse_source("/abs/x:test").split == "test"


def test_folder_tree_ids_are_relative_paths_without_extension(tmp_path: Path) -> None:
    for rel in ["b/2.png", "a.jpg", "b/1.tif", ".hidden/x.png", "notes.txt", "b/.x.png"]:
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            _img(tmp_path / rel)
    pool = list_pool([tmp_path])
    assert [p.id for p in pool] == ["a", "b/1", "b/2"]
    assert pool[0].uid == f"{tmp_path.name}/a"
    assert [p.id for p in list_pool([tmp_path])] == [p.id for p in pool]  # deterministic


def test_several_sources_keep_order_and_distinct_labels(tmp_path: Path) -> None:
    _img(tmp_path / "one" / "pool" / "x.png")
    _img(tmp_path / "two" / "pool" / "x.png")
    pool = list_pool([tmp_path / "two" / "pool", tmp_path / "one" / "pool"])
    assert [p.uid for p in pool] == ["pool/x", "pool-2/x"]
    assert pool[0].path.parent.parent.name == "two"


def test_dataset_pool_takes_train_split_only_unless_named(tiny_seg: Path) -> None:
    train = list_pool([tiny_seg])
    assert len(train) == 18
    assert len(list_pool([f"{tiny_seg}:train"])) == 18
    assert len(list_pool([f"{tiny_seg}:test"])) == 6
    assert len(list_pool([f"{tiny_seg}:all"])) == 24
    test_ids = {p.id for p in list_pool([f"{tiny_seg}:test"])}
    assert not test_ids & {p.id for p in train}


def test_pool_errors_are_clear(tmp_path: Path, tiny_seg: Path) -> None:
    with pytest.raises(PoolError, match="does not exist"):
        list_pool([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolError, match="no image files"):
        list_pool([tmp_path / "empty"])
    with pytest.raises(PoolError, match="unknown split 'val'"):
        list_pool([f"{tiny_seg}:val"])
    with pytest.raises(PoolError, match="not a segmentation dataset"):
        list_pool([f"{tmp_path / 'empty'}:train"])


def test_shared_kvasir_train_pool(kvasir: Path) -> None:
    pool = list_pool([f"{kvasir}:train"])
    assert len(pool) == 900
    assert len(list_pool([kvasir, f"{kvasir}:test"])) == 1000
