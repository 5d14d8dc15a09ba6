"""Batched augmentations: exact geometry, per-image parameters, slices of a global batch, determinism."""

from __future__ import annotations

import torch

from optidel.ssl.augment import SIMCLR_AUGMENT, BatchAugment, gaussian_blur, normalize, to_float
from optidel.ssl.config import SSLAugmentConfig

IDENTITY = SSLAugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0)


def _images(n: int = 6, s: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8)


def test_to_float_layout_and_range():
    u8 = _images()
    x = to_float(u8)
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[2, 1], u8[2, :, :, 1].float() / 255)


def test_identity_settings_leave_images_unchanged():
    x = to_float(_images())
    aug = BatchAugment(IDENTITY, 16)
    out = aug.apply(x, aug.sample(6, torch.Generator().manual_seed(1)), normalise=False)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flips_are_exact_mirror_images():
    x = to_float(_images())
    g = torch.Generator().manual_seed(0)
    h = BatchAugment(SSLAugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), hflip=1.0), 16)
    torch.testing.assert_close(h.apply(x, h.sample(6, g), normalise=False), x.flip(-1), atol=1e-5, rtol=0)
    v = BatchAugment(SSLAugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), hflip=0.0, vflip=1.0), 16)
    torch.testing.assert_close(v.apply(x, v.sample(6, g), normalise=False), x.flip(-2), atol=1e-5, rtol=0)


def test_crop_zooms_into_the_image():
    # a left-to-right ramp: a crop of a quarter of the area spans about half the ramp's range
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4, 3, 32, 32).contiguous()
    aug = BatchAugment(SSLAugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(1, 1), hflip=0.0), 32)
    out = aug.apply(ramp, aug.sample(4, torch.Generator().manual_seed(0)), normalise=False)
    span = out[:, 0, 16, -1] - out[:, 0, 16, 0]
    assert torch.all((span > 0.4) & (span < 0.55))


def test_parameters_are_per_image_deterministic_and_sliceable():
    aug = BatchAugment(SIMCLR_AUGMENT, 16)
    p1 = aug.sample(8, torch.Generator().manual_seed(5))
    p2 = aug.sample(8, torch.Generator().manual_seed(5))
    assert torch.equal(p1.theta, p2.theta) and torch.equal(p1.blur_sigma, p2.blur_sigma)
    assert len(torch.unique(p1.theta[:, 0, 2])) == 8  # each image its own crop
    x = to_float(_images(8))
    full = aug.apply(x, p1)
    half = aug.apply(x[4:], p1.select(slice(4, 8)))  # what DDP rank 1 of 2 computes
    torch.testing.assert_close(half, full[4:], atol=1e-6, rtol=0)


def test_color_grayscale_and_blur():
    x = to_float(_images())
    gray_only = SSLAugmentConfig(crop_scale=(1, 1), crop_ratio=(1, 1), hflip=0.0, grayscale_prob=1.0)
    aug = BatchAugment(gray_only, 16)
    out = aug.apply(x, aug.sample(6, torch.Generator()), normalise=False)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])

    jitter = SSLAugmentConfig(
        crop_scale=(1, 1), crop_ratio=(1, 1), hflip=0.0, color_prob=1.0, brightness=0.2, contrast=0.2
    )
    aug = BatchAugment(jitter, 16)
    p = aug.sample(6, torch.Generator().manual_seed(2))
    assert torch.all((p.brightness >= 0.8) & (p.brightness <= 1.2) & (p.brightness != 1))
    out = aug.apply(x, p, normalise=False)
    assert out.min() >= 0 and out.max() <= 1

    blurred = gaussian_blur(x, torch.full((6,), 2.0), 5)
    assert blurred.shape == x.shape
    assert blurred.std() < x.std()  # noise is smoothed
    torch.testing.assert_close(blurred.mean(), x.mean(), atol=0.02, rtol=0)


def test_normalize_uses_imagenet_statistics():
    x = torch.ones(1, 3, 2, 2) * torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    assert torch.allclose(normalize(x), torch.zeros_like(x), atol=1e-6)
