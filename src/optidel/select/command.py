"""``optidel select``: build a compact pre-training set from a pool (registered in :mod:`optidel.cli`).

Heavy imports (torch, faiss, the pipeline) happen inside the command so that ``optidel --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_METHODS = (
    "optidel, hard-only, easy, mosaic-random, optidel-grid (patch level); "
    "random, full, meddel, semdedup, prototypes, moderate (image level)"
)


def _cli_values(**options: Any) -> dict[str, Any]:
    """The options the user actually gave (None = not given), as config keys."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        out[key] = list(value) if isinstance(value, list | tuple) else value
    return out


def select(
    pool: Annotated[
        list[str] | None,
        typer.Option(
            "--pool",
            help="A pool source (repeat for several): an image folder, a segmentation dataset as PATH[:SPLIT] "
            "(default split: train), or an earlier select output.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (created; reruns resume from its cache)."),
    ] = None,
    ratio: Annotated[
        float | None,
        typer.Option(help="Compact-set size as a fraction of the pool images \\[default: 0.05]."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help=f"Selection method: {_METHODS} \\[default: optidel].")
    ] = None,
    patches: Annotated[
        str | None,
        typer.Option(
            help="Patch proposer: sam (LiteMedSAM box grid), sam-checkpoint, or grid \\[default: sam]."
        ),
    ] = None,
    sam_checkpoint: Annotated[
        str | None, typer.Option(help="SAM weights file for --patches sam-checkpoint.")
    ] = None,
    sam_model_type: Annotated[
        str | None,
        typer.Option(
            help="Check that --sam-checkpoint is this SAM: vit_b, vit_l, vit_h \\[default: read from the file]."
        ),
    ] = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="Patch embedder: litemedsam, a path to an optidel encoder.safetensors (or its run folder), or timm:ARCH "
            "\\[default: the proposer's own features; for grid patches LiteMedSAM features pooled in each box]."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Torch device for proposer/embedder \\[default: cpu].")
    ] = None,
    score: Annotated[
        str | None,
        typer.Option(
            help="Hardness score that ranks patches: margin (d2 - d1, small = hard), prototype (d1, far = hard), "
            "reconstruction (MAE error, needs --mae-run) \\[default: margin]."
        ),
    ] = None,
    mae_run: Annotated[
        str | None, typer.Option(help="An optidel MAE run folder for the reconstruction score.")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", help="k-means clusters \\[default: clip(round(sqrt(patches / 2)), 2, 1000)]."),
    ] = None,
    distance: Annotated[
        str | None, typer.Option(help="cosine (spherical k-means on unit vectors) or l2 \\[default: cosine].")
    ] = None,
    dedup_threshold: Annotated[
        float | None,
        typer.Option(help="Drop a chosen patch whose cosine similarity to a harder chosen one exceeds this."),
    ] = None,
    max_per_image: Annotated[
        int | None, typer.Option(help="At most this many chosen patches per source image.")
    ] = None,
    mosaic: Annotated[
        bool | None,
        typer.Option(
            "--mosaic/--no-mosaic",
            help="Tile every 4 patches 2x2 (default), or keep single patches (the hard-only ablation).",
        ),
    ] = None,
    mosaic_size: Annotated[
        int | None, typer.Option(help="Output image side in pixels; tiles are half of it \\[default: 256].")
    ] = None,
    tile_fit: Annotated[
        str | None,
        typer.Option(
            help="How a crop fills its tile: pad (keep aspect, black border) or stretch \\[default: pad]."
        ),
    ] = None,
    grouping: Annotated[
        str | None,
        typer.Option(
            help="Which 4 patches share a mosaic: random, or diverse (different clusters) \\[default: random]."
        ),
    ] = None,
    image_copy: Annotated[
        str | None,
        typer.Option(
            help="Image-level methods: copy the files, or resize to --mosaic-size PNGs \\[default: copy]."
        ),
    ] = None,
    shard_size: Annotated[
        int | None, typer.Option(help="Images per checkpoint shard of the patch stage \\[default: 64].")
    ] = None,
    proposer_batch: Annotated[
        int | None,
        typer.Option(help="Images per proposer call when it can batch (one encoder batch) \\[default: 1]."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of k-means, groupings and random methods \\[default: 0].")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Image-decoding threads \\[default: 1].")] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads of proposer/embedder in each process (1 is faster on a busy shared machine) "
            "\\[default: the cores shared out among --procs]."
        ),
    ] = None,
    procs: Annotated[
        int | None,
        typer.Option(
            help="Patch-stage worker processes, each with its own models "
            "\\[default: one per core on a CPU, at most 4 and one per 64 images; 1 on a GPU or under torchrun]."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Fail on an unreadable pool image or too few patches, instead of warning."
        ),
    ] = False,
    report: Annotated[
        bool | None, typer.Option("--report/--no-report", help="Write report.html \\[default: on].")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A YAML file of select config keys (see config.yaml of a run)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set key=value (repeatable; applied last)."),
    ] = None,
) -> None:
    """Build a compact pre-training set: hard SAM patches -> 2x2 mosaics (OptiDEL), or a baseline.

    Writes OUT/images/ (usable as `optidel pretrain --data OUT`), OUT/manifest.parquet (one row per pool patch: source image, box, SAM scores, cluster, the margin/prototype/reconstruction scores, selected, output image, tile), OUT/report.html, OUT/config.yaml, OUT/metrics.json, OUT/log.txt and, last, OUT/DONE.

    Every stage is cached under OUT/cache: a rerun reads it, and a killed run resumes where it stopped. Under torchrun the patch stage is split over the ranks.

    Precedence of settings: defaults < --config FILE < options < --set key=value.

    Example: optidel select --pool data/kvasir-seg:train --ratio 0.05 --method optidel --out runs/kvasir-5pct
    """
    from rich.console import Console

    from optidel.config import ConfigError, _merge, load_yaml, resolve_config
    from optidel.data.image import ImageDecodeError
    from optidel.data.pool import PoolError
    from optidel.select.config import SelectConfig

    console = Console(stderr=True)
    given = _cli_values(
        pool=pool,
        out=str(out) if out is not None else None,
        ratio=ratio,
        method=method,
        patches=patches,
        sam_checkpoint=sam_checkpoint,
        sam_model_type=sam_model_type,
        embedder=embedder,
        device=device,
        score=score,
        mae_run=mae_run,
        k=k,
        distance=distance,
        dedup_threshold=dedup_threshold,
        max_per_image=max_per_image,
        mosaic=mosaic,
        mosaic_size=mosaic_size,
        tile_fit=tile_fit,
        grouping=grouping,
        image_copy=image_copy,
        shard_size=shard_size,
        proposer_batch=proposer_batch,
        seed=seed,
        workers=workers,
        threads=threads,
        procs=procs,
        strict=True if strict else None,
        report=report,
    )
    try:
        base = _merge(load_yaml(config), given) if config is not None else given
        cfg = resolve_config(SelectConfig, None, set_ or [], base=base)
        from optidel.select.pipeline import run_selection

        result = run_selection(cfg)
    except (ConfigError, PoolError, ImageDecodeError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    console.print(f"[green]compact set written:[/green] {result}/images (manifest.parquet, report.html)")
