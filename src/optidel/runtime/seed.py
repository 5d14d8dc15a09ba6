"""Determinism given a seed: one helper that seeds every global RNG a stage uses."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int, import_torch: bool = True) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA).

    Args:
        seed: the run's seed (NumPy takes it modulo 2**32).
        import_torch: False seeds torch only when it is already imported, so a stage that may never need torch
            (``optidel select`` with grid patches) does not pay for importing it; the RNG state afterwards is the
            same as with True for every library that is loaded.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if import_torch or "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
