"""Metric conventions on hand-built cases (values derived by hand in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from optidel.metrics.segmentation import (
    SegmentationScores,
    confusion_matrix,
    foreground_iou_dice,
    iou_per_class,
    miou_from_confusion,
    score_masks,
)


def _two_images() -> np.ndarray:
    """Image A (4x4) has 4 foreground pixels, image B none: 32 pixels, 4 foreground."""
    t = np.zeros((2, 4, 4), bool)
    t[0, :2, :2] = True
    return t


def test_perfect_prediction_scores_one():
    t = _two_images()
    m = score_masks(t, t).compute()
    assert m["miou"] == 1.0 and m["iou_fg"] == 1.0 and m["dice_fg"] == 1.0 and m["pixel_accuracy"] == 1.0


def test_all_background_prediction_by_hand():
    t = _two_images()
    m = score_masks(np.zeros_like(t), t).compute()
    # TN = 28, FN = 4: IoU_bg = 28 / 32, IoU_fg = 0 -> miou = 0.4375
    assert m["iou_background"] == pytest.approx(28 / 32)
    assert m["iou_foreground"] == 0.0
    assert m["miou"] == pytest.approx(0.4375)
    # per image: A scores 0, B (empty truth, empty prediction) scores 1 -> mean 0.5
    assert m["iou_fg"] == pytest.approx(0.5) and m["dice_fg"] == pytest.approx(0.5)


def test_partial_overlap_by_hand():
    t = np.zeros((1, 4, 4), bool)
    t[0, 0, :3] = True  # 3 true pixels
    p = np.zeros_like(t)
    p[0, 0, 1:4] = True  # 3 predicted, 2 overlap
    cm = confusion_matrix(p, t)
    assert cm.tolist() == [[12, 1], [1, 2]]  # TN 12, FP 1, FN 1, TP 2
    m = score_masks(p, t).compute()
    assert m["iou_fg"] == pytest.approx(2 / 4)
    assert m["dice_fg"] == pytest.approx(4 / 6)
    assert m["miou"] == pytest.approx((12 / 14 + 2 / 4) / 2)


def test_set_level_miou_differs_from_per_image_mean():
    # a big object found, a tiny one missed: set-level IoU is dominated by the big one
    t = np.zeros((2, 8, 8), bool)
    t[0, :6, :6] = True
    t[1, 0, 0] = True
    p = t.copy()
    p[1] = False
    m = score_masks(p, t).compute()
    assert m["iou_foreground"] == pytest.approx(36 / 37)
    assert m["iou_fg"] == pytest.approx(0.5)


def test_empty_conventions():
    z = np.zeros((3, 3), bool)
    one = z.copy()
    one[1, 1] = True
    assert foreground_iou_dice(z, z) == (1.0, 1.0)  # nothing to find, nothing found
    assert foreground_iou_dice(one, z) == (0.0, 0.0)  # false alarm on an empty image
    assert foreground_iou_dice(z, one) == (0.0, 0.0)  # missed everything


def test_class_absent_everywhere_is_left_out_of_the_mean():
    t = np.zeros((1, 4, 4), bool)
    cm = confusion_matrix(t, t)
    assert np.isnan(iou_per_class(cm)[1])
    assert miou_from_confusion(cm) == 1.0


def test_fov_pixels_outside_are_not_scored():
    t = _two_images()
    valid = np.zeros_like(t)
    valid[:, :3, :3] = True
    wrong_outside = t.copy()
    wrong_outside[:, 3, :] = True  # errors only outside the field of view
    m = score_masks(wrong_outside, t, valid).compute()
    assert m["miou"] == 1.0 and m["iou_fg"] == 1.0
    s = SegmentationScores()
    s.update(wrong_outside, t, valid, ids=["a", "b"])
    assert s.confusion.sum() == valid.sum()
    assert [r["id"] for r in s.per_image] == ["a", "b"]
    # fg fraction counts scored pixels only: image A has 4 of 9
    assert s.per_image[0]["fg_fraction"] == pytest.approx(4 / 9)


def test_miou_matches_torchmetrics_on_random_masks():
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    t = rng.random((5, 16, 16)) < 0.3
    p = rng.random((5, 16, 16)) < 0.4
    ours = score_masks(p, t).compute()["miou"]
    ref = MulticlassJaccardIndex(num_classes=2, average="macro")(
        torch.from_numpy(p.astype(np.int64)), torch.from_numpy(t.astype(np.int64))
    )
    assert ours == pytest.approx(float(ref), abs=1e-6)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), bool), np.zeros((3, 3), bool))
