"""``overlays.png``: image / truth / prediction for the best and worst test images by foreground IoU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optidel.runtime.atomic import atomic_open


def pick_best_worst(scores: Sequence[float], n: int) -> list[int]:
    """Indices of the ``n`` best then the ``n`` worst scores (best first, worst last; ties by index; no repeats)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    best = order[:n]
    worst = [i for i in order[::-1][:n] if i not in best][::-1]
    return best + worst


def _tint(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = img.astype(np.float32).copy()
    out[mask] = 0.5 * out[mask] + 0.5 * np.asarray(colour, np.float32)
    return out.astype(np.uint8)


def save_overlays(
    path: str | Path,
    images: np.ndarray,
    truths: np.ndarray,
    preds: np.ndarray,
    ids: Sequence[str],
    iou_fg: Sequence[float],
    n: int = 4,
    valid: np.ndarray | None = None,
    title: str = "",
) -> list[int]:
    """Write a grid with one row per chosen image: the image, the truth (green), the prediction (red).

    Args:
        images: (N, H, W, 3) uint8; truths, preds: (N, H, W) bool; valid: (N, H, W) bool scored pixels (the part
            outside is darkened), or None.
        iou_fg: per-image foreground IoU, used to choose the ``n`` best and ``n`` worst rows.

    Returns:
        the indices shown, best first.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = pick_best_worst(list(iou_fg), n)
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        img = np.asarray(images[i])
        if valid is not None:
            img = np.where(np.asarray(valid[i])[..., None], img, img // 3).astype(np.uint8)
        rank = "best" if r < n else "worst"
        panels = [
            (img, f"{ids[i]}\n({rank})"),
            (_tint(img, np.asarray(truths[i], bool), (0, 255, 0)), "truth"),
            (_tint(img, np.asarray(preds[i], bool), (255, 0, 0)), f"prediction, iou_fg={iou_fg[i]:.3f}"),
        ]
        for c, (panel, t) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel)
            ax.set_title(t, fontsize=8)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return rows
