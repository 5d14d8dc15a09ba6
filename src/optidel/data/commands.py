"""``optidel data info|verify`` command functions (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optidel.data.inventory import Inventory, take_inventory

console = Console()


def _summary_table(inv: Inventory) -> Table:
    t = Table(title=f"{inv.path.name} ({inv.kind})", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("path", str(inv.path))
    t.add_row("images", str(inv.n_images))
    if inv.n_pairs is not None:
        t.add_row("pairs (image + mask)", str(inv.n_pairs))
    if inv.split_counts:
        t.add_row("splits", ", ".join(f"{k} {v}" for k, v in inv.split_counts.items()))
        t.add_row("split from", str(inv.split_source))
    rng = inv.size_range()
    if rng:
        (w0, h0), (w1, h1) = rng
        t.add_row("size range (W x H)", f"{w0}-{w1} x {h0}-{h1}")
    t.add_row("unreadable files", str(inv.n_unreadable))
    n_problems = len(inv.bad) - inv.n_unreadable
    if inv.n_pairs is not None:
        t.add_row("dataset problems", str(n_problems))
    return t


def _bad_table(inv: Inventory) -> Table:
    t = Table(title="bad files", title_justify="left")
    t.add_column("file", overflow="fold")
    t.add_column("reason", overflow="fold")
    for b in inv.bad:
        t.add_row(_rel(b.path, inv.path), b.reason)
    return t


def _rel(path: str, root: Path) -> str:
    """Path relative to the checked folder when inside it (shorter tables), else as given."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


PathArg = Annotated[str, typer.Argument(help="An image folder, a segmentation dataset, or PATH:SPLIT.")]


def info(
    path: PathArg,
    quick: Annotated[
        bool, typer.Option(help="Read headers only (fast; misses truncated pixel data).")
    ] = False,
) -> None:
    """Inventory of a folder: number of images (and pairs), split counts, size range, unreadable files."""
    try:
        inv = take_inventory(path, deep=not quick)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    console.print(_summary_table(inv))
    if inv.bad:
        console.print(
            f"[yellow]{len(inv.bad)} file(s) or id(s) have problems; `optidel data verify {path}` lists them"
        )


def verify(path: PathArg) -> None:
    """Decode every file; exit 1 with a table naming each bad file (and dataset problem), 0 when all are good."""
    try:
        inv = take_inventory(path, deep=True)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    if inv.bad:
        console.print(_bad_table(inv))
        console.print(f"[red]{len(inv.bad)} problem(s) in {Path(inv.path)}[/red]")
        raise typer.Exit(1)
    n = inv.n_images + (inv.n_pairs or 0)
    console.print(
        f"[green]all good:[/green] {inv.n_images} images"
        + (f", {inv.n_pairs} pairs" if inv.n_pairs else "")
        + f" checked ({n} files)"
    )
