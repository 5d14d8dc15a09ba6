"""Reference floors: the prior's threshold search against brute force, and the floors' scores."""

from __future__ import annotations

import numpy as np
import pytest

from optidel.downstream.floors import best_prior_threshold, compute_floors, mean_mask
from optidel.metrics.segmentation import score_masks


def _brute_force_threshold(prior, masks, valid):
    cands = [np.inf, *sorted(np.unique(prior), reverse=True)]
    best_t, best = None, -1.0
    for t in cands:
        pred = np.broadcast_to(prior >= t, masks.shape)
        m = score_masks(pred, masks, valid).compute()["miou"]
        if m > best + 1e-12:
            best_t, best = t, m
    return best_t, best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prior_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:12, 0:12]
    centre = np.hypot(yy - 6, xx - 6) < 4
    train = (rng.random((10, 12, 12)) < 0.2) | (centre & (rng.random((10, 12, 12)) < 0.7))
    val = (rng.random((6, 12, 12)) < 0.15) | (centre & (rng.random((6, 12, 12)) < 0.6))
    valid = rng.random((6, 12, 12)) < 0.9
    prior = mean_mask(train)
    t = best_prior_threshold(prior, val, valid)
    t_ref, best_ref = _brute_force_threshold(prior, val, valid)
    got = score_masks(np.broadcast_to(prior >= t, val.shape), val, valid).compute()["miou"]
    assert got == pytest.approx(best_ref, abs=1e-12)
    assert t == t_ref


def test_floors_by_hand():
    t = np.zeros((2, 4, 4), bool)
    t[:, 1:3, 1:3] = True  # the same centred square everywhere: 4 of 16 pixels
    f = compute_floors(t, t, t)
    s = f.summary()
    assert s["all-background"]["miou"] == pytest.approx((12 / 16 + 0) / 2)
    assert s["all-foreground"]["miou"] == pytest.approx((0 + 4 / 16) / 2)
    # every mask is identical, so the prior reproduces it exactly
    assert s["mean-mask prior"]["miou"] == 1.0
    assert s["mean-mask prior"]["threshold"] == 1.0


def test_prior_prefers_all_background_when_foreground_is_random():
    rng = np.random.default_rng(0)
    train = rng.random((50, 8, 8)) < 0.02
    val = rng.random((10, 8, 8)) < 0.02
    # tiny, uniformly scattered foreground: predicting any of it loses more background IoU than it gains
    assert best_prior_threshold(mean_mask(train), val) == np.inf


def test_floors_respect_fov():
    t = np.zeros((1, 4, 4), bool)
    t[0, 0, 0] = True
    valid = np.zeros_like(t)
    valid[0, 1:, 1:] = True  # the only foreground pixel lies outside the field of view
    s = compute_floors(t, t, t, valid, valid).summary()
    assert (
        s["all-background"]["miou"] == 1.0
    )  # no foreground anywhere inside: background IoU 1, fg IoU absent


def test_mean_mask_rejects_empty():
    with pytest.raises(ValueError):
        mean_mask(np.zeros((0, 4, 4), bool))
