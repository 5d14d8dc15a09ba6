"""Augmentation moves image and label together, is seeded, and marks warped-in pixels invalid."""

from __future__ import annotations

import torch

from optidel.downstream.augment import augment_batch
from optidel.downstream.config import FinetuneAugmentConfig


def _batch():
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(4, 32, 32, generator=g) > 0.7).float()
    labels[:, 8:20, 4:14] = 1
    images = labels[:, None].repeat(1, 3, 1, 1) * 0.8 + 0.1  # the label drawn into the image
    return images, labels, torch.ones_like(labels)


def test_geometry_is_shared_between_image_and_label():
    images, labels, valid = _batch()
    cfg = FinetuneAugmentConfig(brightness=0, contrast=0, rotate_deg=20, scale=0.1, translate=0.1)
    xi, yi, vi = augment_batch(images, labels, valid, cfg, torch.Generator().manual_seed(1))
    inside = vi > 0.5
    agree = ((xi[:, 0] > 0.5) == (yi > 0.5))[inside].float().mean()
    assert agree > 0.95  # only interpolated edge pixels may differ
    assert (vi < 0.5).any()  # rotation brings pixels in from outside: they are ignored
    assert set(yi.unique().tolist()) <= {0.0, 1.0}


def test_seeded_and_switchable():
    images, labels, valid = _batch()
    cfg = FinetuneAugmentConfig()
    a = augment_batch(images, labels, valid, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(images, labels, valid, cfg, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    off = augment_batch(images, labels, valid, FinetuneAugmentConfig(enabled=False), torch.Generator())
    assert off[0] is images and off[1] is labels
    assert float(a[0].min()) >= 0 and float(a[0].max()) <= 1
