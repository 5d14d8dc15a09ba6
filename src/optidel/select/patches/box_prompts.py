"""Box prompts for a box-trained SAM (LiteMedSAM): a multi-scale grid, and boxes read off the encoder's own features.

LiteMedSAM was trained on box prompts only (point prompts give empty masks), so SAM's automatic point grid [0] is
replaced by boxes. Decoding costs ~2.4-3.6 GFLOPs per box, so where the boxes go matters:

- :func:`grid_boxes`: squares of a few sizes at a fixed overlap over the image (the obvious baseline; 128 and 64 px
  at 50% overlap give ~50-58 boxes on a 256 px frame).
- :func:`feature_boxes`: regions that stand out in the encoder's 64x64 embedding, which is computed anyway: the
  cells are clustered (k-means on cosine-normalised features) and thresholded on feature saliency (cosine distance
  to the image's mean feature); the bounding box of each connected component becomes a prompt.

References:
    - [0] Kirillov et al., Segment Anything, ICCV 2023, https://arxiv.org/abs/2304.02643
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def grid_boxes(
    valid_hw: tuple[int, int], sizes: tuple[int, ...] = (128, 64), overlap: float = 0.5
) -> np.ndarray:
    """Square boxes of each size at the given overlap, covering the (h, w) region from its top-left corner.

    A size larger than the region is clipped to it; the last row/column of boxes is aligned with the far edge, so the
    boxes of every size cover the whole region.

    Args:
        valid_hw: (h, w) of the region (pixels of the 256 frame).
        sizes: box sides in pixels.
        overlap: fraction of a side shared by neighbouring boxes, in [0, 1).

    Returns:
        (K, 4) float32 ``x0, y0, x1, y1`` (x1/y1 exclusive), duplicates removed, in size then row-major order.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    h, w = valid_hw
    out: list[tuple[float, float, float, float]] = []
    for s in sizes:
        if s <= 0:
            raise ValueError(f"box sizes must be positive, got {sizes}")
        sh, sw = min(s, h), min(s, w)
        ys = _starts(h, sh, max(1.0, sh * (1 - overlap)))
        xs = _starts(w, sw, max(1.0, sw * (1 - overlap)))
        out.extend((x, y, x + sw, y + sh) for y in ys for x in xs)
    boxes = np.array(out, np.float32).reshape(-1, 4)
    _, idx = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(idx)]


def _starts(length: int, side: int, stride: float) -> list[float]:
    last = length - side
    starts = list(np.arange(0, last + 1e-6, stride))
    if not starts or starts[-1] < last - 1e-6:
        starts.append(float(last))
    return [float(round(v)) for v in starts]


def feature_boxes(
    features: torch.Tensor,
    valid_hw64: tuple[int, int],
    stride: int = 4,
    n_clusters: int = 4,
    saliency_quantiles: tuple[float, ...] = (0.75, 0.9),
    min_cells: int = 6,
    max_frac: float = 0.85,
    expand: float = 0.1,
    seed: int = 0,
    order: str = "saliency",
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around regions that stand out in an image embedding.

    Two readings of the (C, h, w) embedding, both connected components (8-connectivity) turned into boxes:
    k-means clusters of the cosine-normalised cell features (``n_clusters``; k-means++ seeding, fixed seed), and
    saliency masks: cells whose cosine distance to the mean feature is above the given quantiles.

    Args:
        features: (C, 64, 64) embedding (padding included; only the top-left ``valid_hw64`` cells are used).
        valid_hw64: (h, w) cells holding image content.
        stride: input pixels per cell (boxes are returned in input pixels).
        n_clusters: k-means clusters (0 disables the clustering reading).
        saliency_quantiles: thresholds of the saliency reading (empty disables it).
        min_cells: smallest component kept, in cells.
        max_frac: components whose box covers more than this fraction of the region are dropped (the background).
        expand: fraction of a box's side added on each side (LiteMedSAM was trained on slightly loose boxes),
            at least one cell.
        seed: k-means seed.
        order: how boxes are ranked: ``"saliency"`` (mean saliency of the component), ``"size"`` (its cells) or
            ``"mass"`` (mean saliency x cells).

    Returns:
        boxes: (K, 4) float32 ``x0, y0, x1, y1`` in input pixels, clipped to the region; scores: (K,) float32, the
        ranking score, boxes sorted by it (descending).
    """
    if order not in ("saliency", "size", "mass"):
        raise ValueError(f"order must be 'saliency', 'size' or 'mass', got {order!r}")
    import torch

    h, w = valid_hw64
    x = features[:, :h, :w].reshape(features.shape[0], -1).t().float().cpu()
    x = torch.nn.functional.normalize(x, dim=1)
    mean = torch.nn.functional.normalize(x.mean(0), dim=0)
    sal = (1.0 - x @ mean).view(h, w).cpu().numpy()
    # (label map, labels to split into components): every cluster; the above-threshold part of a saliency mask
    label_maps: list[tuple[np.ndarray, np.ndarray]] = []
    if n_clusters > 1 and h * w > n_clusters:
        lab = _kmeans_labels(x, n_clusters, seed).view(h, w).cpu().numpy()
        label_maps.append((lab, np.unique(lab)))
    for q in saliency_quantiles:
        label_maps.append(((sal > np.quantile(sal, q)).astype(np.int64), np.array([1])))
    boxes: list[list[float]] = []
    scores: list[float] = []
    for lab, values in label_maps:
        for v in values:
            _component_boxes(lab == v, sal, boxes, scores, stride, min_cells, max_frac, expand, order)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    b = np.array(boxes, np.float32)
    s = np.array(scores, np.float32)
    order = np.argsort(-s, kind="stable")
    return b[order], s[order]


def _component_boxes(
    mask: np.ndarray,
    sal: np.ndarray,
    boxes: list[list[float]],
    scores: list[float],
    stride: int,
    min_cells: int,
    max_frac: float,
    expand: float,
    order: str,
) -> None:
    """Append the box and ranking score of every 8-connected component of ``mask`` (h, w) that passes the size
    filters to ``boxes`` and ``scores`` (see :func:`feature_boxes` for the arguments)."""
    from scipy import ndimage

    h, w = mask.shape
    comp, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None or sizes[i] < min_cells:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if (y1 - y0) * (x1 - x0) > max_frac * h * w:
            continue
        bh, bw = y1 - y0, x1 - x0
        ey, ex = max(1.0, expand * bh), max(1.0, expand * bw)
        boxes.append(
            [
                max(0.0, x0 - ex) * stride,
                max(0.0, y0 - ey) * stride,
                min(float(w), x1 + ex) * stride,
                min(float(h), y1 + ey) * stride,
            ]
        )
        mean_sal = float(sal[comp == i].mean())
        size = float(sizes[i])
        scores.append({"saliency": mean_sal, "size": size, "mass": mean_sal * size}[order])


def _kmeans_labels(x: torch.Tensor, k: int, seed: int, iters: int = 10) -> torch.Tensor:
    """Cosine k-means of rows of x (n, d) (unit norm) with k-means++ seeding; returns (n,) labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    centers = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = torch.full((n,), float("inf"))
    for _ in range(1, k):
        d2 = torch.minimum(d2, (2 - 2 * (x @ centers[-1])).clamp_min(0))
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        centers.append(x[int(torch.multinomial(p, 1, generator=g))])
    c = torch.stack(centers)
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        labels = (x @ c.t()).argmax(1)
        for j in range(k):
            sel = labels == j
            if bool(sel.any()):
                c[j] = torch.nn.functional.normalize(x[sel].mean(0), dim=0)
    return labels


def dedupe_boxes(boxes: np.ndarray, iou_threshold: float = 0.7) -> np.ndarray:
    """Greedy de-duplication in the given order: drop a box whose IoU with an earlier kept box exceeds the threshold.

    Args:
        boxes: (K, 4) float ``x0, y0, x1, y1``.

    Returns:
        (K',) int64 indices of the kept boxes, in order.
    """
    keep: list[int] = []
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if keep:
            k = np.array(keep)
            ix0 = np.maximum(boxes[k, 0], boxes[i, 0])
            iy0 = np.maximum(boxes[k, 1], boxes[i, 1])
            ix1 = np.minimum(boxes[k, 2], boxes[i, 2])
            iy1 = np.minimum(boxes[k, 3], boxes[i, 3])
            inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
            iou = inter / (area[k] + area[i] - inter + 1e-9)
            if bool((iou > iou_threshold).any()):
                continue
        keep.append(i)
    return np.array(keep, np.int64)
