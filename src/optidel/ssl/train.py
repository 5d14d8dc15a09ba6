"""Pre-training: MAE or SimCLR, compute-matched, checkpointed, exactly resumable, DDP-ready.

:func:`pretrain` runs one :class:`~optidel.ssl.config.PretrainConfig` into a run folder::

    RUN/config.yaml          resolved config (written first)
    RUN/log.txt              the run's log
    RUN/metrics.csv          step,epoch,loss,lr,images_per_s,elapsed_s (one row every log_every steps)
    RUN/checkpoint.pt        model, optimiser, scheduler, step, RNG states, sampler state (every checkpoint_every
                             steps and at the end; atomic); RUN/checkpoint.json says its step
    RUN/encoder.safetensors  the backbone alone, timm key names (optidel.models.encoder_io.load_encoder restores it)
    RUN/mae.safetensors      MAE runs: the full model, for optidel.models.mae.load_mae / reconstruction_error
    RUN/loss.png             the loss curve
    RUN/DONE                 written last

**Exact resume.** Data order, augmentations and masks are pure functions of (seed, step) (see
:mod:`optidel.runtime.schedule`), and the checkpoint holds everything else (weights, AdamW moments, scheduler, RNG
states), so a run killed and resumed with ``resume=True`` ends with the same weights, bit for bit, as an uninterrupted
run on the same machine (on CPU; CUDA kernels may be non-deterministic). ``metrics.csv`` is cut back to the
checkpoint's step on resume, so no step appears twice.

**Distributed.** Under ``torchrun --nproc_per_node=K`` the global batch stays ``batch_size``: rank ``r`` takes
items ``[r * B/K, (r + 1) * B/K)`` of each step's global batch, and the random parameters (crops, masks) are drawn for
the global batch and sliced, so each image gets the same augmentation whatever K is. Gradients are averaged by DDP
(gloo on CPU, nccl on GPU); SimCLR gathers negatives from all ranks. Only rank 0 writes files.

**Re-running.** A finished run folder (``DONE``) with the same config is left alone; a folder holding a different
config, or an unfinished run without ``resume``, is an error (:class:`~optidel.ssl.result.PretrainError`) that says
what to do.
Fields that do not change results (``workers``, ``strict``, ``checkpoint_every``, ``log_every``, ``device``) may
differ.

This module is the setup (folder, data, model, optimiser, resume) and the outputs; the step loop is
:mod:`optidel.ssl.loop`, the checkpoint :mod:`optidel.ssl.checkpoint`, the run-folder decision
:mod:`optidel.ssl.run_folder`. Callers can watch every step through ``pretrain(..., on_step=...)`` (tests use it to
slow a run down before killing it, or to record every rank's final parameters).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from optidel.config import save_config
from optidel.data.array_cache import ArrayStack, load_stack
from optidel.data.pool import list_pool
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.models.backbone import backbone_kwargs, create_backbone, is_vit, timm_name
from optidel.runtime.distributed import DistContext, DistributedError, init_distributed
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import mark_done
from optidel.runtime.schedule import StepSampler, param_groups, warmup_cosine
from optidel.runtime.seed import seed_everything
from optidel.ssl.augment import MEAN, STD
from optidel.ssl.checkpoint import CHECKPOINT, load_checkpoint
from optidel.ssl.config import PretrainConfig
from optidel.ssl.loop import OnStep, TrainState, train_steps
from optidel.ssl.metrics_log import METRIC_COLUMNS, METRICS, MetricsLog
from optidel.ssl.plots import read_metrics, write_loss_png
from optidel.ssl.result import PretrainError, PretrainResult
from optidel.ssl.run_folder import config_differences, inspect_run_dir

__all__ = [
    "CHECKPOINT",
    "ENCODER",
    "METRICS",
    "METRIC_COLUMNS",
    "PretrainError",
    "PretrainResult",
    "build_model",
    "config_differences",
    "encoder_of",
    "inspect_run_dir",
    "pretrain",
]

ENCODER = "encoder.safetensors"


def build_model(cfg: PretrainConfig, gather_distributed: bool = False) -> nn.Module:
    """The model of a (resolved) config: :class:`~optidel.models.mae.MAE` or :class:`~optidel.ssl.simclr.SimCLR`."""
    cfg = cfg.resolved()
    backbone = create_backbone(cfg.arch, cfg.img_size, cfg.patch_size)
    if cfg.ssl == "mae":
        from optidel.models.mae import build_mae

        return build_mae(backbone, cfg.mae)
    from optidel.ssl.simclr import SimCLR

    s = cfg.simclr
    return SimCLR(
        backbone, s.proj_hidden_dim, s.proj_dim, s.temperature, gather_distributed=gather_distributed
    )


def encoder_of(model: nn.Module) -> nn.Module:
    """The timm backbone inside an MAE or SimCLR model."""
    return model.vit if hasattr(model, "vit") else model.backbone


def _load_images(cfg: PretrainConfig, ctx: DistContext) -> tuple[ArrayStack, str]:
    """Decode the pool once into the array cache (rank 0 first, the others then read the cache)."""
    pool = list_pool(cfg.data, options=cfg.sources)
    paths = [p.path for p in pool]
    uid_of = {p.path: p.uid for p in pool}

    def load() -> ArrayStack:
        return load_stack(paths, cfg.img_size, kind="image", strict=cfg.strict, workers=cfg.workers)

    stack = load() if ctx.is_main else None
    ctx.barrier()
    if stack is None:
        stack = load()
    if stack.bad:
        logger.warning(
            "%d of %d images could not be decoded and are left out (each is named above; --strict makes this fatal)",
            len(stack.bad),
            len(paths),
        )
    n = len(stack.paths)
    if n == 0:
        raise PretrainError(f"none of the {len(paths)} images of {list(cfg.data)} could be decoded")
    h = hashlib.sha1(f"{n}:{cfg.img_size}".encode())
    for p in stack.paths:
        h.update(f"\n{uid_of.get(p, str(p))}".encode())
    logger.info("pool: %d images at %d px (%s)", n, cfg.img_size, ", ".join(cfg.data))
    if n < cfg.batch_size:
        logger.warning(
            "the pool (%d images) is smaller than a batch (%d): images repeat within batches",
            n,
            cfg.batch_size,
        )
    return stack, h.hexdigest()


def pretrain(
    cfg: PretrainConfig, out: str | Path, resume: bool = False, on_step: OnStep | None = None
) -> PretrainResult:
    """Pre-train one config into the run folder ``out`` (see the module docstring for the files and guarantees).

    Args:
        cfg: the run's config (``arch=None`` is resolved to the method's default).
        out: run folder; created if needed.
        resume: continue from ``out/checkpoint.pt`` when there is one (otherwise start at step 0).
        on_step: ``on_step(done, state)`` called on every rank after each step (see :data:`optidel.ssl.loop.OnStep`).

    Returns:
        a :class:`PretrainResult`; ``already_done`` when ``out`` held this finished run.

    Raises:
        PretrainError: conflicting run folder, changed data, non-finite loss, impossible settings, a bad checkpoint.
        optidel.runtime.lock.RunFolderLocked: another live process writes into ``out``.
        optidel.data.image.ImageDecodeError: a bad image with ``cfg.strict``.
        optidel.data.pool.PoolError: a pool source that cannot be used.
    """
    cfg = cfg.resolved()
    try:
        cfg.validate()
    except ValueError as e:
        raise PretrainError(str(e)) from e
    out = Path(out)
    try:
        ctx = init_distributed(cfg.device)
    except DistributedError as e:
        raise PretrainError(str(e)) from e
    try:  # one writer per run folder: rank 0 holds out/.lock for the whole run (the other ranks are the same run)
        with run_lock(out, command="optidel pretrain") if ctx.is_main else contextlib.nullcontext():
            return _pretrain(cfg, out, resume, ctx, on_step)
    finally:
        ctx.close()


def _pretrain(
    cfg: PretrainConfig, out: Path, resume: bool, ctx: DistContext, on_step: OnStep | None
) -> PretrainResult:
    state = inspect_run_dir(out, cfg, resume)
    ctx.barrier()  # every rank has looked at the folder before rank 0 writes into it
    if state == "done":
        logger.info("%s already holds this finished run (DONE); nothing to do", out)
        return _final_result(out, cfg, already_done=True)
    if cfg.batch_size % ctx.world:
        raise PretrainError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world} processes")
    if resume and state == "fresh":
        logger.info("%s: no checkpoint to resume from; starting at step 0", out)

    handler = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out)
        handler = attach_run_log(out)
    try:
        return _train(cfg, out, state, ctx, on_step)
    finally:
        if handler is not None:
            detach_run_log(handler)


def _train(
    cfg: PretrainConfig, out: Path, state: str, ctx: DistContext, on_step: OnStep | None
) -> PretrainResult:
    """Set up (data, model, optimiser, resume), run the step loop, write the outputs (rank 0)."""
    logger.info(
        "pretrain %s %s at %d px%s, batch %d x %d steps, lr %g, seed %d, %d process(es) on %s -> %s",
        cfg.ssl,
        cfg.arch,
        cfg.img_size,
        f" patch {cfg.patch_size}" if is_vit(cfg.arch) else "",
        cfg.batch_size,
        cfg.steps,
        cfg.lr,
        cfg.seed,
        ctx.world,
        ctx.device,
        out,
    )
    stack, fingerprint = _load_images(cfg, ctx)
    train_state = _setup(cfg, out, state, ctx, stack.array, fingerprint)
    train_steps(train_state, on_step)
    ctx.barrier()
    if ctx.is_main:
        _write_outputs(out, cfg, train_state.model, len(stack.paths), len(stack.bad))
    return _final_result(out, cfg, already_done=False)


def _setup(
    cfg: PretrainConfig, out: Path, state: str, ctx: DistContext, array: np.ndarray, fingerprint: str
) -> TrainState:
    """Model, AdamW, warmup-cosine schedule and step sampler of a run; restored from the checkpoint on resume.

    ``array``: (N, S, S, 3) uint8 decoded pool. The model is seeded with ``cfg.seed`` after the pool is read, so
    its initialisation does not depend on the data.
    """
    device = ctx.torch_device
    sampler = StepSampler(len(array), cfg.batch_size, cfg.seed)

    seed_everything(cfg.seed)
    model = build_model(cfg, gather_distributed=ctx.distributed).to(device)
    if ctx.distributed and device.type == "cuda" and cfg.ssl == "simclr" and cfg.simclr.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.AdamW(
        param_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas)
    )
    warmup = round(cfg.warmup_fraction * cfg.steps)
    min_ratio = cfg.min_lr / cfg.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, cfg.steps, warmup, min_ratio)
    )
    start, train_time = 0, 0.0
    if state == "resume":
        start, train_time = load_checkpoint(out, model, optimizer, scheduler, sampler, fingerprint, device)
        logger.info("resumed from %s at step %d", out / CHECKPOINT, start)
    metrics = MetricsLog(out / METRICS, keep_until_step=start) if ctx.is_main else None

    train_model: nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return TrainState(
        cfg=cfg,
        out=out,
        ctx=ctx,
        model=model,
        train_model=train_model,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        images=array,
        fingerprint=fingerprint,
        start=start,
        train_time=train_time,
        metrics=metrics,
    )


def _write_outputs(out: Path, cfg: PretrainConfig, model: nn.Module, n_images: int, n_bad: int) -> None:
    """encoder.safetensors, mae.safetensors (MAE), loss.png, then DONE."""
    from optidel.models.encoder_io import save_encoder

    arch = timm_name(cfg.arch)
    kwargs = backbone_kwargs(cfg.arch, cfg.img_size, cfg.patch_size)
    model = model.cpu()
    save_encoder(
        encoder_of(model),
        out / ENCODER,
        arch=arch,
        timm_kwargs=kwargs,
        normalization={"mean": MEAN, "std": STD},
        ssl=cfg.ssl,
        steps=cfg.steps,
    )
    if cfg.ssl == "mae":
        from optidel.models.mae import MAE_FILE, save_mae

        save_mae(model, out / MAE_FILE, arch=arch, timm_kwargs=kwargs)
    write_loss_png(out, cfg)
    result = _final_result(out, cfg, already_done=False)
    mark_done(
        out,
        {
            "steps": cfg.steps,
            "final_loss": result.final_loss,
            "first_loss": result.first_loss,
            "train_time_s": round(result.elapsed_s, 2),
            "n_images": n_images,
            "n_bad_images": n_bad,
            "encoder": ENCODER,
        },
    )
    logger.info("done: %s (loss %s -> %s)", out, result.first_loss, result.final_loss)


def _final_result(out: Path, cfg: PretrainConfig, already_done: bool) -> PretrainResult:
    """The result of the run in ``out``, read back from its ``metrics.csv`` and ``DONE``."""
    rows = read_metrics(out / METRICS) if (out / METRICS).is_file() else []
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((out / "DONE").read_text())
    return PretrainResult(
        run_dir=out,
        steps=cfg.steps,
        final_loss=rows[-1]["loss"] if rows else None,
        first_loss=rows[0]["loss"] if rows else None,
        elapsed_s=rows[-1]["elapsed_s"] if rows else 0.0,
        n_images=int(info.get("n_images", 0)),
        already_done=already_done,
    )
