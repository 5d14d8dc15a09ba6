"""Our mIoU / Dice equal torchmetrics' on random masks and on the real Kvasir-SEG test masks, and equal the
pre-torchmetrics numpy implementation bit for bit (so earlier runs' metrics.json stay comparable)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.classification import (
    binary_f1_score,
    binary_jaccard_index,
    multiclass_jaccard_index,
)

from optidel.metrics.segmentation import per_image_confusion, score_masks

F32 = 1e-6  # torchmetrics divides in float32; ours in float64


def _numpy_confusion(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The implementation before torchmetrics (np.bincount), kept here as the reference for 'unchanged'."""
    if valid is not None:
        pred, target = pred[valid], target[valid]
    codes = target.astype(np.int64).ravel() * 2 + pred.astype(np.int64).ravel()
    return np.bincount(codes, minlength=4).reshape(2, 2)


def _numpy_scores(pred, target, valid) -> dict[str, float]:
    """Set-level mIoU and per-image foreground IoU / Dice means as computed before (float64)."""
    total = np.zeros((2, 2), np.int64)
    ious, dices = [], []
    for i in range(len(pred)):
        cm = _numpy_confusion(pred[i], target[i], None if valid is None else valid[i])
        total += cm
        tp, fp, fn = float(cm[1, 1]), float(cm[0, 1]), float(cm[1, 0])
        ious.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
        dices.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    cm = total.astype(np.float64)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    per_class = [inter[c] / union[c] for c in range(2) if union[c] > 0]
    return {
        "miou": float(np.mean(per_class)),
        "iou_fg": float(np.mean(ious)),
        "dice_fg": float(np.mean(dices)),
    }


def _library_scores(pred, target, valid) -> dict[str, float]:
    """The same three numbers from torchmetrics: macro Jaccard over all valid pixels; per-image Jaccard and F1."""
    labels = torch.from_numpy(target.astype(np.int64))
    if valid is not None:
        labels[torch.from_numpy(~valid)] = -1
    preds = torch.from_numpy(pred.astype(np.int64))
    miou = multiclass_jaccard_index(preds, labels, num_classes=2, average="macro", ignore_index=-1)
    ious, dices = [], []
    for i in range(len(pred)):
        p, t = preds[i].flatten(), labels[i].flatten()
        ious.append(float(binary_jaccard_index(p, t, ignore_index=-1, zero_division=1)))
        dices.append(float(binary_f1_score(p, t, ignore_index=-1, zero_division=1)))
    return {"miou": float(miou), "iou_fg": float(np.mean(ious)), "dice_fg": float(np.mean(dices))}


def _check(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None) -> dict[str, float]:
    ours = score_masks(pred, target, valid).compute()
    before = _numpy_scores(pred, target, valid)
    library = _library_scores(pred, target, valid)
    for k in ("miou", "iou_fg", "dice_fg"):
        assert ours[k] == before[k], k  # exactly the pre-torchmetrics numbers
        assert ours[k] == pytest.approx(library[k], rel=F32, abs=F32), k
    for i in range(len(pred)):
        v = None if valid is None else valid[i]
        np.testing.assert_array_equal(
            per_image_confusion(pred[i : i + 1], target[i : i + 1], None if v is None else v[None])[0],
            _numpy_confusion(pred[i], target[i], v),
        )
    return ours


@pytest.mark.parametrize("with_valid", [False, True])
def test_random_masks_equal_torchmetrics_and_the_previous_numbers(with_valid: bool):
    rng = np.random.default_rng(7)
    n, h, w = 12, 24, 20
    target = rng.random((n, h, w)) < rng.uniform(0.02, 0.5, (n, 1, 1))
    pred = rng.random((n, h, w)) < rng.uniform(0.02, 0.5, (n, 1, 1))
    target[0] = pred[0] = False  # empty truth, empty prediction: IoU = Dice = 1
    target[1] = False  # a false alarm on an empty image: 0
    pred[2] = False  # everything missed: 0
    valid = rng.random((n, h, w)) < 0.8 if with_valid else None
    ours = _check(pred, target, valid)
    assert 0 < ours["miou"] < 1 and 0 < ours["dice_fg"] < 1  # a real mix, not a degenerate case


def test_one_image_and_a_class_absent_everywhere():
    empty = np.zeros((1, 5, 5), bool)
    assert _check(empty, empty, None)["miou"] == 1.0  # only background exists: its IoU alone
    one = empty.copy()
    one[0, 2, 2] = True
    _check(one, empty, None)


def test_real_kvasir_test_masks_vs_dilated_and_eroded(kvasir):
    """Kvasir-SEG test masks (64 px) scored against dilated and eroded copies of themselves."""
    from optidel.data.array_cache import load_stack
    from optidel.data.segmentation import load_seg_dataset

    pairs = load_seg_dataset(kvasir, check_sizes=False).split("test")
    masks = np.asarray(load_stack([p.mask for p in pairs], 64, "mask").array, bool)
    assert len(masks) >= 50 and masks.any()
    grow = np.stack([ndimage.binary_dilation(m, iterations=2) for m in masks])
    shrink = np.stack([ndimage.binary_erosion(m, iterations=2) for m in masks])
    grown = _check(grow, masks, None)
    shrunk = _check(shrink, masks, None)
    assert grown["dice_fg"] < 1 and shrunk["dice_fg"] < 1
