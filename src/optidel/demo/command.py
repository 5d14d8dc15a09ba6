"""``optidel demo`` command function (registered in :mod:`optidel.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (rerun to resume).")] = Path(
        "demo-out"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A segmentation dataset (images/, masks/, splits.csv) to run on, e.g. ../shared/data/kvasir-seg. "
            "Default: crops of scikit-image's bundled real images as the pool and a SYNTHETIC segmentation task.",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="The smallest setting (grid patches, a few steps): a smoke test.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
) -> None:
    """Run the whole pipeline end to end: select (optidel 5% and random 5%) -> MAE pre-training (equal steps)
    -> segmentation fine-tuning -> summary table. About 10 minutes on 2 CPU cores; offline."""
    from optidel.demo.pipeline import DemoConfig, quick_config, run_demo

    cfg = quick_config(seed=seed) if quick else DemoConfig(seed=seed)
    if data is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, data=str(data))
    try:
        summary = run_demo(cfg, out)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        raise typer.Exit(2) from e
    title = "optidel demo" + (" (SYNTHETIC segmentation task)" if summary["synthetic"] else "")
    t = Table(title=title, title_justify="left")
    for c in ("encoder", "miou", "iou_fg", "dice_fg"):
        t.add_column(c, justify="left" if c == "encoder" else "right")
    for r in summary["rows"]:
        t.add_row(r["encoder"], f"{r['miou']:.3f}", f"{r['iou_fg']:.3f}", f"{r['dice_fg']:.3f}")
    for name, v in summary["rows"][0]["floors"].items():
        t.add_row(f"[dim]floor: {name}[/dim]", f"[dim]{v:.3f}[/dim]", "", "")
    console.print(t)
    console.print(
        f"A {summary['total_s']:.0f} s run demonstrates the pipeline, not the paper's claim (see BENCHMARKS.md).\n"
        f"summary: {out / 'summary.md'}   selection report: {out / 'select-optidel' / 'report.html'}",
        soft_wrap=True,
    )
