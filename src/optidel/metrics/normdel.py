"""NormDEL, MedDEL's score that rewards accuracy at a small retained data ratio.

- [0] MedDEL, "Data-effective learning for medical image segmentation", ACM MM 2024, https://arxiv.org/abs/2401.17542

``DEL = mIoU * exp(-alpha * R)`` and ``NormDEL = 100 / (1 + exp(-DEL))`` with ``alpha = 1``, mIoU as a fraction and
R the retained ratio of the pre-training pool (1.0 for full data).
"""

from __future__ import annotations

import numpy as np


def del_score(miou: float | np.ndarray, ratio: float | np.ndarray, alpha: float = 1.0) -> float | np.ndarray:
    """DEL = mIoU * exp(-alpha * R)."""
    return np.asarray(miou) * np.exp(-alpha * np.asarray(ratio))


def normdel(miou: float | np.ndarray, ratio: float | np.ndarray, alpha: float = 1.0) -> float | np.ndarray:
    """NormDEL = 100 / (1 + exp(-DEL)), in (50, 100) for mIoU in (0, 1]."""
    return 100.0 / (1.0 + np.exp(-del_score(miou, ratio, alpha)))
