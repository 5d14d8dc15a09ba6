"""``optidel pretrain``: the command function (registered in :mod:`optidel.cli`); torch is imported only when it runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from optidel.ssl.config import PretrainConfig

console = Console(stderr=True)


def pretrain(
    out: Annotated[
        Path,
        typer.Option("--out", help="Run folder (created; holds the files listed above).", show_default=False),
    ],
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            help="Pool source, repeatable: an image folder, a segmentation dataset split (PATH:train), or an "
            "`optidel select` output folder.",
            show_default=False,
        ),
    ] = None,
    ssl: Annotated[
        str | None, typer.Option("--ssl", help="Method: mae or simclr. (default: mae)", show_default=False)
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Backbone: vit_tiny|vit_small|vit_base|resnet18|resnet50 or a timm name. "
            "(default: vit_tiny for mae, resnet18 for simclr)",
            show_default=False,
        ),
    ] = None,
    img_size: Annotated[
        int | None, typer.Option(help="Image side in pixels. (default: 64)", show_default=False)
    ] = None,
    patch_size: Annotated[
        int | None,
        typer.Option(help="ViT patch size (16 at 224 px as in the paper). (default: 8)", show_default=False),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Global batch size (split over processes). (default: 64)", show_default=False),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Optimisation steps: the compute budget, equal for every data set. (default: 1000)",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (AdamW). (default: 1e-3)", show_default=False)
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of init, data order, augmentations, masks. (default: 0)", show_default=False),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML file with config fields (as in a run's config.yaml).", show_default=False
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override any config field: key=value, dotted for nested (mae.mask_ratio=0.6).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Image decoding threads. (default: 2)", show_default=False)
    ] = None,
    strict: Annotated[
        bool | None,
        typer.Option(
            "--strict/--no-strict",
            help="Abort on a bad image (default: skip it and log it).",
            show_default=False,
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help="Write checkpoint.pt every K steps (and at the end). (default: 500)", show_default=False
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda. (default: auto)", show_default=False)
    ] = None,
) -> None:
    """Self-supervised pre-training (MAE or SimCLR) of a timm backbone on an image pool.

    The length is given in optimisation steps, so a 5% subset and the full pool get the same compute. Images are decoded once into a cache; augmentations run on whole batches. The run folder gets config.yaml, log.txt, metrics.csv (step,epoch,loss,lr,images_per_s,elapsed_s), checkpoint.pt, encoder.safetensors (timm keys: timm.create_model(arch, checkpoint_path=..., **kwargs) or optidel.models.encoder_io.load_encoder), mae.safetensors (MAE runs), loss.png and DONE. A finished folder with the same config is left as it is; --resume continues a killed run and ends with the same weights as an uninterrupted one. Runs under torchrun (DDP) unchanged.

    Defaults (CPU scale): MAE on vit_tiny, SimCLR on resnet18, 64 px, patch 8, batch 64, AdamW with peak lr 1e-3 (not scaled by batch: the MAE rule 1.5e-4 * batch / 256 stalls at this scale), 5% linear warmup, cosine decay. Every config field (optidel.ssl.config.PretrainConfig) can be set with --config FILE.yaml or --set key=value; precedence: defaults < --config < named options < --set.

    Examples:

    optidel pretrain --data ../shared/data/kvasir-seg:train --ssl mae --img-size 64 --steps 200 --out runs/mae

    optidel pretrain --data pool/ --data selected/ --ssl simclr --steps 2000 --out runs/simclr --set simclr.temperature=0.2

    torchrun --standalone --nproc_per_node=2 -m optidel.cli pretrain --data imgs/ --ssl mae --out runs/ddp
    """

    from optidel.config import ConfigError

    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # one voice: other ranks only report problems
        from optidel.log import logger
        from optidel.runtime import progress

        logger.setLevel(logging.WARNING)
        for h in logger.handlers:
            h.setLevel(logging.WARNING)
        progress.set_enabled(False)

    flags = {
        "data": list(data) if data else None,
        "ssl": ssl,
        "arch": arch,
        "img_size": img_size,
        "patch_size": patch_size,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "workers": workers,
        "strict": strict,
        "checkpoint_every": checkpoint_every,
        "device": device,
    }
    try:
        cfg = build_config(config, flags, set_ or [])
    except ConfigError as e:
        _fail(str(e))
    if not cfg.data:
        _fail("give at least one --data source (or `data:` in --config)")

    from optidel.data.image import ImageDecodeError
    from optidel.data.pool import PoolError
    from optidel.ssl.train import PretrainError
    from optidel.ssl.train import pretrain as run_pretrain

    try:
        result = run_pretrain(cfg, out, resume=resume)
    except (PretrainError, PoolError, ImageDecodeError) as e:
        _fail(str(e))
    if rank != 0:
        return
    if result.already_done:
        console.print(
            f"[green]{escape(str(out))} is already done[/green] (same config; DONE exists): nothing to do"
        )
        return
    loss = "" if result.final_loss is None else f", loss {result.first_loss:.4f} -> {result.final_loss:.4f}"
    console.print(
        f"[green]done:[/green] {escape(str(out))} ({result.steps} steps on {result.n_images} images{loss}, "
        f"{result.elapsed_s:.0f} s of training); encoder: {out / 'encoder.safetensors'}"
    )


def build_config(config: Path | None, flags: dict[str, Any], overrides: list[str]) -> PretrainConfig:
    """The run's config: defaults < ``config`` (YAML) < ``flags`` (named options; None = not given) < ``overrides``."""
    from optidel.config import resolve_config, to_dict
    from optidel.ssl.config import PretrainConfig

    base = to_dict(resolve_config(PretrainConfig, config))
    base.update({k: v for k, v in flags.items() if v is not None})
    return resolve_config(PretrainConfig, overrides=overrides, base=base)


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)
