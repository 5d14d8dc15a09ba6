"""``optidel demo`` command function (registered in :mod:`optidel.cli`).

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.demo.pipeline.DemoConfig` (its defaults, or the
quick preset with ``--quick`` < ``--config`` < named options < ``--set``). A ``--set`` whose key is not a DemoConfig
key is a setting of the demo's benchmark grid (``--set seeds=[0,1] --set pretrain.steps=100``): it is added to
``DemoConfig.sets`` and checked against the grid's config before anything runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from optidel.demo.pipeline import DemoConfig
from optidel.options import ConfigOption, SetOption, given, option

console = Console()
D = DemoConfig


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (rerun to resume).")] = Path(
        "demo-out"
    ),
    data: Annotated[
        Path | None,
        option(
            D,
            "data",
            "A segmentation dataset (images/, masks/, splits.csv) to run on, e.g. ../shared/data/kvasir-seg.",
            "--data",
            none="a SYNTHETIC segmentation task and a pool of it and of scikit-image's bundled real images",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="The smallest setting (grid patches, a few steps): a smoke test.")
    ] = False,
    seed: Annotated[
        int | None, option(D, "seed", "The grid's first seed (its seeds are shifted by it).")
    ] = None,
    preset: Annotated[
        str | None, option(D, "preset", "The benchmark preset that holds the demo's grid.")
    ] = None,
    pool_images: Annotated[
        int | None,
        option(D, "pool_images", "Pool images: bundled-image crops, or train images drawn from --data."),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline end to end, offline: selection -> pre-training (equal steps) -> segmentation -> a summary that says what the rows mean.

    The demo is a preset of the benchmark runner (optidel/bench/presets/demo.yaml; demo-quick.yaml with --quick) run on the data it prepares. --config takes DemoConfig keys (optidel.demo.pipeline.DemoConfig); --set takes DemoConfig keys and, for any other key, a setting of the demo's benchmark grid (--set seeds=[0] --set pretrain.steps=100).

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.demo.pipeline import run_demo

    cfg = demo_config(
        quick, config, given(data=data, seed=seed, preset=preset, pool_images=pool_images), set_ or []
    )
    summary = run_demo(cfg, out)
    _print_summary(summary, out)


def demo_config(quick: bool, config: Path | None, options: dict[str, Any], sets: list[str]) -> DemoConfig:
    """Defaults (or the quick preset) < ``config`` < ``options`` < the DemoConfig keys of ``sets``; the other
    ``sets`` go to the grid (``DemoConfig.sets``), checked against the preset now."""
    from optidel.bench.config import BenchmarkConfig
    from optidel.bench.shipped import preset_path
    from optidel.config import layer_config
    from optidel.demo.pipeline import quick_config

    own = {f.name for f in dataclasses.fields(DemoConfig)}
    demo_sets = [s for s in sets if s.split("=", 1)[0].split(".", 1)[0].strip() in own]
    grid_sets = [s for s in sets if s not in demo_sets]
    base = quick_config() if quick else None
    cfg = layer_config(DemoConfig, base=base, config_file=config, options=options, sets=demo_sets)
    cfg = dataclasses.replace(cfg, sets=(*cfg.sets, *grid_sets))
    layer_config(
        BenchmarkConfig, config_file=preset_path(cfg.preset), sets=list(cfg.sets)
    )  # fails before any work
    return cfg


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    title = "optidel demo" + (" (SYNTHETIC segmentation task)" if summary["synthetic"] else "")
    t = Table(title=title, title_justify="left")
    for c in ("encoder", "seeds", "miou", "iou_fg", "dice_fg"):
        t.add_column(c, justify="left" if c == "encoder" else "right")
    for r in summary["rows"]:
        cells = [f"{r[k]:.3f} +- {r.get(k + '_sd', 0.0):.3f}" for k in ("miou", "iou_fg", "dice_fg")]
        t.add_row(r["encoder"], str(len(r.get("seeds", [])) or ""), *cells)
    for name, v in (summary["rows"][0]["floors"] if summary["rows"] else {}).items():
        t.add_row(f"[dim]floor: {name}[/dim]", "", f"[dim]{v:.3f}[/dim]", "", "")
    console.print(t)
    if summary.get("verdict"):
        console.print(summary["verdict"], soft_wrap=True)
    console.print(
        f"summary: {out / 'summary.md'}   selection report: {out / summary.get('report', '-')}",
        soft_wrap=True,
    )
