"""Paired bootstrap confidence intervals for mIoU differences, over test images and seeds.

mIoU is a set-level metric (IoU from the confusion matrix summed over all test pixels), so the bootstrap resamples
test images with their per-image confusion counts, and seeds, and recomputes mIoU in each replicate. Both arms of a
comparison share the resampled images and seeds (paired), so image difficulty and seed luck cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def miou_from_counts(counts: np.ndarray) -> np.ndarray:
    """mIoU over {background, foreground} from summed confusion counts.

    Args:
        counts: (..., 4) summed ``tp, fp, fn, tn`` (foreground is positive).
    Returns:
        (...,) mIoU = (IoU_fg + IoU_bg) / 2.
    """
    tp, fp, fn, tn = (counts[..., i].astype(np.float64) for i in range(4))
    iou_fg = np.divide(tp, tp + fp + fn, out=np.ones_like(tp), where=(tp + fp + fn) > 0)
    iou_bg = np.divide(tn, tn + fp + fn, out=np.ones_like(tn), where=(tn + fp + fn) > 0)
    return (iou_fg + iou_bg) / 2


def paired_miou_difference_draws(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    seed_idx: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """The point estimate of mIoU(A) - mIoU(B) and its ``n_boot`` paired bootstrap replicates.

    Args:
        counts_a, counts_b: (S, I, 4) per-seed, per-test-image confusion counts ``tp, fp, fn, tn``; seed s of A is
            paired with seed s of B, image i is the same test image in both.
        seed: seeds the image (and, without ``seed_idx``, the seed) resampling.
        seed_idx: (n_boot, S) seed indices of each replicate, to share one seed resampling between comparisons whose
            runs of a seed are related (e.g. several test sets scored with the encoders of the same seeds).
    Returns:
        (estimate, (n_boot,) replicates).
    """
    a, b = np.asarray(counts_a, np.float64), np.asarray(counts_b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"counts must both be (seeds, images, 4); got {a.shape} and {b.shape}")
    n_seeds, n_img, _ = a.shape
    if seed_idx is not None and np.shape(seed_idx) != (n_boot, n_seeds):
        raise ValueError(f"seed_idx must be ({n_boot}, {n_seeds}); got {np.shape(seed_idx)}")
    point = float(miou_from_counts(a.sum(1)).mean() - miou_from_counts(b.sum(1)).mean())
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    chunk = 250
    for start in range(0, n_boot, chunk):
        nb = min(chunk, n_boot - start)
        img_idx = rng.integers(0, n_img, (nb, n_img))
        weights = np.zeros((nb, n_img))
        np.add.at(weights, (np.arange(nb)[:, None], img_idx), 1.0)
        if seed_idx is None:
            sidx = rng.integers(0, n_seeds, (nb, n_seeds))
        else:
            sidx = np.asarray(seed_idx)[start : start + nb]
        # (nb, S, 4): every seed's counts summed with the replicate's image weights
        ca = np.einsum("bi,sik->bsk", weights, a)
        cb = np.einsum("bi,sik->bsk", weights, b)
        rows = np.arange(nb)[:, None]
        ma = miou_from_counts(ca[rows, sidx]).mean(1)
        mb = miou_from_counts(cb[rows, sidx]).mean(1)
        diffs[start : start + nb] = ma - mb
    return point, diffs


def _interval(point: float, diffs: np.ndarray, level: float) -> Interval:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return Interval(point, float(lo), float(hi), level)


def paired_miou_difference(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """mIoU(A) - mIoU(B), averaged over seeds, with a paired bootstrap interval over images and seeds.

    Args:
        counts_a, counts_b: (S, I, 4) per-seed, per-test-image confusion counts ``tp, fp, fn, tn``; seed s of A is
            paired with seed s of B, image i is the same test image in both.
    """
    point, diffs = paired_miou_difference_draws(counts_a, counts_b, n_boot, seed)
    return _interval(point, diffs, level)


def mean_paired_miou_difference(
    pairs: list[tuple[np.ndarray, np.ndarray]], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """The average over test sets of mIoU(A) - mIoU(B), with a paired bootstrap interval.

    Each test set's images are resampled within it; the seeds are resampled once per replicate for every test set
    (run s of every test set used the encoders of seed s), when every pair holds the same number of seeds.

    Args:
        pairs: one ``(counts_a, counts_b)`` per test set, each (S, I_d, 4) as in :func:`paired_miou_difference`.
    """
    if not pairs:
        raise ValueError("no test set to average over")
    n_seeds = {np.shape(a)[0] for a, _ in pairs}
    seed_idx = None
    if len(n_seeds) == 1:
        seed_idx = np.random.default_rng(seed).integers(0, n_seeds.pop(), (n_boot, np.shape(pairs[0][0])[0]))
    draws = [
        paired_miou_difference_draws(a, b, n_boot, seed + 1 + i, seed_idx) for i, (a, b) in enumerate(pairs)
    ]
    point = float(np.mean([p for p, _ in draws]))
    return _interval(point, np.mean([d for _, d in draws], axis=0), level)
