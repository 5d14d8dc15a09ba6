"""``optidel finetune`` and ``optidel evaluate`` command functions (registered in :mod:`optidel.cli`).

A thin layer: options -> :class:`~optidel.downstream.config.FinetuneConfig` (defaults <- ``--config`` file <-
``--set key=value`` <- the named options) -> :func:`optidel.downstream.finetune.finetune` /
:func:`optidel.downstream.evaluate.evaluate`. Heavy imports (torch, timm) happen only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()

EncoderOpt = Annotated[
    str,
    typer.Option(
        "--encoder",
        help="Pre-trained encoder file (RUN/encoder.safetensors; arch and patch size come from it), or 'none' for "
        "a randomly initialised backbone of --arch/--patch-size: the floor every pre-training must beat.",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", help="Output directory (created).")]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="Backbone for --encoder none: vit_tiny (default), vit_small, resnet18, ..."),
]
PatchOpt = Annotated[
    int | None, typer.Option("--patch-size", help="ViT patch size for --encoder none (default 16).")
]
ImgSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--img-size", help="Working resolution: images and masks are resized to this square (default 128)."
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option("--epochs", help="Training epochs (default 20; raised to reach min_steps=300 steps)."),
]
LrOpt = Annotated[
    float | None,
    typer.Option(
        "--lr", help="Peak head learning rate (default 1e-3); the encoder gets lr * encoder_lr_mult (0.1)."
    ),
]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Training batch size (default 16).")]
SeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Seed of split, init, order, augmentation (default 0).")
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="'finetune' (encoder and head train; default) or 'probe' (frozen encoder, head trains).",
    ),
]
LabelOpt = Annotated[
    float | None,
    typer.Option(
        "--label-fraction", help="Train on this seeded fraction of the labelled train part (default 1.0)."
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file with FinetuneConfig fields.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override any config field: key=value (repeatable; e.g. --set augment.rotate_deg=0)."
    ),
]


def _build_config(config: Path | None, sets: list[str] | None, named: dict[str, Any]):
    """Defaults <- ``--config`` <- ``--set`` <- named options (those given), validated as a FinetuneConfig."""
    from optidel.config import from_dict, resolve_config, to_dict
    from optidel.downstream.config import FinetuneConfig

    cfg = resolve_config(FinetuneConfig, config, sets or [])
    given = {k: str(v) if isinstance(v, Path) else v for k, v in named.items() if v is not None}
    return from_dict(FinetuneConfig, {**to_dict(cfg), **given})


def _fail(e: Exception) -> None:
    console.print(f"[red]error:[/red] {e}")
    raise typer.Exit(2) from e


def _metrics_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("", "miou", "iou_fg", "dice_fg"):
        t.add_column(c, justify="right" if c else "left")
    for name, m in rows:
        t.add_row(name, *(f"{m[k]:.4f}" for k in ("miou", "iou_fg", "dice_fg")))
    return t


def finetune(
    encoder: EncoderOpt,
    dataset: Annotated[
        Path, typer.Option("--dataset", help="Segmentation dataset folder (images/, masks/, splits.csv).")
    ],
    out: OutOpt,
    arch: ArchOpt = None,
    patch_size: PatchOpt = None,
    img_size: ImgSizeOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = None,
    mode: ModeOpt = None,
    label_fraction: LabelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune (or probe) an encoder with a SegFormer-style head on one dataset; report test mIoU and floors.

    The train split trains (a seeded 10% is held out for validation and best-epoch choice); the test split is scored once, at the working resolution --img-size.

    Writes config.yaml, log.txt, metrics.json, per_image.csv, history.csv, overlays.png and DONE into --out. Protocol and metric definitions: docs/downstream.md.
    """
    from optidel.config import ConfigError

    named = {
        "encoder": encoder,
        "dataset": dataset,
        "out": out,
        "arch": arch,
        "patch_size": patch_size,
        "img_size": img_size,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "mode": mode,
        "label_fraction": label_fraction,
    }
    try:
        cfg = _build_config(config, set_, named)
        from optidel.downstream.finetune import finetune as run_finetune

        metrics = run_finetune(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(e)
        return
    rows = [("model", metrics["test"])] + [(f"floor: {k}", v) for k, v in metrics["floors"].items()]
    console.print(
        _metrics_table(f"{metrics['dataset']['name']} test ({metrics['dataset']['n_test']} images)", rows)
    )
    console.print(f"best epoch {metrics['best_epoch']}, train {metrics['train_time_s']:.0f} s -> {out}")


def evaluate(
    encoder: EncoderOpt,
    dataset: Annotated[
        list[Path], typer.Option("--dataset", help="A dataset folder; repeat for several (one run each).")
    ],
    out: OutOpt,
    arch: ArchOpt = None,
    patch_size: PatchOpt = None,
    img_size: ImgSizeOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = None,
    mode: ModeOpt = None,
    label_fraction: LabelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run one encoder over several datasets (same protocol) and write results.csv and results.md.

    Each dataset's full run goes to OUT/<dataset folder name>/. Resumable: a dataset whose run has DONE (with the same config) is not redone.
    """
    from optidel.config import ConfigError

    named = {
        "arch": arch,
        "patch_size": patch_size,
        "img_size": img_size,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "mode": mode,
        "label_fraction": label_fraction,
    }
    try:
        cfg = _build_config(config, set_, named)
        from optidel.downstream.evaluate import evaluate as run_evaluate

        rows = run_evaluate(encoder, dataset, out, base=cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(e)
        return
    t = Table(title=f"{encoder} ({cfg.mode})", title_justify="left")
    for c in ("dataset", "miou", "iou_fg", "dice_fg", "bg floor", "fg floor", "prior floor"):
        t.add_column(c, justify="left" if c == "dataset" else "right")
    for r in rows:
        t.add_row(
            r["dataset"],
            *(
                f"{r[k]:.4f}"
                for k in (
                    "miou",
                    "iou_fg",
                    "dice_fg",
                    "floor_all_background_miou",
                    "floor_all_foreground_miou",
                    "floor_mean_mask_prior_miou",
                )
            ),
        )
    console.print(t)
    console.print(f"-> {Path(out) / 'results.md'}")
