"""The ``optidel`` command line: a thin typer layer over the Python API.

Every command is registered here with :func:`register`, which applies
:func:`optidel.runtime.errors.one_line_errors`: an :class:`~optidel.runtime.errors.OptidelError` (a config error
included) or an ``OSError`` prints ``error: <one line>`` and exits with its code, never a traceback.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Annotated, Any

# Under load (other jobs on the same cores) busy-waiting OpenMP threads slow torch several-fold; passive waiting
# costs little on an idle machine. Set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from optidel import __version__
from optidel.bench.command import benchmark as benchmark_command
from optidel.data import commands as data_commands
from optidel.data import commands_fetch, commands_leakage
from optidel.demo.command import demo as demo_command
from optidel.downstream.command import evaluate as evaluate_command
from optidel.downstream.command import finetune as finetune_command
from optidel.log import attach_console
from optidel.runtime.errors import one_line_errors
from optidel.select.command import select as select_command
from optidel.select.vinfo_command import vinfo as vinfo_command
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

    warnings.formatwarning = _one_line_warning
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    attach_console(level, progress.console)
    if quiet:
        progress.set_enabled(False)


_format_warning = warnings.formatwarning


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    """A renamed config key or layout as ``warning: <message>`` (no source line); other warnings as Python's."""
    from optidel.config import ConfigDeprecationWarning

    if issubclass(category, ConfigDeprecationWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, *args, **kwargs)


def register(group: typer.Typer, name: str, command: Callable[..., Any]) -> None:
    """Add ``command`` to ``group`` as ``name``, with one-line errors (see the module docstring)."""
    group.command(name)(one_line_errors(command))


register(data_app, "info", data_commands.info)
register(data_app, "verify", data_commands.verify)
register(data_app, "list", commands_fetch.list_datasets)
register(data_app, "fetch", commands_fetch.fetch)
register(data_app, "leakage", commands_leakage.leakage)
register(app, "select", select_command)
register(app, "pretrain", pretrain_command)
register(app, "finetune", finetune_command)
register(app, "evaluate", evaluate_command)
register(app, "theory", theory_commands.theory)
register(app, "vinfo", vinfo_command)
register(app, "benchmark", benchmark_command)
register(app, "demo", demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
