"""timm backbones by short name, at any image size and (for ViTs) patch size.

Short names: ``vit_tiny``, ``vit_small``, ``vit_base`` (ViT-Ti/S/B, Dosovitskiy et al. 2021) and ``resnet18``,
``resnet50``; any full timm architecture name works too. Backbones are created with ``num_classes=0`` (features
only) and never download weights.
"""

from __future__ import annotations

from typing import Any

import timm
import torch.nn as nn

ARCH_ALIASES = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
}


def timm_name(arch: str) -> str:
    """Short name -> timm architecture name (full timm names pass through)."""
    return ARCH_ALIASES.get(arch, arch)


def is_vit(arch: str) -> bool:
    return timm_name(arch).startswith(("vit_", "deit_"))


def backbone_kwargs(arch: str, img_size: int, patch_size: int | None = None) -> dict[str, Any]:
    """The timm keyword arguments that rebuild this backbone (stored with every exported encoder)."""
    kw: dict[str, Any] = {"num_classes": 0}
    if is_vit(arch):
        kw["img_size"] = img_size
        if patch_size is not None:
            kw["patch_size"] = patch_size
    return kw


def create_backbone(arch: str, img_size: int, patch_size: int | None = None, **extra: Any) -> nn.Module:
    """A randomly initialised timm backbone without a classifier head.

    Returns:
        model whose ``forward_features(x)`` maps x: (N, 3, img_size, img_size) to tokens (N, 1 + L, D) for ViTs or a
        feature map (N, C, h, w) for ResNets.
    """
    name = timm_name(arch)
    if name not in timm.list_models() and not timm.is_model(name):
        raise ValueError(f"unknown architecture {arch!r} (timm has no model {name!r})")
    return timm.create_model(name, pretrained=False, **backbone_kwargs(arch, img_size, patch_size), **extra)
