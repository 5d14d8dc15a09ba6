"""Grid proposer: boxes cover the image, stay inside, scales and jitter behave."""

from __future__ import annotations

import numpy as np
import pytest

from optidel.select.patches.grid import GridProposer


def _covered(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    cov = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        cov[y0:y1, x0:x1] = True
    return cov


@pytest.mark.parametrize("hw", [(100, 200), (333, 257), (64, 64)])
def test_each_scale_covers_the_image(hw):
    h, w = hw
    img = np.zeros((h, w, 3), np.uint8)
    p = GridProposer(scales=(0.5, 0.25)).process(img)
    assert p.boxes.dtype == np.int32 and p.embeddings is None
    assert (p.boxes[:, :2] >= 0).all() and (p.boxes[:, 2] <= w).all() and (p.boxes[:, 3] <= h).all()
    sides = p.boxes[:, 2] - p.boxes[:, 0]
    assert set(np.unique(sides)) == {round(0.5 * min(h, w)), round(0.25 * min(h, w))}
    for s in np.unique(sides):
        assert _covered(p.boxes[sides == s], h, w).all()
    np.testing.assert_allclose(p.mask_area, sides * (p.boxes[:, 3] - p.boxes[:, 1]) / (h * w), rtol=1e-6)
    assert np.isnan(p.pred_iou).all() and np.isnan(p.stability).all()


def test_overlap_and_count():
    p = GridProposer(scales=(0.5,), overlap=0.5).process(np.zeros((100, 200, 3), np.uint8))
    # side 50, stride 25: 3 rows x 7 columns
    assert len(p) == 21
    assert p.boxes[:2].tolist() == [[0, 0, 50, 50], [25, 0, 75, 50]]


def test_jitter_is_seeded_by_image_and_stays_inside():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    g = GridProposer(jitter=0.5, seed=1)
    pa1, pa2, pb = g.process(a), g.process(a), g.process(b)
    np.testing.assert_array_equal(pa1.boxes, pa2.boxes)
    assert not np.array_equal(pa1.boxes, pb.boxes)
    assert not np.array_equal(pa1.boxes, GridProposer().process(a).boxes)
    assert (pa1.boxes[:, :2] >= 0).all() and (pa1.boxes[:, 2] <= 160).all() and (pa1.boxes[:, 3] <= 120).all()
    assert GridProposer(jitter=0.5, seed=1).cache_key() != GridProposer(jitter=0.5, seed=2).cache_key()


def test_max_patches_and_bad_options():
    p = GridProposer(max_patches=5).process(np.zeros((64, 64, 3), np.uint8))
    assert len(p) == 5
    with pytest.raises(ValueError, match="scales"):
        GridProposer(scales=(1.5,))
    with pytest.raises(ValueError, match="overlap"):
        GridProposer(overlap=1.0)
