"""List a folder as 2D items: walk it (links followed once), recognise each file's format, expand multi-item files.

Walking: hidden files and folders (``.``-prefixed) are ignored; files are taken in path order (as
``sorted(folder.rglob("*"))`` gave them before this layer, so existing pools keep their order and ids). A symbolic
link to a file is **followed once**, wherever the file is (inside or outside the listed folder); its id is the link's
own path. Reported as skipped, with the reason: a dangling link (target missing), a link loop, and a link to a
folder (not followed, as before: it could list files twice or forever; give that folder as its own pool source).

Formats (``optidel.data.sources``): Pillow images and single-page TIFFs are one item each (the file path, id = path
without extension, exactly as before this layer existed); multi-page TIFFs, DICOM multi-frame objects and series,
NIfTI volumes and whole-slide images become several items addressed by locators. Files that cannot be used are
skipped with a reason; files of no image format (text, CSV ...) are ignored.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from optidel.data.errors import ImageDecodeError
from optidel.data.sources import dicom, nifti, tiff, wsi
from optidel.data.sources.config import DEFAULT_OPTIONS, SourceOptions
from optidel.data.sources.item import SkipFile, Skipped, SourceItem
from optidel.data.sources.locator import make_locator
from optidel.data.sources.window import parse_window

PILLOW_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"})


@dataclass
class Listing:
    """Items of a folder (in path order; items inside a file in index order) and the files left out, with reasons."""

    items: list[SourceItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def by_format(self) -> dict[str, dict[str, int]]:
        """``{format: {"files", "items", "skipped"}}`` (files = distinct real files that gave items)."""
        from optidel.data.sources.locator import real_file

        out: dict[str, dict[str, int]] = {}
        files: dict[str, set[Path]] = defaultdict(set)
        for it in self.items:
            row = out.setdefault(it.fmt, {"files": 0, "items": 0, "skipped": 0})
            row["items"] += 1
            files[it.fmt].add(real_file(it.path))
        for fmt, fs in files.items():
            out[fmt]["files"] = len(fs)
        for s in self.skipped:
            out.setdefault(s.fmt, {"files": 0, "items": 0, "skipped": 0})["skipped"] += 1
        return dict(sorted(out.items()))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def walk(folder: Path) -> tuple[list[tuple[str, Path]], list[Skipped]]:
    """(relative posix path, path) of every non-hidden file under ``folder`` (links followed once), and the links
    that were not followed with the reason. Sorted by relative path."""
    files: list[tuple[str, Path]] = []
    skipped: list[Skipped] = []

    def visit(d: Path, rel: str) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skipped.append(Skipped(d, f"cannot list folder ({e.strerror or e})"))
            return
        for e in entries:
            if _is_hidden(e.name):
                continue
            p, r = Path(e.path), f"{rel}{e.name}"
            if e.is_symlink():
                try:
                    target = p.resolve(strict=True)
                except FileNotFoundError:
                    skipped.append(
                        Skipped(p, f"dangling symbolic link (to {os.readlink(p)}, which does not exist)")
                    )
                    continue
                except (RuntimeError, OSError) as err:
                    skipped.append(Skipped(p, f"symbolic link loop ({err})"))
                    continue
                if target.is_dir():
                    skipped.append(
                        Skipped(p, f"link to a folder ({target}): not followed; give it as a pool source")
                    )
                elif target.is_file():
                    files.append((r, p))
                continue
            if e.is_dir(follow_symlinks=False):
                visit(p, r + "/")
            elif e.is_file(follow_symlinks=False):
                files.append((r, p))

    visit(folder, "")
    return files, skipped


def _rel_id(rel: str, path: Path) -> str:
    """Id of a file: its relative path without extension (``.nii.gz`` counts as one extension)."""
    parent = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    name = nifti.stem(path) if nifti.is_nifti(path) else Path(rel).stem
    return parent + name


def _tiff_items(rel: str, p: Path, opts: SourceOptions, out: Listing) -> None:
    try:
        n, levels, _ = tiff.tiff_info(p)
    except ImageDecodeError:
        out.items.append(SourceItem(_rel_id(rel, p), p, "image"))  # Pillow may still read it; decode names it
        return
    if levels > 1:
        _wsi_items(rel, p, opts, out)
    elif n > 1 and opts.tiff_pages == "all":
        base = _rel_id(rel, p)
        out.items += [
            SourceItem(f"{base}/page_{k:04d}", make_locator(p, "tiff", page=k), "tiff") for k in range(n)
        ]
    else:
        out.items.append(SourceItem(_rel_id(rel, p), p, "tiff" if n > 1 or levels else "image"))


def _wsi_items(rel: str, p: Path, opts: SourceOptions, out: Listing) -> None:
    try:
        tiles = wsi.list_tiles(
            p,
            opts.wsi_tile,
            opts.wsi_level,
            opts.wsi_magnification,
            opts.wsi_tissue,
            opts.wsi_max_tiles,
            opts.seed,
        )
    except SkipFile as e:
        out.skipped.append(Skipped(p, e.reason, "wsi"))
        return
    if not tiles:
        out.skipped.append(Skipped(p, f"no tile with tissue fraction >= {opts.wsi_tissue}", "wsi"))
    base = _rel_id(rel, p)
    for t in tiles:
        loc = make_locator(p, "wsi", level=t.level, x=t.x, y=t.y, size=t.size)
        out.items.append(SourceItem(f"{base}/L{t.level}_x{t.x:06d}_y{t.y:06d}", loc, "wsi"))


def _keep_indices(n: int, opts: SourceOptions, fraction) -> list[int]:
    """Indices kept by the stride and, with ``drop_empty``, by the foreground fraction (``fraction(k)``)."""
    idx = list(range(0, n, opts.slice_stride))
    if opts.drop_empty > 0:
        idx = [k for k in idx if fraction(k) >= opts.drop_empty]
    return idx


def _nifti_items(rel: str, p: Path, opts: SourceOptions, out: Listing) -> None:
    window = parse_window(opts.window).text
    try:
        shape = nifti.volume_shape(p)
        nifti.check_complete(p)
        axis = nifti.choose_axis(p, opts.slice_axis)
        fractions = nifti.slice_fractions(p, axis, window) if opts.drop_empty > 0 else None
    except SkipFile as e:
        out.skipped.append(Skipped(p, e.reason, "nifti"))
        return
    except ImageDecodeError as e:
        out.skipped.append(Skipped(p, e.reason, "nifti"))
        return
    keep = _keep_indices(shape[axis], opts, lambda k: fractions[k] if fractions is not None else 1.0)
    if not keep:
        out.skipped.append(Skipped(p, f"every slice is below drop_empty={opts.drop_empty}", "nifti"))
    base = _rel_id(rel, p)
    for k in keep:
        loc = make_locator(p, "nifti", slice=k, axis=axis, window=window)
        out.items.append(SourceItem(f"{base}/slice_{k:04d}", loc, "nifti"))


def _dicom_frames(info: dicom.DicomInfo, base: str, opts: SourceOptions, out: Listing, slice_of=None) -> None:
    window = parse_window(opts.window).text

    def fraction(k: int) -> float:
        return dicom.decode_frame(info.path, k, window)[1]

    try:
        keep = _keep_indices(info.n_frames, opts, fraction)
    except ImageDecodeError as e:
        out.skipped.append(Skipped(info.path, e.reason, "dicom"))
        return
    for k in keep:
        loc = make_locator(info.path, "dicom", frame=k, window=window)
        out.items.append(SourceItem(f"{base}/frame_{k:04d}", loc, "dicom"))


def _dicom_series(infos: list[dicom.DicomInfo], base: str, opts: SourceOptions, out: Listing) -> None:
    window = parse_window(opts.window).text
    ordered = dicom.series_order(infos)

    def fraction(k: int) -> float:
        return dicom.decode_frame(ordered[k].path, 0, window)[1]

    keep: list[int] = []
    for k in range(0, len(ordered), opts.slice_stride):
        try:
            if opts.drop_empty <= 0 or fraction(k) >= opts.drop_empty:
                keep.append(k)
        except ImageDecodeError as e:
            out.skipped.append(Skipped(ordered[k].path, e.reason, "dicom"))
    for k in keep:
        loc = make_locator(ordered[k].path, "dicom", frame=0, slice=k, window=window)
        out.items.append(SourceItem(f"{base}slice_{k:04d}", loc, "dicom"))


def _dicom_items(found: list[tuple[str, Path]], opts: SourceOptions, out: Listing) -> None:
    window = parse_window(opts.window).text
    groups: dict[tuple[str, str], list[tuple[str, dicom.DicomInfo]]] = defaultdict(list)
    for rel, p in found:
        try:
            info = dicom.read_info(p)
        except SkipFile as e:
            out.skipped.append(Skipped(p, e.reason, "dicom"))
            continue
        if info.n_frames > 1:
            _dicom_frames(info, _rel_id(rel, p), opts, out)
            continue
        parent = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        groups[(parent, info.series_uid)].append((rel, info))
    series_per_dir: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for parent, uid in groups:
        if len(groups[(parent, uid)]) > 1:
            series_per_dir[parent].append((parent, uid))
    for (parent, uid), members in sorted(groups.items()):
        if len(members) == 1:
            rel, info = members[0]
            loc = make_locator(info.path, "dicom", frame=0, window=window)
            out.items.append(SourceItem(_rel_id(rel, info.path), loc, "dicom"))
            continue
        series = series_per_dir[parent]
        label = ""
        if len(series) > 1:
            numbers = [groups[s][0][1].series_number for s in series]
            num = members[0][1].series_number
            unique = num is not None and numbers.count(num) == 1
            label = f"series_{num}/" if unique else f"series_{uid.rsplit('.', 1)[-1][-12:]}/"
        _dicom_series([i for _, i in members], parent + label, opts, out)


def list_items(folder: str | Path, options: SourceOptions = DEFAULT_OPTIONS) -> Listing:
    """Every 2D item under ``folder`` (path order) and the files skipped with their reasons."""
    folder = Path(folder)
    files, skipped = walk(folder)
    out = Listing(skipped=list(skipped))
    dicoms: list[tuple[str, Path]] = []
    for rel, p in files:
        suffix = p.suffix.lower()
        if nifti.is_nifti(p):
            _nifti_items(rel, p, options, out)
        elif suffix in wsi.WSI_EXTENSIONS:
            _wsi_items(rel, p, options, out)
        elif suffix in tiff.TIFF_EXTENSIONS:
            _tiff_items(rel, p, options, out)
        elif suffix in PILLOW_EXTENSIONS:
            out.items.append(SourceItem(_rel_id(rel, p), p, "image"))
        elif dicom.looks_like_dicom(p):
            dicoms.append((rel, p))
    if dicoms:
        _dicom_items(dicoms, options, out)
    return out
