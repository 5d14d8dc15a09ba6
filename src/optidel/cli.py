"""The ``optidel`` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import logging
import os
from typing import Annotated

# Under load (other jobs on the same cores) busy-waiting OpenMP threads slow torch several-fold; passive waiting
# costs little on an idle machine. Set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.logging import RichHandler

from optidel import __version__
from optidel.bench.command import benchmark as benchmark_command
from optidel.data import commands as data_commands
from optidel.data import commands_fetch
from optidel.demo.command import demo as demo_command
from optidel.downstream.command import evaluate as evaluate_command
from optidel.downstream.command import finetune as finetune_command
from optidel.log import logger
from optidel.select.command import select as select_command
from optidel.ssl.command import pretrain as pretrain_command
from optidel.theory import command as theory_commands

app = typer.Typer(
    name="optidel",
    help="Data-efficient self-supervised pre-training for medical imaging (OptiDEL).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect, verify and fetch datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"optidel {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Warnings and errors only; no progress bars.")
    ] = False,
) -> None:
    """optidel: build compact, hard and diverse pre-training sets and prove they work."""
    from optidel.runtime import progress

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=progress.console, show_path=False, markup=False)
        handler.setLevel(level)
        logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))
    if quiet:
        progress.set_enabled(False)


data_app.command("info")(data_commands.info)
data_app.command("verify")(data_commands.verify)
app.command("select")(select_command)
app.command("pretrain")(pretrain_command)
data_app.command("list")(commands_fetch.list_datasets)
data_app.command("fetch")(commands_fetch.fetch)
app.command("finetune")(finetune_command)
app.command("evaluate")(evaluate_command)
app.command("theory")(theory_commands.theory)
app.command("vinfo")(theory_commands.vinfo)
app.command("benchmark")(benchmark_command)
app.command("demo")(demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
