"""``optidel data info|verify`` command functions (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optidel.data.inventory import Inventory, take_inventory
from optidel.data.sources import SourceOptions

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
    if inv.mask_conventions:
        t.add_row("masks stored as", ", ".join(f"{k}: {v}" for k, v in inv.mask_conventions.items()))
    return t


def _formats_table(inv: Inventory) -> Table:
    t = Table(title="by format", title_justify="left")
    for col in ("format", "files", "items", "skipped"):
        t.add_column(col, justify="left" if col == "format" else "right")
    for fmt, c in inv.formats.items():
        t.add_row(fmt, str(c["files"]), str(c["items"]), str(c["skipped"]))
    return t


def _show_formats(inv: Inventory) -> bool:
    """The per-format table is shown when the folder holds more than ordinary images or something was skipped."""
    return set(inv.formats) - {"image"} != set() or any(c["skipped"] for c in inv.formats.values())


def source_options(sets: list[str] | None) -> SourceOptions:
    """``--set key=value`` (``sources.key=value`` also accepted) -> :class:`SourceOptions`."""
    from optidel.config import resolve_config

    clean = [s.split("sources.", 1)[1] if s.startswith("sources.") else s for s in sets or []]
    return resolve_config(SourceOptions, None, clean)


def _bad_table(inv: Inventory) -> Table:
    t = Table(title="bad files", title_justify="left")
    t.add_column("file", overflow="fold")
    t.add_column("reason", overflow="fold")
    for b in inv.bad:
        t.add_row(escape(_rel(b.path, inv.path)), escape(b.reason))
    return t


def _rel(path: str, root: Path) -> str:
    """Path relative to the checked folder when inside it (shorter tables), else as given."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


PathArg = Annotated[str, typer.Argument(help="An image folder, a segmentation dataset, or PATH:SPLIT.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Source option key=value (repeatable): window (auto, soft-tissue, lung, bone, brain, C:W, p1-99), "
        "slice_axis, slice_stride, drop_empty, tiff_pages, wsi_tile, wsi_level, wsi_magnification, wsi_tissue, "
        "wsi_max_tiles, mask_label. See docs/formats.md.",
    ),
]


def info(
    path: PathArg,
    quick: Annotated[
        bool, typer.Option(help="Read headers only (fast; misses truncated pixel data).")
    ] = False,
    set_: SetOpt = None,
) -> None:
    """Inventory of a folder: images (and pairs), split counts, size range, per format files/items/skipped, mask
    conventions, unreadable files."""
    try:
        inv = take_inventory(path, deep=not quick, options=source_options(set_))
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    console.print(_summary_table(inv))
    if _show_formats(inv):
        console.print(_formats_table(inv))
    if inv.bad:
        console.print(
            f"[yellow]{len(inv.bad)} file(s) or id(s) have problems; `optidel data verify {path}` lists them"
        )


def verify(path: PathArg, set_: SetOpt = None) -> None:
    """Decode every file; exit 1 with a table naming each bad or skipped file (and dataset problem), 0 when all are
    good."""
    try:
        inv = take_inventory(path, deep=True, options=source_options(set_))
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    if _show_formats(inv):
        console.print(_formats_table(inv))
    if inv.mask_conventions:
        console.print("masks stored as: " + ", ".join(f"{k}: {v}" for k, v in inv.mask_conventions.items()))
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
