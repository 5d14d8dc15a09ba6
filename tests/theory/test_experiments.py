"""The four experiments: the shapes the paper (and Sorscher et al.) predict, simulation vs theory, outputs, resume.

Tolerances: simulation means carry sampling noise (standard error of the mean, SEM, over repeats) and, at N = 30,
finite-size deviations from the N -> infinity replica theory. At N = 200 the two agree within sampling noise (checked
while writing this module); at N = 30 the deviations seen on the default grid are below ~12% of the error away from
the sharp hard-pruning transition. So simulation and theory must agree within 3 SEM + 15% of the theory value at
points away from that transition.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from optidel.theory import experiments as ex
from optidel.theory import replica


def _sim(experiment: str, **kw: object) -> tuple[ex.TheoryConfig, dict[float, np.ndarray]]:
    cfg = ex.default_config(experiment, theory=False, **kw)
    return cfg, ex.run_simulation(cfg)


def test_theta_zero_plateau_falls_like_one_over_alpha_t() -> None:
    alphas = (5.0, 20.0, 100.0)
    cfg, sim = _sim("theta", alpha_ts=alphas, f_values=(0.4, 1.0), repeats=10)
    plateau = [sim[a][:, 0, 1].mean() for a in alphas]  # f = 1, hard
    assert plateau[0] > plateau[1] > plateau[2]
    for a, e in zip(alphas, plateau, strict=True):
        # max-margin perceptron: eps ~ 0.5 / alpha (theory 0.47-0.50 on this grid)
        assert 0.3 < a * e < 0.65, (a, e)
        if a >= 20:  # plateau: with a perfect probe and a large pool, hard pruning to f = 0.4 loses nothing
            assert sim[a][:, 0, 0].mean() == pytest.approx(e, rel=0.05)


@pytest.fixture(scope="module")
def difficulty_500() -> tuple[ex.TheoryConfig, np.ndarray]:
    fs = (0.01, 0.1233, 0.1874, 0.2848, 0.4329, 1.0)
    cfg, sim = _sim("difficulty", alpha_ts=(500.0,), f_values=fs, repeats=5)
    return cfg, sim[500.0]


def test_hard_beats_random_beats_easy_with_a_large_pool(
    difficulty_500: tuple[ex.TheoryConfig, np.ndarray],
) -> None:
    cfg, errs = difficulty_500
    mean = errs.mean(axis=0)  # (strategies, f)
    h, r, e = (cfg.strategies.index(s) for s in ("hard", "random", "easy"))
    for j, f in enumerate(cfg.fs):
        if 0.1 < f < 0.45:
            assert mean[h, j] < mean[r, j] < mean[e, j], (f, mean[:, j])


def test_all_strategies_agree_on_the_full_pool(difficulty_500: tuple[ex.TheoryConfig, np.ndarray]) -> None:
    _, errs = difficulty_500
    full = errs[:, :, -1]  # f = 1: every strategy keeps the same data
    assert np.ptp(full, axis=1).max() < 1e-9


def test_easy_beats_hard_at_tiny_f(difficulty_500: tuple[ex.TheoryConfig, np.ndarray]) -> None:
    # the small-data regime of Sorscher et al.: too few examples kept -> easy examples are better
    cfg, errs = difficulty_500
    mean = errs.mean(axis=0)
    assert mean[cfg.strategies.index("easy"), 0] < 0.5 * mean[cfg.strategies.index("hard"), 0]


@pytest.mark.parametrize(
    ("experiment", "strategy", "alpha_t", "f"),
    [
        ("difficulty", "hard", 20.0, 0.01),
        ("difficulty", "random", 20.0, 0.1874),
        ("difficulty", "easy", 20.0, 0.0534),
        ("theta", "hard", 20.0, 1.0),
        ("redundant", "hard", 200.0, 0.2848),
        ("bias", "random", 20.0, 0.4329),
    ],
)
def test_simulation_agrees_with_theory(experiment: str, strategy: str, alpha_t: float, f: float) -> None:
    cfg, sim = _sim(
        experiment, alpha_ts=(alpha_t,), strategies=(strategy,), f_values=(f,), repeats=20, bias_mc=2000
    )
    e = sim[alpha_t][:, 0, 0]
    sem = e.std(ddof=1) / math.sqrt(e.size)
    (th,) = ex.theory_curve(cfg, strategy, alpha_t)
    assert abs(e.mean() - th.error) < 3 * sem + 0.15 * th.error, (e.mean(), sem, th.error)


def test_simulation_is_deterministic_and_independent_of_jobs() -> None:
    kw = {"alpha_ts": (20.0, 50.0), "f_values": (0.1, 1.0), "repeats": 3}
    _, a = _sim("difficulty", **kw)
    _, b = _sim("difficulty", jobs=2, **kw)
    _, c = _sim("difficulty", seed=1, **kw)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a[20.0], c[20.0])


def test_simulation_resumes_from_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ex.default_config("theta", alpha_ts=(5.0,), f_values=(0.5, 1.0), repeats=3, theory=False)
    first = ex.run_simulation(cfg, tmp_path / "sim_cache.npz")

    def boom(*args: object) -> None:
        raise AssertionError("a cached task was recomputed")

    monkeypatch.setattr(ex, "simulate_task", boom)
    again = ex.run_simulation(cfg, tmp_path / "sim_cache.npz")
    np.testing.assert_array_equal(first[5.0], again[5.0])


def test_run_experiment_writes_every_output(tmp_path: Path) -> None:
    cfg = ex.default_config("theta", alpha_ts=(5.0, 20.0), n_f=4, repeats=2)
    seen: list[tuple[int, int]] = []
    res = ex.run_experiment(cfg, tmp_path, sim_progress=lambda d, t: seen.append((d, t)))
    for name in ("results.csv", "theta.png", "config.yaml", "log.txt", "DONE"):
        assert (tmp_path / name).is_file(), name
    assert seen[-1] == (4, 4)
    rows = ex.read_results_csv(tmp_path / "results.csv")
    assert set(ex.RESULT_COLUMNS) <= set(rows[0])
    assert {r["source"] for r in rows} == {"sim", "theory"}
    assert len([r for r in rows if r["source"] == "sim"]) == 2 * 4
    assert len([r for r in rows if r["source"] == "theory"]) == 2 * 7  # grid refined x2
    assert all(0.0 <= r["error"] <= 0.5 for r in rows)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["experiment"] == "theta" and saved["theta_deg"] == 0.0 and saved["repeats"] == 2
    assert (tmp_path / "theta.png").stat().st_size > 10_000
    assert len(res.rows) == len(rows)


def test_unknown_experiment_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.default_config("moderate")
    with pytest.raises(ValueError, match="unknown strategies"):
        ex.default_config("difficulty", strategies=("medium",))


def test_redundant_theory_is_the_distinct_examples_theory() -> None:
    cfg = ex.default_config("redundant", alpha_ts=(200.0,), strategies=("hard",), f_values=(0.3,))
    (pt,) = ex.theory_curve(cfg, "hard", 200.0)
    direct = replica.solve_saddle_point(200.0 * 0.3 / 10, 0.3, math.radians(10), "hard")
    assert pt.error == pytest.approx(direct.error, rel=1e-9)
