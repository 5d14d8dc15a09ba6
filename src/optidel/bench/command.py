"""``optidel benchmark`` command function (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def benchmark(
    config: Annotated[
        str,
        typer.Option(
            "--config",
            "-c",
            help="Benchmark YAML, or the name of a shipped one: 'cpu-default' (2 CPU cores, a few hours) or "
            "'gpu-paper' (ViT-B, 224 px, the paper's compute-matched schedule).",
        ),
    ] = "cpu-default",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (resumable: rerun to continue).")
    ] = Path("runs/benchmark"),
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set seeds=[0] (repeatable)."),
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Show the grid and what is done, run nothing.")
    ] = False,
    tables_only: Annotated[
        bool, typer.Option("--tables-only", help="Rewrite results.csv/md and plots from finished runs only.")
    ] = False,
) -> None:
    """Run (or resume) the benchmark grid: methods x ratios x SSL x datasets x label fractions x seeds.

    Every pre-training has the same number of optimisation steps. Finished stages are reused; kill it at any time
    and rerun the same command to continue. Writes OUT/results.csv, OUT/results.md and OUT/plots/.
    """
    from optidel.bench.config import BenchmarkConfig
    from optidel.bench.runner import BenchmarkRunner
    from optidel.bench.shipped import config_path
    from optidel.bench.tables import write_tables
    from optidel.config import ConfigError, resolve_config

    try:
        path = config_path(config)
        cfg = resolve_config(BenchmarkConfig, path, sets or [])
        runner = BenchmarkRunner(cfg, out, config_file=path)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    if plan or tables_only:
        if tables_only:
            write_tables(runner)
            console.print(f"tables written to {out}")
        t = Table(title=f"benchmark {cfg.name} -> {out}", show_header=False, title_justify="left")
        for k, v in runner.plan().items():
            t.add_row(k, str(v))
        console.print(t)
        return
    results = runner.run()
    console.print(f"[green]done:[/green] {results} and {results.with_suffix('.md')}")
