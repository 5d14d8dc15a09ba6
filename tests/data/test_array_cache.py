"""The decoded-array cache: right shapes, bad files left out (or fatal with strict), rebuilt when files change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.data.array_cache import load_stack
from optidel.data.image import ImageDecodeError
from optidel.data.segmentation import load_seg_dataset


def test_images_and_masks_stack_and_cache(tiny_seg: Path) -> None:
    pairs = load_seg_dataset(tiny_seg).split("train")
    imgs = load_stack([p.image for p in pairs], 32)
    masks = load_stack([p.mask for p in pairs], 32, kind="mask")
    assert imgs.array.shape == (18, 32, 32, 3) and imgs.array.dtype == np.uint8
    assert masks.array.shape == (18, 32, 32) and masks.array.dtype == bool
    assert 0.02 < masks.array.mean() < 0.5
    again = load_stack([p.image for p in pairs], 32)
    assert isinstance(again.array, np.memmap) and np.array_equal(again.array, imgs.array)


def test_bad_file_left_out_or_fatal(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (200, 0, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    stack = load_stack([good, bad], 16)
    assert stack.paths == [good] and stack.array.shape == (1, 16, 16, 3)
    assert stack.bad[0][0] == bad and "empty" in stack.bad[0][1]
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        load_stack([good, bad], 16, strict=True)


def test_cache_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGB", (20, 20), (10, 10, 10)).save(p)
    first = np.array(load_stack([p], 8).array)
    Image.new("RGB", (20, 20), (250, 250, 250)).save(p)
    import os

    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    second = np.array(load_stack([p], 8).array)
    assert first.mean() < 20 and second.mean() > 240
