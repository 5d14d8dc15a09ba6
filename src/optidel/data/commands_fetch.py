"""``optidel data fetch`` and ``optidel data list`` command functions (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optidel.data.convert import ConversionError
from optidel.data.fetch import FetchError, ManualDownloadRequired, fetch_dataset
from optidel.data.registry import REGISTRY, UnknownDatasetError

console = Console()
err_console = Console(stderr=True)


def fetch(
    name: Annotated[str, typer.Argument(help="Dataset name (see `optidel data list`).")],
    root: Annotated[Path, typer.Option("--root", help="Parent folder; the dataset lands in ROOT/NAME.")],
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive", help="Local archive (zip/tar) or extracted folder to use instead of downloading."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild ROOT/NAME even if it is complete.")] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Download from this URL (a mirror) instead.")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected sha256 of the archive (overrides the registry).")
    ] = None,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the downloaded archive in ROOT/.downloads/.")
    ] = False,
) -> None:
    """Download, verify (sha256), extract safely and convert a dataset to the standard layout."""
    try:
        result = fetch_dataset(
            name, root, archive=archive, force=force, url=url, sha256=sha256, keep_archive=keep_archive
        )
    except ManualDownloadRequired as exc:
        err_console.print(f"[yellow]manual download needed[/yellow]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    except (FetchError, ConversionError, UnknownDatasetError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    if result.already_present:
        console.print(f"{result.path} is already complete; left alone (use --force to rebuild it).")
        return
    split = (
        f", {result.n_train} train / {result.n_test} test"
        if result.n_train + result.n_test
        else ", no splits.csv"
    )
    console.print(
        f"[green]{result.name}[/green]: {result.n_pairs} pairs in {result.path}{split}",
        highlight=False,
        soft_wrap=True,
    )
    if result.sha256 is not None:
        state = "verified" if result.sha256_verified else "not verified (no known checksum)"
        console.print(f"sha256 {result.sha256} ({state})", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"  - {note}", highlight=False, soft_wrap=True)


def list_datasets() -> None:
    """Show the dataset registry: name, modality, download, checksum, licence."""
    table = Table(title="optidel dataset registry", title_justify="left", expand=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("dataset / modality", ratio=2)
    table.add_column("download", ratio=3, overflow="fold")
    table.add_column("sha256", no_wrap=True)
    table.add_column("licence / terms", ratio=3)
    for spec in REGISTRY.values():
        where = spec.urls[0] if spec.download == "direct" and spec.urls else f"manual: {spec.homepage}"
        table.add_row(
            spec.name,
            f"{spec.title}\n[dim]{spec.modality}[/dim]",
            where,
            "known" if spec.sha256 else "unknown",
            spec.licence,
        )
    console.print(table)
    console.print(
        "Fetch with: optidel data fetch NAME --root DIR  (manual ones: add --archive LOCAL_FILE_OR_FOLDER)"
    )
