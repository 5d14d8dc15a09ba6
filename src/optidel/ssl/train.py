"""The pre-training loop: MAE or SimCLR, compute-matched, checkpointed, exactly resumable, DDP-ready.

:func:`pretrain` runs one :class:`~optidel.ssl.config.PretrainConfig` into a run folder::

    RUN/config.yaml          resolved config (written first)
    RUN/log.txt              the run's log
    RUN/metrics.csv          step,epoch,loss,lr,images_per_s,elapsed_s (one row every log_every steps)
    RUN/checkpoint.pt        model, optimiser, scheduler, step, RNG states, sampler state (every checkpoint_every
                             steps and at the end; atomic); RUN/checkpoint.json says its step
    RUN/encoder.safetensors  the backbone alone, timm key names (optidel.models.encoder_io.load_encoder restores it)
    RUN/mae.safetensors      MAE runs: the full model, for optidel.ssl.mae.load_mae / reconstruction_error
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
config, or an unfinished run without ``resume``, is an error (:class:`PretrainError`) that says what to do.
Fields that do not change results (``workers``, ``strict``, ``checkpoint_every``, ``log_every``, ``device``) may
differ.

Test-only switches (environment): ``OPTIDEL_DEBUG_STEP_DELAY=SECONDS`` sleeps after every step (lets a test kill a
run mid-way); ``OPTIDEL_DEBUG_RANK_STATE=1`` makes every rank write ``RUN/debug/rank<r>.json`` with a hash of its
final parameters.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from optidel.config import ConfigError, load_config, save_config, to_dict
from optidel.data.array_cache import ArrayStack, load_stack
from optidel.data.pool import PoolSource, list_pool, parse_source
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.models.backbone import backbone_kwargs, create_backbone, is_vit, timm_name
from optidel.runtime.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from optidel.runtime.run_dir import is_done, mark_done
from optidel.runtime.schedule import StepSampler, param_groups, warmup_cosine
from optidel.runtime.seed import seed_everything
from optidel.ssl.augment import MEAN, STD, BatchAugment, to_float
from optidel.ssl.config import EXECUTION_FIELDS, PretrainConfig

__all__ = [
    "CHECKPOINT",
    "ENCODER",
    "METRICS",
    "METRIC_COLUMNS",
    "DistContext",
    "PretrainError",
    "PretrainResult",
    "build_model",
    "inspect_run_dir",
    "pretrain",
]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_INFO = "checkpoint.json"
METRICS = "metrics.csv"
ENCODER = "encoder.safetensors"
LOSS_PNG = "loss.png"
METRIC_COLUMNS = ("step", "epoch", "loss", "lr", "images_per_s", "elapsed_s")
CHECKPOINT_FORMAT = 1


class PretrainError(ValueError):
    """A run that cannot start or continue: conflicting run folder, changed data, diverged loss, bad settings."""


@dataclass(frozen=True)
class PretrainResult:
    """What a call of :func:`pretrain` did.

    Attributes:
        run_dir: the run folder.
        steps: optimisation steps of the run (all done).
        final_loss: loss of the last logged interval (None when unknown).
        first_loss: loss of the first logged interval.
        elapsed_s: training wall time over all sessions of the run.
        n_images: images in the pool (bad ones left out).
        already_done: the folder held this finished run; nothing was trained.
    """

    run_dir: Path
    steps: int
    final_loss: float | None
    first_loss: float | None
    elapsed_s: float
    n_images: int
    already_done: bool = False


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), pick the device, join the group.

    ``device``: ``auto`` = this rank's GPU when CUDA is available, else the CPU; ``cuda`` or ``cpu`` to force.
    The process group uses nccl on GPUs and gloo on CPUs.
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise PretrainError(f"device: {device!r} is not one of auto, cpu, cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise PretrainError("device: cuda was asked for but CUDA is not available")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    initialized_here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
        initialized_here = True
    return DistContext(rank, world, local, dev, initialized_here)


def build_model(cfg: PretrainConfig, gather_distributed: bool = False) -> nn.Module:
    """The model of a (resolved) config: :class:`~optidel.ssl.mae.MAE` or :class:`~optidel.ssl.simclr.SimCLR`."""
    cfg = cfg.resolved()
    backbone = create_backbone(cfg.arch, cfg.img_size, cfg.patch_size)
    if cfg.ssl == "mae":
        from optidel.ssl.mae import build_mae

        return build_mae(backbone, cfg.mae)
    from optidel.ssl.simclr import SimCLR

    s = cfg.simclr
    return SimCLR(
        backbone, s.proj_hidden_dim, s.proj_dim, s.temperature, gather_distributed=gather_distributed
    )


def encoder_of(model: nn.Module) -> nn.Module:
    """The timm backbone inside an MAE or SimCLR model."""
    return model.vit if hasattr(model, "vit") else model.backbone


# ---------------------------------------------------------------------------------------------------------------- run dir


def _normalized(cfg: PretrainConfig) -> dict[str, Any]:
    """The result-defining part of a config: data sources resolved to absolute paths; the other method's section,
    and the patch size of a CNN, left out."""
    cfg = cfg.resolved()
    d = to_dict(cfg)
    sources = [parse_source(s) for s in d["data"]]
    d["data"] = [str(PoolSource(s.path.expanduser().resolve(), s.split)) for s in sources]
    unused = set(EXECUTION_FIELDS) | {"simclr" if cfg.ssl == "mae" else "mae"}
    if not is_vit(cfg.arch):
        unused.add("patch_size")
    return {k: v for k, v in d.items() if k not in unused}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_differences(saved: PretrainConfig, new: PretrainConfig) -> list[str]:
    """``["lr: 0.001 (in the folder) vs 0.002 (now)", ...]`` over the result-defining fields."""
    a, b = _flatten(_normalized(saved)), _flatten(_normalized(new))
    return [
        f"{k}: {a.get(k)!r} (in the folder) vs {b.get(k)!r} (now)"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _checkpoint_step(out: Path) -> int | None:
    info = out / CHECKPOINT_INFO
    with contextlib.suppress(OSError, ValueError, KeyError):
        import json

        return int(json.loads(info.read_text())["step"])
    return None


def inspect_run_dir(out: Path, cfg: PretrainConfig, resume: bool) -> str:
    """Decide what to do with ``out``: ``"fresh"`` (start at step 0), ``"resume"`` (from its checkpoint) or
    ``"done"`` (a finished run with this config).

    Raises:
        PretrainError: ``out`` is not a run folder, holds a different config, or holds an unfinished run and
            ``resume`` is False.
    """
    if not out.exists():
        return "fresh"
    if not out.is_dir():
        raise PretrainError(f"--out {out} exists and is not a folder")
    cfg_path = out / "config.yaml"
    if not cfg_path.is_file():
        if any(out.iterdir()):
            raise PretrainError(
                f"{out} is not empty and holds no config.yaml (not a pretrain run); choose another --out"
            )
        return "fresh"
    try:
        saved = load_config(PretrainConfig, cfg_path)
    except ConfigError as e:
        raise PretrainError(
            f"{cfg_path} cannot be read as a pretrain config ({e}); choose another --out"
        ) from e
    diffs = config_differences(saved, cfg)
    has_ckpt = (out / CHECKPOINT).is_file()
    if is_done(out):
        if diffs:
            raise PretrainError(
                f"{out} holds a finished run with a different config ({'; '.join(diffs)}); "
                "choose another --out, or delete that folder to redo it"
            )
        return "done"
    if diffs:
        what = "resume it with" if resume else "reuse it for"
        raise PretrainError(
            f"{out} holds an unfinished run with a different config ({'; '.join(diffs)}); cannot {what} this "
            "config: choose another --out, or rerun with the folder's config.yaml"
        )
    if has_ckpt and not resume:
        step = _checkpoint_step(out)
        at = f" at step {step}" if step is not None else ""
        raise PretrainError(
            f"{out} holds an unfinished run (checkpoint{at}); pass --resume to continue it, or choose another --out"
        )
    return "resume" if has_ckpt else "fresh"


# ---------------------------------------------------------------------------------------------------------------- data


def _load_images(cfg: PretrainConfig, ctx: DistContext) -> tuple[ArrayStack, str]:
    """Decode the pool once into the array cache (rank 0 first, the others then read the cache)."""
    pool = list_pool(cfg.data)
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


class _StepInputs:
    """Turns a step's uint8 images into the model's inputs, drawing all randomness for the global batch."""

    def __init__(self, cfg: PretrainConfig, model: nn.Module, device: torch.device):
        self.ssl = cfg.ssl
        self.device = device
        aug_cfg = cfg.mae.augment if cfg.ssl == "mae" else cfg.simclr.augment
        self.augment = BatchAugment(aug_cfg, cfg.img_size)
        self.num_patches = getattr(model, "num_patches", 0)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, global_n: int, local: slice
    ) -> tuple[torch.Tensor, ...]:
        """images: (n, S, S, 3) uint8 of this rank -> model inputs (normalised (n, 3, S, S) tensors, masks)."""
        x = to_float(images.to(self.device, non_blocking=True))
        if self.ssl == "mae":
            params = self.augment.sample(global_n, generator).select(local)
            noise = torch.rand(global_n, self.num_patches, generator=generator)[local]
            return self.augment.apply(x, params), noise.to(self.device, non_blocking=True)
        p0 = self.augment.sample(global_n, generator).select(local)
        p1 = self.augment.sample(global_n, generator).select(local)
        return self.augment.apply(x, p0), self.augment.apply(x, p1)


# ---------------------------------------------------------------------------------------------------------------- metrics


class MetricsLog:
    """``metrics.csv``: header plus one row per logged step; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until_step: int):
        self.path = path
        kept: list[dict[str, str]] = []
        if keep_until_step > 0 and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(row["step"]) <= keep_until_step and all(
                            row.get(c) not in (None, "") for c in METRIC_COLUMNS
                        ):
                            kept.append({c: row[c] for c in METRIC_COLUMNS})
                    except (KeyError, TypeError, ValueError):
                        continue
        lines = [",".join(METRIC_COLUMNS)] + [",".join(r[c] for c in METRIC_COLUMNS) for r in kept]
        atomic_write_text(path, "\n".join(lines) + "\n")
        self.rows = kept

    def append(
        self, step: int, epoch: float, loss: float, lr: float, images_per_s: float, elapsed_s: float
    ) -> None:
        row = {
            "step": str(step),
            "epoch": f"{epoch:.4f}",
            "loss": f"{loss:.6f}",
            "lr": f"{lr:.6e}",
            "images_per_s": f"{images_per_s:.2f}",
            "elapsed_s": f"{elapsed_s:.2f}",
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(",".join(row[c] for c in METRIC_COLUMNS) + "\n")
            f.flush()
        self.rows.append(row)


# ---------------------------------------------------------------------------------------------------------------- checkpoint


def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sampler: StepSampler,
    data_fingerprint: str,
    train_time: float,
    device: torch.device,
) -> None:
    """Write ``checkpoint.pt`` (atomically), then ``checkpoint.json`` with its step."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(device),
        "sampler": {**sampler.state_dict(), "data_fingerprint": data_fingerprint},
        "train_time": train_time,
    }
    atomic_torch_save(state, out / CHECKPOINT)
    atomic_write_json(out / CHECKPOINT_INFO, {"step": step, "train_time_s": round(train_time, 2)})


def load_checkpoint(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sampler: StepSampler,
    data_fingerprint: str,
    device: torch.device,
) -> tuple[int, float]:
    """Restore a run's state from ``checkpoint.pt``; returns (step, train_time).

    Raises:
        PretrainError: the checkpoint is unreadable or the data changed since it was written.
    """
    path = out / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainError(f"{path} cannot be read ({e}); delete it to restart the run from step 0") from e
    if state.get("format") != CHECKPOINT_FORMAT:
        raise PretrainError(f"{path}: unknown checkpoint format {state.get('format')!r}")
    saved = dict(state["sampler"])
    if saved.pop("data_fingerprint") != data_fingerprint or saved != sampler.state_dict():
        raise PretrainError(
            f"{path}: the pool changed since this checkpoint (now {sampler.n_images} images; it was trained on "
            f"{saved.get('n_images')}), so the run cannot be resumed exactly; use another --out"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], device)
    return int(state["step"]), float(state["train_time"])


def parameter_digest(model: nn.Module) -> str:
    """sha256 over the names and bytes of all parameters (to check that DDP ranks agree)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------- loop


def _autocast(cfg: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, completed: int, description: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import TextColumn

    from optidel.runtime.progress import make_progress

    with make_progress(
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s")
    ) as prog:
        task = prog.add_task(description, total=total, completed=completed, loss="-", ips="-")
        yield (prog, task)


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False) -> PretrainResult:
    """Pre-train one config into the run folder ``out`` (see the module docstring for the files and guarantees).

    Args:
        cfg: the run's config (``arch=None`` is resolved to the method's default).
        out: run folder; created if needed.
        resume: continue from ``out/checkpoint.pt`` when there is one (otherwise start at step 0).

    Returns:
        a :class:`PretrainResult`; ``already_done`` when ``out`` held this finished run.

    Raises:
        PretrainError: conflicting run folder, changed data, non-finite loss, impossible settings.
        optidel.data.image.ImageDecodeError: a bad image with ``cfg.strict``.
        optidel.data.pool.PoolError: a pool source that cannot be used.
    """
    cfg = cfg.resolved()
    try:
        cfg.validate()
    except ValueError as e:
        raise PretrainError(str(e)) from e
    out = Path(out)
    ctx = init_distributed(cfg.device)
    try:
        return _pretrain(cfg, out, resume, ctx)
    finally:
        if ctx.initialized_here:
            dist.destroy_process_group()


def _final_result(out: Path, cfg: PretrainConfig, already_done: bool) -> PretrainResult:
    from optidel.ssl.plots import read_metrics

    rows = read_metrics(out / METRICS) if (out / METRICS).is_file() else []
    import json

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


def _pretrain(cfg: PretrainConfig, out: Path, resume: bool, ctx: DistContext) -> PretrainResult:
    state = inspect_run_dir(out, cfg, resume)
    ctx.barrier()  # every rank has looked at the folder before rank 0 writes into it
    if state == "done":
        logger.info("%s already holds this finished run (DONE); nothing to do", out)
        return _final_result(out, cfg, already_done=True)
    if cfg.batch_size % ctx.world_size:
        raise PretrainError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} processes")
    if resume and state == "fresh":
        logger.info("%s: no checkpoint to resume from; starting at step 0", out)

    handler = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out)
        handler = attach_run_log(out)
    try:
        return _train(cfg, out, state, ctx)
    finally:
        if handler is not None:
            detach_run_log(handler)


def _train(cfg: PretrainConfig, out: Path, state: str, ctx: DistContext) -> PretrainResult:
    device = ctx.device
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
        ctx.world_size,
        device,
        out,
    )
    stack, fingerprint = _load_images(cfg, ctx)
    array = stack.array
    n_images = len(stack.paths)
    sampler = StepSampler(n_images, cfg.batch_size, cfg.seed)

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
    make_inputs = _StepInputs(cfg, model, device)
    b_local = cfg.batch_size // ctx.world_size
    local = slice(ctx.rank * b_local, (ctx.rank + 1) * b_local)
    delay = float(os.environ.get("OPTIDEL_DEBUG_STEP_DELAY", "0") or 0)
    pin = device.type == "cuda"

    model.train()
    loss_sum = torch.zeros((), device=device)
    n_interval = 0
    t_session = time.perf_counter()
    t_last = t_session
    time_before = train_time
    desc = f"{cfg.ssl} {cfg.arch}"
    with _progress(ctx.is_main, cfg.steps, start, desc) as prog:
        for step in range(start, cfg.steps):
            idx = sampler.indices(step)[local]
            images = torch.from_numpy(np.ascontiguousarray(array[idx]))
            if pin:
                images = images.pin_memory()
            inputs = make_inputs(images, sampler.generator(step), cfg.batch_size, local)
            with _autocast(cfg, device):
                loss = train_model(*inputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().float()
            n_interval += 1
            done = step + 1
            if delay:
                time.sleep(delay)

            if done % cfg.log_every == 0 or done == cfg.steps:
                if ctx.distributed:
                    dist.all_reduce(loss_sum)
                    loss_sum /= ctx.world_size
                mean_loss = loss_sum.item() / n_interval
                now = time.perf_counter()
                ips = n_interval * cfg.batch_size / max(now - t_last, 1e-9)
                train_time = time_before + (now - t_session)
                if metrics is not None:
                    metrics.append(done, sampler.epoch_of(done), mean_loss, lr, ips, train_time)
                if prog is not None:
                    prog[0].update(prog[1], loss=f"{mean_loss:.4f}", ips=f"{ips:.0f}")
                if not np.isfinite(mean_loss):
                    raise PretrainError(
                        f"the loss became {mean_loss} at step {done}; lower the learning rate (lr={cfg.lr}) "
                        "or set clip_grad (--set clip_grad=1.0)"
                    )
                loss_sum.zero_()
                n_interval = 0
                t_last = now
            if prog is not None:
                prog[0].advance(prog[1])

            if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and ctx.is_main:
                train_time = time_before + (time.perf_counter() - t_session)
                save_checkpoint(
                    out, done, model, optimizer, scheduler, sampler, fingerprint, train_time, device
                )
                if done != cfg.steps:
                    _write_plot(out, cfg)
                logger.debug("checkpoint at step %d", done)

    if os.environ.get("OPTIDEL_DEBUG_RANK_STATE") == "1":
        atomic_write_json(
            out / "debug" / f"rank{ctx.rank}.json",
            {"rank": ctx.rank, "params_sha256": parameter_digest(model)},
        )
    ctx.barrier()
    if ctx.is_main:
        _write_outputs(out, cfg, model, n_images, len(stack.bad))
    return _final_result(out, cfg, already_done=False)


def _write_plot(out: Path, cfg: PretrainConfig) -> None:
    from optidel.ssl.plots import plot_loss_curve

    try:
        plot_loss_curve(
            out / METRICS, out / LOSS_PNG, title=f"{out.name}: {cfg.ssl} {cfg.arch}, {cfg.img_size} px"
        )
    except Exception as e:  # a plot must never break a run
        logger.warning("could not draw %s: %s", out / LOSS_PNG, e)


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
        from optidel.ssl.mae import MAE_FILE, save_mae

        save_mae(model, out / MAE_FILE, arch=arch, timm_kwargs=kwargs)
    _write_plot(out, cfg)
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
