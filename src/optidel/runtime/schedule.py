"""Compute-matched schedules: what each optimisation step consumes (images, randomness) and its learning rate.

A run is ``steps`` optimisation steps of ``batch_size`` images, whatever the pool size: a 5% subset and the full pool
trained for the same number of steps see the same number of images (the subset ~20x more epochs), as in the
MedDEL/OptiDEL protocol.

Everything a step uses is a pure function of (seed, step), so a resumed run repeats an uninterrupted one exactly:

- **data order**: the pool is read as an endless stream of epochs, epoch ``e`` being the permutation
  ``np.random.default_rng([seed, e]).permutation(n)``; step ``t`` takes stream items ``[t * B, (t + 1) * B)``
  (batches run across epoch boundaries; a pool smaller than a batch simply repeats within it);
- **randomness** (augmentations, MAE masks): a ``torch.Generator`` seeded from ``SeedSequence([seed, step])``;
- **learning rate**: linear warmup then cosine decay (:func:`warmup_cosine`), as in MAE.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["StepSampler", "param_groups", "warmup_cosine"]


class StepSampler:
    """The global batch of image indices and the random generator of every step.

    Args:
        n_images: pool size (after bad images were left out).
        batch_size: global batch size.
        seed: run seed.

    Examples:
        >>> s = StepSampler(n_images=10, batch_size=4, seed=0)
        >>> s.indices(0).shape
        (4,)
        >>> sorted(np.concatenate([s.indices(0), s.indices(1), s.indices(2)])[:10]) == list(range(10))
        True
    """

    def __init__(self, n_images: int, batch_size: int, seed: int):
        if n_images < 1:
            raise ValueError("no images to sample from")
        self.n_images = n_images
        self.batch_size = batch_size
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """(n_images,) int64: the order of epoch ``epoch``."""
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n_images)
        return self._cache[epoch]

    def epoch_of(self, step: int) -> float:
        """Epochs completed before ``step`` (fractional)."""
        return step * self.batch_size / self.n_images

    def indices(self, step: int) -> np.ndarray:
        """(batch_size,) int64 image indices of the global batch of step ``step`` (0-based)."""
        start = step * self.batch_size
        out = np.empty(self.batch_size, dtype=np.int64)
        filled = 0
        while filled < self.batch_size:
            epoch, offset = divmod(start + filled, self.n_images)
            take = min(self.batch_size - filled, self.n_images - offset)
            out[filled : filled + take] = self.permutation(epoch)[offset : offset + take]
            filled += take
        return out

    def generator(self, step: int, stream: int = 0) -> torch.Generator:
        """A CPU ``torch.Generator`` for step ``step``'s random draws (augmentations, masks)."""
        import torch

        state = np.random.SeedSequence([self.seed, step, stream]).generate_state(2, dtype=np.uint64)
        return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))

    def state_dict(self) -> dict[str, int]:
        """Everything the data order depends on (stored in checkpoints and checked on resume)."""
        return {"n_images": self.n_images, "batch_size": self.batch_size, "seed": self.seed}


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier of step ``step`` (0-based): linear warmup to 1, then cosine decay to ``min_ratio``.

    Warmup: ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first step is not wasted at lr 0).
    Decay: ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup) / (total - warmup)``
    going from 0 after the warmup towards 1 (as in MAE's per-iteration schedule; the last step still learns).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float
) -> list[dict]:
    """AdamW parameter groups: weight decay on weight matrices/kernels only.

    Biases, norm weights (all 1-d parameters), class/mask tokens and position embeddings get no decay, as in MAE and
    timm. Frozen parameters are left out.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("cls_token", "mask_token", "pos_embed", "reg_token"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
