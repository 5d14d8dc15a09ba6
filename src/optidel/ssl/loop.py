"""The pre-training step loop (kept apart from the setup in :mod:`optidel.ssl.train`, as MAE's ``train_one_epoch``).

:func:`train_steps` runs steps ``state.start .. cfg.steps - 1`` of a :class:`TrainState`: each step takes its global
batch and its random generator from the :class:`~optidel.runtime.schedule.StepSampler` (pure functions of seed and
step, so a resumed run repeats an uninterrupted one), this rank keeps its slice, and the model takes one AdamW step.
Every ``log_every`` steps the mean loss (averaged over ranks) goes to ``metrics.csv``; every ``checkpoint_every``
steps rank 0 writes the checkpoint. Callers (tests) can watch every step through the ``on_step`` callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from optidel.log import logger
from optidel.runtime.distributed import DistContext
from optidel.runtime.schedule import StepSampler
from optidel.ssl.augment import BatchAugment, to_float
from optidel.ssl.checkpoint import save_checkpoint
from optidel.ssl.config import PretrainConfig
from optidel.ssl.metrics_log import MetricsLog
from optidel.ssl.plots import write_loss_png
from optidel.ssl.result import PretrainError

__all__ = ["OnStep", "StepInputs", "TrainState", "parameter_digest", "train_steps"]


@dataclass
class TrainState:
    """Everything the step loop works on; built by :func:`optidel.ssl.train.pretrain`.

    Attributes:
        cfg: the resolved config.
        out: the run folder.
        ctx: this process's place in the job.
        model: the MAE or SimCLR model (unwrapped; checkpoints and outputs are taken from it).
        train_model: ``model`` itself, or its DistributedDataParallel wrapper under torchrun.
        optimizer: AdamW.
        scheduler: the warmup-cosine LambdaLR.
        sampler: the data order and randomness of every step.
        images: (N, S, S, 3) uint8 decoded pool.
        fingerprint: hash of the pool (stored in checkpoints; a changed pool cannot be resumed).
        start: first step to run (0, or the checkpoint's step on resume).
        train_time: training seconds of the run so far (from the checkpoint at the start; the loop updates it).
        metrics: ``metrics.csv`` writer (rank 0 only, None elsewhere).
    """

    cfg: PretrainConfig
    out: Path
    ctx: DistContext
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: StepSampler
    images: np.ndarray
    fingerprint: str
    start: int
    train_time: float
    metrics: MetricsLog | None


OnStep = Callable[[int, TrainState], None]
"""``on_step(done, state)``: called on every rank after each step (``done`` steps finished, checkpoint written)."""


class StepInputs:
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


def parameter_digest(model: nn.Module) -> str:
    """sha256 over the names and bytes of all parameters (to check that DDP ranks agree)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _Interval:
    """The loss sum and timing of the steps since the last ``metrics.csv`` row."""

    def __init__(self, device: torch.device, train_time: float):
        self.loss_sum = torch.zeros((), device=device)
        self.n = 0
        self.t_session = time.perf_counter()
        self.t_last = self.t_session
        self.time_before = train_time

    def elapsed(self, now: float | None = None) -> float:
        """Training seconds of the whole run so far (earlier sessions included)."""
        return self.time_before + ((time.perf_counter() if now is None else now) - self.t_session)


def _log_interval(state: TrainState, interval: _Interval, done: int, lr: float, prog: Any) -> None:
    """Average the interval's loss over ranks, write a ``metrics.csv`` row, stop on a non-finite loss."""
    cfg, ctx = state.cfg, state.ctx
    loss_sum = interval.loss_sum
    if ctx.distributed:
        dist.all_reduce(loss_sum)
        loss_sum /= ctx.world
    mean_loss = loss_sum.item() / interval.n
    now = time.perf_counter()
    ips = interval.n * cfg.batch_size / max(now - interval.t_last, 1e-9)
    state.train_time = interval.elapsed(now)
    if state.metrics is not None:
        state.metrics.append(done, state.sampler.epoch_of(done), mean_loss, lr, ips, state.train_time)
    if prog is not None:
        prog[0].update(prog[1], loss=f"{mean_loss:.4f}", ips=f"{ips:.0f}")
    if not np.isfinite(mean_loss):
        raise PretrainError(
            f"the loss became {mean_loss} at step {done}; lower the learning rate (lr={cfg.lr}) "
            "or set clip_grad (--set clip_grad=1.0)"
        )
    loss_sum.zero_()
    interval.n = 0
    interval.t_last = now


def _checkpoint(state: TrainState, interval: _Interval, done: int) -> None:
    """Rank 0 writes ``checkpoint.pt`` (and, before the end, refreshes ``loss.png``)."""
    cfg = state.cfg
    state.train_time = interval.elapsed()
    save_checkpoint(
        state.out,
        done,
        state.model,
        state.optimizer,
        state.scheduler,
        state.sampler,
        state.fingerprint,
        state.train_time,
        state.ctx.torch_device,
    )
    if done != cfg.steps:
        write_loss_png(state.out, cfg)
    logger.debug("checkpoint at step %d", done)


def train_steps(state: TrainState, on_step: OnStep | None = None) -> None:
    """Run steps ``state.start`` to ``cfg.steps - 1``; ``state.train_time`` ends as the run's training seconds.

    Raises:
        PretrainError: the loss became non-finite.
    """
    cfg, ctx, model, sampler = state.cfg, state.ctx, state.model, state.sampler
    device = ctx.torch_device
    make_inputs = StepInputs(cfg, model, device)
    b_local = cfg.batch_size // ctx.world
    local = slice(ctx.rank * b_local, (ctx.rank + 1) * b_local)
    pin = device.type == "cuda"

    model.train()
    interval = _Interval(device, state.train_time)
    desc = f"{cfg.ssl} {cfg.arch}"
    with _progress(ctx.is_main, cfg.steps, state.start, desc) as prog:
        for step in range(state.start, cfg.steps):
            idx = sampler.indices(step)[local]
            images = torch.from_numpy(np.ascontiguousarray(state.images[idx]))
            if pin:
                images = images.pin_memory()
            inputs = make_inputs(images, sampler.generator(step), cfg.batch_size, local)
            with _autocast(cfg, device):
                loss = state.train_model(*inputs)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            lr = state.optimizer.param_groups[0]["lr"]
            state.optimizer.step()
            state.scheduler.step()
            interval.loss_sum += loss.detach().float()
            interval.n += 1
            done = step + 1

            if done % cfg.log_every == 0 or done == cfg.steps:
                _log_interval(state, interval, done, lr, prog)
            if prog is not None:
                prog[0].advance(prog[1])
            if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and ctx.is_main:
                _checkpoint(state, interval, done)
            if on_step is not None:
                on_step(done, state)
