"""Mosaics: groupings cover every patch once, diverse groups spread clusters, tiles keep aspect, layout is 2x2."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.data.image import resize_rgb
from optidel.select.outputs.mosaic import (
    bar_fraction,
    box_cut,
    compose,
    context_box,
    crop,
    fit_tile,
    group_diverse,
    group_random,
    render_tile,
    save_png,
)


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


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A source image with no black pixel anywhere (values 30-255), so any black bar in a tile is padding."""
    return np.random.default_rng(seed).integers(30, 256, (h, w, 3), dtype=np.uint8)


def test_context_tile_is_the_resized_source_square_without_bars() -> None:
    img = _textured(120, 160)
    box = (70, 50, 110, 70)  # 40 x 20 patch in the middle: the square is 40 x 40 around its centre
    assert context_box(box, 120, 160) == (70, 40, 110, 80)
    tile = render_tile(img, box, 32, "context")
    assert np.array_equal(tile, resize_rgb(img[40:80, 70:110], 32))  # filled from the source image
    assert (tile.reshape(-1, 3).max(axis=1) > 0).all()  # no black pixel: no bars
    # the old default letterboxes the same box: half of the tile black
    padded = render_tile(img, box, 32, "pad")
    assert (padded.reshape(-1, 3).max(axis=1) == 0).mean() == pytest.approx(0.5, abs=0.07)


def test_context_square_is_shifted_inside_at_borders_and_holds_the_box() -> None:
    # a 30 x 18 box touching the left and bottom edges
    x0, y0, x1, y1 = context_box((0, 100, 30, 118), 120, 160)
    assert (x1 - x0, y1 - y0) == (30, 30) and x0 == 0 and y1 == 120  # shifted, not padded
    assert x0 <= 0 and y0 <= 100 and x1 >= 30 and y1 >= 118
    img = _textured(120, 160, 1)
    assert np.array_equal(
        render_tile(img, (0, 100, 30, 118), 24, "context"), resize_rgb(img[90:120, 0:30], 24)
    )


def test_context_never_letterboxes_a_box_longer_than_its_frame_is_high() -> None:
    img = _textured(40, 200, 2)  # a wide strip: a 120-px-wide box cannot grow to a 120 x 120 square
    box = (40, 10, 160, 30)
    assert context_box(box, 40, 200) == (80, 0, 120, 40)  # the largest square that fits, centred on the box
    tile = render_tile(img, box, 60, "context")
    assert np.array_equal(tile, resize_rgb(img[0:40, 80:120], 60))
    assert (tile.reshape(-1, 3).max(axis=1) > 0).all()  # no bar
    assert box_cut(box, 40, 200) == pytest.approx(2 / 3)  # 40 of the box's 120 columns are in the tile
    assert box_cut((70, 50, 110, 70), 120, 160) == 0.0  # room for the square: nothing cut
    # a whole image given as a crop (image-level resize) has no surroundings: context = pad
    assert np.array_equal(fit_tile(img, 50, "context"), fit_tile(img, 50, "pad"))


@pytest.mark.parametrize(
    ("h", "w", "box", "fit"),
    [
        (120, 160, (70, 50, 110, 70), "pad"),  # 2:1 box: half of the tile black
        (120, 160, (70, 50, 110, 70), "context"),  # room for the square: no bars
        (40, 200, (40, 10, 160, 30), "context"),  # a strip too low for the square: cut, no bars
        (40, 200, (40, 10, 160, 30), "pad"),
        (40, 200, (40, 10, 160, 30), "stretch"),
        (120, 160, (0, 100, 30, 118), "pad"),
    ],
)
def test_bar_fraction_is_the_black_share_of_the_rendered_tile(
    h: int, w: int, box: tuple[int, ...], fit: str
) -> None:
    """The report's "black bars" row: what bar_fraction predicts from the box is what render_tile leaves black."""
    tile = render_tile(_textured(h, w, 3), box, 64, fit)
    black = (tile.reshape(-1, 3).max(axis=1) == 0).mean()
    assert bar_fraction(box, h, w, fit) == pytest.approx(black, abs=1 / 64)
