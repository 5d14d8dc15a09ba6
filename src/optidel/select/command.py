"""``optidel select``: build a compact pre-training set from a pool (registered in :mod:`optidel.cli`).

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.select.config.SelectConfig` (defaults <
``--config`` < named options < ``--set``). Each named option is one config key (its flat name is followed to the
nested key by ``SelectConfig.RENAMED``, silently); its help text reads the default from the dataclass. Heavy imports
(torch, faiss, the pipeline) happen inside the command so that ``optidel --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from optidel.config import canonical_key
from optidel.options import ConfigOption, SetOption, given, input_errors, option
from optidel.select.config import SelectConfig

S = SelectConfig
_METHODS = (
    "optidel, optidel-cover, hard-only, easy, mosaic-random, optidel-grid (patch level); "
    "random, full, meddel, semdedup, prototypes, moderate (image level); noise (a control: no image content)"
)

Pool = Annotated[
    list[str] | None,
    option(
        S,
        "pool",
        "A pool source (repeat for several): an image folder, a segmentation dataset as PATH[:SPLIT] (default "
        "split: train), or an earlier select output.",
        "--pool",
    ),
]
Out = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (created; reruns resume from its cache).")
]
Ratio = Annotated[float | None, option(S, "ratio", "Compact-set size as a fraction of the pool images.")]
Method = Annotated[str | None, option(S, "method", f"Selection method: {_METHODS}.")]
Patches = Annotated[
    str | None, option(S, "patches", "Patch proposer: sam (LiteMedSAM box grid), sam-checkpoint, or grid.")
]
SamCheckpoint = Annotated[
    str | None, option(S, "sam_checkpoint", "SAM weights file for --patches sam-checkpoint.")
]
SamModelType = Annotated[
    str | None,
    option(
        S,
        "sam_model_type",
        "Check that --sam-checkpoint is this SAM: vit_b, vit_l, vit_h.",
        none="read from the file",
    ),
]
Embedder = Annotated[
    str | None,
    option(
        S,
        "embedder",
        "Patch embedder: litemedsam, a path to an optidel encoder.safetensors (or its run folder), or timm:ARCH.",
        none="the proposer's own features; for grid patches LiteMedSAM features pooled in each box",
    ),
]
Device = Annotated[str | None, option(S, "device", "Torch device for proposer/embedder.")]
Score = Annotated[
    str | None,
    option(
        S,
        "score",
        "Hardness score that ranks patches: margin (d2 - d1, small = hard), prototype (d1, far = hard), "
        "reconstruction (MAE error, needs --mae-run).",
    ),
]
MaeRun = Annotated[
    str | None, option(S, "mae_run", "An optidel MAE run folder for the reconstruction score.")
]
K = Annotated[
    int | None, option(S, "k", "k-means clusters.", "--k", none="clip(round(sqrt(patches / 2)), 2, 1000)")
]
Distance = Annotated[str | None, option(S, "distance", "cosine (spherical k-means on unit vectors) or l2.")]
Dedup = Annotated[
    float | None,
    option(
        S,
        "dedup_threshold",
        "Drop a chosen patch whose cosine similarity to a harder chosen one exceeds this.",
    ),
]
MaxPerImage = Annotated[
    int | None, option(S, "max_per_image", "At most this many chosen patches per source image.")
]
Mosaic = Annotated[
    bool | None,
    option(
        S,
        "mosaic",
        "Tile every 4 patches 2x2, or keep single patches (the hard-only ablation).",
        "--mosaic/--no-mosaic",
    ),
]
MosaicSize = Annotated[
    int | None, option(S, "mosaic_size", "Output image side in pixels; tiles are half of it.")
]
TileFit = Annotated[
    str | None,
    option(
        S,
        "tile_fit",
        "How a patch fills its tile: pad (keep aspect, black border), stretch, or context (the square of source "
        "image around the patch, no border).",
    ),
]
Grouping = Annotated[
    str | None,
    option(S, "grouping", "Which 4 patches share a mosaic: random, or diverse (different clusters)."),
]
ImageCopy = Annotated[
    str | None,
    option(S, "image_copy", "Image-level methods: copy the files, or resize to --mosaic-size PNGs."),
]
ShardSize = Annotated[int | None, option(S, "shard_size", "Images per checkpoint shard of the patch stage.")]
ProposerBatch = Annotated[
    int | None, option(S, "proposer_batch", "Images per proposer call when it can batch (one encoder batch).")
]
Seed = Annotated[int | None, option(S, "seed", "Seed of k-means, groupings and random methods.")]
Workers = Annotated[int | None, option(S, "workers", "Image-decoding threads.")]
Threads = Annotated[
    int | None,
    option(
        S,
        "threads",
        "Torch threads of proposer/embedder in each process (1 is faster on a busy shared machine).",
        none="the cores shared out among --procs",
    ),
]
Procs = Annotated[
    int | None,
    option(
        S,
        "procs",
        "Patch-stage worker processes, each with its own models.",
        none="one per core on a CPU, at most 4 and one per 64 images; 1 on a GPU or under torchrun",
    ),
]
Strict = Annotated[
    bool | None,
    option(
        S,
        "strict",
        "Fail on an unreadable pool image or too few patches, instead of warning.",
        "--strict/--no-strict",
    ),
]
Report = Annotated[bool | None, option(S, "report", "Write report.html.", "--report/--no-report")]


def select(
    pool: Pool = None,
    out: Out = None,
    ratio: Ratio = None,
    method: Method = None,
    patches: Patches = None,
    sam_checkpoint: SamCheckpoint = None,
    sam_model_type: SamModelType = None,
    embedder: Embedder = None,
    device: Device = None,
    score: Score = None,
    mae_run: MaeRun = None,
    k: K = None,
    distance: Distance = None,
    dedup_threshold: Dedup = None,
    max_per_image: MaxPerImage = None,
    mosaic: Mosaic = None,
    mosaic_size: MosaicSize = None,
    tile_fit: TileFit = None,
    grouping: Grouping = None,
    image_copy: ImageCopy = None,
    shard_size: ShardSize = None,
    proposer_batch: ProposerBatch = None,
    seed: Seed = None,
    workers: Workers = None,
    threads: Threads = None,
    procs: Procs = None,
    strict: Strict = None,
    report: Report = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Build a compact pre-training set: hard SAM patches -> 2x2 mosaics (OptiDEL), or a baseline.

    Writes OUT/images/ (usable as `optidel pretrain --data OUT`), OUT/manifest.parquet (one row per pool patch: source image, box, SAM scores, cluster, the margin/prototype/reconstruction scores, selected, output image, tile), OUT/report.html, OUT/config.yaml, OUT/metrics.json, OUT/log.txt and, last, OUT/DONE.

    Every stage is cached under OUT/cache: a rerun reads it, and a killed run resumes where it stopped. Under torchrun the patch stage is split over the ranks. Every key of optidel.select.config.SelectConfig (nested: proposal, cluster, scoring, synthesis, runtime, report) can be set with --config or --set, e.g. --set cluster.k=64.

    Precedence: defaults < --config FILE < named options < --set key=value.

    Example: optidel select --pool data/kvasir-seg:train --ratio 0.05 --method optidel --out runs/kvasir-5pct
    """
    named = dict(locals())
    config, sets = named.pop("config"), named.pop("set_") or []
    cfg = select_config(config, named, sets)
    from optidel.select.pipeline import run_selection

    with input_errors(ValueError, FileNotFoundError):
        result = run_selection(cfg)
    Console(stderr=True).print(
        f"[green]compact set written:[/green] {result}/images (manifest.parquet, report.html)"
    )


def select_config(config: Path | None, named: dict[str, Any], sets: list[str]) -> SelectConfig:
    """Defaults < ``config`` < the named options given (flat option names -> nested keys) < ``sets``."""
    from optidel.config import layer_config

    options = {canonical_key(S, key): value for key, value in given(**named).items()}
    return layer_config(SelectConfig, config_file=config, options=options, sets=sets)
