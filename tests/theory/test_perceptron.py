"""Teacher-student perceptron pieces: pool, teacher, pruning, the max-margin QP (checked against cvxpy), error."""

from __future__ import annotations

import numpy as np
import pytest

from optidel.theory import perceptron as pc


def _separable(n_examples: int, n_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pc.make_pool(n_dim, n_examples, rng)
    w = pc.make_teacher(n_dim, np.deg2rad(30), rng)
    return X, pc.label(X, w)


@pytest.mark.parametrize("n_examples", [5, 60, 2000])
def test_max_margin_matches_cvxpy_qp(n_examples: int) -> None:
    # 2000 > 4N exercises the working-set loop; the reference is the QP solved by cvxpy (Clarabel)
    X, y = _separable(n_examples, 30, seed=n_examples)
    w = pc.max_margin(X, y)
    w_ref = pc.max_margin(X, y, solver="cvxpy")
    assert pc.overlap(w, w_ref) > 0.999
    assert np.min(y * (X @ w)) >= 1 - 1e-4
    # same optimum: the norms agree to the QP solver's accuracy
    assert np.linalg.norm(w) == pytest.approx(np.linalg.norm(w_ref), rel=1e-4)


def test_max_margin_ignores_repeated_examples() -> None:
    X, y = _separable(400, 10, seed=1)
    w1 = pc.max_margin(X, y)
    w10 = pc.max_margin(np.repeat(X, 10, axis=0), np.repeat(y, 10))
    assert pc.overlap(w1, w10) > 1 - 1e-10


def test_max_margin_support_vectors_sit_on_the_margin() -> None:
    X, y = _separable(300, 10, seed=2)
    w = pc.max_margin(X, y)
    m = y * (X @ w)
    n_sv = int(np.sum(m < 1 + 1e-6))
    assert 1 <= n_sv <= 10  # at most N support vectors in general position


def test_no_examples_gives_a_chance_level_student() -> None:
    w = pc.max_margin(np.zeros((0, 5)), np.zeros(0))
    assert np.all(w == 0)
    assert pc.student_error(w, np.ones(5)) == 0.5


def test_teacher_is_unit_norm_at_angle_theta() -> None:
    rng = np.random.default_rng(0)
    for theta in (0.0, np.deg2rad(10), np.pi / 2):
        w = pc.make_teacher(30, theta, rng)
        assert np.linalg.norm(w) == pytest.approx(1.0)
        assert w[0] == pytest.approx(np.cos(theta))


def test_downstream_teacher_shifts_all_but_the_probe_coordinate() -> None:
    rng = np.random.default_rng(0)
    w = pc.make_teacher(30, np.deg2rad(10), rng)
    wd = pc.downstream_teacher(w, 0.4)
    assert np.linalg.norm(wd) == pytest.approx(1.0)
    unnorm = w + 0.4
    unnorm[0] = w[0]
    np.testing.assert_allclose(wd, unnorm / np.linalg.norm(unnorm))


def test_pruning_strategies_rank_by_probe_margin() -> None:
    rng = np.random.default_rng(0)
    X = pc.make_pool(30, 600, rng)
    hard = pc.prune(X, 60, "hard", rng)
    easy = pc.prune(X, 60, "easy", rng)
    rand = pc.prune(X, 60, "random", rng)
    m = np.abs(X[:, 0])
    assert m[hard].max() <= np.sort(m)[59] + 1e-15
    assert m[easy].min() >= np.sort(m)[-60] - 1e-15
    assert len(set(rand.tolist())) == 60
    # f = 1: every strategy keeps the whole pool
    for s in pc.STRATEGIES:
        assert sorted(pc.prune(X, 600, s, rng).tolist()) == list(range(600))
    with pytest.raises(ValueError, match="unknown pruning strategy"):
        pc.prune(X, 5, "medium", rng)  # type: ignore[arg-type]


def test_redundant_pool_repeats_each_example() -> None:
    X = pc.make_pool(30, 600, np.random.default_rng(0), repeats=10)
    assert X.shape == (600, 30)
    assert np.unique(X, axis=0).shape[0] == 60
    hard = pc.prune(X, 20, "hard", np.random.default_rng(0))
    assert np.unique(X[hard], axis=0).shape[0] == 2  # ties stay together: 2 distinct examples x 10


def test_error_is_angle_over_pi() -> None:
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(0.3), np.sin(0.3)])
    assert pc.student_error(a, b) == pytest.approx(0.3 / np.pi)
    assert pc.student_error(a, -a) == pytest.approx(1.0)
