"""Converters from each dataset's original archive layout to optidel's standard layout.

The standard layout (what the rest of optidel reads)::

    OUT/images/<id>.<ext>      the image, same id as its mask
    OUT/masks/<id>.<ext>       read as grayscale; a pixel is foreground when its value is > 127
    OUT/splits.csv             optional, ``id,split`` with split ``train`` or ``test``
    OUT/fov_masks/<id>.png     optional field-of-view masks (DRIVE)

Rules shared by every converter:

- JPEG and PNG images are copied byte for byte (so a fetched Kvasir-SEG is identical to the official release);
  other formats (TIFF, BMP, GIF) are re-encoded losslessly as PNG.
- Masks are written as single-channel 0/255 PNGs: a pixel is foreground when any colour channel is > 127
  (16-bit masks: > 32767). Kvasir-SEG keeps its original JPEG masks, as in the official release.
- Every image must have a mask of the same size; a missing or mismatched mask raises :class:`ConversionError` naming
  the file. macOS metadata (``__MACOSX/``, ``._*``) and hidden files are ignored.

Each converter has the signature ``(src: Path, out: Path) -> ConversionSummary``: ``src`` is the extracted archive (or
a folder given by the user), ``out`` is an empty folder that the caller later renames into place.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from optidel.data.archive import safe_extract
from optidel.data.errors import ConversionError
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_text

__all__ = [
    "ConversionError",
    "ConversionSummary",
    "Converter",
    "packaged_test_ids",
]  # ConversionError lives in errors

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif")
COPY_EXTS = (".jpg", ".jpeg", ".png")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"

IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "original")
MASK_DIR_NAMES = ("masks", "mask", "ground truth", "groundtruth", "ground_truth", "gt", "labels", "label")


@dataclass(frozen=True)
class ConversionSummary:
    """What a converter wrote.

    Attributes:
        n_pairs: image/mask pairs written.
        n_train: ids with split ``train`` in ``splits.csv`` (0 when no split file was written).
        n_test: ids with split ``test`` in ``splits.csv``.
        notes: human-readable remarks (skipped files, where the split came from).
    """

    n_pairs: int
    n_train: int = 0
    n_test: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


Converter = Callable[[Path, Path], ConversionSummary]


# ----------------------------------------------------------------------------------------------------------------
# small helpers


def _is_junk(rel: Path) -> bool:
    """macOS metadata or hidden entries (``rel`` is relative to the extracted archive)."""
    return any(p == "__MACOSX" or p.startswith(".") for p in rel.parts)


def _dirs_named(root: Path, names: Iterable[str]) -> list[Path]:
    """All folders under ``root`` (itself included) whose name is one of ``names`` (case-insensitive), sorted."""
    wanted = {n.lower() for n in names}
    found = [p for p in [root, *root.rglob("*")] if p.is_dir() and p.name.lower() in wanted]
    return sorted(p for p in found if not _is_junk(p.relative_to(root)))


def _image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
    except Exception as exc:  # PIL raises many exception types for bad files
        raise ConversionError(f"{path}: cannot be decoded as an image ({exc})") from exc
    return im


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:
        raise ConversionError(f"{path}: cannot be read as an image ({exc})") from exc


def write_image(src: Path, out_dir: Path, sample_id: str) -> Path:
    """Copy a JPEG/PNG byte for byte, or re-encode any other format losslessly as PNG; returns the written path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = src.suffix.lower()
    if ext in COPY_EXTS:
        _image_size(src)  # fail early, naming the file, if it is not an image
        dst = out_dir / f"{sample_id}{'.jpg' if ext == '.jpeg' else ext}"
        shutil.copyfile(src, dst)
        return dst
    im = _open(src)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        if im.mode == "RGBA" and np.asarray(im)[..., 3].min() == 255:
            im = im.convert("RGB")
    dst = out_dir / f"{sample_id}.png"
    im.save(dst, format="PNG")
    return dst


def mask_foreground(path: Path) -> np.ndarray:
    """Binary foreground of a mask file: any colour channel > 127 (16-bit: > 32767). Returns ``(H, W)`` bool."""
    im = _open(path)
    if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    arr = np.asarray(im)
    if arr.ndim == 3:
        bands = im.getbands()
        colour = [i for i, b in enumerate(bands) if b != "A"]
        arr = arr[..., colour].max(axis=2)
    threshold = 32767 if arr.dtype.itemsize > 1 and np.issubdtype(arr.dtype, np.integer) else 127
    if np.issubdtype(arr.dtype, np.floating):
        threshold = 0.5 if float(arr.max(initial=0.0)) <= 1.0 else 127
    return arr > threshold


def write_binary_mask(foreground: np.ndarray, dst: Path) -> None:
    """Save a ``(H, W)`` bool array as a single-channel 0/255 PNG."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(foreground, 255, 0).astype(np.uint8), mode="L").save(dst, format="PNG")


def _check_same_size(image_path: Path, mask_size: tuple[int, int], mask_path: Path) -> None:
    size = _image_size(image_path)
    if size != mask_size:
        raise ConversionError(
            f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but image {image_path} is {size[0]}x{size[1]}"
        )


def _write_pair(image_src: Path, mask_src: Path, out: Path, sample_id: str) -> None:
    fg = mask_foreground(mask_src)
    _check_same_size(image_src, (fg.shape[1], fg.shape[0]), mask_src)
    write_image(image_src, out / "images", sample_id)
    write_binary_mask(fg, out / "masks" / f"{sample_id}.png")


def _write_splits(out: Path, splits: dict[str, str]) -> tuple[int, int]:
    rows = "".join(f"{i},{s}\n" for i, s in sorted(splits.items()))
    atomic_write_text(out / "splits.csv", "id,split\n" + rows)
    n_test = sum(1 for s in splits.values() if s == "test")
    return len(splits) - n_test, n_test


def packaged_test_ids(name: str) -> list[str]:
    """Test ids of a split list shipped with optidel (``optidel/data/splits/<name>.csv``, ``id,split`` rows).

    Only the test ids are listed; every other id of the dataset is ``train``.
    """
    path = SPLITS_DIR / f"{name}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return [row["id"] for row in csv.DictReader(f) if row["split"] == "test"]


def _splits_from_packaged(name: str, ids: Iterable[str], out: Path) -> tuple[int, int, str]:
    """Write ``splits.csv`` from the shipped test-id list when every listed test id was converted."""
    ids = set(ids)
    test_ids = packaged_test_ids(name)
    missing = sorted(set(test_ids) - ids)
    if missing:
        note = (
            f"splits.csv not written: {len(missing)} of the {len(test_ids)} test ids of the shipped split "
            f"(optidel/data/splits/{name}.csv) are not in this archive, e.g. {missing[:3]}"
        )
        logger.warning(note)
        return 0, 0, note
    n_train, n_test = _write_splits(out, {i: ("test" if i in set(test_ids) else "train") for i in ids})
    return (
        n_train,
        n_test,
        f"splits.csv from optidel/data/splits/{name}.csv ({n_test} test ids, the rest train)",
    )


def _single_pair(pairs: list[tuple[Path, Path]], src: Path, what: str) -> tuple[Path, Path]:
    if not pairs:
        raise ConversionError(f"{src}: found no {what}")
    if len(pairs) > 1:
        png = [p for p in pairs if any(f.suffix.lower() == ".png" for f in _image_files(p[0]))]
        if len(png) == 1:
            return png[0]
        listing = "; ".join(f"{a.relative_to(src)} + {b.relative_to(src)}" for a, b in pairs)
        raise ConversionError(
            f"{src}: found several {what} ({listing}); pass the folder of one of them with --archive"
        )
    return pairs[0]


def find_image_mask_dirs(
    src: Path, image_names: Iterable[str] = IMAGE_DIR_NAMES, mask_names: Iterable[str] = MASK_DIR_NAMES
) -> list[tuple[Path, Path]]:
    """Sibling (images, masks) folder pairs under ``src``: same parent, names from the two candidate lists."""
    masks_by_parent: dict[Path, Path] = {}
    for m in _dirs_named(src, mask_names):
        masks_by_parent.setdefault(m.parent, m)
    return [
        (i, masks_by_parent[i.parent]) for i in _dirs_named(src, image_names) if i.parent in masks_by_parent
    ]


def _match_mask(stem: str, masks: dict[str, Path], patterns: Iterable[str]) -> Path | None:
    for pat in patterns:
        hit = masks.get(pat.format(stem=stem).lower())
        if hit is not None:
            return hit
    return None


# ----------------------------------------------------------------------------------------------------------------
# converters


def convert_kvasir_seg(src: Path, out: Path) -> ConversionSummary:
    """Kvasir-SEG (Jha et al., MMM 2020): ``Kvasir-SEG/{images,masks}/<id>.jpg`` + ``kavsir_bboxes.json``.

    Images and masks are copied unchanged (JPEG); ``splits.csv`` comes from the shipped PraNet test split
    (100 test ids, Fan et al., MICCAI 2020); the box file is copied when present.
    """
    img_dir, mask_dir = _single_pair(
        find_image_mask_dirs(src, ("images",), ("masks",)), src, "images/ + masks/ folders"
    )
    masks = {p.stem: p for p in _image_files(mask_dir)}
    ids = []
    for img in _image_files(img_dir):
        mask = masks.get(img.stem)
        if mask is None:
            raise ConversionError(f"{img}: no mask with the same id in {mask_dir}")
        _check_same_size(img, _image_size(mask), mask)
        write_image(img, out / "images", img.stem)
        write_image(mask, out / "masks", img.stem)
        ids.append(img.stem)
    notes = []
    boxes = sorted(p for p in src.rglob("*bboxes*.json") if not _is_junk(p.relative_to(src)))
    if boxes:
        shutil.copyfile(boxes[0], out / boxes[0].name)
        notes.append(f"copied {boxes[0].name}")
    n_train, n_test, note = _splits_from_packaged("kvasir-seg", ids, out)
    return ConversionSummary(len(ids), n_train, n_test, (*notes, note))


def convert_kvasir_instrument(src: Path, out: Path) -> ConversionSummary:
    """Kvasir-Instrument (Jha et al., MMM 2021).

    ``kvasir-instrument.zip`` holds ``kvasir-instrument/{images.tar.gz, masks.tar.gz, bboxes.json, train.txt,
    test.txt}``; the tarballs hold ``images/<id>.jpg`` and ``masks/<id>.png``. The inner tarballs are extracted with
    the same safety checks as the outer archive. Masks become 0/255 PNGs; the official train/test lists give
    ``splits.csv``.
    """
    tarballs = [t for t in sorted(src.rglob("*.tar.gz")) if not _is_junk(t.relative_to(src))]
    # the inner tarballs go to a scratch folder next to ``out``: ``src`` may be the user's own folder
    scratch = Path(tempfile.mkdtemp(prefix=".nested-", dir=out.parent))
    try:
        for i, tarball in enumerate(tarballs):
            safe_extract(tarball, scratch / f"{i}")
        search = scratch if tarballs else src
        pairs = find_image_mask_dirs(search, ("images",), ("masks",))
        if not pairs and tarballs:  # images/ and masks/ came from different tarballs: pair across them
            imgs, msks = _dirs_named(search, ("images",)), _dirs_named(search, ("masks",))
            pairs = [(imgs[0], msks[0])] if len(imgs) == 1 and len(msks) == 1 else []
        img_dir, mask_dir = _single_pair(pairs, search, "images/ + masks/ folders")
        masks = {p.stem: p for p in _image_files(mask_dir)}
        ids = []
        for img in _image_files(img_dir):
            mask = masks.get(img.stem)
            if mask is None:
                raise ConversionError(f"{img}: no mask with the same id in {mask_dir}")
            _write_pair(img, mask, out, img.stem)
            ids.append(img.stem)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    notes = []
    for extra in ("bboxes.json",):
        hits = sorted(p for p in src.rglob(extra) if not _is_junk(p.relative_to(src)))
        if hits:
            shutil.copyfile(hits[0], out / extra)
            notes.append(f"copied {extra}")
    splits: dict[str, str] = {}
    for split in ("train", "test"):
        for lst in sorted(p for p in src.rglob(f"{split}.txt") if not _is_junk(p.relative_to(src))):
            for line in lst.read_text(encoding="utf-8").split():
                splits[Path(line.strip()).stem] = split
    n_train = n_test = 0
    if splits and set(ids) <= set(splits):
        n_train, n_test = _write_splits(out, {i: splits[i] for i in ids})
        notes.append("splits.csv from the official train.txt/test.txt")
    else:
        notes.append("splits.csv not written: train.txt/test.txt missing or incomplete")
        logger.warning(notes[-1])
    return ConversionSummary(len(ids), n_train, n_test, tuple(notes))


_BUSI_IMAGE = re.compile(r"^(benign|malignant) \((\d+)\)\.png$", re.IGNORECASE)
_BUSI_MASK = re.compile(r"^(benign|malignant) \((\d+)\)_mask(?:_\d+)?\.png$", re.IGNORECASE)


def convert_busi(src: Path, out: Path) -> ConversionSummary:
    """BUSI (Al-Dhabyani et al., Data in Brief 2020): ``Dataset_BUSI_with_GT/{benign,malignant,normal}/``.

    ``benign (12).png`` becomes id ``benign_012``; its masks ``benign (12)_mask.png``, ``benign (12)_mask_1.png``, ...
    are merged by union. Images whose three channels are equal are stored as grayscale PNG, others as RGB PNG. The
    ``normal`` class (no lesion, empty masks) is left out. ``index.csv`` maps ids to the original names, and
    ``splits.csv`` comes from the split shipped with optidel (the one of the project's shared copy of BUSI).
    """
    parents = sorted(
        {d.parent for d in _dirs_named(src, ("benign",))}
        & {d.parent for d in _dirs_named(src, ("malignant",))}
    )
    if len(parents) != 1:
        raise ConversionError(
            f"{src}: expected one folder holding benign/ and malignant/ (Dataset_BUSI_with_GT), found {len(parents)}"
        )
    base = parents[0]
    index_rows = ["id,class,original_name,n_masks_merged,stored_mode"]
    ids = []
    for cls in ("benign", "malignant"):
        folder = next(d for d in base.iterdir() if d.is_dir() and d.name.lower() == cls)
        images: dict[int, Path] = {}
        masks: dict[int, list[Path]] = {}
        for f in _image_files(folder):
            if m := _BUSI_IMAGE.match(f.name):
                images[int(m.group(2))] = f
            elif m := _BUSI_MASK.match(f.name):
                masks.setdefault(int(m.group(2)), []).append(f)
        for n in sorted(images):
            img_path = images[n]
            if n not in masks:
                raise ConversionError(f"{img_path}: no mask ({img_path.stem}_mask.png) next to it")
            sample_id = f"{cls}_{n:03d}"
            fg = mask_foreground(sorted(masks[n])[0])
            for mp in sorted(masks[n])[1:]:
                m = mask_foreground(mp)
                if m.shape != fg.shape:
                    raise ConversionError(
                        f"{mp}: mask is {m.shape[1]}x{m.shape[0]}, other masks of {img_path.name} are "
                        f"{fg.shape[1]}x{fg.shape[0]}"
                    )
                fg |= m
            im = _open(img_path)
            if (im.size[1], im.size[0]) != fg.shape:
                raise ConversionError(
                    f"{masks[n][0]}: mask is {fg.shape[1]}x{fg.shape[0]} but image {img_path} is {im.size[0]}x{im.size[1]}"
                )
            im = im.convert("RGB") if im.mode != "L" else im
            if im.mode == "RGB":
                a = np.asarray(im)
                if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
                    im = im.convert("L")
            (out / "images").mkdir(parents=True, exist_ok=True)
            im.save(out / "images" / f"{sample_id}.png", format="PNG")
            write_binary_mask(fg, out / "masks" / f"{sample_id}.png")
            index_rows.append(f"{sample_id},{cls},{img_path.name},{len(masks[n])},{im.mode}")
            ids.append(sample_id)
    normal = [d for d in base.iterdir() if d.is_dir() and d.name.lower() == "normal"]
    notes = [f"left out the 'normal' class ({len(_image_files(normal[0]))} files)"] if normal else []
    atomic_write_text(out / "index.csv", "\n".join(index_rows) + "\n")
    n_train, n_test, note = _splits_from_packaged("busi", ids, out)
    return ConversionSummary(len(ids), n_train, n_test, (*notes, note))


def convert_drive(src: Path, out: Path) -> ConversionSummary:
    """DRIVE (Staal et al., IEEE TMI 2004): ``{training,test}/{images,1st_manual,mask}/``.

    ``images/21_training.tif`` -> id ``21_training`` (PNG), its vessel mask ``1st_manual/21_manual1.gif`` -> ``masks/``
    and its field-of-view mask ``mask/21_training_mask.gif`` -> ``fov_masks/``. The official split is the folder. Test
    images without a ``1st_manual`` mask (the grand-challenge release hides them) are skipped with a warning.
    """
    notes = []
    splits: dict[str, str] = {}
    for folder_name, split in (("training", "train"), ("test", "test")):
        candidates = [d for d in _dirs_named(src, (folder_name,)) if (d / "images").is_dir()]
        if not candidates:
            if split == "train":
                raise ConversionError(f"{src}: no training/images/ folder (expected the DRIVE layout)")
            notes.append("no test/ folder")
            continue
        folder = candidates[0]
        manual = (
            {p.name.split("_")[0]: p for p in _image_files(folder / "1st_manual")}
            if (folder / "1st_manual").is_dir()
            else {}
        )
        fov = (
            {p.stem.removesuffix("_mask"): p for p in _image_files(folder / "mask")}
            if (folder / "mask").is_dir()
            else {}
        )
        skipped = 0
        for img in _image_files(folder / "images"):
            sample_id = img.stem
            number = sample_id.split("_")[0]
            if number not in manual:
                skipped += 1
                continue
            _write_pair(img, manual[number], out, sample_id)
            if sample_id in fov:
                fg = mask_foreground(fov[sample_id])
                _check_same_size(img, (fg.shape[1], fg.shape[0]), fov[sample_id])
                write_binary_mask(fg, out / "fov_masks" / f"{sample_id}.png")
            splits[sample_id] = split
        if skipped:
            notes.append(f"{folder_name}: skipped {skipped} images without a 1st_manual mask")
            logger.warning(notes[-1])
    n_train, n_test = _write_splits(out, splits)
    return ConversionSummary(len(splits), n_train, n_test, tuple(notes))


_MASK_PATTERNS = ("{stem}", "{stem}_mask", "p{stem}", "{stem}_gt", "gt{stem}", "{stem}_segmentation")


def convert_paired_folders(src: Path, out: Path) -> ConversionSummary:
    """Generic converter: one ``images``-like and one ``masks``-like sibling folder, paired by file stem.

    Folder names accepted (case-insensitive): images/image/imgs/img/Original and masks/mask/Ground Truth/GroundTruth/
    gt/labels. A mask may be named like its image, or ``<stem>_mask``, ``p<stem>`` (CVC-ColonDB, ETIS), ``<stem>_gt``.
    This covers the original CVC-ClinicDB layout (``Original/``, ``Ground Truth/``; the PNG copy is preferred when
    both PNG/ and TIF/ are present), the PraNet ``TestDataset/<name>/{images,masks}`` layout, and the original
    CVC-ColonDB layout (``<n>.bmp`` with ``p<n>.bmp`` polyp masks in one folder). No split is written.
    """
    pairs = find_image_mask_dirs(src)
    if pairs:
        img_dir, mask_dir = _single_pair(pairs, src, "image/mask folder pairs")
        masks = {p.stem.lower(): p for p in _image_files(mask_dir)}
        images = _image_files(img_dir)
    else:  # one folder with <n>.bmp images and p<n>.bmp masks (original CVC-ColonDB)
        flat = sorted(
            {p.parent for p in src.rglob("*") if p.is_file() and re.fullmatch(r"p\d+", p.stem, re.IGNORECASE)}
        )
        flat = [d for d in flat if not _is_junk(d.relative_to(src)) and d.is_dir()]
        if len(flat) != 1:
            raise ConversionError(
                f"{src}: found no images/ + masks/ (or Original/ + Ground Truth/) folders, nor one folder of "
                "<n>.<ext> images with p<n>.<ext> masks"
            )
        files = _image_files(flat[0])
        images = [p for p in files if re.fullmatch(r"\d+", p.stem)]
        masks = {p.stem.lower(): p for p in files if re.fullmatch(r"p\d+", p.stem, re.IGNORECASE)}
    if not images:
        raise ConversionError(f"{src}: the image folder holds no images ({', '.join(IMAGE_EXTS)})")
    seen: set[str] = set()
    for img in images:
        mask = _match_mask(img.stem, masks, _MASK_PATTERNS)
        if mask is None:
            raise ConversionError(
                f"{img}: no mask named like it (tried {', '.join(p.format(stem=img.stem) for p in _MASK_PATTERNS)})"
            )
        if img.stem in seen:
            raise ConversionError(f"{img}: two images share the id {img.stem!r}")
        seen.add(img.stem)
        _write_pair(img, mask, out, img.stem)
    return ConversionSummary(len(seen), notes=("no official split; splits.csv not written",))


_POLYPGEN_IMAGES = re.compile(r"^images_(C\d+)$", re.IGNORECASE)


def convert_polypgen(src: Path, out: Path) -> ConversionSummary:
    """PolypGen2021 (Ali et al., Scientific Data 2023): ``data_C<k>/images_C<k>/*.jpg`` + ``masks_C<k>/*_mask.jpg``.

    Only the single-frame data of the centres is converted (sequence folders are left out). Ids get the centre tag as
    a prefix (``C1_<stem>``) unless the stem already starts with it, so ids stay unique across centres. Falls back to
    :func:`convert_paired_folders` when there are no ``images_C<k>`` folders (e.g. an already-flattened copy).
    """
    centre_dirs = []
    for d in sorted(p for p in src.rglob("*") if p.is_dir() and _POLYPGEN_IMAGES.match(p.name)):
        if _is_junk(d.relative_to(src)):
            continue
        centre = _POLYPGEN_IMAGES.match(d.name).group(1).upper()  # type: ignore[union-attr]
        mask_dir = next(
            (m for m in d.parent.iterdir() if m.is_dir() and m.name.lower() == f"masks_{centre.lower()}"),
            None,
        )
        if mask_dir is None:
            raise ConversionError(f"{d}: no sibling masks_{centre}/ folder")
        centre_dirs.append((centre, d, mask_dir))
    if not centre_dirs:
        return convert_paired_folders(src, out)
    seen: set[str] = set()
    for centre, img_dir, mask_dir in centre_dirs:
        masks = {p.stem.lower(): p for p in _image_files(mask_dir)}
        for img in _image_files(img_dir):
            mask = _match_mask(img.stem, masks, _MASK_PATTERNS)
            if mask is None:
                raise ConversionError(f"{img}: no mask {img.stem}_mask.* in {mask_dir}")
            sample_id = img.stem if img.stem.upper().startswith(centre) else f"{centre}_{img.stem}"
            if sample_id in seen:
                raise ConversionError(f"{img}: id {sample_id!r} occurs twice")
            seen.add(sample_id)
            _write_pair(img, mask, out, sample_id)
    return ConversionSummary(
        len(seen), notes=(f"centres: {', '.join(c for c, _, _ in centre_dirs)}; no official split",)
    )
