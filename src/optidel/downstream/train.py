"""The fine-tuning loop: AdamW with per-step warmup + cosine, validation mIoU after every epoch, best epoch kept.

The head trains at ``lr``; in finetune mode the encoder trains at ``lr * encoder_lr_mult`` with optional layer-wise
decay (BEiT/MAE style, via timm's ``param_groups_layer_decay``), in probe mode it is frozen. The loss is
cross-entropy over valid pixels, plus a soft foreground Dice with ``loss: ce+dice``. The learning-rate factor is
:func:`optidel.runtime.schedule.warmup_cosine` (decay to 0), the same schedule as pre-training.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optidel.downstream.config import FinetuneConfig
from optidel.downstream.predict import score, to_input, validation_predictor
from optidel.downstream.splits import SplitArrays
from optidel.log import logger
from optidel.runtime.schedule import warmup_cosine

__all__ = ["TrainResult", "make_optimizer", "segmentation_loss", "train_model"]


def make_optimizer(model: Any, cfg: FinetuneConfig):
    """AdamW with the head at ``lr`` and (finetune mode) the encoder at ``lr * encoder_lr_mult`` x layer decay.

    Biases, norm weights and other 1-D parameters (and the encoder's ``no_weight_decay`` set: position embedding,
    tokens) get no weight decay.
    """
    import torch
    from timm.optim import param_groups_layer_decay

    groups = []
    head_decay = [p for p in model.head.parameters() if p.ndim > 1]
    head_no_decay = [p for p in model.head.parameters() if p.ndim <= 1]
    groups.append({"params": head_decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "head"})
    groups.append({"params": head_no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "head_no_decay"})
    if cfg.mode == "finetune" and cfg.encoder_lr_mult > 0:
        enc = model.encoder
        nwd = enc.no_weight_decay() if hasattr(enc, "no_weight_decay") else set()
        for g in param_groups_layer_decay(
            enc, weight_decay=cfg.weight_decay, no_weight_decay_list=nwd, layer_decay=cfg.layer_decay
        ):
            scale = g.pop("lr_scale", 1.0)
            g["lr"] = cfg.lr * cfg.encoder_lr_mult * scale
            g["name"] = "encoder"
            groups.append(g)
    elif cfg.mode == "finetune":
        model.encoder.requires_grad_(False)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def segmentation_loss(logits, labels, valid, use_dice: bool):
    """Cross-entropy over valid pixels (+ soft Dice of the foreground over the batch).

    Args:
        logits: (N, 2, H, W); labels: (N, H, W) float {0, 1}; valid: (N, H, W) float {0, 1}.
    """
    import torch.nn.functional as F

    target = labels.long()
    target[valid < 0.5] = -100
    loss = F.cross_entropy(logits, target, ignore_index=-100)
    if use_dice:
        prob = logits.softmax(dim=1)[:, 1] * valid
        y = labels * valid
        dice = (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
        loss = loss + (1 - dice)
    return loss


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle of ``range(n)`` in batches; a last batch of one is dropped (it would break batch norm)."""
    perm = rng.permutation(n)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a batch of one breaks batch norm
        batches.pop()
    return batches


@dataclass
class TrainResult:
    """What the training loop found: the per-epoch ``history``, the best epoch (its weights are in the model)."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_val_miou: float
    epochs_planned: int
    steps_per_epoch: int
    train_time_s: float
    images_seen: int


def plan_steps(cfg: FinetuneConfig, n_train: int) -> tuple[int, int]:
    """(epochs, steps_per_epoch): ``cfg.epochs``, raised when needed to reach ``cfg.min_steps`` optimiser steps."""
    steps_per_epoch = len(_batches(n_train, cfg.batch_size, np.random.default_rng(0)))
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    if epochs > cfg.epochs:
        logger.info("epochs raised from %d to %d to reach min_steps=%d", cfg.epochs, epochs, cfg.min_steps)
    return epochs, steps_per_epoch


class _EpochRunner:
    """One training epoch at a time: seeded batch order and augmentation, one AdamW + scheduler step per batch."""

    def __init__(
        self,
        model: Any,
        cfg: FinetuneConfig,
        train: SplitArrays,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        total_steps: int,
    ):
        import torch

        self.model, self.cfg, self.train = model, cfg, train
        self.optimizer = make_optimizer(model, cfg)
        self.rng = np.random.default_rng([cfg.seed, 0xBA7])
        self.gen = torch.Generator().manual_seed(cfg.seed)
        warmup = max(1, round(cfg.warmup_fraction * total_steps)) if cfg.warmup_fraction > 0 else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, total_steps, warmup)
        )
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.full_valid = np.ones(train.masks.shape, bool) if train.valid is None else train.valid
        self.images_seen = 0

    def run(self, on_batch: Callable[[float], None]) -> float:
        """Train one epoch; ``on_batch(loss)`` after every step. Returns the epoch's mean training loss."""
        import torch

        from optidel.downstream.augment import augment_batch

        cfg, train = self.cfg, self.train
        self.model.train()
        losses = []
        for idx in _batches(len(train), cfg.batch_size, self.rng):
            x = to_input(train.images[idx])
            y = torch.from_numpy(train.masks[idx].astype(np.float32))
            v = torch.from_numpy(self.full_valid[idx].astype(np.float32))
            x, y, v = augment_batch(x, y, v, cfg.augment, self.gen)
            loss = segmentation_loss(self.model((x - self.mean) / self.std), y, v, cfg.loss == "ce+dice")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
            self.images_seen += len(idx)
            on_batch(losses[-1])
        return float(np.mean(losses))


def train_model(
    model: Any,
    cfg: FinetuneConfig,
    train: SplitArrays,
    val: SplitArrays,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    description: str = "finetune",
) -> TrainResult:
    """The training loop: AdamW, warmup + cosine per step, validation mIoU after every epoch, best epoch restored.

    The best epoch's weights are loaded back into ``model`` before returning.
    """
    from rich.progress import TextColumn

    from optidel.runtime.progress import make_progress

    epochs, steps_per_epoch = plan_steps(cfg, len(train))
    runner = _EpochRunner(model, cfg, train, mean, std, epochs * steps_per_epoch)
    predict_val = validation_predictor(model, val.images, mean, std, cfg.eval_batch_size)

    history: list[dict[str, Any]] = []
    best_epoch, best_val, best_state = 0, -1.0, None
    since_best = 0
    t_train = time.perf_counter()
    with make_progress(
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val mIoU {task.fields[val]}"),
    ) as prog:
        task = prog.add_task(
            description, total=epochs * steps_per_epoch, epoch=f"0/{epochs}", loss="-", val="-"
        )
        for epoch in range(1, epochs + 1):
            train_loss = runner.run(
                lambda loss, e=epoch: prog.update(task, advance=1, epoch=f"{e}/{epochs}", loss=f"{loss:.4f}")
            )
            row = _validate(epoch, epochs, train_loss, score(predict_val(), val).compute(), runner.optimizer)
            history.append(row)
            prog.update(task, val=f"{row['val_miou']:.4f}")
            if row["val_miou"] > best_val:
                best_epoch, best_val, best_state = epoch, row["val_miou"], copy.deepcopy(model.state_dict())
                since_best = 0
            else:
                since_best += 1
                if cfg.patience and since_best >= cfg.patience:
                    logger.info("early stop: no val improvement for %d epochs", cfg.patience)
                    break
    train_time = time.perf_counter() - t_train
    model.load_state_dict(best_state)
    logger.info("best epoch %d (val miou %.4f); training took %.1f s", best_epoch, best_val, train_time)
    return TrainResult(history, best_epoch, best_val, epochs, steps_per_epoch, train_time, runner.images_seen)


def _validate(
    epoch: int, epochs: int, train_loss: float, val_scores: dict[str, Any], optimizer: Any
) -> dict[str, Any]:
    """The ``history.csv`` row of an epoch (logged)."""
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_miou": val_scores["miou"],
        "val_dice_fg": val_scores["dice_fg"],
        "lr": optimizer.param_groups[0]["lr"],
    }
    logger.info(
        "epoch %d/%d: train_loss %.4f, val miou %.4f, val dice_fg %.4f",
        epoch,
        epochs,
        row["train_loss"],
        row["val_miou"],
        row["val_dice_fg"],
    )
    return row
