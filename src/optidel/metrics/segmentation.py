"""Binary segmentation metrics, named after the convention they follow.

- ``miou``: mean IoU over the two classes {background, foreground}, from one 2x2 confusion matrix accumulated over
  **all scored pixels of the whole set** (the mmsegmentation convention and the OptiDEL/MedDEL metric). A class that
  appears neither in the truth nor in the prediction of the whole set has no IoU and is left out of the mean
  (mmsegmentation's ``nanmean``).
- ``iou_fg`` and ``dice_fg``: foreground IoU and Dice computed **per image, then averaged over images** (the polyp
  literature's convention, e.g. PraNet's mean Dice / mean IoU). An image with an empty truth and an empty prediction
  scores 1 for both (nothing to find, nothing found); an empty truth with any predicted foreground, or a non-empty
  truth with an empty prediction, scores 0.
- Pixels outside a validity mask (DRIVE's field of view) are not scored by any metric.

**What torchmetrics does here.** The pixel counting, the part where bugs hide (validity masks, per-image counts,
labels), is torchmetrics': :func:`torchmetrics.functional.classification.binary_stat_scores` with
``multidim_average="samplewise"`` and ``ignore_index`` gives each image's TP, FP, TN and FN inside its valid pixels,
and their sum is the set-level confusion matrix. The last step, counts -> IoU / Dice, stays here (:func:`iou_per_class`,
:func:`foreground_iou_dice`) because torchmetrics reduces in float32 (``_jaccard_index_reduce`` calls
``confmat.float()``): the scores would change in the 8th digit, so ``metrics.json`` of earlier runs (and the running
benchmark's tables) would no longer match new runs of the same model. The formulas are the library's (macro Jaccard
that leaves out a class absent from truth and prediction; F1 = Dice), in float64; ``tests/metrics`` checks that they
equal ``multiclass_jaccard_index(average="macro")``, ``binary_jaccard_index`` and ``binary_f1_score`` on random
masks and on the real Kvasir-SEG test masks.

Examples:
    >>> import numpy as np
    >>> t = np.array([[[0, 1], [1, 1]]], bool)
    >>> s = SegmentationScores()
    >>> s.update(t, t)
    >>> s.compute()["miou"]
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASS_NAMES = ("background", "foreground")


IGNORE = -1  # target label of pixels outside the valid mask (torchmetrics' ``ignore_index``)


def per_image_confusion(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Confusion counts of each image, by torchmetrics' ``binary_stat_scores`` (samplewise, invalid pixels ignored).

    Args:
        pred: (N, ...) bool predicted foreground.
        target: (N, ...) bool true foreground, same shape.
        valid: (N, ...) bool pixels to score (None = all).

    Returns:
        (N, 2, 2) int64: ``[[TN, FP], [FN, TP]]`` per image.
    """
    import torch
    from torchmetrics.functional.classification import binary_stat_scores

    pred = np.asarray(pred, bool)
    target = np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    labels = torch.from_numpy(target.astype(np.int64))
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != target.shape:
            raise ValueError(f"valid-mask shape {valid.shape} differs from target shape {target.shape}")
        labels[torch.from_numpy(~valid)] = IGNORE
    n = pred.shape[0]
    if n == 0:
        return np.zeros((0, 2, 2), np.int64)
    stats = (
        binary_stat_scores(
            torch.from_numpy(pred.astype(np.int64)).reshape(n, -1),
            labels.reshape(n, -1),
            multidim_average="samplewise"
            if n > 1
            else "global",  # samplewise fails on a single image (1.9.0)
            ignore_index=IGNORE,
            validate_args=False,
        )
        .numpy()
        .reshape(n, 5)
    )  # tp, fp, tn, fn, support per image
    tp, fp, tn, fn = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    return np.stack([np.stack([tn, fp], 1), np.stack([fn, tp], 1)], 1).astype(np.int64)


def confusion_matrix(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """2x2 confusion matrix of binary masks, rows = truth, columns = prediction.

    Args:
        pred: (...) bool predicted foreground.
        target: (...) bool true foreground, same shape.
        valid: (...) bool pixels to score (None = all).

    Returns:
        (2, 2) int64: ``[[TN, FP], [FN, TP]]``.
    """
    pred = np.asarray(pred, bool)
    target = np.asarray(target, bool)
    return per_image_confusion(
        pred[None], target[None], None if valid is None else np.asarray(valid, bool)[None]
    )[0]


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix: (2,) float, NaN for a class absent from truth and prediction.

    torchmetrics' Jaccard formula (intersection / (row + column - intersection)) in float64 (see the module
    docstring for why the reduction is not torchmetrics' own)."""
    cm = np.asarray(cm, np.float64)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


def miou_from_confusion(cm: np.ndarray) -> float:
    """Mean IoU over {background, foreground} (classes without IoU are left out; NaN if none has one)."""
    ious = iou_per_class(cm)
    if np.all(np.isnan(ious)):
        return float("nan")
    return float(np.nanmean(ious))


def foreground_iou_dice(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
) -> tuple[float, float]:
    """Foreground IoU and Dice of one image (both 1.0 when truth and prediction are empty).

    Args:
        pred, target, valid: (H, W) bool.
    """
    return iou_dice_from_confusion(confusion_matrix(pred, target, valid))


def iou_dice_from_confusion(cm: np.ndarray) -> tuple[float, float]:
    """Foreground IoU and Dice (= F1) of one image's (2, 2) confusion matrix, float64; both 1.0 when the image has
    neither true nor predicted foreground (torchmetrics' ``zero_division=1``)."""
    tp, fp, fn = float(cm[1, 1]), float(cm[0, 1]), float(cm[1, 0])
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


@dataclass
class SegmentationScores:
    """Accumulates the set-level confusion matrix and per-image foreground scores over batches.

    Streaming and per image by design (torchmetrics' ``MulticlassJaccardIndex`` would accumulate only the set
    level): the per-image counts feed ``per_image.csv``, the overlays' best/worst choice and the benchmark's
    bootstrap, which resamples images.

    Attributes:
        confusion: (2, 2) int64 over all scored pixels seen so far.
        per_image: one dict per image: ``id``, ``iou_fg``, ``dice_fg``, ``fg_fraction`` (true foreground share of
            the scored pixels), ``pred_fg_fraction``, and its confusion counts ``tp``, ``fp``, ``fn``, ``tn``.
    """

    confusion: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))
    per_image: list[dict] = field(default_factory=list)

    def update(
        self,
        pred: np.ndarray,
        target: np.ndarray,
        valid: np.ndarray | None = None,
        ids: list[str] | None = None,
    ) -> None:
        """Add a batch. pred, target, valid: (N, H, W) bool; ids: N names (default: running numbers)."""
        pred = np.asarray(pred, bool)
        target = np.asarray(target, bool)
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
            valid = None if valid is None else np.asarray(valid, bool)[None]
        for i, cm in enumerate(per_image_confusion(pred, target, valid)):
            self.confusion += cm
            iou, dice = iou_dice_from_confusion(cm)
            n = max(int(cm.sum()), 1)
            self.per_image.append(
                {
                    "id": ids[i] if ids is not None else str(len(self.per_image)),
                    "iou_fg": iou,
                    "dice_fg": dice,
                    "fg_fraction": float(cm[1].sum()) / n,
                    "pred_fg_fraction": float(cm[:, 1].sum()) / n,
                    # confusion counts (foreground positive): the benchmark's bootstrap resamples images with these
                    "tp": int(cm[1, 1]),
                    "fp": int(cm[0, 1]),
                    "fn": int(cm[1, 0]),
                    "tn": int(cm[0, 0]),
                }
            )

    def compute(self) -> dict[str, float]:
        """``miou``, ``iou_background``, ``iou_foreground`` (set-level), ``iou_fg``, ``dice_fg`` (per-image means),
        ``pixel_accuracy`` and ``n_images``."""
        ious = iou_per_class(self.confusion)
        total = max(int(self.confusion.sum()), 1)
        n = len(self.per_image)
        return {
            "miou": miou_from_confusion(self.confusion),
            "iou_background": float(ious[0]),
            "iou_foreground": float(ious[1]),
            "iou_fg": float(np.mean([r["iou_fg"] for r in self.per_image])) if n else float("nan"),
            "dice_fg": float(np.mean([r["dice_fg"] for r in self.per_image])) if n else float("nan"),
            "pixel_accuracy": float(np.trace(self.confusion)) / total,
            "n_images": n,
        }


def score_masks(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None, ids: list[str] | None = None
) -> SegmentationScores:
    """Score a whole set at once. pred, target, valid: (N, H, W) bool."""
    s = SegmentationScores()
    s.update(pred, target, valid, ids)
    return s
