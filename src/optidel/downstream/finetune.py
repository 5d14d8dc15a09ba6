"""Segmentation fine-tuning (or frozen probing) of one encoder on one dataset, with a fixed protocol.

The protocol (documented in ``docs/downstream.md``):

1. The dataset's ``train`` split trains; a seeded ``val_fraction`` (10%) of it is held out for validation (best-epoch
   choice, early stopping, the mean-mask prior's threshold). ``label_fraction`` then keeps a seeded share of the rest.
   The ``test`` split is touched only once, at the end, for the reported numbers.
2. Images and masks are resized to ``img_size`` (``optidel.data.array_cache.load_stack``); training and scoring
   happen at this working resolution. DRIVE-style field-of-view masks limit both the loss and the scores.
3. AdamW, linear warmup then cosine decay per step; the head at ``lr``, the encoder at ``lr * encoder_lr_mult``
   (finetune mode) or frozen (probe mode). Loss: cross-entropy (+ soft Dice on the foreground).
4. After every epoch the model is scored on validation (set-level mIoU); the best epoch's weights are restored for
   the test evaluation.

Everything random is derived from ``seed``: same seed, same machine, same thread count -> identical metrics.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optidel.config import save_config, to_dict
from optidel.downstream.config import IMAGENET_MEAN, IMAGENET_STD, FinetuneConfig
from optidel.downstream.floors import compute_floors
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.metrics.segmentation import CLASS_NAMES, SegmentationScores
from optidel.runtime.atomic import atomic_write_json, atomic_write_text
from optidel.runtime.run_dir import DONE, mark_done

METRIC_DEFINITIONS = {
    "miou": "mean IoU over {background, foreground} from one confusion matrix accumulated over all scored test "
    "pixels (mmsegmentation convention; the paper's metric)",
    "iou_fg": "foreground IoU per test image, averaged over images (empty truth and empty prediction = 1)",
    "dice_fg": "foreground Dice per test image, averaged over images (empty truth and empty prediction = 1)",
    "iou_background, iou_foreground": "the two per-class IoUs behind miou (set level)",
    "resolution": "scored at the working resolution img_size x img_size (masks resized by area-average > 0.5); "
    "full-resolution scores differ slightly",
    "fov": "pixels outside a field-of-view mask (DRIVE) are not scored and not trained on",
}


@dataclass
class SplitArrays:
    """One split at the working resolution.

    Attributes:
        ids: N ids; images: (N, S, S, 3) uint8; masks: (N, S, S) bool; valid: (N, S, S) bool scored pixels, or None
        when the dataset has no field-of-view masks.
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    valid: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray | list[int]) -> SplitArrays:
        idx = np.asarray(idx, dtype=np.int64)
        return SplitArrays(
            [self.ids[i] for i in idx],
            self.images[idx],
            self.masks[idx],
            None if self.valid is None else self.valid[idx],
        )


def load_split(pairs: list, img_size: int, has_fov: bool, name: str) -> SplitArrays:
    """Decode (cached) and resize the pairs of one split; pairs whose image or mask cannot be read are left out."""
    from optidel.data.array_cache import load_stack

    if not pairs:
        raise ValueError(f"the {name} split is empty")
    imgs = load_stack(
        [p.image for p in pairs], img_size, "image", description=f"{name} images at {img_size}px"
    )
    masks = load_stack([p.mask for p in pairs], img_size, "mask", description=f"{name} masks at {img_size}px")
    row_img = {Path(p): i for i, p in enumerate(imgs.paths)}
    row_mask = {Path(p): i for i, p in enumerate(masks.paths)}
    fov_rows: dict[Path, int] = {}
    fov_arr = None
    if has_fov:
        with_fov = [p.fov for p in pairs if p.fov is not None]
        if with_fov:
            fovs = load_stack(with_fov, img_size, "mask", description=f"{name} FOV masks at {img_size}px")
            fov_rows = {Path(p): i for i, p in enumerate(fovs.paths)}
            fov_arr = fovs.array
    keep = [
        p
        for p in pairs
        if Path(p.image) in row_img
        and Path(p.mask) in row_mask
        and (p.fov is None or Path(p.fov) in fov_rows)
    ]
    for p in pairs:
        if p not in keep:
            logger.warning("%s: left out of the %s split (image, mask or FOV mask unreadable)", p.id, name)
    if not keep:
        raise ValueError(f"no readable pairs in the {name} split")
    images = np.asarray(imgs.array[[row_img[Path(p.image)] for p in keep]])
    mask_arr = np.asarray(masks.array[[row_mask[Path(p.mask)] for p in keep]], bool)
    valid = None
    if has_fov:
        valid = np.ones_like(mask_arr)
        for i, p in enumerate(keep):
            if p.fov is not None and fov_arr is not None:
                valid[i] = fov_arr[fov_rows[Path(p.fov)]]
    return SplitArrays([p.id for p in keep], images, mask_arr, valid)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (kept, held out); held out has ``max(1, round(fraction * n))`` items.

    Both index arrays are sorted. Raises ValueError when n < 2.
    """
    if n < 2:
        raise ValueError(f"need at least 2 training pairs to hold out a validation part, got {n}")
    n_out = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng([seed, 0xA11]).permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def label_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded sorted subset of ``range(n)`` with ``max(2, round(fraction * n))`` items (all when fraction is 1)."""
    if fraction >= 1:
        return np.arange(n)
    k = min(n, max(2, round(fraction * n)))
    return np.sort(np.random.default_rng([seed, 0x1AB]).permutation(n)[:k])


def build_encoder(cfg: FinetuneConfig) -> tuple[Any, dict[str, Any]]:
    """The backbone (random init for ``encoder: none``) and a description of it for ``metrics.json``."""
    from optidel.models.backbone import create_backbone, is_vit, timm_name
    from optidel.models.encoder_io import load_encoder, read_encoder_metadata

    if cfg.encoder.lower() == "none":
        patch = cfg.patch_size if is_vit(cfg.arch) else None
        model = create_backbone(cfg.arch, cfg.img_size, patch)
        info = {
            "path": "none",
            "random_init": True,
            "arch": timm_name(cfg.arch),
            "patch_size": patch,
            "metadata": {},
        }
    else:
        path = Path(cfg.encoder)
        meta = read_encoder_metadata(path)
        stored = meta.get("timm_kwargs") or {}
        overrides = {"img_size": cfg.img_size} if "img_size" in stored or is_vit(meta["arch"]) else {}
        model = load_encoder(path, **overrides)
        info = {
            "path": str(path.resolve()),
            "random_init": False,
            "arch": meta["arch"],
            "patch_size": stored.get("patch_size"),
            "metadata": meta,
        }
    info["n_params"] = int(sum(p.numel() for p in model.parameters()))
    return model, info


def normalisation(
    cfg: FinetuneConfig, encoder_info: dict[str, Any]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std): the config's, else the encoder file's ``mean``/``std`` metadata, else ImageNet's."""
    meta = encoder_info.get("metadata") or {}
    mean = tuple(cfg.mean) or tuple(meta.get("mean") or IMAGENET_MEAN)
    std = tuple(cfg.std) or tuple(meta.get("std") or IMAGENET_STD)
    return tuple(float(x) for x in mean), tuple(float(x) for x in std)


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


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """lr factor: linear warmup from 1/warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def to_input(images: np.ndarray):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)


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


def predict(model: Any, images: np.ndarray, mean, std, batch_size: int):
    """Predicted foreground masks. images: (N, H, W, 3) uint8 -> (N, H, W) bool."""
    import torch

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = (to_input(images[i : i + batch_size]) - m) / s
            out.append(model(x).argmax(dim=1).numpy().astype(bool))
    return np.concatenate(out, axis=0)


FROZEN_FEATURE_CACHE_BYTES = 1 << 30  # probe mode keeps the validation features in memory up to this size


def validation_predictor(
    model: Any,
    images: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    max_bytes: int = FROZEN_FEATURE_CACHE_BYTES,
) -> Callable[[], np.ndarray]:
    """A function that predicts the validation masks with the model's current weights.

    A frozen encoder (probe mode) sees the same validation images every epoch, so its features are computed once
    and only the head runs each epoch; the predictions are the same as :func:`predict`'s, at a fraction of the cost.
    When the features would take more than ``max_bytes`` (or the encoder trains), every call runs the whole model.

    images: (N, H, W, 3) uint8; the function returns (N, H, W) bool.
    """
    import torch

    def full() -> np.ndarray:
        return predict(model, images, mean, std, batch_size)

    if not getattr(model, "freeze_encoder", False) or len(images) == 0:
        return full
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    size = tuple(images.shape[1:3])
    model.eval()
    cached: list[list[Any]] = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            feats = model.features((to_input(images[i : i + batch_size]) - m) / s)
            if i == 0:
                per_image = sum(f.numel() * f.element_size() for f in feats) / feats[0].shape[0]
                if per_image * len(images) > max_bytes:
                    logger.info(
                        "validation features (%.0f MiB) exceed the cache budget; the encoder reruns every epoch",
                        per_image * len(images) / 2**20,
                    )
                    return full
            cached.append(feats)

    def from_cache() -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return np.concatenate([model.decode(f, size).argmax(dim=1).numpy().astype(bool) for f in cached])

    return from_cache


def score(pred: np.ndarray, data: SplitArrays) -> SegmentationScores:
    s = SegmentationScores()
    s.update(pred, data.masks, data.valid, data.ids)
    return s


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # a batch of one breaks batch norm
        batches.pop()
    return batches


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


@dataclass
class RunData:
    """The three parts of one run at the working resolution (``train`` is after the label fraction)."""

    name: str
    split_source: str
    has_fov: bool
    train: SplitArrays
    train_available: SplitArrays
    val: SplitArrays
    test: SplitArrays


def prepare_data(cfg: FinetuneConfig) -> RunData:
    """Load the dataset's splits at ``img_size``, hold out validation, apply the label fraction (all seeded)."""
    from optidel.data.segmentation import load_seg_dataset

    ds = load_seg_dataset(cfg.dataset)
    has_fov = any(p.fov is not None for p in ds.pairs)
    train_all = load_split(ds.split("train"), cfg.img_size, has_fov, "train")
    test = load_split(ds.split("test"), cfg.img_size, has_fov, "test")
    keep_idx, val_idx = holdout_indices(len(train_all), cfg.val_fraction, cfg.seed)
    train_part = train_all.take(keep_idx)
    data = RunData(
        name=ds.name,
        split_source=ds.split_source,
        has_fov=has_fov,
        train=train_part.take(label_subset(len(train_part), cfg.label_fraction, cfg.seed)),
        train_available=train_part,
        val=train_all.take(val_idx),
        test=test,
    )
    logger.info(
        "data: %d train (of %d after holding out %d for validation, label_fraction=%g), %d test, %dpx%s",
        len(data.train),
        len(train_part),
        len(data.val),
        cfg.label_fraction,
        len(test),
        cfg.img_size,
        ", scored inside FOV masks" if has_fov else "",
    )
    return data


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
    import torch
    from rich.progress import TextColumn

    from optidel.downstream.augment import augment_batch
    from optidel.runtime.progress import make_progress

    optimizer = make_optimizer(model, cfg)
    rng = np.random.default_rng([cfg.seed, 0xBA7])
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(_batches(len(train), cfg.batch_size, np.random.default_rng(0)))
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    if epochs > cfg.epochs:
        logger.info("epochs raised from %d to %d to reach min_steps=%d", cfg.epochs, epochs, cfg.min_steps)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_fraction * total_steps)) if cfg.warmup_fraction > 0 else 0
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup))
    m_t = torch.tensor(mean).view(1, 3, 1, 1)
    s_t = torch.tensor(std).view(1, 3, 1, 1)
    full_valid = np.ones(train.masks.shape, bool) if train.valid is None else train.valid
    predict_val = validation_predictor(model, val.images, mean, std, cfg.eval_batch_size)

    history: list[dict[str, Any]] = []
    best_epoch, best_val, best_state = 0, -1.0, None
    since_best = 0
    n_seen = 0
    t_train = time.perf_counter()
    with make_progress(
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val mIoU {task.fields[val]}"),
    ) as prog:
        task = prog.add_task(description, total=total_steps, epoch=f"0/{epochs}", loss="-", val="-")
        for epoch in range(1, epochs + 1):
            model.train()
            losses = []
            for idx in _batches(len(train), cfg.batch_size, rng):
                x = to_input(train.images[idx])
                y = torch.from_numpy(train.masks[idx].astype(np.float32))
                v = torch.from_numpy(full_valid[idx].astype(np.float32))
                x, y, v = augment_batch(x, y, v, cfg.augment, gen)
                loss = segmentation_loss(model((x - m_t) / s_t), y, v, cfg.loss == "ce+dice")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sched.step()
                losses.append(float(loss.detach()))
                n_seen += len(idx)
                prog.update(task, advance=1, epoch=f"{epoch}/{epochs}", loss=f"{losses[-1]:.4f}")
            val_scores = score(predict_val(), val).compute()
            row = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_miou": val_scores["miou"],
                "val_dice_fg": val_scores["dice_fg"],
                "lr": optimizer.param_groups[0]["lr"],
            }
            history.append(row)
            prog.update(task, val=f"{row['val_miou']:.4f}")
            logger.info(
                "epoch %d/%d: train_loss %.4f, val miou %.4f, val dice_fg %.4f",
                epoch,
                epochs,
                row["train_loss"],
                row["val_miou"],
                row["val_dice_fg"],
            )
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
    return TrainResult(history, best_epoch, best_val, epochs, steps_per_epoch, train_time, n_seen)


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Train and test one encoder on one dataset; write the run directory ``cfg.out``; return ``metrics.json``.

    Outputs in ``cfg.out``: ``config.yaml``, ``log.txt``, ``metrics.json``, ``per_image.csv``, ``history.csv``,
    ``overlays.png`` and ``DONE`` (last).

    Raises:
        ValueError: an unusable config or dataset (the message names the field or file).
        FileNotFoundError: the dataset or encoder file does not exist.
    """
    import torch

    from optidel.downstream.overlays import save_overlays
    from optidel.downstream.seg_head import build_segmentation_model
    from optidel.runtime.seed import seed_everything

    cfg.validate()
    if not cfg.out:
        raise ValueError("out is not set (give --out DIR)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE).unlink(missing_ok=True)
    handler = attach_run_log(out)
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        save_config(cfg, out)
        logger.info("finetune: encoder=%s dataset=%s mode=%s out=%s", cfg.encoder, cfg.dataset, cfg.mode, out)

        data = prepare_data(cfg)
        train, val, test = data.train, data.val, data.test

        # ---- model ----
        seed_everything(cfg.seed)
        encoder, enc_info = build_encoder(cfg)
        model = build_segmentation_model(
            encoder, cfg.num_levels, cfg.head_dim, 2, cfg.head_dropout, freeze_encoder=cfg.mode == "probe"
        )
        mean, std = normalisation(cfg, enc_info)
        n_train_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(
            "model: %s (%s, %.2fM params), head on levels %s, %.2fM trainable, mean=%s std=%s, %d threads",
            enc_info["arch"],
            "random init" if enc_info["random_init"] else enc_info["path"],
            enc_info["n_params"] / 1e6,
            model.indices,
            n_train_params / 1e6,
            mean,
            std,
            torch.get_num_threads(),
        )

        # ---- train ----
        result = train_model(model, cfg, train, val, mean, std, description=f"finetune {data.name}")

        # ---- test ----
        test_pred = predict(model, test.images, mean, std, cfg.eval_batch_size)
        test_scores = score(test_pred, test)
        test_metrics = test_scores.compute()
        floors = compute_floors(train.masks, val.masks, test.masks, val.valid, test.valid, test.ids)
        floor_summary = floors.summary()
        logger.info(
            "test: miou %.4f, iou_fg %.4f, dice_fg %.4f | floors miou: all-background %.4f, all-foreground %.4f, "
            "mean-mask prior %.4f",
            test_metrics["miou"],
            test_metrics["iou_fg"],
            test_metrics["dice_fg"],
            floor_summary["all-background"]["miou"],
            floor_summary["all-foreground"]["miou"],
            floor_summary["mean-mask prior"]["miou"],
        )

        # ---- outputs ----
        per_image = test_scores.per_image
        atomic_write_text(
            out / "per_image.csv",
            _csv_text(
                per_image,
                ["id", "iou_fg", "dice_fg", "fg_fraction", "pred_fg_fraction", "tp", "fp", "fn", "tn"],
            ),
        )
        atomic_write_text(
            out / "history.csv",
            _csv_text(result.history, ["epoch", "train_loss", "val_miou", "val_dice_fg", "lr"]),
        )
        save_overlays(
            out / "overlays.png",
            test.images,
            test.masks,
            test_pred,
            test.ids,
            [r["iou_fg"] for r in per_image],
            n=cfg.n_overlays,
            valid=test.valid,
            title=f"{data.name}: {Path(enc_info['path']).parent.name if not enc_info['random_init'] else 'random init'}"
            f" ({cfg.mode}), test miou {test_metrics['miou']:.3f}",
        )
        metrics = {
            "dataset": {
                "name": data.name,
                "path": str(Path(cfg.dataset).resolve()),
                "n_train": len(train),
                "n_train_available": len(data.train_available),
                "n_val": len(val),
                "n_test": len(test),
                "label_fraction": cfg.label_fraction,
                "fov_scored": data.has_fov,
                "split_source": data.split_source,
            },
            "encoder": enc_info,
            "mode": cfg.mode,
            "img_size": cfg.img_size,
            "classes": list(CLASS_NAMES),
            "test": test_metrics,
            "floors": floor_summary,
            "best_epoch": result.best_epoch,
            "best_val_miou": result.best_val_miou,
            "epochs_planned": result.epochs_planned,
            "epochs_run": len(result.history),
            "steps_per_epoch": result.steps_per_epoch,
            "history": result.history,
            "train_time_s": round(result.train_time_s, 2),
            "train_images_per_s": round(result.images_seen / max(result.train_time_s, 1e-9), 2),
            "total_time_s": round(time.perf_counter() - t_start, 2),
            "threads": torch.get_num_threads(),
            "seed": cfg.seed,
            "normalisation": {"mean": list(mean), "std": list(std)},
            "metric_definitions": METRIC_DEFINITIONS,
            "config": to_dict(cfg),
        }
        atomic_write_json(out / "metrics.json", metrics)
        mark_done(out, {"miou": test_metrics["miou"], "best_epoch": result.best_epoch})
        logger.info("finetune done in %.1f s -> %s", metrics["total_time_s"], out)
        return metrics
    finally:
        torch.set_num_threads(threads_before)
        detach_run_log(handler)
