"""Segmentation datasets: pairing by id, splits, problems reported by id, and the three shared datasets as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.data.segmentation import hashed_split, load_mask, load_seg_dataset


def _write(root: Path, ids: list[str], img_ext: str = ".jpg", mask_ext: str = ".png", size=(32, 24)) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.new("RGB", size, (i.__hash__() % 255, 10, 10)).save(root / "images" / f"{i}{img_ext}")
        m = np.zeros((size[1], size[0]), np.uint8)
        m[5:10, 5:10] = 255
        Image.fromarray(m).save(root / "masks" / f"{i}{mask_ext}")


def test_pairs_by_id_with_different_extensions_and_hashed_split(tmp_path: Path) -> None:
    ids = [f"case{i:03d}" for i in range(50)]
    _write(tmp_path, ids)
    ds = load_seg_dataset(tmp_path)
    assert [p.id for p in ds.pairs] == sorted(ids)
    assert not ds.problems
    assert ds.split_source.startswith("hashed")
    counts = ds.split_counts()
    assert set(counts) == {"train", "test"} and 3 <= counts["test"] <= 20
    # deterministic and stable per id
    assert [p.split for p in load_seg_dataset(tmp_path).pairs] == [p.split for p in ds.pairs]
    assert all(p.split == hashed_split(p.id) for p in ds.pairs)


def test_problems_are_reported_by_id(tmp_path: Path) -> None:
    _write(tmp_path, ["a", "b", "c"])
    (tmp_path / "masks" / "b.png").unlink()  # missing mask
    Image.new("L", (10, 10)).save(tmp_path / "masks" / "c.png")  # wrong size
    Image.new("L", (32, 24)).save(tmp_path / "masks" / "orphan.png")  # mask without image
    ds = load_seg_dataset(tmp_path)
    assert [p.id for p in ds.pairs] == ["a"]
    reasons = {p.id: p.reason for p in ds.problems}
    assert "missing mask" in reasons["b"]
    assert "differs" in reasons["c"] and "10x10" in reasons["c"]
    assert "without an image" in reasons["orphan"]


def test_splits_csv_is_used_and_checked(tmp_path: Path) -> None:
    _write(tmp_path, ["a", "b", "c"])
    (tmp_path / "splits.csv").write_text("id,split\na,train\nb,test\nghost,train\n")
    ds = load_seg_dataset(tmp_path)
    assert {p.id: p.split for p in ds.pairs} == {"a": "train", "b": "test"}
    reasons = {p.id: p.reason for p in ds.problems}
    assert "not listed" in reasons["c"] and "no image" in reasons["ghost"]


def test_bad_splits_csv_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path, ["a"])
    (tmp_path / "splits.csv").write_text("name,fold\na,1\n")
    with pytest.raises(ValueError, match="splits.csv"):
        load_seg_dataset(tmp_path)


def test_mask_binarised_above_127(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 127, 128, 255]] * 4, np.uint8)).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png")[0].tolist() == [False, False, True, True]


@pytest.mark.parametrize(
    "fixture,n,train,test", [("kvasir", 1000, 900, 100), ("busi", 647, 518, 129), ("drive", 40, 20, 20)]
)
def test_shared_datasets_read_as_they_are(
    request: pytest.FixtureRequest, fixture: str, n: int, train: int, test: int
):
    root = request.getfixturevalue(fixture)
    ds = load_seg_dataset(root)
    assert not ds.problems
    assert len(ds.pairs) == n
    assert ds.split_counts() == {"test": test, "train": train}
    if fixture == "drive":
        assert all(p.fov is not None for p in ds.pairs)
    m = load_mask(ds.pairs[0].mask)
    assert m.dtype == bool and 0 < m.mean() < 0.5


def test_16bit_label_masks_keep_their_labels(tmp_path):
    """Labels {0, 1, 2, 3} in a 16-bit PNG: every non-zero label is foreground (label 1 included), and a chosen
    label selects only its pixels; a 16-bit 0/65535 mask keeps the > 127 rule after scaling."""
    from PIL import Image

    from optidel.data.segmentation import load_mask
    from optidel.data.sources.locator import make_locator

    labels = np.zeros((8, 8), np.uint16)
    labels[0, :4], labels[1, :4], labels[2, :4] = 1, 2, 3
    path = tmp_path / "labels.png"
    Image.fromarray(labels).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.array_equal(load_mask(path), labels != 0)
    assert np.array_equal(load_mask(make_locator(path, "image", label=1)), labels == 1)
    binary = (labels != 0).astype(np.uint16) * 65535
    Image.fromarray(binary).save(tmp_path / "binary.png")
    assert np.array_equal(load_mask(tmp_path / "binary.png"), labels != 0)
