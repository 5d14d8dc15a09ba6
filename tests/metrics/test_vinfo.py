"""V-information estimator on synthetic Gaussian-mixture embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from optidel.metrics import vinfo as vi

K, D = 4, 8


@pytest.fixture(scope="module")
def mixture() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((K, D)) * 3.0
    comp = rng.integers(0, K, 3000)
    pool = (centres[comp] + rng.standard_normal((3000, D))).astype(np.float32)
    cents, assign = vi.pseudo_labels(pool, K, seed=0)
    y = assign(pool)
    d = np.sqrt(((pool[:, None, :] - cents[None]) ** 2).sum(-1))
    ds = np.sort(d, axis=1)
    margin = ds[:, 1] - ds[:, 0]
    boundary = np.argsort(margin)[:200]  # hardest: near a boundary between two clusters
    centre = np.concatenate([np.flatnonzero(y == c)[np.argsort(ds[y == c, 0])[:50]] for c in range(K)])
    two = np.flatnonzero(np.isin(y, [0, 1]))[:200]  # not diverse: two clusters only
    return {"pool": pool, "y": y, "comp": comp, "boundary": boundary, "centre": centre, "two": two}


def test_pseudo_labels_recover_the_mixture_and_are_deterministic(mixture: dict[str, np.ndarray]) -> None:
    assert adjusted_rand_score(mixture["comp"], mixture["y"]) > 0.9
    c2, assign2 = vi.pseudo_labels(mixture["pool"], K, seed=0)
    np.testing.assert_array_equal(assign2(mixture["pool"]), mixture["y"])
    assert c2.shape == (K, D) and c2.dtype == np.float32


def _est(m: dict[str, np.ndarray], key: str) -> vi.VInfoEstimate:
    idx = m[key]
    return vi.estimate_vinfo(m["pool"][idx], m["y"][idx], n_classes=K, seed=0)


def test_boundary_set_is_harder_than_centre_set(mixture: dict[str, np.ndarray]) -> None:
    hard, easy = _est(mixture, "boundary"), _est(mixture, "centre")
    # labels of boundary examples are harder to predict from the features. Both are small: the pseudo-label is the
    # nearest centroid, a piecewise-linear function of the same features, which a linear probe can learn from any set
    assert hard.h_y_given_x > 1.5 * easy.h_y_given_x
    assert easy.h_y_given_x < 0.05
    assert hard.h_y < easy.h_y  # boundary examples crowd a few cluster pairs: less diverse labels


def test_diverse_set_raises_label_entropy(mixture: dict[str, np.ndarray]) -> None:
    diverse, narrow = _est(mixture, "centre"), _est(mixture, "two")
    assert diverse.h_y == pytest.approx(math.log(K), abs=0.05)  # balanced: close to log k
    assert narrow.h_y < math.log(2) + 0.05 < diverse.h_y
    assert diverse.vinfo > narrow.vinfo


@pytest.mark.parametrize("key", ["boundary", "centre", "two"])
def test_vinfo_lies_between_zero_and_log_k(mixture: dict[str, np.ndarray], key: str) -> None:
    e = _est(mixture, key)
    assert -0.05 <= e.vinfo <= math.log(K) + 0.05
    assert e.vinfo_bits == pytest.approx(e.vinfo / math.log(2))
    assert e.loss_y.shape == (e.n,) and e.loss_y_given_x.shape == (e.n,)


def test_no_information_when_labels_are_random() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5))
    y = rng.integers(0, 3, 300)
    e = vi.estimate_vinfo(x, y, n_classes=3, seed=0)
    assert abs(e.vinfo) < 0.05


def test_estimate_is_deterministic(mixture: dict[str, np.ndarray]) -> None:
    a, b = _est(mixture, "boundary"), _est(mixture, "boundary")
    assert (a.h_y, a.h_y_given_x) == (b.h_y, b.h_y_given_x)


def test_unseen_class_in_a_fold_gets_the_laplace_floor() -> None:
    x = np.arange(12, dtype=float)[:, None]
    y = np.array([0] * 11 + [2])  # class 2 appears once, class 1 never
    e = vi.estimate_vinfo(x, y, n_classes=3, folds=3, seed=0)
    assert np.isfinite(e.h_y_given_x) and np.isfinite(e.h_y)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="align"):
        vi.estimate_vinfo(np.zeros((5, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        vi.estimate_vinfo(np.zeros((5, 2)), np.array([0, 1, 2, 0, 1]), n_classes=2)


def test_compare_with_random_flags_a_narrow_set(mixture: dict[str, np.ndarray]) -> None:
    m = mixture
    res = vi.compare_with_random(m["pool"][m["two"]], m["pool"], k=K, n_random=5, seed=0, n_boot=200)
    assert res.verdict.endswith("lower than random subsets of the same size")
    lo, hi = res.set_interval
    assert lo <= res.set_estimate.vinfo <= hi
    assert res.random_interval[0] <= res.random_mean <= res.random_interval[1]
    again = vi.compare_with_random(m["pool"][m["two"]], m["pool"], k=K, n_random=5, seed=0, n_boot=200)
    assert again.to_dict() == res.to_dict()


def test_vinfo_report_is_json_ready(mixture: dict[str, np.ndarray], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    m = mixture
    np.save(tmp_path / "pool.npy", m["pool"])
    rep = vi.vinfo_report(m["pool"][m["centre"]], tmp_path / "pool.npy", k=K, n_random=3, seed=0)
    text = json.dumps(rep)
    assert "verdict" in rep and rep["estimator"]["n_set"] == 200 and rep["estimator"]["n_pool"] == 3000
    assert rep["set"]["log_k_nats"] == pytest.approx(math.log(K))
    assert "NaN" not in text


# ---------------------------------------------------------------------------------------------------- non-circular Y
def test_lesion_labels_bin_the_box_share() -> None:
    from optidel.metrics.vinfo_labels import lesion_labels

    f = np.array([0.0, 0.005, 0.01, 0.3, 0.5, 0.51, 1.0])
    assert lesion_labels(f).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert lesion_labels(f, bins=(0.01,)).tolist() == [0, 0, 1, 1, 1, 1, 1]  # present / absent


def test_lowlevel_features_separate_colour_and_texture() -> None:
    from optidel.metrics.vinfo_labels import LOWLEVEL_DIM, lowlevel_features

    rng = np.random.default_rng(0)
    red = np.zeros((40, 30, 3), np.uint8)
    red[..., 0] = 200
    blue = red[..., ::-1].copy()
    noisy = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    f = lowlevel_features([red, blue, noisy])
    assert f.shape == (3, LOWLEVEL_DIM) and np.isfinite(f).all()
    assert f[0, 0] > 0.7 and f[1, 2] > 0.7 and f[0, 2] < 0.1  # RGB means
    assert f[2, 9] > 10 * max(f[0, 9], 1e-3)  # gradient energy: noise >> flat
    assert np.allclose(f[:, 11:].sum(1), 1)  # LBP histograms are distributions


def test_report_with_a_label_source_states_y_and_measures_it() -> None:
    """Y from another source: I_V is high when the embeddings predict it, ~0 when Y is unrelated to them."""
    from optidel.metrics.vinfo import LabelSource, vinfo_report

    rng = np.random.default_rng(0)
    pool = rng.standard_normal((800, 6)).astype(np.float32)
    y_lin = (pool[:, 0] > 0).astype(np.int64)  # a label the embeddings carry
    y_rand = rng.integers(0, 2, 800)  # a label they do not
    sel = np.arange(200)
    hi = vinfo_report(pool[sel], pool, n_random=3, labels=LabelSource("lesion", "test", y_lin[sel], y_lin, 2))
    lo = vinfo_report(
        pool[sel], pool, n_random=3, labels=LabelSource("lesion", "test", y_rand[sel], y_rand, 2)
    )
    assert hi["estimator"]["label_source"] == "lesion" and hi["estimator"]["circular"] is False
    assert "logistic regression" in hi["estimator"]["family"]
    assert hi["set"]["vinfo_nats"] > 0.3 and abs(lo["set"]["vinfo_nats"]) < 0.1
    default = vinfo_report(pool[sel], pool, n_random=2)
    assert default["estimator"]["label_source"] == "embedding" and default["estimator"]["circular"] is True


def test_lowlevel_label_source_is_fitted_on_the_pool() -> None:
    from optidel.metrics.vinfo_labels import lowlevel_label_source

    rng = np.random.default_rng(1)
    pool = np.concatenate([rng.normal(m, 0.1, (100, 21)) for m in (0, 3, 6)]).astype(np.float32)
    src = lowlevel_label_source(pool[::10], pool, k=3, seed=0)
    assert src.k == 3 and not src.circular and "colour/texture" in src.description
    assert np.array_equal(src.set_labels, src.pool_labels[::10])
    assert len(set(src.pool_labels[:100])) == 1 and len(set(src.pool_labels.tolist())) == 3


def test_rank_correlation_with_bootstrap_interval() -> None:
    from optidel.metrics.vinfo import vinfo_miou_rank_correlation

    iv = np.array([1.0, 1.2, 0.8, 1.5, 0.9, 1.1])
    up = vinfo_miou_rank_correlation(iv, 0.5 + 0.1 * iv)
    assert up.rho == pytest.approx(1.0) and up.ci == (pytest.approx(1.0), pytest.approx(1.0))
    assert vinfo_miou_rank_correlation(iv, -iv).rho == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    noise = vinfo_miou_rank_correlation(rng.normal(size=30), rng.normal(size=30), seed=0)
    assert noise.ci[0] < 0 < noise.ci[1] and noise.n == 30 and noise.n_boot > 1900
    assert "rho = " in str(noise) and "n = 30 arms" in str(noise)
    x, y = rng.normal(size=8), rng.normal(size=8)
    assert vinfo_miou_rank_correlation(x, y, seed=3) == vinfo_miou_rank_correlation(x, y, seed=3)  # seeded
    few = vinfo_miou_rank_correlation([1.0, 2.0, 3.0, 4.0], [0.1, 0.3, 0.2, 0.4])
    assert few.rho == pytest.approx(0.8) and np.isnan(few.ci).all() and few.n_boot == 0
    assert "no interval" in str(few) and "n = 4 arms" in str(few)
    with pytest.raises(ValueError, match="at least 3 arms"):
        vinfo_miou_rank_correlation([1.0, 2.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        vinfo_miou_rank_correlation([1.0, 2.0, 3.0], [0.1, 0.2])


def test_rank_correlation_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    from optidel.metrics.vinfo import vinfo_miou_rank_correlation

    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 4.0])
    y = np.array([0.3, 0.1, 0.2, 0.5, 0.4, 0.4, 0.9])
    assert vinfo_miou_rank_correlation(x, y).rho == pytest.approx(spearmanr(x, y).statistic)
