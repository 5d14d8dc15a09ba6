"""The OptiDEL paper's four teacher-student experiments: simulation grid, replica-theory curves, table and plots.

Four experiments (OptiDEL's official notebook, adapted from Sorscher et al. 2022; ``N = 30``, 50 repeats per point,
kept fraction ``f = logspace(-2, 0, 12)``, probe = coordinate 0):

=============  ==============================================================================================
theta          perfect probe (``theta = 0``), ``alpha_t in {5, 10, 20, 50, 100}``, hard pruning
redundant      pool of ``alpha_t N / 10`` distinct examples each repeated 10 times, ``theta = 10 deg``,
               ``alpha_t in {20, 50, 100, 200, 500}``; hard and random pruning
bias           error measured against ``w_down = normalise(w_teacher + 0.4 * 1)`` (probe coordinate unshifted),
               ``theta = 10 deg``, ``alpha_t in {20, 50, 100, 200, 500}``; hard and random pruning
difficulty     hard vs random vs easy pruning, ``theta = 10 deg``, ``alpha_t in {20, 50, 100, 200, 500}``
=============  ==============================================================================================

One simulation *task* is one (alpha_t, repeat): a pool and a teacher are drawn once and every (strategy, f) is
evaluated on them (paired comparisons: the strategies see the same pool). Seeds come from
``SeedSequence(seed, spawn_key=(experiment, alpha_t, repeat, ...))``, so results do not depend on ``--jobs``, on the
order in which tasks finish, or on which other alpha_t values are in the grid.

Theory rows (``source = theory``) solve the replica saddle point (:mod:`optidel.theory.replica`) on a grid twice as
fine as the simulation's (it contains every simulated ``f``). For ``redundant`` the max-margin student only sees the
distinct examples, so hard/easy pruning maps to ``alpha = alpha_t f / 10`` at the same threshold, and random
pruning to ``alpha = alpha_t / 10 * (1 - (1 - f)^10)`` unpruned examples. For ``bias`` the order parameters
``(R, S, Q)`` fix the student's overlaps with the teacher and the in-plane direction, its remaining part is isotropic
(by symmetry) in the other ``N - 2`` directions, and the error against ``w_down`` is averaged over teacher draws and
that isotropic part at the simulated ``N``.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.log import logger
from optidel.runtime.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from optidel.theory import perceptron, replica

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


# ----------------------------------------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------------------------------------


def _stream(cfg: TheoryConfig, *key: int) -> np.random.Generator:
    exp = EXPERIMENTS.index(cfg.experiment)
    return np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(exp, *key)))


def n_kept(alpha_t: float, f: float, n_dim: int) -> int:
    """``P = int(alpha_t * f * N)`` (the notebook's rounding), with a guard against ``0.99999`` float artefacts."""
    return int(alpha_t * f * n_dim + 1e-9)


def simulate_task(cfg: TheoryConfig, alpha_t: float, repeat: int) -> np.ndarray:
    """Simulate one (alpha_t, repeat): a pool, a teacher, and every (strategy, f) of the config.

    Returns:
        errors: (len(strategies), n_f) generalisation errors ``arccos(R) / pi`` (against ``w_down`` for ``bias``).
    """
    akey = int(round(alpha_t * 1000))
    rng = _stream(cfg, akey, repeat, 0)
    n_pool = int(round(alpha_t * cfg.n_dim))
    X = perceptron.make_pool(cfg.n_dim, n_pool, rng, repeats=cfg.redundancy)
    teacher = perceptron.make_teacher(cfg.n_dim, cfg.theta, rng)
    y = perceptron.label(X, teacher)
    ref = teacher if cfg.bias_shift is None else perceptron.downstream_teacher(teacher, cfg.bias_shift)
    out = np.empty((len(cfg.strategies), cfg.n_fs))
    for i, strategy in enumerate(cfg.strategies):
        for j, f in enumerate(cfg.fs):
            prune_rng = _stream(cfg, akey, repeat, 1, int(round(f * 1e9)))
            idx = perceptron.prune(X, n_kept(alpha_t, f, cfg.n_dim), strategy, prune_rng)  # type: ignore[arg-type]
            w = perceptron.max_margin(X[idx], y[idx], solver=cfg.solver)  # type: ignore[arg-type]
            out[i, j] = perceptron.student_error(w, ref)
    return out


def _worker_init() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass


def _fingerprint(cfg: TheoryConfig, fields: Sequence[str]) -> str:
    d = {k: getattr(cfg, k) for k in fields}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_SIM_FIELDS = (
    "experiment",
    "n_dim",
    "f_min",
    "n_f",
    "f_values",
    "strategies",
    "theta_deg",
    "redundancy",
    "bias_shift",
    "seed",
    "solver",
)


def run_simulation(
    cfg: TheoryConfig,
    cache_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    save_every_s: float = 10.0,
) -> dict[float, np.ndarray]:
    """Simulate every (alpha_t, repeat) task, in parallel with ``cfg.jobs`` processes.

    Args:
        cfg: the resolved config.
        cache_path: an ``.npz`` of finished tasks, rewritten atomically every ``save_every_s`` seconds and at the
            end; tasks already in it (same simulation settings) are not recomputed, so a killed run resumes.
        progress: called as ``progress(done, total)`` after each task.

    Returns:
        ``{alpha_t: errors (repeats, len(strategies), n_f)}``.
    """
    fp = _fingerprint(cfg, _SIM_FIELDS)
    done: dict[tuple[float, int], np.ndarray] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fp:
                    for (a, r), e in zip(z["keys"], z["errors"], strict=True):
                        done[(float(a), int(r))] = e
            logger.info("resuming: %d simulation task(s) already in %s", len(done), cache_path)
        except (OSError, KeyError, ValueError) as e:
            logger.warning("ignoring unreadable simulation cache %s: %s", cache_path, e)
    tasks = [(float(a), r) for a in cfg.alpha_ts for r in range(cfg.repeats)]
    todo = [t for t in tasks if t not in done]
    total = len(tasks)
    last_save = time.monotonic()

    def save() -> None:
        if cache_path is None or not done:
            return
        keys = np.array(list(done.keys()), dtype=float)
        errs = np.stack(list(done.values()))
        buf = io.BytesIO()
        np.savez(buf, fingerprint=np.array(fp), keys=keys, errors=errs)
        atomic_write_bytes(cache_path, buf.getvalue())

    def record(task: tuple[float, int], errors: np.ndarray) -> None:
        nonlocal last_save
        done[task] = errors
        if progress is not None:
            progress(len([t for t in tasks if t in done]), total)
        if time.monotonic() - last_save > save_every_s:
            save()
            last_save = time.monotonic()

    if progress is not None:
        progress(total - len(todo), total)
    # largest pools first: better load balance
    todo.sort(key=lambda t: -t[0])
    if cfg.jobs <= 1 or len(todo) <= 1:
        for a, r in todo:
            record((a, r), simulate_task(cfg, a, r))
    else:
        with cf.ProcessPoolExecutor(max_workers=cfg.jobs, initializer=_worker_init) as ex:
            futures = {ex.submit(simulate_task, cfg, a, r): (a, r) for a, r in todo}
            for fut in cf.as_completed(futures):
                record(futures[fut], fut.result())
    save()
    return {a: np.stack([done[(a, r)] for r in range(cfg.repeats)]) for a in map(float, cfg.alpha_ts)}


# ----------------------------------------------------------------------------------------------------------------------
# theory
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TheoryPoint:
    """One theory point: the saddle point and the error it predicts for the experiment's target."""

    strategy: str
    alpha_t: float
    f: float
    error: float
    overlap: float
    kappa: float
    R: float
    S: float


def theory_curve(cfg: TheoryConfig, strategy: str, alpha_t: float) -> list[TheoryPoint]:
    """Theory for one (strategy, alpha_t) over ``cfg.theory_fs`` (see the module docstring for the adaptations)."""
    fs = [float(f) for f in cfg.theory_fs]
    r = cfg.redundancy
    if strategy == "random":
        alphas = [alpha_t / r * (1.0 - (1.0 - f) ** r) if r > 1 else alpha_t * f for f in fs]
        sols = []
        prev = None
        for a, f in sorted(zip(alphas, fs, strict=True), key=lambda af: -af[1]):
            prev = replica.solve_saddle_point(a, f, cfg.theta, "random", guess=prev)
            sols.append(prev)
        sols.sort(key=lambda sol: fs.index(sol.f))
    else:
        sols = replica.solve_curve(alpha_t, fs, cfg.theta, strategy, alpha_scale=1.0 / r)  # type: ignore[arg-type]
    out = []
    for sol in sols:
        if cfg.bias_shift is None:
            err, ov = sol.error, sol.R
        else:
            err, ov = downstream_error(sol, cfg.n_dim, cfg.bias_shift, cfg.bias_mc, seed=cfg.seed)
        out.append(TheoryPoint(strategy, alpha_t, sol.f, err, ov, sol.kappa, sol.R, sol.S))
    return out


def downstream_error(
    sol: replica.SaddlePoint, n_dim: int, shift: float, n_draws: int, seed: int = 0
) -> tuple[float, float]:
    """Error of the theory's student against ``w_down`` at finite ``N``, averaged over teachers and isotropic parts.

    The student is ``J = R T + S v + Q xi`` with ``v = (cos(theta) T - e0) / sin(theta)`` and ``xi`` a uniform unit
    vector orthogonal to ``T`` and ``v`` (orthogonal to ``T`` only when the problem is one-dimensional: random pruning
    or ``theta = 0``, where ``S = 0``). The data distribution is invariant under rotations that fix ``e0`` and ``T``,
    so that isotropy is exact.

    Returns:
        (mean error ``E[arccos(cos(J, w_down))] / pi``, mean cosine).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(99,)))
    theta = sol.theta
    one_d = replica._is_one_dimensional(theta, sol.strategy)  # type: ignore[arg-type]
    Q = sol.Q if not one_d else math.sqrt(max(0.0, 1.0 - sol.R**2))
    # teachers as in perceptron.make_teacher, vectorised: (n_draws, N)
    rest = rng.standard_normal((n_draws, n_dim - 1))
    rest *= math.sin(theta) / np.linalg.norm(rest, axis=1, keepdims=True)
    T = np.concatenate([np.full((n_draws, 1), math.cos(theta)), rest], axis=1)
    w_down = T + shift
    w_down[:, 0] = T[:, 0]
    w_down /= np.linalg.norm(w_down, axis=1, keepdims=True)
    xi = rng.standard_normal((n_draws, n_dim))
    xi -= np.sum(xi * T, axis=1, keepdims=True) * T
    J = sol.R * T
    if not one_d:
        e0 = np.zeros(n_dim)
        e0[0] = 1.0
        v = (math.cos(theta) * T - e0) / math.sin(theta)  # unit, orthogonal to T
        xi -= np.sum(xi * v, axis=1, keepdims=True) * v
        J = J + sol.S * v
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    J = J + Q * xi
    cos = np.clip(np.sum(J * w_down, axis=1) / np.linalg.norm(J, axis=1), -1.0, 1.0)
    return float(np.mean(np.arccos(cos)) / math.pi), float(np.mean(cos))


def run_theory(
    cfg: TheoryConfig,
    cache_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[TheoryPoint]:
    """Every (strategy, alpha_t) theory curve, cached per curve in ``cache_path`` (JSON) for resumed runs."""
    fields = (
        "experiment",
        "n_dim",
        "f_min",
        "n_f",
        "f_values",
        "theta_deg",
        "redundancy",
        "bias_shift",
        "theory_refine",
        "bias_mc",
        "seed",
    )
    fp = _fingerprint(cfg, fields)
    cache: dict[str, list[dict[str, Any]]] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            data = json.loads(cache_path.read_text())
            if data.get("fingerprint") == fp:
                cache = data["curves"]
        except (OSError, ValueError, KeyError) as e:
            logger.warning("ignoring unreadable theory cache %s: %s", cache_path, e)
    curves = [(s, float(a)) for s in cfg.strategies for a in cfg.alpha_ts]
    todo = [c for c in curves if f"{c[0]}|{c[1]}" not in cache]
    n_done = len(curves) - len(todo)
    if progress is not None:
        progress(n_done, len(curves))

    def store(c: tuple[str, float], pts: list[TheoryPoint]) -> None:
        nonlocal n_done
        cache[f"{c[0]}|{c[1]}"] = [dataclasses.asdict(p) for p in pts]
        n_done += 1
        if cache_path is not None:
            atomic_write_text(cache_path, json.dumps({"fingerprint": fp, "curves": cache}))
        if progress is not None:
            progress(n_done, len(curves))

    # slowest first (easy/hard at large alpha_t)
    todo.sort(key=lambda c: (c[0] == "random", -c[1]))
    if cfg.jobs <= 1 or len(todo) <= 1:
        for c in todo:
            store(c, theory_curve(cfg, *c))
    else:
        with cf.ProcessPoolExecutor(max_workers=cfg.jobs, initializer=_worker_init) as ex:
            futures = {ex.submit(theory_curve, cfg, *c): c for c in todo}
            for fut in cf.as_completed(futures):
                store(futures[fut], fut.result())
    return [TheoryPoint(**d) for c in curves for d in cache[f"{c[0]}|{c[1]}"]]


# ----------------------------------------------------------------------------------------------------------------------
# table and plots
# ----------------------------------------------------------------------------------------------------------------------


def results_rows(
    cfg: TheoryConfig, sim: dict[float, np.ndarray], theory: Sequence[TheoryPoint] = ()
) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` (columns :data:`RESULT_COLUMNS`): simulation means first, then theory points."""
    rows: list[dict[str, Any]] = []
    for a in cfg.alpha_ts:
        errs = sim[float(a)]  # (repeats, strategies, n_f)
        n = errs.shape[0]
        for i, s in enumerate(cfg.strategies):
            for j, f in enumerate(cfg.fs):
                e = errs[:, i, j]
                std = float(e.std(ddof=1)) if n > 1 else float("nan")
                rows.append(
                    {
                        "experiment": cfg.experiment,
                        "strategy": s,
                        "alpha_t": float(a),
                        "f": float(f),
                        "error": float(e.mean()),
                        "error_std": std,
                        "error_sem": std / math.sqrt(n) if n > 1 else float("nan"),
                        "n_repeats": n,
                        "source": "sim",
                        "theta_deg": cfg.theta_deg,
                        "n_dim": cfg.n_dim,
                        "n_kept": n_kept(float(a), float(f), cfg.n_dim),
                        "overlap": float(np.mean(np.cos(np.pi * e))),
                        "kappa": float("nan"),
                    }
                )
    for p in theory:
        rows.append(
            {
                "experiment": cfg.experiment,
                "strategy": p.strategy,
                "alpha_t": p.alpha_t,
                "f": p.f,
                "error": p.error,
                "error_std": float("nan"),
                "error_sem": float("nan"),
                "n_repeats": 0,
                "source": "theory",
                "theta_deg": cfg.theta_deg,
                "n_dim": cfg.n_dim,
                "n_kept": p.alpha_t * p.f * cfg.n_dim,
                "overlap": p.overlap,
                "kappa": p.kappa,
            }
        )
    return rows


def write_results_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Write the rows atomically (floats with full precision, NaN as empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read ``results.csv`` back (numbers as floats, empty as NaN)."""
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if k in ("experiment", "strategy", "source"):
                    row[k] = v
                else:
                    row[k] = float(v) if v != "" else float("nan")
            out.append(row)
    return out


_STYLE = {"hard": ("o", "-"), "random": ("s", "--"), "easy": ("^", ":")}


def plot_results(cfg: TheoryConfig, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Error vs kept fraction ``f`` (log-log), one panel per strategy, one colour per alpha_t.

    Simulation means are points with error bars (standard error over repeats); theory curves are lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(cfg.strategies)
    fig, axes = plt.subplots(
        1, len(strategies), figsize=(4.2 * len(strategies) + 1.6, 3.8), sharey=True, squeeze=False
    )
    cmap = plt.get_cmap("viridis")
    colours = {float(a): cmap(i / max(1, len(cfg.alpha_ts) - 1) * 0.9) for i, a in enumerate(cfg.alpha_ts)}
    target = "w_down" if cfg.bias_shift is not None else "teacher"
    for ax, s in zip(axes[0], strategies, strict=True):
        marker, ls = _STYLE.get(s, ("o", "-"))
        for a in map(float, cfg.alpha_ts):
            c = colours[a]
            sim = sorted(
                (r for r in rows if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a),
                key=lambda r: r["f"],
            )
            th = sorted(
                (r for r in rows if r["source"] == "theory" and r["strategy"] == s and r["alpha_t"] == a),
                key=lambda r: r["f"],
            )
            if th:
                ax.plot([r["f"] for r in th], [r["error"] for r in th], ls, color=c, lw=1.4)
            if sim:
                yerr = [0.0 if math.isnan(r["error_sem"]) else r["error_sem"] for r in sim]
                ax.errorbar(
                    [r["f"] for r in sim],
                    [r["error"] for r in sim],
                    yerr=yerr,
                    fmt=marker,
                    color=c,
                    ms=4,
                    capsize=2,
                    label=f"$\\alpha_t$ = {a:g}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("kept fraction f")
        ax.set_title(f"{cfg.experiment}: {s} pruning")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel(f"test error vs {target}  (arccos R / $\\pi$)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="k", lw=1.4))
    labels.append("theory (replica)")
    axes[0][-1].legend(
        handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0
    )
    fig.suptitle(
        f"N = {cfg.n_dim}, $\\theta$ = {cfg.theta_deg:g}$^\\circ$, {cfg.repeats} repeats"
        + (f", each example x{cfg.redundancy}" if cfg.redundancy > 1 else "")
        + (f", target w_down (shift {cfg.bias_shift:g})" if cfg.bias_shift is not None else ""),
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """What :func:`run_experiment` produced."""

    out_dir: Path
    rows: list[dict[str, Any]]
    seconds_simulation: float
    seconds_theory: float


def run_experiment(
    cfg: TheoryConfig,
    out_dir: str | Path,
    sim_progress: Callable[[int, int], None] | None = None,
    theory_progress: Callable[[int, int], None] | None = None,
) -> ExperimentResult:
    """Run one experiment into ``out_dir``: ``config.yaml``, ``log.txt``, ``results.csv``, ``<experiment>.png`` and,
    written last, ``DONE``. Finished simulation tasks and theory curves are cached (``sim_cache.npz``,
    ``theory_cache.json``), so a killed run resumes where it stopped.

    Args:
        cfg: resolved config (:func:`default_config`).
        out_dir: run directory (created).
        sim_progress, theory_progress: ``progress(done, total)`` callbacks (the CLI draws rich progress bars).
    """
    from optidel.config import save_config
    from optidel.log import attach_run_log, detach_run_log
    from optidel.runtime.run_dir import mark_done

    validate_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    handler = attach_run_log(out)
    try:
        save_config(cfg, out)
        n_qp = len(cfg.alpha_ts) * cfg.repeats * len(cfg.strategies) * cfg.n_fs
        logger.info(
            "theory %s: N=%d, theta=%g deg, alpha_t=%s, strategies=%s, %d repeats, %d f values -> %d max-margin QPs",
            cfg.experiment,
            cfg.n_dim,
            cfg.theta_deg,
            list(cfg.alpha_ts),
            list(cfg.strategies),
            cfg.repeats,
            cfg.n_fs,
            n_qp,
        )
        t0 = time.perf_counter()
        sim = run_simulation(cfg, out / "sim_cache.npz", progress=sim_progress)
        t_sim = time.perf_counter() - t0
        logger.info("simulation done in %.1f s (%d jobs)", t_sim, cfg.jobs)
        theory: list[TheoryPoint] = []
        t1 = time.perf_counter()
        if cfg.theory:
            theory = run_theory(cfg, out / "theory_cache.json", progress=theory_progress)
        t_th = time.perf_counter() - t1
        if cfg.theory:
            logger.info("theory curves done in %.1f s", t_th)
        rows = results_rows(cfg, sim, theory)
        write_results_csv(rows, out / "results.csv")
        plot_results(cfg, rows, out / f"{cfg.experiment}.png")
        for line in summary_lines(cfg, rows):
            logger.info("%s", line)
        mark_done(out, {"experiment": cfg.experiment, "seconds_simulation": t_sim, "seconds_theory": t_th})
        return ExperimentResult(out, rows, t_sim, t_th)
    finally:
        detach_run_log(handler)


def summary_lines(cfg: TheoryConfig, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Human-readable lines: for the largest alpha_t, the simulated error of each strategy at a few f values."""
    a = float(max(cfg.alpha_ts))
    lines = [f"alpha_t = {a:g}: simulated error (mean over {cfg.repeats} repeats) [theory]"]
    theory = {
        (r["strategy"], round(r["f"], 9)): r["error"]
        for r in rows
        if r["source"] == "theory" and r["alpha_t"] == a
    }
    for f in cfg.fs[:: max(1, cfg.n_fs // 6)]:
        parts = []
        for s in cfg.strategies:
            sim = [
                r
                for r in rows
                if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a and r["f"] == f
            ]
            th = theory.get((s, round(float(f), 9)))
            parts.append(f"{s} {sim[0]['error']:.4f}" + (f" [{th:.4f}]" if th is not None else ""))
        lines.append(f"  f = {f:.4f}: " + ", ".join(parts))
    return lines
