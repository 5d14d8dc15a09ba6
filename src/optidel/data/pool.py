"""Unlabeled image pools: one or several folders, deterministic order, stable ids.

A pool source is written as a path, optionally followed by ``:SPLIT``:

- a folder tree of images: every image file below it (hidden files/folders ignored); the id of an image is its path
  relative to the folder, without extension;
- a segmentation dataset (``images/`` + ``masks/``): only its images, restricted to a split. ``PATH:train`` takes the
  train split; ``PATH`` alone also takes **only** the train split (logged), so test images never enter a pool unless
  the user names that split (``PATH:test`` or ``PATH:all``);
- the output folder of ``optidel select`` (holds ``manifest.parquet`` and ``images/``): its images.

Pool images are ordered by source (in the order given), then id. Each carries ``uid = "<source label>/<id>"``; the
label is the folder's name (de-duplicated with ``-2``, ``-3`` ... when two sources share one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optidel.data.image import is_image_file
from optidel.data.segmentation import index_images, is_seg_dataset, load_seg_dataset
from optidel.log import logger


class PoolError(ValueError):
    """A pool source that cannot be used (missing folder, unknown split, no images)."""


@dataclass(frozen=True)
class PoolSource:
    """A parsed pool source: a folder and, for segmentation datasets, the split to take (None = default)."""

    path: Path
    split: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.split}" if self.split else str(self.path)


@dataclass(frozen=True)
class PoolImage:
    """One image of a pool."""

    source: str  # source label
    id: str  # relative path without extension
    path: Path

    @property
    def uid(self) -> str:
        return f"{self.source}/{self.id}"


def parse_source(text: str | Path | PoolSource) -> PoolSource:
    """``"data/kvasir:train"`` -> PoolSource(Path("data/kvasir"), "train"); a plain path has split None."""
    if isinstance(text, PoolSource):
        return text
    s = str(text)
    if ":" in s:
        head, tail = s.rsplit(":", 1)
        if tail and "/" not in tail and "\\" not in tail and head:
            return PoolSource(Path(head), tail)
    return PoolSource(Path(s), None)


def is_select_output(path: Path) -> bool:
    return (path / "manifest.parquet").is_file() and (path / "images").is_dir()


def _list_folder(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file() or not is_image_file(f):
            continue
        out.append((rel.with_suffix("").as_posix(), f))
    return out


def list_source(src: PoolSource) -> list[tuple[str, Path]]:
    """(id, path) pairs of one source, sorted by id."""
    path = src.path
    if not path.exists():
        raise PoolError(f"pool source {path} does not exist")
    if not path.is_dir():
        raise PoolError(f"pool source {path} is not a folder")
    if is_seg_dataset(path):
        ds = load_seg_dataset(path, check_sizes=False)
        split = src.split
        if split is None:
            split = "train"
            logger.info(
                "%s is a segmentation dataset: taking its train split only (write %s:all for all)", path, path
            )
        known = set(ds.split_counts()) | {"all"}
        if split not in known:
            raise PoolError(f"{path}: unknown split {split!r}; this dataset has {sorted(known)}")
        # images whose mask is missing are still fine as unlabeled images, as long as their split is known
        return [(p.id, p.image) for p in ds.split(split)]
    if src.split is not None:
        raise PoolError(
            f"{path}: a split ({src.split!r}) was given but the folder is not a segmentation dataset"
        )
    if is_select_output(path):
        images, _ = index_images(path / "images")
        return sorted(images.items())
    return _list_folder(path)


def list_pool(sources: Iterable[str | Path | PoolSource]) -> list[PoolImage]:
    """All images of one or several sources, in a deterministic order (sources as given, then id)."""
    parsed = [parse_source(s) for s in sources]
    if not parsed:
        raise PoolError("no pool source given")
    labels: list[str] = []
    out: list[PoolImage] = []
    for src in parsed:
        base = src.path.resolve().name or "pool"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
        items = list_source(src)
        if not items:
            raise PoolError(f"pool source {src} holds no image files")
        out.extend(PoolImage(label, id_, p) for id_, p in items)
        logger.info("pool source %s: %d images", src, len(items))
    return out


def pool_paths(pool: Sequence[PoolImage]) -> list[Path]:
    return [p.path for p in pool]
