"""Mosaics: groupings cover every patch once, diverse groups spread clusters, tiles keep aspect, layout is 2x2."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.select.outputs.mosaic import compose, crop, fit_tile, group_diverse, group_random, save_png


def test_group_random_partition_and_seed() -> None:
    g = group_random(10, np.random.default_rng(0))
    assert g.shape == (3, 4)
    used = g[g >= 0]
    assert sorted(used.tolist()) == list(range(10)) and (g < 0).sum() == 2
    assert np.array_equal(g, group_random(10, np.random.default_rng(0)))
    assert not np.array_equal(g, group_random(10, np.random.default_rng(1)))


def test_group_diverse_spreads_clusters() -> None:
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(8), [10, 6, 5, 4, 3, 2, 1, 1])  # 32 items, skewed
    g = group_diverse(clusters, rng)
    assert g.shape == (8, 4) and sorted(g.ravel().tolist()) == list(range(32))
    distinct = [len({clusters[p] for p in row}) for row in g]
    # the largest cluster holds 10 of 32: it must repeat in 2 groups at least; a random grouping does far worse
    assert sum(d == 4 for d in distinct) >= 5
    rnd = group_random(32, np.random.default_rng(0))
    assert sum(d == 4 for d in distinct) >= sum(len({clusters[p] for p in row}) == 4 for row in rnd)
    # every group is as diverse as possible: no cluster appears twice while 4 clusters were still available
    assert Counter(distinct)[1] == 0


def test_group_diverse_few_clusters() -> None:
    g = group_diverse(np.array([0, 0, 0, 0, 0, 1, 1]), np.random.default_rng(0))
    assert sorted(g[g >= 0].tolist()) == list(range(7))


def test_fit_tile_pad_keeps_aspect_and_stretch_fills() -> None:
    patch = np.full((20, 40, 3), 200, np.uint8)
    t = fit_tile(patch, 64, "pad")
    assert t.shape == (64, 64, 3)
    rows = np.flatnonzero(t[:, 32, 0] > 0)
    assert rows.size == 32 and rows[0] == 16  # 2:1 crop -> 64 x 32, centred
    assert t[0, 0, 0] == 0
    s = fit_tile(patch, 64, "stretch")
    assert s.shape == (64, 64, 3) and s.min() == 200
    with pytest.raises(ValueError):
        fit_tile(patch, 64, "crop")


def test_compose_layout_and_crop() -> None:
    tiles = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30)] + [None]
    m = compose(tiles, 16)
    assert m[0, 0, 0] == 10 and m[0, 8, 0] == 20 and m[8, 0, 0] == 30 and m[8, 8, 0] == 0
    with pytest.raises(ValueError):
        compose(tiles[:3], 16)
    img = np.arange(100 * 3, dtype=np.uint8).reshape(10, 10, 3)
    assert crop(img, (2, 3, 5, 9)).shape == (6, 3, 3)
    assert crop(img, (-5, -5, 50, 50)).shape == (10, 10, 3)
    assert crop(img, (9, 9, 9, 9)).shape == (1, 1, 3)


def test_save_png_is_deterministic(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    save_png(img, str(tmp_path / "a.png"))
    save_png(img, str(tmp_path / "b.png"))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)
