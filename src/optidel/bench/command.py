"""``optidel benchmark`` command function (registered in :mod:`optidel.cli`).

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.bench.config.BenchmarkConfig` (defaults <
``--config`` (a file or a shipped name) < ``--set``); the per-stage settings in the file are checked against the stage
configs when it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optidel.bench.shipped import shipped_configs
from optidel.options import SetOption, input_errors

console = Console()


def benchmark(
    config: Annotated[
        str,
        typer.Option(
            "--config",
            "-c",
            help="Benchmark YAML (keys of optidel.bench.config.BenchmarkConfig), or the name of a shipped one: "
            f"{', '.join(shipped_configs())}.",
        ),
    ] = "cpu-default",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (resumable: rerun to continue).")
    ] = Path("runs/benchmark"),
    set_: SetOption = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Show the grid and what is done, run nothing.")
    ] = False,
    tables_only: Annotated[
        bool,
        typer.Option(
            "--tables-only",
            help="Rewrite results.csv/md and plots from finished runs only (and config.yaml: the grid they show).",
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Run only the arms whose key matches this shell pattern (repeatable; run in the order given), "
            "e.g. --only 'optidel*_s0' --only 'random_r0.05_mae_s[12]'. --plan lists the keys. Tables keep every "
            "finished cell.",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Arms run at once, each in its own process with cores / N torch threads (arms that share a "
            "selection start once it is finished; results differ from a 1-worker run only by float rounding).",
        ),
    ] = 1,
) -> None:
    """Run (or resume) the benchmark grid: methods x ratios x SSL x datasets x label fractions x seeds.

    Every pre-training has the same number of optimisation steps. Finished stages are reused; kill it at any time and rerun the same command to continue. Writes OUT/results.csv, OUT/results.md and OUT/plots/. Stage settings are nested per stage (--set pretrain.steps=100, --set finetune.mode=probe) and are checked when the config is loaded.

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.bench.runner import BenchmarkRunner

    cfg, path = load_benchmark_config(config, set_ or [])
    with input_errors(ValueError, FileNotFoundError):
        runner = BenchmarkRunner(cfg, out, config_file=path)
    if plan or tables_only:
        if tables_only:
            from optidel.config import save_config

            # the grid these tables were written with (a run in progress may have written an older one)
            save_config(cfg, runner.out)
            runner.write_tables()
            console.print(f"tables written to {out}")
        t = Table(title=f"benchmark {cfg.name} -> {out}", show_header=False, title_justify="left")
        for k, v in runner.plan(only or ()).items():
            t.add_row(k, str(v))
        console.print(t)
        return
    results = runner.run(only=only or (), workers=workers)
    console.print(f"[green]done:[/green] {results} and {results.with_suffix('.md')}")


def load_benchmark_config(name_or_path: str, sets: list[str]):
    """(BenchmarkConfig, its file): a shipped name or a YAML path, then ``--set`` overrides; errors name the key."""
    from optidel.bench.config import BenchmarkConfig
    from optidel.bench.shipped import config_path
    from optidel.config import layer_config

    with input_errors(FileNotFoundError):
        path = config_path(name_or_path)
    return layer_config(BenchmarkConfig, config_file=path, sets=sets), path
