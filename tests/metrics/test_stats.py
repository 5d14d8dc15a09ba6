"""NormDEL and the paired bootstrap."""

from __future__ import annotations

import numpy as np

from optidel.metrics.bootstrap import miou_from_counts, paired_miou_difference
from optidel.metrics.normdel import normdel


def test_normdel_matches_the_formula() -> None:
    assert np.isclose(normdel(0.8, 0.05), 100 / (1 + np.exp(-0.8 * np.exp(-0.05))))
    assert normdel(0.8, 0.05) > normdel(0.8, 1.0)  # same accuracy on less data scores higher
    assert normdel(0.0, 1.0) == 50.0  # zero accuracy scores the floor


def test_miou_from_counts() -> None:
    # perfect prediction of 10 fg and 90 bg pixels
    assert miou_from_counts(np.array([10, 0, 0, 90])) == 1.0
    # all background predicted: IoU_fg = 0, IoU_bg = 90 / 100
    assert np.isclose(miou_from_counts(np.array([0, 0, 10, 90])), 0.45)


def _counts(rng: np.random.Generator, quality: float, n_seeds: int = 3, n_img: int = 40) -> np.ndarray:
    fg = rng.integers(50, 150, (n_seeds, n_img))
    tp = (fg * quality).astype(int)
    fn = fg - tp
    fp = rng.integers(0, 30, (n_seeds, n_img))
    tn = 1000 - tp - fn - fp
    return np.stack([tp, fp, fn, tn], -1)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    good, bad = _counts(rng, 0.8), _counts(rng, 0.5)
    iv = paired_miou_difference(good, bad, n_boot=500)
    assert iv.estimate > 0 and iv.excludes_zero()
    same = paired_miou_difference(good, good, n_boot=200)
    assert same.estimate == 0 and same.low == 0 and same.high == 0
    noisy = paired_miou_difference(_counts(rng, 0.7), _counts(rng, 0.7), n_boot=500)
    assert not noisy.excludes_zero() or abs(noisy.estimate) < 0.02
    assert paired_miou_difference(good, bad, n_boot=300, seed=1) == paired_miou_difference(
        good, bad, n_boot=300, seed=1
    )
