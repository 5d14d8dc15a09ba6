"""From SAM masks to patches: stability score, mask boxes, non-maximum suppression, margins in original pixels.

Shared by the LiteMedSAM and SAM-checkpoint proposers, so both map masks to :class:`ImagePatches` the same way.

References:
    - [0] Kirillov et al., Segment Anything, ICCV 2023, https://arxiv.org/abs/2304.02643 (stability score, NMS)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def stability_score(logits: torch.Tensor, mask_threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability score: IoU of the masks thresholded at ``mask_threshold + offset`` and ``- offset``.

    Args:
        logits: (P, H, W) mask logits.

    Returns:
        (P,) float32 in [0, 1] (1 for an empty mask at both thresholds).
    """
    import torch

    inter = (logits > mask_threshold + offset).flatten(1).sum(1).float()
    union = (logits > mask_threshold - offset).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_bboxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks.

    Args:
        masks: (P, H, W) bool.

    Returns:
        (P, 4) float32 ``x0, y0, x1, y1`` with x1/y1 exclusive; an empty mask gives (0, 0, 0, 0).
    """
    import torch

    p, h, w = masks.shape
    if p == 0:
        return torch.zeros(0, 4)
    rows = masks.any(2)  # (P, H)
    cols = masks.any(1)  # (P, W)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    out = torch.stack([x0, y0, x1, y1], 1).float()
    out[~rows.any(1)] = 0
    return out


def nms_order(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices kept by non-maximum suppression, best score first.

    Box NMS (``torchvision.ops.nms``) on ``boxes``, or, when ``masks`` (P, H, W) bool are given, greedy NMS on mask
    IoU (one (P, P) matrix product).

    Args:
        boxes: (P, 4) float ``x0, y0, x1, y1``; scores: (P,).

    Returns:
        (P',) int64 indices into the inputs, by decreasing score.
    """
    import torch

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    if masks is None:
        from torchvision.ops import nms

        return nms(boxes.float(), scores.float(), iou_threshold)
    flat = masks.flatten(1).float()
    inter = flat @ flat.t()
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1)
    order = torch.argsort(scores, descending=True, stable=True)
    keep: list[int] = []
    for i in order.tolist():
        if keep and bool((iou[i, keep] > iou_threshold).any()):
            continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def boxes_to_image(
    boxes: np.ndarray, scale: float, margin: float, image_hw: tuple[int, int], min_side: int = 1
) -> np.ndarray:
    """Mask boxes of a resized frame -> patch boxes in the original image: margin, scale, clip, round outwards.

    Args:
        boxes: (P, 4) float ``x0, y0, x1, y1`` (x1/y1 exclusive) in frame pixels.
        scale: original pixels per frame pixel.
        margin: fraction of the box's width/height added on each side.
        image_hw: (H, W) of the original image.
        min_side: smallest patch side in original pixels (a box is grown around its centre to reach it).

    Returns:
        (P, 4) int32 in original pixels, ``0 <= x0 < x1 <= W``, ``0 <= y0 < y1 <= H``.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    b[:, 0] -= margin * bw
    b[:, 2] += margin * bw
    b[:, 1] -= margin * bh
    b[:, 3] += margin * bh
    b *= scale
    h, w = image_hw
    for lo, hi, lim in ((0, 2, w), (1, 3, h)):
        side = min(max(1, min_side), lim)
        short = (b[:, hi] - b[:, lo]) < side
        c = (b[:, hi] + b[:, lo]) / 2
        b[short, lo] = c[short] - side / 2
        b[short, hi] = c[short] + side / 2
        b[:, lo] = np.clip(np.floor(b[:, lo]), 0, lim - 1)
        b[:, hi] = np.clip(np.ceil(b[:, hi]), 1, lim)
        b[:, hi] = np.maximum(b[:, hi], b[:, lo] + 1)
    return b.astype(np.int32)
