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

The steps live in their own modules: :mod:`~optidel.downstream.splits` (1-2), :mod:`~optidel.downstream.encoder`
and :mod:`~optidel.downstream.seg_head` (the model), :mod:`~optidel.downstream.train` (3-4),
:mod:`~optidel.downstream.predict` and :mod:`~optidel.downstream.floors` (the test); this module runs them in order
and writes the run folder.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optidel.config import save_config, to_dict
from optidel.downstream.config import FinetuneConfig
from optidel.downstream.encoder import build_encoder, normalisation
from optidel.downstream.floors import compute_floors
from optidel.downstream.predict import predict, score
from optidel.downstream.result import FinetuneResult
from optidel.downstream.splits import RunData
from optidel.downstream.train import TrainResult, train_model
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.metrics.segmentation import CLASS_NAMES, SegmentationScores
from optidel.runtime.atomic import atomic_write_json, atomic_write_text
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import DONE, mark_done

__all__ = ["METRIC_DEFINITIONS", "FinetuneResult", "finetune"]

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


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Train and test one encoder on one dataset; write the run directory ``cfg.out``.

    Outputs in ``cfg.out``: ``config.yaml``, ``log.txt``, ``metrics.json``, ``per_image.csv``, ``history.csv``,
    ``overlays.png`` and ``DONE`` (last).

    Returns:
        the run's :class:`~optidel.downstream.result.FinetuneResult` (the typed view of ``metrics.json``).

    Raises:
        ValueError: an unusable config or dataset (the message names the field or file).
        FileNotFoundError: the dataset or encoder file does not exist.
        optidel.runtime.lock.RunFolderLocked: another live process writes into ``cfg.out``.
    """
    cfg.validate()
    if not cfg.out:
        raise ValueError("out is not set (give --out DIR)")
    # a missing, pickled or misshapen encoder file is refused before anything is written
    if cfg.encoder.lower() != "none":
        from optidel.models.encoder_io import check_encoder

        check_encoder(cfg.encoder, img_size=cfg.img_size)
    out = Path(cfg.out)
    with run_lock(out, command="optidel finetune"):
        return _finetune_locked(cfg, out)


def _finetune_locked(cfg: FinetuneConfig, out: Path) -> FinetuneResult:
    """The body of :func:`finetune`, run while this process holds ``out``'s lock (one writer per run folder)."""
    import torch

    from optidel.downstream.splits import prepare_data

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
        model, enc_info, mean, std = _build_model(cfg)
        result = train_model(model, cfg, data.train, data.val, mean, std, description=f"finetune {data.name}")
        tested = _test(model, cfg, data, mean, std)
        _write_tables_and_overlays(out, cfg, data, result, tested, enc_info)
        metrics = _metrics_json(cfg, data, enc_info, result, tested, mean, std, t_start)
        atomic_write_json(out / "metrics.json", metrics)
        mark_done(out, {"miou": metrics["test"]["miou"], "best_epoch": result.best_epoch})
        logger.info("finetune done in %.1f s -> %s", metrics["total_time_s"], out)
        return FinetuneResult.from_metrics(out, metrics)
    finally:
        torch.set_num_threads(threads_before)
        detach_run_log(handler)


def _build_model(cfg: FinetuneConfig) -> tuple[Any, dict[str, Any], tuple[float, ...], tuple[float, ...]]:
    """(segmentation model, encoder description, mean, std); the head is initialised from ``cfg.seed``."""
    import torch

    from optidel.downstream.seg_head import build_segmentation_model
    from optidel.runtime.seed import seed_everything

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
    return model, enc_info, mean, std


@dataclass(frozen=True)
class _Tested:
    """The test split, scored once: pred (N, S, S) bool, the scores, their summary and the floors' summaries."""

    pred: np.ndarray
    scores: SegmentationScores
    metrics: dict[str, Any]
    floors: dict[str, dict[str, float]]


def _test(
    model: Any, cfg: FinetuneConfig, data: RunData, mean: tuple[float, ...], std: tuple[float, ...]
) -> _Tested:
    """Score the best epoch's model and the trivial floors on the test split."""
    train, val, test = data.train, data.val, data.test
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
    return _Tested(test_pred, test_scores, test_metrics, floor_summary)


def _write_tables_and_overlays(
    out: Path,
    cfg: FinetuneConfig,
    data: RunData,
    result: TrainResult,
    tested: _Tested,
    enc_info: dict[str, Any],
) -> None:
    """``per_image.csv``, ``history.csv`` and ``overlays.png`` (best and worst test images)."""
    from optidel.downstream.overlays import save_overlays

    test = data.test
    per_image = tested.scores.per_image
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
        tested.pred,
        test.ids,
        [r["iou_fg"] for r in per_image],
        n=cfg.n_overlays,
        valid=test.valid,
        title=f"{data.name}: {Path(enc_info['path']).parent.name if not enc_info['random_init'] else 'random init'}"
        f" ({cfg.mode}), test miou {tested.metrics['miou']:.3f}",
    )


def _metrics_json(
    cfg: FinetuneConfig,
    data: RunData,
    enc_info: dict[str, Any],
    result: TrainResult,
    tested: _Tested,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    t_start: float,
) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    import torch

    train, val, test = data.train, data.val, data.test
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
        "test": tested.metrics,
        "floors": tested.floors,
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
    return metrics


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """CSV text of ``rows`` (floats with 6 decimals; keys outside ``columns`` left out)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
