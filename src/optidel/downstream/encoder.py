"""The encoder of a fine-tuning run: an ``encoder.safetensors`` file or a random initialisation, and its normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optidel.downstream.config import IMAGENET_MEAN, IMAGENET_STD, FinetuneConfig

__all__ = ["build_encoder", "normalisation"]


def build_encoder(cfg: FinetuneConfig) -> tuple[Any, dict[str, Any]]:
    """The backbone (random init for ``encoder: none``) and a description of it for ``metrics.json``."""
    from optidel.models.backbone import create_backbone, is_vit, timm_name
    from optidel.models.encoder_io import load_encoder, read_encoder_metadata

    if cfg.encoder.lower() == "none":
        patch = cfg.patch_size if is_vit(cfg.arch) else None
        model = create_backbone(cfg.arch, cfg.img_size, patch)
        info = {
            "path": "none",
            "random_init": True,
            "arch": timm_name(cfg.arch),
            "patch_size": patch,
            "metadata": {},
        }
    else:
        path = Path(cfg.encoder)
        meta = read_encoder_metadata(path)
        stored = meta.get("timm_kwargs") or {}
        overrides = {"img_size": cfg.img_size} if "img_size" in stored or is_vit(meta["arch"]) else {}
        model = load_encoder(path, **overrides)
        info = {
            "path": str(path.resolve()),
            "random_init": False,
            "arch": meta["arch"],
            "patch_size": stored.get("patch_size"),
            "metadata": meta,
        }
    info["n_params"] = int(sum(p.numel() for p in model.parameters()))
    return model, info


def normalisation(
    cfg: FinetuneConfig, encoder_info: dict[str, Any]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std): the config's, else the encoder file's ``mean``/``std`` metadata, else ImageNet's."""
    meta = encoder_info.get("metadata") or {}
    mean = tuple(cfg.mean) or tuple(meta.get("mean") or IMAGENET_MEAN)
    std = tuple(cfg.std) or tuple(meta.get("std") or IMAGENET_STD)
    return tuple(float(x) for x in mean), tuple(float(x) for x in std)
