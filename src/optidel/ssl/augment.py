"""Batched augmentations for medical images, as torch ops on whole batches (no per-image Python work).

Images come from the array cache as ``uint8`` (N, S, S, 3) and leave as normalised float (N, 3, S, S). Random
parameters are drawn first (:meth:`BatchAugment.sample`, from an explicit ``torch.Generator``, always the same draws
in the same order whatever is switched on) and applied second (:meth:`BatchAugment.apply`), so the training loop can
draw parameters for the *global* batch and let each DDP rank apply its slice: augmentations then depend only on
(seed, step, position in the global batch), not on the number of processes, and a resumed run repeats them exactly.

What is applied, in order (each switchable in :class:`optidel.ssl.config.SSLAugmentConfig`):

1. **Geometry, one resampling**: random resized crop (area fraction ``crop_scale``, aspect ``crop_ratio``; sampled
   directly and clipped to the image, instead of torchvision's rejection loop), horizontal / vertical flips and a small
   rotation (``rotate_degrees``) of the crop about its centre, composed into one affine map per image and applied with
   ``grid_sample`` (bilinear; pixels from outside the image are black, as on endoscopy borders).
2. **Mild brightness and contrast** (with probability ``color_prob``): ``x * b``, then ``(x - m) * c + m`` with ``m``
   the image's mean grey level; clipped to [0, 1]. No hue or saturation jitter: on grayscale modalities (ultrasound,
   X-ray) they are meaningless, and on colour ones (endoscopy, fundus) colour carries diagnostic signal.
3. **Random grayscale** (``grayscale_prob``; ITU-R 601 luma): a no-op on grayscale images, a colour-invariance cue
   on colour ones.
4. **Gaussian blur** (``blur_prob``): sigma from ``blur_sigma`` (pixels at 224 px, scaled by ``S / 224``), kernel about
   10% of the image side as in SimCLR, separable, reflect padding.
5. **Normalisation** with the ImageNet mean and std (:data:`MEAN`, :data:`STD`), the convention of timm backbones;
   exported encoders record it in their metadata so downstream code normalises the same way.

The MAE preset is the MAE paper's (crop 0.2-1 + horizontal flip); the SimCLR preset adds vertical flips, +-15 degree
rotations, brightness/contrast 0.2 (p 0.8), grayscale (p 0.2) and blur (p 0.5).

- [0] SimCLR, Chen et al., 2020, https://arxiv.org/abs/2002.05709 (augmentation recipe, blur kernel size)
- [1] MAE, He et al., 2021, https://arxiv.org/abs/2111.06377 (crop + flip only)

Examples:
    >>> aug = BatchAugment(SIMCLR_AUGMENT, img_size=64)
    >>> g = torch.Generator().manual_seed(0)
    >>> params = aug.sample(8, g)
    >>> x = to_float(torch.zeros(8, 64, 64, 3, dtype=torch.uint8))
    >>> aug.apply(x, params).shape
    torch.Size([8, 3, 64, 64])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from optidel.models.inputs import MEAN, STD, normalize, to_float
from optidel.ssl.config import MAE_AUGMENT, SIMCLR_AUGMENT, SSLAugmentConfig

__all__ = [
    "MEAN",
    "STD",
    "AugmentParams",
    "BatchAugment",
    "MAE_AUGMENT",
    "SIMCLR_AUGMENT",
    "normalize",
    "to_float",
]

_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AugmentParams:
    """Random parameters for a batch of N images.

    Attributes:
        theta: (N, 2, 3) affine maps from output to input coordinates (``F.affine_grid`` convention).
        brightness: (N,) brightness factors (1 = unchanged).
        contrast: (N,) contrast factors (1 = unchanged).
        grayscale: (N,) bool, convert to grayscale.
        blur_sigma: (N,) blur sigma in pixels at the actual image size (0 = no blur).
    """

    theta: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    grayscale: torch.Tensor
    blur_sigma: torch.Tensor

    def __len__(self) -> int:
        return self.theta.shape[0]

    def select(self, index: slice | torch.Tensor) -> AugmentParams:
        """The parameters of a sub-batch (e.g. this DDP rank's slice of the global batch)."""
        return AugmentParams(*(getattr(self, f)[index] for f in _FIELDS))

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(*(getattr(self, f).to(device, non_blocking=True) for f in _FIELDS))


_FIELDS = ("theta", "brightness", "contrast", "grayscale", "blur_sigma")


class BatchAugment:
    """Sample and apply the augmentations of one :class:`SSLAugmentConfig` at image size ``img_size``."""

    def __init__(self, cfg: SSLAugmentConfig, img_size: int):
        self.cfg = cfg
        self.img_size = img_size
        k = max(3, int(round(0.1 * img_size)))
        self.blur_kernel = k + 1 if k % 2 == 0 else k  # odd, ~10% of the side (SimCLR)

    def sample(self, n: int, generator: torch.Generator) -> AugmentParams:
        """Draw parameters for ``n`` images (on the CPU; always the same 11 draws of ``n`` numbers, in order)."""
        c = self.cfg

        def u(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

        area = u(*c.crop_scale)
        log_ratio = u(math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]))
        cx_u, cy_u = u(0, 1), u(0, 1)
        hflip = u(0, 1) < c.hflip
        vflip = u(0, 1) < c.vflip
        angle = u(-1, 1) * math.radians(c.rotate_degrees)
        color_on = u(0, 1) < c.color_prob
        b = u(1 - c.brightness, 1 + c.brightness)
        ct = u(1 - c.contrast, 1 + c.contrast)
        gray = u(0, 1) < c.grayscale_prob
        blur_on = u(0, 1) < c.blur_prob
        sigma = u(*c.blur_sigma) * (self.img_size / 224.0)

        aspect = torch.exp(log_ratio)
        w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width, as a fraction of the image side
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (2 * cx_u - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop inside the image
        cy = (2 * cy_u - 1) * (1 - h)
        fx = torch.where(hflip, -1.0, 1.0).double()
        fy = torch.where(vflip, -1.0, 1.0).double()
        cos, sin = torch.cos(angle), torch.sin(angle)
        # input = centre + R(angle) @ diag(w, h) @ diag(fx, fy) @ output
        theta = torch.stack(
            [
                torch.stack([cos * w * fx, -sin * h * fy, cx], dim=1),
                torch.stack([sin * w * fx, cos * h * fy, cy], dim=1),
            ],
            dim=1,
        ).float()
        one = torch.ones(n, dtype=torch.float64)
        return AugmentParams(
            theta=theta,
            brightness=torch.where(color_on, b, one).float(),
            contrast=torch.where(color_on, ct, one).float(),
            grayscale=gray,
            blur_sigma=torch.where(blur_on, sigma, 0.0).float(),
        )

    def apply(self, x: torch.Tensor, params: AugmentParams, normalise: bool = True) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: (N, 3, S, S) float in [0, 1] (see :func:`to_float`), on any device.
            params: N parameters from :meth:`sample` (moved to ``x``'s device here).
            normalise: apply the ImageNet normalisation at the end.

        Returns:
            (N, 3, S, S) float32, normalised when ``normalise``.
        """
        if len(params) != x.shape[0]:
            raise ValueError(f"{len(params)} augmentation parameters for a batch of {x.shape[0]} images")
        p = params.to(x.device)
        grid = F.affine_grid(p.theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        if (p.brightness != 1).any() or (p.contrast != 1).any():
            x = x * p.brightness.view(-1, 1, 1, 1)
            mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * p.contrast.view(-1, 1, 1, 1) + mean).clamp_(0.0, 1.0)

        if p.grayscale.any():
            x = torch.where(p.grayscale.view(-1, 1, 1, 1), _luma(x).expand_as(x), x)

        blur = p.blur_sigma > 0
        if blur.any():
            idx = blur.nonzero().squeeze(1)
            x = x.clone()
            x[idx] = gaussian_blur(x[idx], p.blur_sigma[idx], self.blur_kernel)
        return normalize(x) if normalise else x


def _luma(x: torch.Tensor) -> torch.Tensor:
    """x: (N, 3, H, W) -> (N, 1, H, W) grey level."""
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable gaussian blur with one sigma per image.

    Args:
        x: (N, C, H, W) float.
        sigma: (N,) positive sigmas in pixels.
        kernel_size: odd kernel side.

    Returns:
        (N, C, H, W) blurred (reflect padding).
    """
    n, c, h, w = x.shape
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1).clamp(min=1e-3)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, K)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)
