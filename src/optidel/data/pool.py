"""Unlabeled image pools: one or several folders, deterministic order, stable ids.

A pool source is written as a path, optionally followed by ``:SPLIT``:

- a folder tree of images and medical files: every 2D item below it (``optidel.data.sources``: images, TIFF pages,
  DICOM frames and series slices, NIfTI slices, whole-slide tiles; hidden files/folders ignored; links to files
  followed once). The id of an ordinary image is its path relative to the folder, without extension; items inside a
  file add ``/frame_0003``, ``/slice_0012`` ...; their path is a locator ``FILE::FORMAT:...``. Files that cannot be
  used (a dangling link, a DICOM without pixel data or without its decoder ...) are logged with the reason;
- a segmentation dataset (``images/`` + ``masks/``): only its images, restricted to a split. ``PATH:train`` takes the
  train split; ``PATH`` alone also takes **only** the train split (logged), so test images never enter a pool unless
  the user names that split (``PATH:test`` or ``PATH:all``);
- the output folder of ``optidel select`` (holds ``manifest.parquet`` and ``images/``): its images, once the run
  finished (``DONE``). An unfinished one (killed, or still running) is refused with the way to resume it.

Pool images are ordered by source (in the order given), then id. Each carries ``uid = "<source label>/<id>"``; the
label is the folder's name (de-duplicated with ``-2``, ``-3`` ... when two sources share one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from optidel.data.errors import PoolError
from optidel.data.segmentation import index_images, is_seg_dataset, load_seg_dataset
from optidel.data.sources import DEFAULT_OPTIONS, Listing, Skipped, SourceItem, SourceOptions, list_items
from optidel.data.sources.locator import item_format
from optidel.log import logger
from optidel.runtime.run_dir import is_done

__all__ = [
    "PoolError",
    "PoolImage",
    "PoolSource",
    "list_pool",
    "list_source",
    "list_source_items",
    "parse_source",
]


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
    id: str  # relative path without extension (+ ``/slice_0012`` ... for items inside a file)
    path: Path  # the file, or a locator ``FILE::FORMAT:...`` (``optidel.data.sources.locator.real_file`` gives the file)

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
    """A folder written by ``optidel select`` (finished or not): a manifest, or its stage cache and log."""
    if (path / "manifest.parquet").is_file():
        return True
    cache = path / "cache"
    return cache.is_dir() and any(cache.glob("patches-*")) and (path / "log.txt").is_file()


def check_finished_selection(path: Path) -> None:
    """Refuse an unfinished ``optidel select`` output (no ``DONE``) with the way to resume it."""
    if is_select_output(path) and not is_done(path):
        raise PoolError(
            f"{path} is an unfinished `optidel select` output (no DONE marker: killed or still running); "
            f"finish it by rerunning the same `optidel select ... --out {path}` (it resumes), then use it as a pool"
        )


def list_source_items(src: PoolSource, options: SourceOptions = DEFAULT_OPTIONS) -> Listing:
    """The items of one source (and the files skipped with a reason); see the module docstring."""
    path = src.path
    if not path.exists():
        raise PoolError(f"pool source {path} does not exist")
    if not path.is_dir():
        raise PoolError(f"pool source {path} is not a folder")
    if is_seg_dataset(path):
        ds = load_seg_dataset(path, check_sizes=False, options=options)
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
        return Listing([SourceItem(p.id, p.image, item_format(p.image)) for p in ds.split(split)])
    if src.split is not None:
        raise PoolError(
            f"{path}: a split ({src.split!r}) was given but the folder is not a segmentation dataset"
        )
    check_finished_selection(path)
    if is_select_output(path):
        images, problems = index_images(path / "images")
        return Listing(
            [SourceItem(k, v, "image") for k, v in sorted(images.items())],
            [Skipped(p.path or path, p.reason) for p in problems],
        )
    return list_items(path, options)


def list_source(src: PoolSource, options: SourceOptions = DEFAULT_OPTIONS) -> list[tuple[str, Path]]:
    """(id, path) pairs of one source, in listing order (the path may be a locator)."""
    return [(it.id, it.path) for it in list_source_items(src, options).items]


def list_pool(
    sources: Iterable[str | Path | PoolSource], options: SourceOptions = DEFAULT_OPTIONS
) -> list[PoolImage]:
    """All images of one or several sources, in a deterministic order (sources as given, then listing order).

    Files left out (and why) are logged as warnings, one per file.
    """
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
        listing = list_source_items(src, options)
        for sk in listing.skipped:
            logger.warning("pool source %s: skipping %s: %s", src, sk.path, sk.reason)
        if not listing.items:
            raise PoolError(f"pool source {src} holds no image files")
        out.extend(PoolImage(label, it.id, it.path) for it in listing.items)
        formats = listing.by_format()
        detail = (
            ", ".join(f"{f} {c['items']}" for f, c in formats.items() if c["items"])
            if len(formats) > 1
            else ""
        )
        logger.info("pool source %s: %d images%s", src, len(listing.items), f" ({detail})" if detail else "")
    return out
