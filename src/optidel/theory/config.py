"""The teacher-student experiments' settings: one frozen :class:`TheoryConfig` per run, each experiment's defaults.

See :mod:`optidel.theory.experiments` for what each experiment is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from optidel.theory import perceptron

EXPERIMENTS: tuple[str, ...] = ("theta", "redundant", "bias", "difficulty")
RESULT_COLUMNS: tuple[str, ...] = (
    "experiment",
    "strategy",
    "alpha_t",
    "f",
    "error",
    "error_std",
    "error_sem",
    "n_repeats",
    "source",
    "theta_deg",
    "n_dim",
    "n_kept",
    "overlap",
    "kappa",
)


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """Defaults of one experiment (the notebook's settings where known; documented choices elsewhere)."""

    theta_deg: float
    alpha_ts: tuple[float, ...]
    strategies: tuple[str, ...]
    redundancy: int = 1
    bias_shift: float | None = None
    quick_alpha_ts: tuple[float, ...] = ()


SPECS: dict[str, ExperimentSpec] = {
    "theta": ExperimentSpec(0.0, (5, 10, 20, 50, 100), ("hard",), quick_alpha_ts=(5, 20, 100)),
    "redundant": ExperimentSpec(
        10.0, (20, 50, 100, 200, 500), ("hard", "random"), redundancy=10, quick_alpha_ts=(50, 500)
    ),
    "bias": ExperimentSpec(
        10.0, (20, 50, 100, 200, 500), ("hard", "random"), bias_shift=0.4, quick_alpha_ts=(20, 200)
    ),
    "difficulty": ExperimentSpec(
        10.0, (20, 50, 100, 200, 500), ("hard", "random", "easy"), quick_alpha_ts=(20, 500)
    ),
}


@dataclasses.dataclass(frozen=True)
class TheoryConfig:
    """Resolved settings of one ``optidel theory`` run (written to ``config.yaml``)."""

    experiment: str = "difficulty"  # theta | redundant | bias | difficulty
    n_dim: int = 30  # input dimension N
    repeats: int = 50  # simulation repeats per (alpha_t, f) point
    f_min: float = 0.01  # smallest kept fraction; f = logspace(log10(f_min), 0, n_f)
    n_f: int = 12  # number of kept fractions
    alpha_ts: tuple[float, ...] = (20.0, 50.0, 100.0, 200.0, 500.0)  # pool sizes per dimension
    strategies: tuple[str, ...] = ("hard", "random", "easy")  # pruning strategies (hard | random | easy)
    theta_deg: float = 10.0  # probe-teacher angle in degrees
    redundancy: int = 1  # copies of each distinct pool example (10 for `redundant`)
    bias_shift: float | None = (
        None  # w_down = normalise(teacher + shift * 1), probe coordinate unshifted (`bias`)
    )
    seed: int = 0  # base seed of every random stream
    jobs: int = 1  # worker processes for the simulation and the theory
    theory: bool = True  # also solve the replica-theory curves
    theory_refine: int = 2  # the theory f grid is this many times finer than the simulation's
    bias_mc: int = 4000  # Monte-Carlo draws for the `bias` theory (teacher and isotropic part)
    solver: str = "nnls"  # max-margin QP solver: nnls (Lawson-Hanson, exact, fast) | cvxpy
    quick: bool = False  # a small grid with few repeats (smoke test)
    f_values: tuple[float, ...] | None = (
        None  # explicit kept fractions (replace the logspace grid; for tests)
    )

    @property
    def fs(self) -> np.ndarray:
        """(n_f,) kept fractions of the simulation."""
        if self.f_values is not None:
            return np.asarray(self.f_values, dtype=float)
        return np.logspace(math.log10(self.f_min), 0.0, self.n_f)

    @property
    def theory_fs(self) -> np.ndarray:
        """Kept fractions of the theory curves (includes every simulated f)."""
        if self.f_values is not None:
            return np.asarray(self.f_values, dtype=float)
        return np.logspace(math.log10(self.f_min), 0.0, (self.n_f - 1) * self.theory_refine + 1)

    @property
    def n_fs(self) -> int:
        return int(self.fs.size)

    @property
    def theta(self) -> float:
        return math.radians(self.theta_deg)


def default_config(experiment: str, quick: bool = False, **overrides: Any) -> TheoryConfig:
    """The config of ``experiment`` with its defaults (``quick``: 3 repeats, a smaller alpha grid), then overrides.

    Raises:
        ValueError: for an unknown experiment.
    """
    if experiment not in SPECS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {EXPERIMENTS}")
    spec = SPECS[experiment]
    base: dict[str, Any] = {
        "experiment": experiment,
        "alpha_ts": tuple(float(a) for a in (spec.quick_alpha_ts if quick else spec.alpha_ts)),
        "strategies": spec.strategies,
        "theta_deg": spec.theta_deg,
        "redundancy": spec.redundancy,
        "bias_shift": spec.bias_shift,
        "quick": quick,
    }
    if quick:
        base["repeats"] = 3
    base.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TheoryConfig(**base)
    validate_config(cfg)
    return cfg


def validate_config(cfg: TheoryConfig) -> None:
    """Raise ``ValueError`` naming the bad setting."""
    if cfg.experiment not in SPECS:
        raise ValueError(f"unknown experiment {cfg.experiment!r}; expected one of {EXPERIMENTS}")
    bad = [s for s in cfg.strategies if s not in perceptron.STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; expected some of {perceptron.STRATEGIES}")
    if cfg.repeats < 1 or cfg.n_dim < 2 or cfg.n_f < 2 or not 0.0 < cfg.f_min < 1.0:
        raise ValueError(f"need repeats >= 1, n_dim >= 2, n_f >= 2, 0 < f_min < 1; got {cfg}")
    if cfg.f_values is not None and (not cfg.f_values or any(not 0.0 < f <= 1.0 for f in cfg.f_values)):
        raise ValueError(f"f_values must be non-empty and lie in (0, 1], got {cfg.f_values}")
    if any(a <= 0 for a in cfg.alpha_ts) or not cfg.alpha_ts:
        raise ValueError(f"alpha_ts must be positive and non-empty, got {cfg.alpha_ts}")
    if cfg.solver not in ("nnls", "cvxpy"):
        raise ValueError(f"unknown solver {cfg.solver!r}; expected nnls or cvxpy")


def n_kept(alpha_t: float, f: float, n_dim: int) -> int:
    """``P = int(alpha_t * f * N)`` (the notebook's rounding), with a guard against ``0.99999`` float artefacts."""
    return int(alpha_t * f * n_dim + 1e-9)
