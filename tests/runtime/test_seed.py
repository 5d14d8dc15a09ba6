"""One seeding helper: the same RNG states with or without importing torch eagerly."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import torch

from optidel.runtime.seed import seed_everything


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(torch.rand(()))


def test_same_seed_same_draws_and_lazy_mode_matches_when_torch_is_loaded():
    seed_everything(5)
    a = _draws()
    seed_everything(5, import_torch=False)  # torch is loaded here, so it is seeded too
    assert _draws() == a
    seed_everything(6)
    assert _draws() != a


def test_lazy_mode_does_not_import_torch():
    code = (
        "import sys; from optidel.runtime.seed import seed_everything; seed_everything(3, import_torch=False); "
        "import random; print('torch' in sys.modules, random.random())"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded, value = run.stdout.split()
    random.seed(3)
    assert loaded == "False" and float(value) == random.random()
