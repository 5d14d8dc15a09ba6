"""Segmentation datasets in the standard layout.

Layout::

    ROOT/images/<id>.<ext>      images (any readable format, DICOM and NIfTI included; ids may contain sub-folders)
    ROOT/masks/<id>.<ext>       masks, same id (extension may differ); ``labels/`` is accepted instead of ``masks/``,
                                and a label volume may be named ``<id>_seg.nii.gz`` (in masks/, labels/ or images/)
    ROOT/splits.csv             optional, ``id,split`` (e.g. train / test)
    ROOT/fov_masks/<id>.<ext>   optional field-of-view masks (DRIVE): scoring happens inside them

Masks (:func:`mask_foreground`): an 8-bit mask whose maximum is above 127 is binarised at > 127 (0/255 masks and
JPEG masks with compression noise, as always); a mask whose values are all <= 127 is a **label mask** (0/1 masks,
small label sets): 0 is background and any non-zero value foreground, or only the value ``mask_label`` when chosen
(``SourceOptions.mask_label``). JPEG masks are always thresholded (lossy noise is not a label). Label volumes and DICOM
masks use their stored values the same way (non-zero, or ``mask_label``).

NIfTI pairs are read slice by slice: ``images/<id>.nii.gz`` and its label volume (same shape) give ids
``<id>/slice_0012`` along the image's slice axis (``SourceOptions``: axis, stride, drop-empty, window); every slice
of a volume goes to the volume's split (no slice of one patient on both sides).

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
from PIL import Image, ImageOps, UnidentifiedImageError

from optidel.data.errors import ImageDecodeError, MaskError
from optidel.data.image import load_gray, read_header
from optidel.data.sources import DEFAULT_OPTIONS, SkipFile, SourceOptions, nifti
from optidel.data.sources.decode import decode_labels, plain_format
from optidel.data.sources.listing import PILLOW_EXTENSIONS, walk
from optidel.data.sources.locator import make_locator, parse_locator
from optidel.data.sources.window import parse_window
from optidel.log import logger

DEFAULT_TEST_FRACTION = 0.2
MASK_THRESHOLD = 127
LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg", ".webp")
MASK_DIRS = ("masks", "labels")


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


def mask_dir(path: str | Path) -> Path | None:
    """The dataset's mask folder: ``masks/``, else ``labels/``; None when neither exists."""
    for name in MASK_DIRS:
        if (Path(path) / name).is_dir():
            return Path(path) / name
    return None


def is_seg_dataset(path: str | Path) -> bool:
    """True when ``path`` holds ``images/`` and a ``masks/`` (or ``labels/``) folder."""
    p = Path(path)
    return (p / "images").is_dir() and mask_dir(p) is not None


def _is_dataset_file(f: Path) -> bool:
    return f.suffix.lower() in PILLOW_EXTENSIONS or plain_format(f) is not None


def index_images(folder: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Map id (relative path without extension, '/'-separated) -> file, for every image file under ``folder``.

    Two files with the same id (``a.png`` and ``a.jpg``) are a problem: the id is dropped. Dangling links and link
    loops are problems too (named with the reason).
    """
    found: dict[str, list[Path]] = {}
    files, skipped = walk(folder)
    for rel, f in files:
        if not _is_dataset_file(f):
            continue
        stem = nifti.stem(f) if nifti.is_nifti(f) else Path(rel).stem
        found.setdefault(f"{rel.rsplit('/', 1)[0]}/{stem}" if "/" in rel else stem, []).append(f)
    out: dict[str, Path] = {}
    problems = [
        Problem(sk.path.name, sk.path, sk.reason) for sk in skipped
    ]  # names with extension: no id clash
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


def _index(root: Path) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path], list[Problem]]:
    """images, masks and FOV masks by id, and the problems found. ``<id>_seg`` label volumes (in images/ or the mask
    folder) are the masks of ``<id>``."""
    images, problems = index_images(root / "images")
    mdir = mask_dir(root)
    masks, mask_problems = index_images(mdir) if mdir is not None else ({}, [])
    problems += mask_problems
    for id_ in [k for k, v in images.items() if k.endswith("_seg") and nifti.is_nifti(v)]:
        masks.setdefault(id_, images.pop(id_))
    for id_ in [k for k in masks if k.endswith("_seg") and k[:-4] in images and k[:-4] not in masks]:
        masks[id_[:-4]] = masks.pop(id_)
    fovs: dict[str, Path] = {}
    if (root / "fov_masks").is_dir():
        fovs, fov_problems = index_images(root / "fov_masks")
        problems += fov_problems
    return images, masks, fovs, problems


def _with_label(mask: Path, label: int | None) -> Path:
    """The mask path, as a locator carrying the chosen label value when there is one (None keeps the plain path)."""
    if label is None:
        return mask
    fmt = "image" if plain_format(mask) is None else plain_format(mask)
    return (
        make_locator(mask, fmt, label=label)
        if fmt != "dicom"
        else make_locator(mask, "dicom", frame=0, label=label)
    )


def _size_problem(id_: str, img: Path, mask: Path) -> Problem | None:
    try:
        hi = read_header(img)
    except ImageDecodeError as e:
        return Problem(id_, img, f"unreadable image: {e.reason}")
    try:
        hm = read_header(mask, min_side=1)
    except ImageDecodeError as e:
        return Problem(id_, mask, f"unreadable mask: {e.reason}")
    if (hi.width, hi.height) != (hm.width, hm.height):
        return Problem(
            id_, mask, f"mask size {hm.width}x{hm.height} differs from image {hi.width}x{hi.height}"
        )
    return None


def _volume_pairs(
    id_: str, img: Path, mask: Path, split: str, options: SourceOptions, problems: list[Problem]
) -> list[SegPair]:
    """Slice-by-slice pairs of an image volume and its label volume (see module docstring)."""
    try:
        shape, mshape = nifti.volume_shape(img), nifti.volume_shape(mask)
        if shape != mshape:
            problems.append(
                Problem(id_, mask, f"label volume shape {mshape} differs from image volume {shape}")
            )
            return []
        axis = nifti.choose_axis(img, options.slice_axis)
        window = parse_window(options.window).text
        fractions = nifti.slice_fractions(img, axis, window) if options.drop_empty > 0 else None
    except (SkipFile, ImageDecodeError) as e:
        problems.append(Problem(id_, e.path, f"unreadable volume: {e.reason}"))
        return []
    label = "any" if options.mask_label is None else options.mask_label
    out = []
    for k in range(0, shape[axis], options.slice_stride):
        if fractions is not None and fractions[k] < options.drop_empty:
            continue
        out.append(
            SegPair(
                f"{id_}/slice_{k:04d}",
                make_locator(img, "nifti", slice=k, axis=axis, window=window),
                make_locator(mask, "nifti", slice=k, axis=axis, label=label),
                split,
            )
        )
    return out


def load_seg_dataset(
    root: str | Path,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    check_sizes: bool = True,
    options: SourceOptions = DEFAULT_OPTIONS,
) -> SegDataset:
    """Read a dataset in the standard layout (see module docstring).

    Args:
        root: the dataset folder.
        seed, test_fraction: the hashed split used when there is no ``splits.csv`` (per volume for NIfTI pairs).
        check_sizes: read each image's and mask's header to compare sizes (cheap: no pixel decoding).
        options: slicing and windowing of NIfTI pairs, and the mask label value.
    """
    root = Path(root)
    if not is_seg_dataset(root):
        raise FileNotFoundError(f"{root}: not a segmentation dataset (needs images/ and masks/ folders)")
    images, masks, fovs, problems = _index(root)
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
        if nifti.is_nifti(img):
            pairs += _volume_pairs(id_, img, masks[id_], split, options, problems)
            continue
        if check_sizes and (problem := _size_problem(id_, img, masks[id_])) is not None:
            problems.append(problem)
            continue
        pairs.append(SegPair(id_, img, _with_label(masks[id_], options.mask_label), split, fovs.get(id_)))

    for id_ in sorted(set(masks) - set(images)):
        problems.append(Problem(id_, masks[id_], "mask without an image"))
    if splits is not None:
        for id_ in sorted(set(splits) - set(images) - set(masks)):
            problems.append(Problem(id_, splits_path, "listed in splits.csv but no image or mask exists"))
    if problems:
        logger.warning("%s: %d problem(s) found; the affected ids are left out", root, len(problems))
    return SegDataset(root, pairs, problems, split_source)


def mask_foreground(grey: np.ndarray, lossy: bool = False, label: int | None = None) -> np.ndarray:
    """The documented mask rule (module docstring) on a decoded 8-bit mask.

    Args:
        grey: (H, W) uint8 as decoded.
        lossy: the file is JPEG/WebP (always thresholded at > 127).
        label: the foreground value, or None for the automatic rule.
    Returns:
        (H, W) bool.
    """
    if label is not None:
        return grey == label
    if lossy or int(grey.max(initial=0)) > MASK_THRESHOLD:
        return grey > MASK_THRESHOLD
    return grey > 0


def mask_convention(grey: np.ndarray, lossy: bool = False) -> str:
    """How a decoded mask is stored, for reports: ``0/255``, ``labels {0, 1}`` (values <= 127, read as non-zero =
    foreground), ``empty`` or ``greyscale`` (thresholded at > 127)."""
    values = np.unique(grey)
    if values.size == 1 and values[0] == 0:
        return "empty"
    if not lossy and int(values.max()) <= MASK_THRESHOLD:
        return (
            "labels {"
            + ", ".join(str(int(v)) for v in values[:8])
            + (", ..." if values.size > 8 else "")
            + "}"
        )
    if set(values.tolist()) <= {0, 255}:
        return "0/255"
    return "greyscale"


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask (a file, or a locator of a label slice/frame, possibly carrying ``label=N``) by the mask rule.

    Returns:
        mask: (H, W) bool.
    """
    loc = parse_locator(path)
    raw = loc.get("label") if loc is not None else None
    label = None if raw in (None, "any") else int(raw)
    file = loc.file if loc is not None else Path(path)
    if (loc is not None and loc.fmt != "image") or (loc is None and plain_format(file) is not None):
        values = decode_labels(path)
        return values != 0 if label is None else values == label
    lossy = file.suffix.lower() in LOSSY_MASK_SUFFIXES
    raw = None if lossy else _wide_label_values(file)
    if raw is not None:  # a 16/32-bit label mask: its stored labels, not a min-max scaled grey
        return raw != 0 if label is None else raw == label
    return mask_foreground(load_gray(file), lossy, label)


def _wide_label_values(file: Path) -> np.ndarray | None:
    """(H, W) int64 stored values of a 16/32-bit single-channel mask whose values are a small label set (all <=
    ``MASK_THRESHOLD``), else None (8-bit files, and wide greyscale masks, which keep the scaled > 127 rule).

    Why: ``load_gray`` scales wide images by their own min-max (right for pictures), which would turn labels
    {0, 1, 2, 3} into {0, 85, 170, 255} and lose label 1 under the > 127 rule.
    """
    try:
        with Image.open(file) as im:
            if not (im.mode.startswith("I;16") or im.mode == "I"):
                return None
            values = np.asarray(ImageOps.exif_transpose(im), dtype=np.int64)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None  # load_gray names the file and the problem
    if values.ndim != 2 or int(values.max(initial=0)) > MASK_THRESHOLD or int(values.min(initial=0)) < 0:
        return None
    return values


def require_foreground(masks: np.ndarray, dataset: str | Path, split: str) -> None:
    """Refuse a split whose masks are all empty: training on it would report floors, not results.

    Args:
        masks: (N, H, W) bool.
    Raises:
        MaskError: naming the dataset and split.
    """
    if masks.size == 0 or not np.asarray(masks).any():
        raise MaskError(
            f"{dataset}: every {split} mask is empty (no foreground pixel): check the mask values "
            "(0/255, 0/1 and small label sets are read; --set sources.mask_label=N picks one label)"
        )
