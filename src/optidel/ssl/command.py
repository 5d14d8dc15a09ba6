"""``optidel pretrain``: the command function (registered in :mod:`optidel.cli`); torch is imported only when it runs.

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.ssl.config.PretrainConfig` (defaults <
``--config`` < named options < ``--set``); help texts read the defaults from the dataclass.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from optidel.options import ConfigOption, SetOption, given, input_errors, option
from optidel.ssl.config import PretrainConfig

if TYPE_CHECKING:
    from optidel.ssl.result import PretrainResult

console = Console(stderr=True)
P = PretrainConfig


Data = Annotated[
    list[str] | None,
    option(
        P,
        "data",
        "Pool source, repeatable: an image folder, a segmentation dataset split (PATH:train), or an "
        "`optidel select` output folder.",
        "--data",
    ),
]

Arch = Annotated[
    str | None,
    option(
        P,
        "arch",
        "Backbone: vit_tiny|vit_small|vit_base|resnet18|resnet50 or a timm name.",
        none="vit_tiny for mae, resnet18 for simclr",
    ),
]

PatchSize = Annotated[int | None, option(P, "patch_size", "ViT patch size (16 at 224 px as in the paper).")]

BatchSize = Annotated[int | None, option(P, "batch_size", "Global batch size (split over processes).")]

Steps = Annotated[
    int | None, option(P, "steps", "Optimisation steps: the compute budget, equal for every data set.")
]

Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]

Strict = Annotated[
    bool | None,
    option(P, "strict", "Abort on a bad image instead of skipping and logging it.", "--strict/--no-strict"),
]

CheckpointEvery = Annotated[
    int | None, option(P, "checkpoint_every", "Write checkpoint.pt every K steps (and at the end).")
]


def pretrain(
    out: Annotated[Path, typer.Option("--out", help="Run folder (created; holds the files listed above).")],
    data: Data = None,
    ssl: Annotated[str | None, option(P, "ssl", "Method: mae or simclr.", "--ssl")] = None,
    arch: Arch = None,
    img_size: Annotated[int | None, option(P, "img_size", "Image side in pixels.")] = None,
    patch_size: PatchSize = None,
    batch_size: BatchSize = None,
    steps: Steps = None,
    lr: Annotated[float | None, option(P, "lr", "Peak learning rate (AdamW).")] = None,
    seed: Annotated[int | None, option(P, "seed", "Seed of init, data order, augmentations, masks.")] = None,
    resume: Resume = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    workers: Annotated[int | None, option(P, "workers", "Image decoding threads.")] = None,
    strict: Strict = None,
    checkpoint_every: CheckpointEvery = None,
    device: Annotated[str | None, option(P, "device", "auto, cpu or cuda.")] = None,
) -> None:
    """Self-supervised pre-training (MAE or SimCLR) of a timm backbone on an image pool.

    The length is given in optimisation steps, so a 5% subset and the full pool get the same compute. Images are decoded once into a cache; augmentations run on whole batches. The run folder gets config.yaml, log.txt, metrics.csv (step,epoch,loss,lr,images_per_s,elapsed_s), checkpoint.pt, encoder.safetensors (timm keys: timm.create_model(arch, checkpoint_path=..., **kwargs) or optidel.models.encoder_io.load_encoder), mae.safetensors (MAE runs), loss.png and DONE. A finished folder with the same config is left as it is; --resume continues a killed run and ends with the same weights as an uninterrupted one. Runs under torchrun (DDP) unchanged.

    The peak lr is not scaled by batch (the MAE rule 1.5e-4 * batch / 256 stalls at CPU scale); a linear warmup over warmup_fraction of the steps, then a cosine decay. Every config field (optidel.ssl.config.PretrainConfig) can be set with --config FILE.yaml or --set key=value.

    Precedence: defaults < --config FILE < named options < --set key=value.

    Examples:

    optidel pretrain --data ../shared/data/kvasir-seg:train --ssl mae --img-size 64 --steps 200 --out runs/mae

    optidel pretrain --data pool/ --data selected/ --ssl simclr --steps 2000 --out runs/simclr --set simclr.temperature=0.2

    torchrun --standalone --nproc_per_node=2 -m optidel.cli pretrain --data imgs/ --ssl mae --out runs/ddp
    """
    from optidel.config import ConfigError

    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        _quiet_this_rank()
    flags = dict(
        data=data, ssl=ssl, arch=arch, img_size=img_size, patch_size=patch_size, batch_size=batch_size
    )
    flags.update(
        steps=steps, lr=lr, seed=seed, workers=workers, strict=strict, checkpoint_every=checkpoint_every
    )
    cfg = build_config(config, {**flags, "device": device}, set_ or [])
    if not cfg.data:
        raise ConfigError("data: give at least one --data source (or `data:` in --config)")
    from optidel.ssl.train import pretrain as run_pretrain

    with input_errors(ValueError, FileNotFoundError):
        result = run_pretrain(cfg, out, resume=resume)
    if rank == 0:
        _report(result, out)


def build_config(config: Path | None, flags: dict[str, Any], overrides: list[str]) -> PretrainConfig:
    """The run's config: defaults < ``config`` (YAML) < ``flags`` (named options; None = not given) < ``overrides``."""
    from optidel.config import layer_config

    return layer_config(PretrainConfig, config_file=config, options=given(**flags), sets=overrides)


def _quiet_this_rank() -> None:
    """One voice under torchrun: ranks other than 0 only report problems."""
    from optidel.log import logger
    from optidel.runtime import progress

    logger.setLevel(logging.WARNING)
    for h in logger.handlers:
        h.setLevel(logging.WARNING)
    progress.set_enabled(False)


def _report(result: PretrainResult, out: Path) -> None:
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
