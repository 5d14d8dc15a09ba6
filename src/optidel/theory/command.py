"""The ``optidel theory`` command function (registered in :mod:`optidel.cli`).

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.theory.config.TheoryConfig` (defaults <
``--config`` < named options < ``--set``); help texts read the defaults from it. ``optidel vinfo`` lives in
:mod:`optidel.select.vinfo_command` (it reads a selection's images and masks, which theory may not import).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from optidel.options import ConfigOption, SetOption, given, input_errors, option
from optidel.runtime.errors import one_line_errors
from optidel.theory.config import TheoryConfig

console = Console()
T = TheoryConfig


@one_line_errors
def theory(
    experiment: Annotated[
        str | None,
        option(
            T,
            "experiment",
            "theta (perfect probe, alpha_t 5-100, hard pruning), redundant (each pool example x10), "
            "bias (error against a shifted downstream teacher), difficulty (hard vs random vs easy).",
            "--experiment",
            "-e",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory (created; a rerun resumes from its caches).")
    ] = Path("runs/theory"),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="3 repeats and a smaller alpha_t grid: a smoke test (well under a minute)."
        ),
    ] = False,
    repeats: Annotated[
        int | None, option(T, "repeats", "Simulation repeats per point (3 with --quick).")
    ] = None,
    seed: Annotated[
        int | None,
        option(T, "seed", "Base seed of every random stream (results are deterministic given it)."),
    ] = None,
    jobs: Annotated[
        int | None, option(T, "jobs", "Worker processes for simulation and theory (the CPUs are shared).")
    ] = None,
    theory_curves: Annotated[
        bool | None, option(T, "theory", "Also solve the replica-theory curves.", "--theory/--no-theory")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Teacher-student perceptron experiments of the OptiDEL paper (adapted from Sorscher et al. 2022).

    A pool of alpha_t*N Gaussian inputs, a teacher at angle theta from a probe (coordinate 0), pruning to a fraction f = logspace(log10(f_min), 0, n_f) of the pool by the probe's margin |x0| (hard = smallest, easy = largest, or random), a max-margin student on what is kept, and its test error arccos(R)/pi. Simulation and replica theory. Each experiment sets its own alpha_ts, strategies, theta_deg, redundancy and bias_shift (the base below --config); every key of optidel.theory.experiments.TheoryConfig can be set with --config or --set.

    Writes OUT/results.csv (experiment, strategy, alpha_t, f, error, error_std, error_sem, n_repeats, source = sim | theory, ...), OUT/<experiment>.png, OUT/config.yaml, OUT/log.txt and, last, OUT/DONE.

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.runtime.progress import make_progress
    from optidel.theory.experiments import run_experiment

    options = given(experiment=experiment, repeats=repeats, seed=seed, jobs=jobs, theory=theory_curves)
    cfg = theory_config(config, options, set_ or [], quick=quick)
    with make_progress() as prog:
        t_sim = prog.add_task(f"simulate {cfg.experiment}", total=None)
        t_th = prog.add_task("theory curves", total=None, visible=cfg.theory)

        def sim_progress(done: int, total: int) -> None:
            prog.update(t_sim, completed=done, total=total)

        def theory_progress(done: int, total: int) -> None:
            prog.update(t_th, completed=done, total=total)

        res = run_experiment(cfg, out, sim_progress=sim_progress, theory_progress=theory_progress)
    console.print(_theory_table(cfg, res.rows))
    console.print(
        f"simulation {res.seconds_simulation:.1f} s, theory {res.seconds_theory:.1f} s -> "
        f"{out / 'results.csv'}, {out / (cfg.experiment + '.png')}"
    )


def theory_config(
    config: Path | None, options: dict[str, Any], sets: list[str], quick: bool = False
) -> TheoryConfig:
    """The run's TheoryConfig: defaults < the experiment's own settings < ``config`` < ``options`` < ``sets``.

    The experiment (and ``quick``) is read through the same layers first, since it chooses the base.
    """
    from optidel.config import layer_config
    from optidel.theory.experiments import default_config, validate_config

    first = layer_config(T, config_file=config, options={**options, "quick": quick or None}, sets=sets)
    with input_errors(ValueError):
        base = default_config(first.experiment, quick=first.quick)
    cfg = layer_config(T, base=base, config_file=config, options=options, sets=sets)
    with input_errors(ValueError):
        validate_config(cfg)
    return cfg


def _theory_table(cfg: Any, rows: list[dict[str, Any]]) -> Table:
    a = float(max(cfg.alpha_ts))
    t = Table(
        title=f"{cfg.experiment}: error at alpha_t = {a:g} (sim mean +- s.e.m. [theory])",
        title_justify="left",
    )
    t.add_column("f", justify="right")
    for s in cfg.strategies:
        t.add_column(s, justify="right")
    theory = {
        (r["strategy"], round(r["f"], 9)): r["error"]
        for r in rows
        if r["source"] == "theory" and r["alpha_t"] == a
    }
    for f in cfg.fs:
        cells = []
        for s in cfg.strategies:
            r = next(
                r
                for r in rows
                if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a and r["f"] == f
            )
            sem = "" if math.isnan(r["error_sem"]) else f" +- {r['error_sem']:.4f}"
            th = theory.get((s, round(float(f), 9)))
            cells.append(f"{r['error']:.4f}{sem}" + (f" [{th:.4f}]" if th is not None else ""))
        t.add_row(f"{f:.4f}", *cells)
    return t
