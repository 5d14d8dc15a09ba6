"""Inventory and verification of a folder of images or a segmentation dataset (``optidel data info|verify``)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from optidel.data.image import ImageDecodeError, load_gray, load_rgb, read_header
from optidel.data.pool import PoolSource, list_source, parse_source
from optidel.data.segmentation import index_images, is_seg_dataset, load_seg_dataset
from optidel.runtime.progress import track


@dataclass(frozen=True)
class BadFile:
    """A file (or id) that cannot be used, and why."""

    path: str
    reason: str


@dataclass
class Inventory:
    """What a folder holds. ``sizes`` are (width, height) of the readable images."""

    path: Path
    kind: str  # "segmentation dataset" | "image folder" | "selection output"
    n_images: int
    n_pairs: int | None
    split_counts: dict[str, int]
    split_source: str | None
    sizes: list[tuple[int, int]]
    bad: list[BadFile] = field(default_factory=list)

    @property
    def n_unreadable(self) -> int:
        return sum(1 for b in self.bad if not b.reason.startswith("dataset:"))

    def size_range(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((min_w, min_h), (max_w, max_h)) over readable images, None when there are none."""
        if not self.sizes:
            return None
        ws, hs = zip(*self.sizes, strict=True)
        return (min(ws), min(hs)), (max(ws), max(hs))


def _check(path: Path, deep: bool, mask: bool) -> tuple[tuple[int, int] | None, BadFile | None]:
    try:
        if deep:
            arr = load_gray(path) if mask else load_rgb(path)
            return (arr.shape[1], arr.shape[0]), None
        h = read_header(path, min_side=1 if mask else 8)
        return (h.width, h.height), None
    except ImageDecodeError as e:
        return None, BadFile(str(e.path), e.reason)


def take_inventory(path: str | Path, deep: bool = True, workers: int = 2) -> Inventory:
    """Count images / pairs / splits and check every file.

    Args:
        path: an image folder, a segmentation dataset, or ``PATH:SPLIT``.
        deep: decode every pixel (finds truncated files); False reads headers only.
    """
    src: PoolSource = parse_source(path)
    root = src.path
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    bad: list[BadFile] = []
    masks: list[Path] = []
    if is_seg_dataset(root):
        ds = load_seg_dataset(root, check_sizes=True)
        pairs = ds.split(src.split) if src.split else ds.pairs
        if src.split:
            images = [p.image for p in pairs]
        else:
            all_images, _ = index_images(root / "images")
            images = [all_images[k] for k in sorted(all_images)]
        masks = [p.mask for p in pairs] + [p.fov for p in pairs if p.fov is not None]
        # unreadable files are reported by the file check below, not twice
        bad += [
            BadFile(str(p.path) if p.path else p.id, f"dataset: {p.id}: {p.reason}")
            for p in ds.problems
            if not p.reason.startswith("unreadable")
        ]
        kind, n_pairs = "segmentation dataset", len(pairs)
        split_counts = dict(sorted(Counter(p.split for p in pairs).items()))
        split_source = ds.split_source
    else:
        items = list_source(src)
        images = [p for _, p in items]
        kind = "selection output" if (root / "manifest.parquet").is_file() else "image folder"
        n_pairs, split_counts, split_source = None, {}, None

    sizes: list[tuple[int, int]] = []
    jobs = [(p, False) for p in images] + [(p, True) for p in masks]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = ex.map(lambda job: (job, _check(job[0], deep, job[1])), jobs)
        for (_p, is_mask), (size, err) in track(results, f"checking {len(jobs)} files", total=len(jobs)):
            if err is not None:
                bad.append(err)
            elif not is_mask:
                sizes.append(size)
    n_images = len(images)
    return Inventory(root, kind, n_images, n_pairs, split_counts, split_source, sizes, bad)
