"""``optidel data leakage``: pool images that duplicate a downstream test image (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optidel.data.leakage import (
    LeakageError,
    LeakageThresholds,
    check_pool,
    downstream_test_splits,
    write_check,
)
from optidel.data.pool import PoolError, list_pool

console = Console()
DEFAULTS = LeakageThresholds()


def leakage(
    pool: Annotated[
        list[str], typer.Option("--pool", help="Pool source (folder, DATASET:train ...); repeat for several.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for leaks.csv, gallery.html/png and summary.json.")
    ],
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="Test split to check against (DATASET:test or a folder); repeat for several. Default: the test "
            "split of every segmentation dataset in --pool.",
        ),
    ] = None,
    cosine: Annotated[
        float, typer.Option(help="Near duplicate: thumbnail cosine at least this ...")
    ] = DEFAULTS.cosine_min,
    hamming: Annotated[
        int, typer.Option(help="... and perceptual-hash distance at most this (bits of 64) ...")
    ] = DEFAULTS.hamming_max,
    fine_hamming: Annotated[
        int, typer.Option(help="... and 256-bit perceptual-hash distance at most this ...")
    ] = DEFAULTS.fine_hamming_max,
    cosine_sure: Annotated[
        float, typer.Option(help="... unless the thumbnail cosine is at least this.")
    ] = DEFAULTS.cosine_sure,
    workers: Annotated[int | None, typer.Option(help="Decoding threads (default: min(4, cores)).")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Keep fingerprints here to reuse them (default: OUT/cache).")
    ] = None,
) -> None:
    """Find pool images that are exact (same bytes) or near duplicates (re-encoded, resized) of a test image.

    Writes OUT/leaks.csv (one row per pair), OUT/gallery.html and OUT/gallery.png (the pairs side by side) and
    OUT/summary.json. Exits 1 when any pool image duplicates a test image, 0 when none does, 2 on bad input.
    """
    try:
        targets = list(against) if against else downstream_test_splits(pool)
        if not targets:
            raise LeakageError(
                "leakage: no --against given and no pool source is a segmentation dataset with a test split"
            )
        images = list_pool(pool)
        check = check_pool(
            [im.uid for im in images],
            [im.path for im in images],
            targets,
            LeakageThresholds(cosine, hamming, fine_hamming, cosine_sure),
            cache_dir=cache_dir or out / "cache",
            workers=workers,
        )
        summary = write_check(out, check)
    except (LeakageError, PoolError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    t = Table(title="leakage check", show_header=False, title_justify="left")
    for k in ("n_pool_images", "n_test_images", "n_pairs", "n_exact_pairs", "n_leaking_pool_images"):
        t.add_row(k.replace("_", " "), str(summary[k]))
    t.add_row("checked against", ", ".join(summary["against"]))
    t.add_row("outputs", str(out))
    console.print(t)
    if summary["n_leaking_pool_images"]:
        console.print(
            f"[red]{summary['n_leaking_pool_images']} pool image(s) duplicate a test image[/red]: see {out / 'leaks.csv'}"
            f" and {out / 'gallery.html'}"
        )
        raise typer.Exit(1)
    console.print("[green]no pool image duplicates a test image[/green]")
