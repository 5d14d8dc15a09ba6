"""``optidel finetune`` and ``optidel evaluate`` command functions (registered in :mod:`optidel.cli`).

A thin layer: options -> :class:`~optidel.downstream.config.FinetuneConfig` through :func:`optidel.config.layer_config`
(defaults < ``--config`` < named options < ``--set``) -> :func:`optidel.downstream.finetune.finetune` /
:func:`optidel.downstream.evaluate.evaluate`. Heavy imports (torch, timm) happen only when a command runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from optidel.downstream.config import FinetuneConfig
from optidel.options import ConfigOption, InputError, SetOption, given, input_errors, option

console = Console()
F = FinetuneConfig

EncoderOpt = Annotated[
    str,
    typer.Option(
        "--encoder",
        help="Pre-trained encoder file (RUN/encoder.safetensors; arch and patch size come from it), or 'none' for "
        "a randomly initialised backbone of --arch/--patch-size: the floor every pre-training must beat.",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", help="Output directory (created).")]
# finetune's: given here or by --config (a run's config.yaml reruns it as it was)
FinetuneEncoderOpt = Annotated[
    str | None,
    typer.Option(
        "--encoder",
        help="Pre-trained encoder file (RUN/encoder.safetensors; arch and patch size come from it), or 'none' for "
        "a randomly initialised backbone of --arch/--patch-size: the floor every pre-training must beat. "
        "Required unless --config sets encoder.",
    ),
]
FinetuneOutOpt = Annotated[
    Path | None, typer.Option("--out", help="Output directory (created). Required unless --config sets out.")
]
ArchOpt = Annotated[
    str | None, option(F, "arch", "Backbone for --encoder none (vit_tiny, vit_small, resnet18, ...).")
]
PatchOpt = Annotated[int | None, option(F, "patch_size", "ViT patch size for --encoder none.")]
ImgSizeOpt = Annotated[
    int | None, option(F, "img_size", "Working resolution: images and masks are resized to this square.")
]
EpochsOpt = Annotated[
    int | None, option(F, "epochs", "Training epochs (raised to reach min_steps optimiser steps).")
]
LrOpt = Annotated[
    float | None, option(F, "lr", "Peak head learning rate; the encoder gets lr * encoder_lr_mult.")
]
BatchOpt = Annotated[int | None, option(F, "batch_size", "Training batch size.")]
SeedOpt = Annotated[int | None, option(F, "seed", "Seed of split, init, order, augmentation.")]
ModeOpt = Annotated[
    str | None,
    option(F, "mode", "'finetune' (encoder and head train) or 'probe' (frozen encoder, head trains)."),
]
LabelOpt = Annotated[
    float | None, option(F, "label_fraction", "Train on this seeded fraction of the labelled train part.")
]


def build_config(config: Path | None, sets: list[str] | None, named: dict[str, Any]) -> FinetuneConfig:
    """Defaults < ``--config`` < named options (those given) < ``--set``, validated as a FinetuneConfig."""
    from optidel.config import layer_config

    return layer_config(FinetuneConfig, config_file=config, options=given(**named), sets=sets or [])


def _require_given(config: Path | None, sets: list[str] | None, **named: Any) -> None:
    """Each of ``named`` (an option left out) must be set by ``--config`` or ``--set``; else a one-line error.

    ``encoder`` has a default (``none``, random init) that must never be taken silently for a forgotten option.
    """
    from optidel.config import load_yaml, parse_overrides

    given_keys = set(load_yaml(config)) if config is not None else set()
    given_keys |= set(parse_overrides(sets or []))
    for key, value in named.items():
        if value is None and key not in given_keys:
            raise InputError(f"--{key} is missing (give it, or a --config that sets {key})")


def _metrics_table(title: str, rows: list[tuple[str, Mapping[str, Any]]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in ("", "miou", "iou_fg", "dice_fg"):
        t.add_column(c, justify="right" if c else "left")
    for name, m in rows:
        t.add_row(name, *(f"{m[k]:.4f}" for k in ("miou", "iou_fg", "dice_fg")))
    return t


def _field(result: Any, key: str) -> Any:
    """``result[key]`` of a metrics dict, or the attribute of a typed result."""
    return result[key] if isinstance(result, Mapping) else getattr(result, key)


def finetune(
    encoder: FinetuneEncoderOpt = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Segmentation dataset folder (images/, masks/, splits.csv). Required unless --config sets dataset.",
        ),
    ] = None,
    out: FinetuneOutOpt = None,
    arch: ArchOpt = None,
    patch_size: PatchOpt = None,
    img_size: ImgSizeOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    seed: SeedOpt = None,
    mode: ModeOpt = None,
    label_fraction: LabelOpt = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Fine-tune (or probe) an encoder with a SegFormer-style head on one dataset; report test mIoU and floors.

    The train split trains (a seeded 10% is held out for validation and best-epoch choice); the test split is scored once, at the working resolution --img-size.

    Writes config.yaml, log.txt, metrics.json, per_image.csv, history.csv, overlays.png and DONE into --out. Protocol and metric definitions: docs/downstream.md. Every field of optidel.downstream.config.FinetuneConfig can be set with --config or --set.

    Precedence: defaults < --config FILE < named options < --set key=value. --encoder, --dataset and --out may
    come from --config instead: `optidel finetune --config RUN/config.yaml --encoder OTHER.safetensors --out NEW`
    probes another encoder exactly as RUN was probed.
    """
    named = dict(
        encoder=encoder, dataset=dataset, out=out, arch=arch, patch_size=patch_size, img_size=img_size
    )
    named.update(
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, mode=mode, label_fraction=label_fraction
    )
    cfg = build_config(config, set_, named)
    _require_given(config, set_, encoder=encoder, dataset=dataset, out=out)
    from optidel.downstream.finetune import finetune as run_finetune

    with input_errors(ValueError, FileNotFoundError):
        metrics = run_finetune(cfg)
    test, floors, ds = _field(metrics, "test"), _field(metrics, "floors"), _field(metrics, "dataset")
    rows = [("model", test)] + [(f"floor: {k}", v) for k, v in floors.items()]
    console.print(_metrics_table(f"{ds['name']} test ({ds['n_test']} images)", rows))
    console.print(
        f"best epoch {_field(metrics, 'best_epoch')}, train {_field(metrics, 'train_time_s'):.0f} s -> {cfg.out}"
    )


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
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Run one encoder over several datasets (same protocol) and write results.csv and results.md.

    Each dataset's full run goes to OUT/<dataset folder name>/. Resumable: a dataset whose run has DONE (with the same config) is not redone. The protocol is a FinetuneConfig (its encoder, dataset and out are set per dataset).

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    named = dict(
        arch=arch, patch_size=patch_size, img_size=img_size, epochs=epochs, lr=lr, batch_size=batch_size
    )
    named.update(seed=seed, mode=mode, label_fraction=label_fraction)
    cfg = build_config(config, set_, named)
    from optidel.downstream.evaluate import evaluate as run_evaluate

    with input_errors(ValueError, FileNotFoundError):
        rows = run_evaluate(encoder, dataset, out, base=cfg)
    console.print(_results_table(f"{encoder} ({cfg.mode})", rows))
    console.print(f"-> {Path(out) / 'results.md'}")


def _results_table(title: str, rows: list[dict[str, Any]]) -> Table:
    keys = ("miou", "iou_fg", "dice_fg")
    keys += ("floor_all_background_miou", "floor_all_foreground_miou", "floor_mean_mask_prior_miou")
    t = Table(title=title, title_justify="left")
    for c in ("dataset", "miou", "iou_fg", "dice_fg", "bg floor", "fg floor", "prior floor"):
        t.add_column(c, justify="left" if c == "dataset" else "right")
    for r in rows:
        t.add_row(r["dataset"], *(f"{r[k]:.4f}" for k in keys))
    return t
