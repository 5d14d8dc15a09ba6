"""Reference floors: what a model that looks at no image would score, computed exactly like the real metrics.

Three floors are reported beside every downstream result so that no one mistakes a degenerate model for a good one:

- ``all-background``: predict background everywhere.
- ``all-foreground``: predict foreground everywhere.
- ``mean-mask prior``: the mean of the labelled training masks at the working resolution (a per-pixel foreground
  frequency map), thresholded at the value that maximises mIoU on the validation part; the same mask is predicted
  for every test image. It captures "lesions tend to sit in the middle" and is the level a frozen probe that learned
  nothing image-specific reaches (FINDINGS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optidel.metrics.segmentation import SegmentationScores, score_masks

FLOOR_NAMES = ("all-background", "all-foreground", "mean-mask prior")


def mean_mask(masks: np.ndarray) -> np.ndarray:
    """Per-pixel foreground frequency. masks: (N, H, W) bool -> (H, W) float64 in [0, 1]."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, H, W) stack of masks, got shape {masks.shape}")
    return masks.mean(axis=0, dtype=np.float64)


def best_prior_threshold(prior: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The threshold t (predict foreground where ``prior >= t``) that maximises mIoU of the fixed mask on ``masks``.

    Every distinct prior value is a candidate, plus ``inf`` (all background). All candidates are scored at once from
    per-pixel counts sorted by prior (exact, O(P log P)). Ties go to the highest threshold.

    Args:
        prior: (H, W) float, e.g. :func:`mean_mask` of the training masks.
        masks: (N, H, W) bool, the validation truths.
        valid: (N, H, W) bool scored pixels, or None.

    Returns:
        the threshold (``inf`` when predicting no foreground is best).
    """
    masks = np.asarray(masks, bool)
    valid_arr = np.ones_like(masks) if valid is None else np.asarray(valid, bool)
    fg = (masks & valid_arr).sum(0).ravel().astype(np.float64)  # true fg count per pixel over the set
    nv = valid_arr.sum(0).ravel().astype(np.float64)  # scored count per pixel
    bg = nv - fg
    p = np.asarray(prior, np.float64).ravel()
    order = np.argsort(-p, kind="stable")
    p_sorted = p[order]
    # predicting fg on the first k sorted pixels; only k at the end of a run of equal values is a valid threshold
    tp = np.concatenate([[0.0], np.cumsum(fg[order])])
    fp = np.concatenate([[0.0], np.cumsum(bg[order])])
    total_fg, total_bg = fg.sum(), bg.sum()
    fn = total_fg - tp
    tn = total_bg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou_fg = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1e-12), np.nan)
        iou_bg = np.where(tn + fn + fp > 0, tn / np.maximum(tn + fn + fp, 1e-12), np.nan)
    miou = np.nanmean(np.stack([iou_bg, iou_fg]), axis=0)
    ends = np.concatenate([[0], np.nonzero(np.diff(p_sorted) != 0)[0] + 1, [len(p_sorted)]])
    cand = miou[ends]
    best = int(ends[int(np.nanargmax(cand))])
    return float("inf") if best == 0 else float(p_sorted[best - 1])


@dataclass
class Floors:
    """The three floors' scores and the prior's threshold.

    Attributes:
        scores: floor name -> :class:`SegmentationScores` on the test set.
        prior_threshold: the mean-mask prior's threshold chosen on validation.
        prior: (H, W) the mean training mask.
    """

    scores: dict[str, SegmentationScores]
    prior_threshold: float
    prior: np.ndarray

    def summary(self) -> dict[str, dict[str, float]]:
        out = {name: s.compute() for name, s in self.scores.items()}
        out["mean-mask prior"]["threshold"] = self.prior_threshold
        return out


def compute_floors(
    train_masks: np.ndarray,
    val_masks: np.ndarray,
    test_masks: np.ndarray,
    val_valid: np.ndarray | None = None,
    test_valid: np.ndarray | None = None,
    test_ids: list[str] | None = None,
) -> Floors:
    """Score the three floors on the test set.

    Args:
        train_masks: (N_tr, H, W) bool labelled training masks (the prior's source).
        val_masks: (N_va, H, W) bool validation masks (the prior's threshold is chosen on them).
        test_masks: (N_te, H, W) bool.
        val_valid, test_valid: scored pixels (DRIVE's field of view), or None.
    """
    test_masks = np.asarray(test_masks, bool)
    prior = mean_mask(train_masks)
    t = best_prior_threshold(prior, val_masks, val_valid)
    prior_pred = np.broadcast_to(prior >= t, test_masks.shape)
    scores = {
        "all-background": score_masks(np.zeros_like(test_masks), test_masks, test_valid, test_ids),
        "all-foreground": score_masks(np.ones_like(test_masks), test_masks, test_valid, test_ids),
        "mean-mask prior": score_masks(prior_pred, test_masks, test_valid, test_ids),
    }
    return Floors(scores, t, prior)
