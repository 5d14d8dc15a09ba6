"""Segmentation datasets in the standard layout.

Layout::

    ROOT/images/<id>.<ext>      images (any readable format; ids may contain sub-folders)
    ROOT/masks/<id>.<ext>       masks, same id (extension may differ), read as grayscale, foreground = value > 127
    ROOT/splits.csv             optional, ``id,split`` (e.g. train / test)
    ROOT/fov_masks/<id>.<ext>   optional field-of-view masks (DRIVE): scoring happens inside them

Without ``splits.csv`` the split is deterministic and seeded **per id**: an id goes to ``test`` when
``sha1(f"{seed}:{id}")`` falls in the lowest ``test_fraction`` (default 0.2) of the hash range, else to ``train``.
Adding or removing files never moves the other ids between splits.

Problems (an image without a mask, a mask without an image, a mask whose size differs from its image, an id in
``splits.csv`` with no files, an unreadable file) are collected in :attr:`SegDataset.problems` by id; those ids are
left out of :attr:`SegDataset.pairs`.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optidel.data.image import ImageDecodeError, is_image_file, load_gray, read_header
from optidel.log import logger

DEFAULT_TEST_FRACTION = 0.2
MASK_THRESHOLD = 127


@dataclass(frozen=True)
class SegPair:
    """One labelled image: ``id`` is the path under ``images/`` without extension."""

    id: str
    image: Path
    mask: Path
    split: str
    fov: Path | None = None


@dataclass(frozen=True)
class Problem:
    """Something wrong with one id (or file) of a dataset."""

    id: str
    path: Path | None
    reason: str


@dataclass
class SegDataset:
    """A segmentation dataset: its valid pairs (sorted by id) and the problems found while reading it."""

    root: Path
    pairs: list[SegPair]
    problems: list[Problem] = field(default_factory=list)
    split_source: str = "splits.csv"

    @property
    def name(self) -> str:
        return self.root.name

    def split(self, name: str) -> list[SegPair]:
        """Pairs of one split (``all`` gives every pair)."""
        if name == "all":
            return list(self.pairs)
        return [p for p in self.pairs if p.split == name]

    def split_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.split for p in self.pairs).items()))


def is_seg_dataset(path: str | Path) -> bool:
    """True when ``path`` holds ``images/`` and ``masks/`` folders."""
    p = Path(path)
    return (p / "images").is_dir() and (p / "masks").is_dir()


def index_images(folder: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Map id (relative path without extension, '/'-separated) -> file, for every image file under ``folder``.

    Two files with the same id (``a.png`` and ``a.jpg``) are a problem: the id is dropped.
    """
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or not is_image_file(f):
            continue
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        found.setdefault(rel.with_suffix("").as_posix(), []).append(f)
    out: dict[str, Path] = {}
    problems = []
    for k, files in found.items():
        if len(files) == 1:
            out[k] = files[0]
        else:
            names = ", ".join(f.name for f in files)
            problems.append(Problem(k, files[0], f"several files share this id in {folder.name}/: {names}"))
    return out, problems


def hashed_split(id_: str, seed: int = 0, test_fraction: float = DEFAULT_TEST_FRACTION) -> str:
    """Deterministic per-id split: ``test`` for a ``test_fraction`` share of ids, ``train`` for the rest."""
    h = int.from_bytes(hashlib.sha1(f"{seed}:{id_}".encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_fraction else "train"


def read_splits_csv(path: Path) -> dict[str, str]:
    """``id,split`` rows -> {id: split}; raises ValueError naming the file and line on malformed rows."""
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"id", "split"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: needs a header with columns 'id' and 'split', found {reader.fieldnames}"
            )
        for i, row in enumerate(reader, start=2):
            id_, split = (row.get("id") or "").strip(), (row.get("split") or "").strip()
            if not id_ or not split:
                raise ValueError(f"{path}: line {i} has an empty id or split")
            if id_ in out and out[id_] != split:
                raise ValueError(f"{path}: line {i}: id {id_!r} listed in two splits")
            out[id_] = split
    return out


def load_seg_dataset(
    root: str | Path,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    check_sizes: bool = True,
) -> SegDataset:
    """Read a dataset in the standard layout (see module docstring).

    Args:
        root: the dataset folder.
        seed, test_fraction: the hashed split used when there is no ``splits.csv``.
        check_sizes: read each image's and mask's header to compare sizes (cheap: no pixel decoding).
    """
    root = Path(root)
    if not is_seg_dataset(root):
        raise FileNotFoundError(f"{root}: not a segmentation dataset (needs images/ and masks/ folders)")
    images, problems = index_images(root / "images")
    masks, mask_problems = index_images(root / "masks")
    problems += mask_problems
    fovs: dict[str, Path] = {}
    if (root / "fov_masks").is_dir():
        fovs, fov_problems = index_images(root / "fov_masks")
        problems += fov_problems
    dup_ids = {p.id for p in problems}

    splits_path = root / "splits.csv"
    splits = read_splits_csv(splits_path) if splits_path.is_file() else None
    split_source = (
        "splits.csv" if splits is not None else f"hashed (seed={seed}, test_fraction={test_fraction})"
    )

    pairs: list[SegPair] = []
    for id_ in sorted(images):
        if id_ in dup_ids:
            continue
        img = images[id_]
        if id_ not in masks:
            problems.append(Problem(id_, img, "missing mask (no file with this id under masks/)"))
            continue
        if splits is not None:
            if id_ not in splits:
                problems.append(Problem(id_, img, "not listed in splits.csv"))
                continue
            split = splits[id_]
        else:
            split = hashed_split(id_, seed, test_fraction)
        mask = masks[id_]
        if check_sizes:
            try:
                hi = read_header(img)
            except ImageDecodeError as e:
                problems.append(Problem(id_, img, f"unreadable image: {e.reason}"))
                continue
            try:
                hm = read_header(mask, min_side=1)
            except ImageDecodeError as e:
                problems.append(Problem(id_, mask, f"unreadable mask: {e.reason}"))
                continue
            if (hi.width, hi.height) != (hm.width, hm.height):
                problems.append(
                    Problem(
                        id_,
                        mask,
                        f"mask size {hm.width}x{hm.height} differs from image {hi.width}x{hi.height}",
                    )
                )
                continue
        pairs.append(SegPair(id_, img, mask, split, fovs.get(id_)))

    for id_ in sorted(set(masks) - set(images)):
        problems.append(Problem(id_, masks[id_], "mask without an image"))
    if splits is not None:
        for id_ in sorted(set(splits) - set(images) - set(masks)):
            problems.append(Problem(id_, splits_path, "listed in splits.csv but no image or mask exists"))
    if problems:
        logger.warning("%s: %d problem(s) found; the affected ids are left out", root, len(problems))
    return SegDataset(root, pairs, problems, split_source)


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask as grayscale and binarise at > 127.

    Returns:
        mask: (H, W) bool.
    """
    return load_gray(path) > MASK_THRESHOLD
