"""timm backbones by short name, at any image size and (for ViTs) patch size.

Short names: ``vit_tiny``, ``vit_small``, ``vit_base`` (ViT-Ti/S/B, Dosovitskiy et al. 2021) and ``resnet18``,
``resnet50``; any full timm architecture name works too. Backbones are created with ``num_classes=0`` (features
only) and never download weights.
"""

from __future__ import annotations

import re
from typing import Any

import timm
import torch.nn as nn

from optidel.runtime.errors import OptidelError

ARCH_ALIASES = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
}


class BackboneError(OptidelError, ValueError):
    """A backbone that cannot be built: an unknown architecture, or a shape its patch grid does not tile."""

    exit_code = 2


def timm_name(arch: str) -> str:
    """Short name -> timm architecture name (full timm names pass through)."""
    return ARCH_ALIASES.get(arch, arch)


def is_vit(arch: str) -> bool:
    return timm_name(arch).startswith(("vit_", "deit_"))


def default_patch_size(arch: str) -> int | None:
    """The patch size in a ViT's timm name (``vit_tiny_patch16_224`` -> 16); None when the name has none."""
    m = re.search(r"patch(\d+)", timm_name(arch))
    return int(m.group(1)) if m else None


def check_patch_grid(arch: str, img_size: int, patch_size: int | None = None, what: str = "") -> None:
    """Refuse a ViT shape whose patch grid does not tile the image; no-op for CNNs.

    Shared by every command that builds a ViT (pretrain, finetune, evaluate, the select embedders): timm itself
    accepts e.g. ``img_size=30, patch_size=16`` and silently drops the border pixels.

    Args:
        arch: short or timm architecture name.
        img_size: square input side in pixels.
        patch_size: ViT patch side; None means the one in the timm name.
        what: where the shape comes from, for the message (e.g. an encoder file's path).

    Raises:
        BackboneError: ``img_size`` or ``patch_size`` not positive, or ``img_size % patch_size != 0``.
    """
    if not is_vit(arch):
        return
    patch = default_patch_size(arch) if patch_size is None else int(patch_size)
    where = f"{what}: " if what else ""
    if int(img_size) < 1 or (patch is not None and patch < 1):
        raise BackboneError(f"{where}image size {img_size} and patch size {patch} must be positive")
    if patch is not None and int(img_size) % patch:
        lo = max(patch, int(img_size) // patch * patch)
        raise BackboneError(
            f"{where}image size {img_size} is not a multiple of the ViT patch size {patch} ({timm_name(arch)}); "
            f"use e.g. {lo} or {lo + patch}"
        )


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

    Raises:
        BackboneError: an unknown architecture, or a ViT patch size that does not divide ``img_size``.
    """
    name = timm_name(arch)
    if name not in timm.list_models() and not timm.is_model(name):
        raise BackboneError(f"unknown architecture {arch!r} (timm has no model {name!r})")
    check_patch_grid(arch, img_size, patch_size)
    return timm.create_model(name, pretrained=False, **backbone_kwargs(arch, img_size, patch_size), **extra)
