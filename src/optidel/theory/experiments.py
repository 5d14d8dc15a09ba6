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
from optidel.runtime.atomic import atomic_write_bytes, atomic_write_text
from optidel.theory import perceptron, replica
from optidel.theory.config import (
    EXPERIMENTS,
    RESULT_COLUMNS,
    SPECS,
    ExperimentSpec,
    TheoryConfig,
    default_config,
    n_kept,
    validate_config,
)
from optidel.theory.results import (
    TheoryPoint,
    plot_results,
    read_results_csv,
    results_rows,
    summary_lines,
    write_results_csv,
)

# ----------------------------------------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------------------------------------


def _stream(cfg: TheoryConfig, *key: int) -> np.random.Generator:
    exp = EXPERIMENTS.index(cfg.experiment)
    return np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(exp, *key)))


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


__all__ = [
    "EXPERIMENTS",
    "RESULT_COLUMNS",
    "SPECS",
    "ExperimentResult",
    "ExperimentSpec",
    "TheoryConfig",
    "TheoryPoint",
    "default_config",
    "plot_results",
    "read_results_csv",
    "results_rows",
    "run_experiment",
    "summary_lines",
    "validate_config",
    "write_results_csv",
]
