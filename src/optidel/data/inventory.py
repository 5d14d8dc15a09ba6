"""Inventory and verification of a folder of images or a segmentation dataset (``optidel data info|verify``).

Reports, per source format (image, tiff, dicom, nifti, wsi): the files read, the 2D items they give (frames, slices,
pages, tiles) and the files skipped with their reasons (a DICOM without pixel data or without its decoder, a dangling
link ...). For segmentation datasets it also reports how the masks are stored (``0/255``, label masks such as
``{0, 1}``, empty) and refuses a dataset whose train masks are all empty.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from optidel.data.errors import ImageDecodeError
from optidel.data.image import load_gray, load_rgb, read_header
from optidel.data.pool import PoolSource, list_source_items, parse_source
from optidel.data.segmentation import (
    LOSSY_MASK_SUFFIXES,
    index_images,
    is_seg_dataset,
    load_mask,
    load_seg_dataset,
    mask_convention,
)
from optidel.data.sources import DEFAULT_OPTIONS, SourceOptions
from optidel.data.sources.decode import plain_format
from optidel.data.sources.locator import item_format, parse_locator
from optidel.runtime.progress import track


@dataclass(frozen=True)
class BadFile:
    """A file (or id) that cannot be used, and why."""

    path: str
    reason: str


@dataclass
class Inventory:
    """What a folder holds. ``sizes`` are (width, height) of the readable images.

    ``formats`` maps a source format to ``{"files", "items", "skipped"}``; ``mask_conventions`` counts the masks by
    how they are stored (segmentation datasets, deep check only).
    """

    path: Path
    kind: str  # "segmentation dataset" | "image folder" | "selection output"
    n_images: int
    n_pairs: int | None
    split_counts: dict[str, int]
    split_source: str | None
    sizes: list[tuple[int, int]]
    bad: list[BadFile] = field(default_factory=list)
    formats: dict[str, dict[str, int]] = field(default_factory=dict)
    mask_conventions: dict[str, int] = field(default_factory=dict)

    @property
    def n_unreadable(self) -> int:
        return sum(1 for b in self.bad if not b.reason.startswith("dataset:"))

    def size_range(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((min_w, min_h), (max_w, max_h)) over readable images, None when there are none."""
        if not self.sizes:
            return None
        ws, hs = zip(*self.sizes, strict=True)
        return (min(ws), min(hs)), (max(ws), max(hs))


@dataclass(frozen=True)
class _Result:
    size: tuple[int, int] | None = None
    bad: BadFile | None = None
    convention: str | None = None  # masks only
    empty: bool = False  # masks only


def _check_mask(path: Path, deep: bool) -> _Result:
    if not deep:
        h = read_header(path, min_side=1)
        return _Result((h.width, h.height))
    loc = parse_locator(path)
    if (loc is None and plain_format(path) is None) or (loc is not None and loc.fmt == "image"):
        file = loc.file if loc is not None else path
        grey = load_gray(file)
        conv = mask_convention(grey, file.suffix.lower() in LOSSY_MASK_SUFFIXES)
    else:
        conv = "label volume/frame"
    m = load_mask(path)
    return _Result((m.shape[1], m.shape[0]), convention=conv, empty=not m.any())


def _check(path: Path, deep: bool, mask: bool) -> _Result:
    try:
        if mask:
            return _check_mask(path, deep)
        if deep:
            arr = load_rgb(path)
            return _Result((arr.shape[1], arr.shape[0]))
        h = read_header(path)
        return _Result((h.width, h.height))
    except ImageDecodeError as e:
        return _Result(bad=BadFile(str(e.path), e.reason))


def _count_formats(formats: dict[str, dict[str, int]], images: list[Path]) -> None:
    files: dict[str, set[Path]] = {}
    for p in images:
        fmt = item_format(p)
        row = formats.setdefault(fmt, {"files": 0, "items": 0, "skipped": 0})
        row["items"] += 1
        loc = parse_locator(p)
        files.setdefault(fmt, set()).add(loc.file if loc is not None else p)
    for fmt, fs in files.items():
        formats[fmt]["files"] = len(fs)


def _dataset_part(root: Path, src: PoolSource, options: SourceOptions):
    ds = load_seg_dataset(root, check_sizes=True, options=options)
    pairs = ds.split(src.split) if src.split else ds.pairs
    if src.split:
        images = [p.image for p in pairs]
    else:
        all_images, _ = index_images(root / "images")
        flat = [all_images[k] for k in sorted(all_images)]
        volumes = {p for p in flat if str(p).lower().endswith((".nii", ".nii.gz"))}
        images = [p for p in flat if p not in volumes] + [p.image for p in pairs if parse_locator(p.image)]
    masks = [p.mask for p in pairs]
    fovs = [p.fov for p in pairs if p.fov is not None]
    # unreadable files are reported by the file check, not twice
    bad = [
        BadFile(str(p.path) if p.path else p.id, f"dataset: {p.id}: {p.reason}")
        for p in ds.problems
        if not p.reason.startswith("unreadable")
    ]
    split_counts = dict(sorted(Counter(p.split for p in pairs).items()))
    train_masks = {p.mask for p in pairs if p.split == "train"}
    return images, masks, fovs, bad, len(pairs), split_counts, ds.split_source, train_masks


def take_inventory(
    path: str | Path, deep: bool = True, workers: int = 2, options: SourceOptions = DEFAULT_OPTIONS
) -> Inventory:
    """Count images / pairs / splits and check every file.

    Args:
        path: an image folder, a segmentation dataset, or ``PATH:SPLIT``.
        deep: decode every pixel (finds truncated files, reads mask conventions); False reads headers only.
        options: how volumes, multi-frame files and slides become items.

    Raises:
        FileNotFoundError: the folder does not exist.
        PoolError: an unfinished ``optidel select`` output, or an unusable source.
    """
    src: PoolSource = parse_source(path)
    root = src.path
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    bad: list[BadFile] = []
    masks: list[Path] = []
    fovs: list[Path] = []
    train_masks: set[Path] = set()
    formats: dict[str, dict[str, int]] = {}
    if is_seg_dataset(root):
        images, masks, fovs, bad, n_pairs, split_counts, split_source, train_masks = _dataset_part(
            root, src, options
        )
        kind: str = "segmentation dataset"
        n_pairs_opt: int | None = n_pairs
    else:
        listing = list_source_items(src, options)
        images = [it.path for it in listing.items]
        bad += [BadFile(str(s.path), s.reason) for s in listing.skipped]
        for s in listing.skipped:
            formats.setdefault(s.fmt, {"files": 0, "items": 0, "skipped": 0})["skipped"] += 1
        kind = "selection output" if (root / "manifest.parquet").is_file() else "image folder"
        n_pairs_opt, split_counts, split_source = None, {}, None
    _count_formats(formats, images)

    sizes: list[tuple[int, int]] = []
    conventions: Counter[str] = Counter()
    n_train_empty = 0
    jobs = [(p, False) for p in images] + [(p, True) for p in masks + fovs]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = ex.map(lambda job: (job, _check(job[0], deep, job[1])), jobs)
        for (p, is_mask), r in track(results, f"checking {len(jobs)} files", total=len(jobs)):
            if r.bad is not None:
                bad.append(r.bad)
                fmt = item_format(p)
                if not is_mask and fmt in formats:
                    formats[fmt]["skipped"] += 1
            elif not is_mask:
                sizes.append(r.size)  # type: ignore[arg-type]
            elif r.convention is not None and p not in fovs:
                conventions[r.convention] += 1
                n_train_empty += int(r.empty and p in train_masks)
    if deep and train_masks and n_train_empty == len(train_masks):
        bad.append(
            BadFile(str(root), f"dataset: every train mask ({len(train_masks)}) is empty: nothing to learn")
        )
    return Inventory(
        root,
        kind,
        len(images),
        n_pairs_opt,
        split_counts,
        split_source,
        sizes,
        bad,
        dict(sorted(formats.items())),
        dict(sorted(conventions.items())),
    )
