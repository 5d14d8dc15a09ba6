"""Replica saddle point: quadrature, known limits, internal consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from optidel.theory import replica

TH10 = math.radians(10)


@pytest.mark.parametrize("strategy", ["hard", "easy"])
@pytest.mark.parametrize("f", [0.01, 0.2, 0.9])
def test_pruning_threshold_keeps_fraction_f(strategy: str, f: float) -> None:
    k = replica.pruning_threshold(f, strategy)  # type: ignore[arg-type]
    inside = special.erf(k / math.sqrt(2))  # P(|z| < k)
    assert (inside if strategy == "hard" else 1 - inside) == pytest.approx(f, rel=1e-12)


@pytest.mark.parametrize(
    ("f", "theta", "strategy"),
    [
        (0.05, TH10, "hard"),
        (0.3, TH10, "easy"),
        (1.0, TH10, "random"),
        (0.1, 0.0, "hard"),
        (0.1, 0.0, "easy"),
    ],
)
def test_pruned_density_is_normalised(f: float, theta: float, strategy: str) -> None:
    # order parameters in the hard regime of the integrand (small Q, small kappa)
    av = replica._averages(0.995, 0.05, 0.02, f, theta, strategy)  # type: ignore[arg-type]
    assert av.mass == pytest.approx(1.0, abs=1e-7)


def test_unpruned_max_margin_perceptron_approaches_known_asymptote() -> None:
    # Max-stability perceptron learning a teacher: eps ~ 0.5005 / alpha at large alpha
    # (Engel & Van den Broeck, Statistical Mechanics of Learning, ch. 3); eps(alpha) falls monotonically.
    errs = [replica.solve_saddle_point(a, 1.0, 0.0, "random").error for a in (1.0, 10.0, 500.0)]
    assert errs[0] > errs[1] > errs[2]
    assert 500.0 * errs[2] == pytest.approx(0.5005, abs=0.002)


def test_solution_satisfies_the_original_stationarity_equations() -> None:
    # solved in the cancellation-free form; check the textbook form alpha E[h y t] = R (1 - alpha E[Phi]) too
    for strategy in ("hard", "easy"):
        sol = replica.solve_saddle_point(30.0, 0.3, TH10, strategy)  # type: ignore[arg-type]
        av = replica._averages(sol.R, sol.S, sol.kappa, sol.f, sol.theta, strategy)  # type: ignore[arg-type]
        lam = 1.0 - sol.alpha * av.big
        assert lam == pytest.approx(sol.alpha * sol.kappa * av.h, rel=1e-6)  # Euler identity at the solution
        assert sol.alpha * av.ht == pytest.approx(sol.R * lam, rel=1e-6)
        assert sol.alpha * av.hv == pytest.approx(sol.S * lam, rel=1e-6, abs=1e-12)
        assert sol.alpha * av.g == pytest.approx(sol.Q**2, rel=1e-8)


def test_margin_is_maximal_over_student_directions() -> None:
    # kappa(R, S) from the capacity condition is largest at the saddle point (Gardner: max-margin = max kappa)
    sol = replica.solve_saddle_point(10.0, 0.2, TH10, "hard")
    k0 = replica._kappa_of_direction(sol.R, sol.S, sol.alpha, sol.f, sol.theta, "hard")
    assert k0 == pytest.approx(sol.kappa, rel=1e-6)
    for dR, dS in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.02), (0.0, -0.02)]:
        R = sol.R + dR * (1 - sol.R)
        S = sol.S + dS
        assert replica._kappa_of_direction(R, S, sol.alpha, sol.f, sol.theta, "hard") < sol.kappa


def test_full_pool_is_the_same_for_every_strategy() -> None:
    errs = [replica.solve_saddle_point(40.0, 1.0, TH10, s).error for s in ("hard", "easy", "random")]  # type: ignore[arg-type]
    assert max(errs) - min(errs) < 1e-9


def test_curve_matches_pointwise_solutions() -> None:
    fs = [1.0, 0.4, 0.15]
    curve = replica.solve_curve(50.0, fs, TH10, "hard")
    for f, sol in zip(fs, curve, strict=True):
        direct = replica.solve_saddle_point(50.0 * f, f, TH10, "hard")
        assert sol.error == pytest.approx(direct.error, rel=1e-6)


def test_perfect_probe_hard_pruning_keeps_the_full_pool_error() -> None:
    # theta = 0, hard pruning: all support vectors sit near the teacher's boundary, so pruning to f >= (enough)
    # leaves the error of the whole pool unchanged (the plateau of Sorscher et al.'s Fig. 1)
    full = replica.solve_saddle_point(100.0, 1.0, 0.0, "random").error
    pruned = replica.solve_saddle_point(100.0 * 0.1, 0.1, 0.0, "hard").error
    assert pruned == pytest.approx(full, rel=1e-3)


def test_in_plane_basis() -> None:
    rng = np.random.default_rng(0)
    from optidel.theory.perceptron import make_teacher

    T = make_teacher(30, TH10, rng)
    e0, u = replica.in_plane_basis(T)
    np.testing.assert_allclose(T, math.cos(TH10) * e0 + math.sin(TH10) * u, atol=1e-12)
    sol = replica.SaddlePoint(1.0, 0.5, TH10, "hard", R=0.9, S=-0.1, kappa=0.1, residual=0.0)
    v = (math.cos(TH10) * T - e0) / math.sin(TH10)
    J = sol.R * T + sol.S * v
    assert J @ e0 == pytest.approx(sol.probe_overlap)
    assert J @ u == pytest.approx(sol.perp_overlap)
