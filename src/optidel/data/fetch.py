"""Fetch a registered dataset: download, verify sha256, extract safely, convert to the standard layout.

``fetch_dataset("kvasir-seg", root)`` produces ``root/kvasir-seg/{images,masks}/`` (see :mod:`optidel.data.convert`)
in four steps:

1. **Download** (:func:`download`) into ``root/.downloads/`` through a ``.part`` file whose name carries a hash of the
   URL; an interrupted download resumes with an HTTP ``Range`` request, and the file gets its final name only when
   complete. A rich progress bar shows bytes, speed and time left.
2. **Verify**: the sha256 of the file is compared with the registry's (or ``--sha256``). A mismatch deletes the
   download and raises :class:`FetchError` naming the file and both hashes. With no known hash, a warning gives the
   computed one so it can be pinned.
3. **Extract** (:func:`optidel.data.archive.safe_extract`): every entry of the zip/tar is checked before anything is
   written (absolute paths, ``..`` escapes, links, device files raise :class:`UnsafeArchiveError` naming the entry),
   and decompression bombs are refused by the bytes actually written (total and ratio limits).
4. **Convert** into a temporary sibling folder ``root/.<name>.fetch-*/build``, check the result (every image has a
   mask with the same id), write a marker file, and rename it to ``root/<name>``.

An existing complete ``root/<name>`` is left alone (``force=True`` rebuilds it, swapping the new folder in only once it
is complete). Failures never touch an existing dataset folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, urlopen

from optidel.data.archive import archive_kind, safe_extract
from optidel.data.convert import IMAGE_EXTS, ConversionSummary
from optidel.data.errors import ConversionError, FetchError, ManualDownloadRequired, UnsafeArchiveError
from optidel.data.registry import DatasetSpec, get_dataset
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json

DOWNLOADS_DIR = ".downloads"
MARKER = ".optidel-dataset.json"
USER_AGENT = "optidel-data-fetch/0.1"
_CHUNK = 1 << 16

__all__ = [  # the archive and error names are re-exported: ``optidel.data.fetch`` stays their public home too
    "ConversionError",
    "FetchError",
    "FetchResult",
    "ManualDownloadRequired",
    "UnsafeArchiveError",
    "archive_kind",
    "check_standard_layout",
    "download",
    "fetch_dataset",
    "is_complete",
    "safe_extract",
    "sha256_file",
]


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_dataset` did.

    Attributes:
        name: registry name.
        path: the dataset folder (``root/<name>``).
        already_present: the folder was complete already and was left alone.
        n_pairs, n_train, n_test: pairs written, and the split counts (0/0 when no ``splits.csv``).
        source: URL or local path the data came from.
        sha256: sha256 of the archive used (``None`` for a folder, or when nothing was fetched).
        sha256_verified: the sha256 matched a known expected value.
        notes: remarks from the converter and the checks.
    """

    name: str
    path: Path
    already_present: bool
    n_pairs: int = 0
    n_train: int = 0
    n_test: int = 0
    source: str = ""
    sha256: str | None = None
    sha256_verified: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------------------------
# download + checksum


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def _part_path(dest: Path, url: str) -> Path:
    tag = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    return dest.with_name(f"{dest.name}.{tag}.part")


@contextlib.contextmanager
def _progress_bar(
    description: str, total: int | None, completed: int, enabled: bool
) -> Iterator[Callable[[int], None]]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from optidel.runtime import progress as progress_switch

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=progress_switch.console,
        disable=not (enabled and progress_switch.is_enabled()),
    ) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)


def download(
    url: str,
    dest: str | Path,
    *,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``dest`` (resumable, atomic) and return its sha256.

    The bytes go to ``<dest>.<urlhash>.part``; a later call with the same URL resumes it with a ``Range`` request (or
    restarts when the server ignores ranges). ``dest`` appears only once the download is complete and, when
    ``expected_sha256`` is given, verified.

    Args:
        url: http(s) URL (``file:`` works too).
        dest: final path of the file.
        expected_sha256: hex digest to verify; ``None`` skips verification (the caller should report the result).
        timeout: seconds for connecting and for each read.
        progress: show a rich progress bar (also silenced by ``OPTIDEL_PROGRESS=0``).

    Raises:
        FetchError: HTTP/network error or a short read (the ``.part`` file is kept for resuming), or a sha256
            mismatch (the download is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest, url)
    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = urlopen(Request(url, headers=headers), timeout=timeout)
        except HTTPError as exc:
            if exc.code == 416 and offset and attempt == 0:  # range past the end: the part file is stale
                part.unlink()
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"{url}: cannot connect ({reason})") from exc
        with resp:
            status = getattr(resp, "status", 200)
            content_range = resp.headers.get("Content-Range", "")
            if offset and status == 206 and content_range.startswith(f"bytes {offset}-"):
                mode = "ab"
                logger.info("resuming %s at byte %d", url, offset)
            else:
                offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            try:
                with open(part, mode) as f, _progress_bar(dest.name, total, offset, progress) as advance:
                    while block := resp.read(_CHUNK):
                        f.write(block)
                        advance(len(block))
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(
                    f"{url}: download interrupted ({exc}); partial file kept at {part}, rerun to resume"
                ) from exc
        size = part.stat().st_size
        if total is not None and size != total:
            raise FetchError(
                f"{url}: got {size} of {total} bytes; partial file kept at {part}, rerun the same command to resume"
            )
        break
    actual = sha256_file(part)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise FetchError(
            f"{dest.name} (from {url}): sha256 mismatch: expected {expected_sha256.lower()}, got {actual}; "
            "the download was deleted"
        )
    os.replace(part, dest)
    return actual


# ----------------------------------------------------------------------------------------------------------------
# standard layout checks


def _ids(folder: Path) -> dict[str, Path]:
    files = (
        [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if folder.is_dir()
        else []
    )
    ids: dict[str, Path] = {}
    for p in sorted(files):
        if p.stem in ids:
            raise FetchError(f"{p}: id {p.stem!r} occurs twice in {folder} ({ids[p.stem].name}, {p.name})")
        ids[p.stem] = p
    return ids


def check_standard_layout(folder: str | Path) -> int:
    """Check ``images/``, ``masks/`` (same ids) and, when present, ``splits.csv``; returns the number of pairs.

    Raises:
        FetchError: naming the folder and the problem.
    """
    folder = Path(folder)
    images, masks = _ids(folder / "images"), _ids(folder / "masks")
    if not images:
        raise FetchError(f"{folder}: images/ is missing or empty")
    if set(images) != set(masks):
        only_img = sorted(set(images) - set(masks))[:3]
        only_mask = sorted(set(masks) - set(images))[:3]
        raise FetchError(
            f"{folder}: images/ and masks/ ids differ (images only: {only_img}, masks only: {only_mask})"
        )
    splits = folder / "splits.csv"
    if splits.is_file():
        lines = splits.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0].strip() != "id,split":
            raise FetchError(f"{splits}: header must be 'id,split'")
        for line in lines[1:]:
            sample_id, _, split = line.partition(",")
            if sample_id not in images or split not in ("train", "test"):
                raise FetchError(f"{splits}: bad row {line!r} (unknown id or split not train|test)")
    return len(images)


def is_complete(folder: str | Path) -> bool:
    """A dataset folder that fetch finished (marker present), or any folder in a valid standard layout."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    try:
        check_standard_layout(folder)
    except (FetchError, OSError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# the whole fetch


def _archive_filename(spec: DatasetSpec, url: str | None) -> str:
    if url is None and spec.archive_name:
        return spec.archive_name
    name = Path(unquote(urlparse(url or "").path)).name
    return name or f"{spec.name}.archive"


def fetch_dataset(
    name: str,
    root: str | Path,
    *,
    archive: str | Path | None = None,
    force: bool = False,
    url: str | None = None,
    sha256: str | None = None,
    keep_archive: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> FetchResult:
    """Download (or take a local archive/folder), verify, extract and convert a registered dataset.

    Args:
        name: registry name or alias (see ``optidel data list``).
        root: parent folder; the dataset lands in ``root/<name>``.
        archive: a local archive (zip/tar) or an already-extracted folder, instead of downloading.
        force: rebuild ``root/<name>`` even when it is complete (the old folder is replaced only on success).
        url: download from this URL (a mirror) instead of the registry's; works for manual datasets too.
        sha256: expected sha256 of the archive, overriding the registry's (which is often unknown).
        keep_archive: keep the downloaded archive in ``root/.downloads/`` after a successful conversion.
        progress: show a download progress bar.
        timeout: network timeout in seconds (connect and each read).

    Returns:
        A :class:`FetchResult`.

    Raises:
        ManualDownloadRequired: no URL and no ``archive`` for a dataset without a direct download.
        FetchError: network, checksum, archive, or target-folder problems (:class:`UnsafeArchiveError` for unsafe
            archive entries).
        ConversionError: the archive does not have the expected layout.
        KeyError: unknown dataset name (:class:`optidel.data.registry.UnknownDatasetError`).
    """
    spec = get_dataset(name)
    root = Path(root).expanduser()
    target = root / spec.name
    present = _existing(spec, target, force)
    if present is not None:
        return present
    expected = (sha256 or spec.sha256 or "").lower() or None
    src = _obtain(spec, root, archive, url, expected, timeout, progress)
    digest, verified, notes = _verify(spec, src, expected)
    summary, n_pairs = _build(spec, src, root, target, (digest, verified), notes, keep_archive)
    logger.info("%s: %d pairs in %s", spec.name, n_pairs, target)
    return FetchResult(
        spec.name,
        target,
        already_present=False,
        n_pairs=n_pairs,
        n_train=summary.n_train,
        n_test=summary.n_test,
        source=src.label,
        sha256=digest,
        sha256_verified=verified,
        notes=tuple(notes),
    )


def _existing(spec: DatasetSpec, target: Path, force: bool) -> FetchResult | None:
    """Step 0: a complete ``target`` is left alone (a result); an incomplete one is refused unless ``force``."""
    if not target.exists() or force:
        return None
    if is_complete(target):
        logger.info("%s is already complete; left alone (use --force to rebuild it)", target)
        return FetchResult(spec.name, target, already_present=True, source=str(target))
    raise FetchError(
        f"{target} exists but is not a complete dataset folder (no {MARKER}, or images/ and masks/ do not pair "
        "up); move it away or pass --force to rebuild it"
    )


@dataclass(frozen=True)
class _Source:
    """Where the data comes from: a local archive/folder, or a download (``downloaded`` set)."""

    path: Path
    label: str
    downloaded: Path | None = None
    fresh_digest: str | None = None


def _obtain(
    spec: DatasetSpec,
    root: Path,
    archive: str | Path | None,
    url: str | None,
    expected: str | None,
    timeout: float,
    progress: bool,
) -> _Source:
    """Step 1: take the local ``archive``, or download (resuming; reusing a finished download)."""
    if archive is not None:
        source = Path(archive).expanduser()
        if not source.exists():
            raise FetchError(f"{source}: no such file or folder (given with --archive)")
        return _Source(source, str(source))
    if url is None and not (spec.download == "direct" and spec.urls):
        raise ManualDownloadRequired(spec.manual_message(str(root)))
    label = url or spec.urls[0]
    root.mkdir(parents=True, exist_ok=True)
    source = root / DOWNLOADS_DIR / _archive_filename(spec, url)
    fresh: str | None = None
    if source.is_file():
        logger.info("reusing the downloaded %s", source)
    else:
        try:
            fresh = download(label, source, expected_sha256=expected, timeout=timeout, progress=progress)
        except FetchError:
            _remove_empty(source.parent)
            raise
    return _Source(source, label, source, fresh)


def _verify(spec: DatasetSpec, src: _Source, expected: str | None) -> tuple[str | None, bool, list[str]]:
    """Step 2: the archive's sha256 against the expected one (a mismatching download is deleted)."""
    if not src.path.is_file():
        return None, False, []
    digest = src.fresh_digest or sha256_file(src.path)
    if expected is None:
        note = f"no known sha256 for {spec.title}; computed sha256 of {src.path.name}: {digest}"
        logger.warning("%s (pin it with --sha256)", note)
        return digest, False, [note]
    if digest != expected:
        if src.downloaded is not None:
            src.path.unlink(missing_ok=True)
            _remove_empty(src.path.parent)
        raise FetchError(
            f"{src.path}: sha256 mismatch: expected {expected}, got {digest}"
            + ("; the download was deleted" if src.downloaded is not None else "")
        )
    return digest, True, []


def _build(
    spec: DatasetSpec,
    src: _Source,
    root: Path,
    target: Path,
    checksum: tuple[str | None, bool],
    notes: list[str],
    keep_archive: bool,
) -> tuple[ConversionSummary, int]:
    """Steps 3-4: extract into a scratch folder beside ``target``, convert, check, mark, swap into place."""
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.fetch-", dir=root))
    keep_download = keep_archive
    try:
        raw = src.path
        if not src.path.is_dir():
            raw = work / "raw"
            try:
                safe_extract(src.path, raw)
            except FetchError:
                keep_download = False  # an unsafe or corrupt archive is not worth keeping
                raise
        build = work / "build"
        build.mkdir()
        try:
            summary = spec.converter(raw, build)
        except ConversionError as exc:
            if src.downloaded is None:
                raise
            keep_download = True  # the archive may be fine; a rerun (after a fix) need not download it again
            raise ConversionError(
                f"{exc} (the download is kept at {src.downloaded} and reused by the next run)"
            ) from exc
        n_pairs = check_standard_layout(build)
        notes.extend(summary.notes)
        if spec.expected_pairs is not None and n_pairs != spec.expected_pairs:
            notes.append(f"{n_pairs} pairs, the official release has {spec.expected_pairs}")
            logger.warning("%s: %s", spec.name, notes[-1])
        atomic_write_json(build / MARKER, _marker(spec, summary, n_pairs, src.label, *checksum))
        _swap_into_place(build, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if src.downloaded is not None and not keep_download:
            src.downloaded.unlink(missing_ok=True)
            _remove_empty(src.downloaded.parent)
    return summary, n_pairs


def _marker(
    spec: DatasetSpec,
    summary: ConversionSummary,
    n_pairs: int,
    source: str,
    digest: str | None,
    verified: bool,
) -> dict[str, object]:
    return {
        "name": spec.name,
        "title": spec.title,
        "source": source,
        "sha256": digest,
        "sha256_verified": verified,
        "n_pairs": n_pairs,
        "n_train": summary.n_train,
        "n_test": summary.n_test,
        "licence": spec.licence,
        "citation": spec.citation,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _swap_into_place(build: Path, target: Path, work: Path) -> None:
    """Rename ``build`` to ``target``; an existing ``target`` is moved aside first and restored on failure."""
    if not target.exists():
        os.replace(build, target)
        return
    previous = work / "previous"
    os.replace(target, previous)
    try:
        os.replace(build, target)
    except OSError:
        os.replace(previous, target)
        raise


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
