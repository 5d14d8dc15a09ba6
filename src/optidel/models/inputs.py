"""What every encoder of optidel takes as input: a uint8 image batch turned into ImageNet-normalised floats.

The convention of timm backbones (ImageNet mean and std); shared by pre-training (``optidel.ssl``), the patch embedders
of ``optidel.select`` and the MAE reconstruction score, so it lives below all of them.
"""

from __future__ import annotations

import torch

MEAN = (0.485, 0.456, 0.406)  # ImageNet channel means (timm's default)
STD = (0.229, 0.224, 0.225)  # ImageNet channel standard deviations


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` (N, S, S, 3) -> float32 (N, 3, S, S) in [0, 1] (on the tensor's device)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """x: (N, 3, H, W) in [0, 1] -> ImageNet-normalised (N, 3, H, W)."""
    mean = torch.tensor(MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
