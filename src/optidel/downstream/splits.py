"""The data of one fine-tuning run: the dataset's splits at the working resolution, validation held out, labels cut.

The ``train`` split trains; a seeded ``val_fraction`` of it is held out for validation (best-epoch choice, early
stopping, the mean-mask prior's threshold) and ``label_fraction`` then keeps a seeded share of the rest. The
``test`` split is scored once, at the end. Images and masks are resized to ``img_size`` by
:func:`optidel.data.array_cache.load_stack`; DRIVE-style field-of-view masks become ``valid`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optidel.downstream.config import FinetuneConfig
from optidel.log import logger

__all__ = ["RunData", "SplitArrays", "holdout_indices", "label_subset", "load_split", "prepare_data"]


@dataclass
class SplitArrays:
    """One split at the working resolution.

    Attributes:
        ids: N ids; images: (N, S, S, 3) uint8; masks: (N, S, S) bool; valid: (N, S, S) bool scored pixels, or None
        when the dataset has no field-of-view masks.
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    valid: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray | list[int]) -> SplitArrays:
        idx = np.asarray(idx, dtype=np.int64)
        return SplitArrays(
            [self.ids[i] for i in idx],
            self.images[idx],
            self.masks[idx],
            None if self.valid is None else self.valid[idx],
        )


def load_split(pairs: list, img_size: int, has_fov: bool, name: str) -> SplitArrays:
    """Decode (cached) and resize the pairs of one split; pairs whose image or mask cannot be read are left out."""
    from optidel.data.array_cache import load_stack

    if not pairs:
        raise ValueError(f"the {name} split is empty")
    imgs = load_stack(
        [p.image for p in pairs], img_size, "image", description=f"{name} images at {img_size}px"
    )
    masks = load_stack([p.mask for p in pairs], img_size, "mask", description=f"{name} masks at {img_size}px")
    row_img = {Path(p): i for i, p in enumerate(imgs.paths)}
    row_mask = {Path(p): i for i, p in enumerate(masks.paths)}
    fov_rows: dict[Path, int] = {}
    fov_arr = None
    if has_fov:
        with_fov = [p.fov for p in pairs if p.fov is not None]
        if with_fov:
            fovs = load_stack(with_fov, img_size, "mask", description=f"{name} FOV masks at {img_size}px")
            fov_rows = {Path(p): i for i, p in enumerate(fovs.paths)}
            fov_arr = fovs.array
    keep = [
        p
        for p in pairs
        if Path(p.image) in row_img
        and Path(p.mask) in row_mask
        and (p.fov is None or Path(p.fov) in fov_rows)
    ]
    for p in pairs:
        if p not in keep:
            logger.warning("%s: left out of the %s split (image, mask or FOV mask unreadable)", p.id, name)
    if not keep:
        raise ValueError(f"no readable pairs in the {name} split")
    images = np.asarray(imgs.array[[row_img[Path(p.image)] for p in keep]])
    mask_arr = np.asarray(masks.array[[row_mask[Path(p.mask)] for p in keep]], bool)
    valid = None
    if has_fov:
        valid = np.ones_like(mask_arr)
        for i, p in enumerate(keep):
            if p.fov is not None and fov_arr is not None:
                valid[i] = fov_arr[fov_rows[Path(p.fov)]]
    return SplitArrays([p.id for p in keep], images, mask_arr, valid)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (kept, held out); held out has ``max(1, round(fraction * n))`` items.

    Both index arrays are sorted. Raises ValueError when n < 2.
    """
    if n < 2:
        raise ValueError(f"need at least 2 training pairs to hold out a validation part, got {n}")
    n_out = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng([seed, 0xA11]).permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def label_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Seeded sorted subset of ``range(n)`` with ``max(2, round(fraction * n))`` items (all when fraction is 1)."""
    if fraction >= 1:
        return np.arange(n)
    k = min(n, max(2, round(fraction * n)))
    return np.sort(np.random.default_rng([seed, 0x1AB]).permutation(n)[:k])


@dataclass
class RunData:
    """The three parts of one run at the working resolution (``train`` is after the label fraction)."""

    name: str
    split_source: str
    has_fov: bool
    train: SplitArrays
    train_available: SplitArrays
    val: SplitArrays
    test: SplitArrays


def prepare_data(cfg: FinetuneConfig) -> RunData:
    """Load the dataset's splits at ``img_size``, hold out validation, apply the label fraction (all seeded)."""
    from optidel.data.segmentation import load_seg_dataset, require_foreground

    ds = load_seg_dataset(cfg.dataset, options=cfg.sources)
    has_fov = any(p.fov is not None for p in ds.pairs)
    train_all = load_split(ds.split("train"), cfg.img_size, has_fov, "train")
    require_foreground(train_all.masks, cfg.dataset, "train")  # all-empty masks would train to a floor of 1.0
    test = load_split(ds.split("test"), cfg.img_size, has_fov, "test")
    keep_idx, val_idx = holdout_indices(len(train_all), cfg.val_fraction, cfg.seed)
    train_part = train_all.take(keep_idx)
    data = RunData(
        name=ds.name,
        split_source=ds.split_source,
        has_fov=has_fov,
        train=train_part.take(label_subset(len(train_part), cfg.label_fraction, cfg.seed)),
        train_available=train_part,
        val=train_all.take(val_idx),
        test=test,
    )
    logger.info(
        "data: %d train (of %d after holding out %d for validation, label_fraction=%g), %d test, %dpx%s",
        len(data.train),
        len(train_part),
        len(data.val),
        cfg.label_fraction,
        len(test),
        cfg.img_size,
        ", scored inside FOV masks" if has_fov else "",
    )
    return data
