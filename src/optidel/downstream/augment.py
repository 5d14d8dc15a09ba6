"""Seeded, batched training augmentation for segmentation: flips, a small affine warp, mild intensity changes.

Everything runs on whole batches of tensors with one ``torch.Generator``, so a run is reproducible for a seed and
needs no data-loader workers. Geometry is applied identically to the image and its label; pixels that the warp
brings in from outside the image are marked invalid (ignored by the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from optidel.downstream.config import FinetuneAugmentConfig


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    cfg: FinetuneAugmentConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment one batch.

    Args:
        images: (N, 3, H, W) float in [0, 1].
        labels: (N, H, W) float, 1 = foreground.
        valid: (N, H, W) float, 1 = scored pixel (field of view), 0 = ignored.
        cfg: what to apply.
        gen: the random generator (CPU).

    Returns:
        images (N, 3, H, W) in [0, 1], labels (N, H, W) in {0, 1}, valid (N, H, W) in {0, 1}.
    """
    if not cfg.enabled:
        return images, labels, valid
    n = images.shape[0]
    lab = torch.stack([labels, valid], dim=1)  # (N, 2, H, W)

    flip_h = (torch.rand(n, generator=gen) < cfg.hflip).view(n, 1, 1, 1)
    flip_v = (torch.rand(n, generator=gen) < cfg.vflip).view(n, 1, 1, 1)
    images = torch.where(flip_h, images.flip(-1), images)
    lab = torch.where(flip_h, lab.flip(-1), lab)
    images = torch.where(flip_v, images.flip(-2), images)
    lab = torch.where(flip_v, lab.flip(-2), lab)

    if cfg.rotate_deg > 0 or cfg.scale > 0 or cfg.translate > 0:
        angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, gen) * math.pi / 180
        zoom = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, gen)
        shift = _uniform(2 * n, -cfg.translate, cfg.translate, gen).view(n, 2) * 2  # grid coords span [-1, 1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], dim=1
        )  # (N, 2, 3): output coords -> input coords
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        lab = F.grid_sample(lab, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    if cfg.brightness > 0 or cfg.contrast > 0:
        b = _uniform(n, -cfg.brightness, cfg.brightness, gen).view(n, 1, 1, 1)
        c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * c + mean + b).clamp(0, 1)
    return images, lab[:, 0], lab[:, 1]
