"""Fetch a registered dataset: download, verify sha256, extract safely, convert to the standard layout.

``fetch_dataset("kvasir-seg", root)`` produces ``root/kvasir-seg/{images,masks}/`` (see :mod:`optidel.data.convert`)
in four steps:

1. **Download** (:func:`download`) into ``root/.downloads/`` through a ``.part`` file whose name carries a hash of the
   URL; an interrupted download resumes with an HTTP ``Range`` request, and the file gets its final name only when
   complete. A rich progress bar shows bytes, speed and time left.
2. **Verify**: the sha256 of the file is compared with the registry's (or ``--sha256``). A mismatch deletes the
   download and raises :class:`FetchError` naming the file and both hashes. With no known hash, a warning gives the
   computed one so it can be pinned.
3. **Extract** (:func:`safe_extract`): every entry of the zip/tar is checked before anything is written. Absolute
   paths, ``..`` escapes, symbolic and hard links, device files, fifos and sockets raise
   :class:`UnsafeArchiveError` naming the entry; nothing is extracted then.
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
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, urlopen

from optidel.data.convert import IMAGE_EXTS, ConversionError, ConversionSummary
from optidel.data.registry import DatasetSpec, get_dataset
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json

DOWNLOADS_DIR = ".downloads"
MARKER = ".optidel-dataset.json"
USER_AGENT = "optidel-data-fetch/0.1"
_CHUNK = 1 << 16
_MAX_TOTAL_BYTES = 64 * 2**30


class FetchError(RuntimeError):
    """A download, checksum, archive or target-folder problem; the message names the file and the problem."""


class UnsafeArchiveError(FetchError):
    """An archive entry that would write outside the target, or is a link or a device file."""


class ManualDownloadRequired(FetchError):
    """The dataset has no direct public download; the message says where to get it and how to pass it in."""


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
# safe extraction


def archive_kind(path: str | Path) -> Literal["zip", "tar"]:
    """``"zip"`` or ``"tar"`` (any compression tarfile reads) by content, not by name.

    Raises:
        FetchError: RAR/7z (not readable by the standard library: extract it yourself and pass the folder) or an
            unknown format.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"Rar!") or head.startswith(b"7z\xbc\xaf\x27\x1c"):
        kind = "RAR" if head.startswith(b"Rar!") else "7z"
        raise FetchError(
            f"{path}: is a {kind} archive, which optidel cannot open; extract it (unrar x / 7z x) and pass the "
            "extracted folder with --archive"
        )
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise FetchError(f"{path}: not a zip or tar archive (first bytes {head!r})")


def _safe_relpath(name: str, archive: Path) -> PurePosixPath | None:
    """The entry's path relative to the target, or ``None`` for the archive root; raises on unsafe names."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an empty name or a NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} escapes the target folder ('..')")
    return PurePosixPath(*parts) if parts else None


@dataclass(frozen=True)
class _Entry:
    rel: PurePosixPath
    is_dir: bool
    size: int
    open: Callable[[], IO[bytes]]


def _zip_entries(zf: zipfile.ZipFile, archive: Path) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        rel = _safe_relpath(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a symbolic link")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a device file, fifo or socket")
        if rel is not None:
            entries.append(_Entry(rel, info.is_dir(), info.file_size, lambda info=info: zf.open(info)))
    return entries


def _tar_entries(tf: tarfile.TarFile, archive: Path) -> list[_Entry]:
    entries = []
    for m in tf.getmembers():
        rel = _safe_relpath(m.name, archive)
        if m.issym():
            raise UnsafeArchiveError(f"{archive}: entry {m.name!r} is a symbolic link (to {m.linkname!r})")
        if m.islnk():
            raise UnsafeArchiveError(f"{archive}: entry {m.name!r} is a hard link (to {m.linkname!r})")
        if m.isdev():
            raise UnsafeArchiveError(f"{archive}: entry {m.name!r} is a device file or fifo")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: entry {m.name!r} is not a regular file or folder")
        if rel is not None:
            entries.append(_Entry(rel, m.isdir(), m.size, lambda m=m: tf.extractfile(m)))  # type: ignore[arg-type,return-value]
    return entries


def safe_extract(archive: str | Path, target: str | Path, *, max_total_bytes: int = _MAX_TOTAL_BYTES) -> int:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``target`` after checking every entry.

    All entries are checked before the first byte is written, so an unsafe archive leaves ``target`` untouched.
    Files are written with mode 0o644 (archive permissions and owners are ignored).

    Args:
        archive: the archive file.
        target: folder to extract into (created if missing).
        max_total_bytes: refuse archives whose entries declare more bytes than this (decompression bombs).

    Returns:
        The number of files written.

    Raises:
        UnsafeArchiveError: an absolute path, a ``..`` escape, a link, a device file/fifo/socket, or too many bytes;
            the message names the entry.
        FetchError: the file is not a readable zip/tar archive.
    """
    archive, target = Path(archive), Path(target)
    kind = archive_kind(archive)
    try:
        with contextlib.ExitStack() as stack:
            if kind == "zip":
                zf = stack.enter_context(zipfile.ZipFile(archive))
                entries = _zip_entries(zf, archive)
            else:
                tf = stack.enter_context(tarfile.open(archive, "r:*"))
                entries = _tar_entries(tf, archive)
            total = sum(e.size for e in entries)
            if total > max_total_bytes:
                raise UnsafeArchiveError(
                    f"{archive}: entries declare {total} bytes, over the {max_total_bytes} limit"
                )
            target.mkdir(parents=True, exist_ok=True)
            root = target.resolve()
            n_files = 0
            for e in entries:
                dst = root.joinpath(*e.rel.parts)
                if not dst.resolve().is_relative_to(root):
                    raise UnsafeArchiveError(f"{archive}: entry {str(e.rel)!r} resolves outside {root}")
                if e.is_dir:
                    dst.mkdir(parents=True, exist_ok=True)
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                with e.open() as src, open(dst, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.chmod(dst, 0o644)
                n_files += 1
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise FetchError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    return n_files


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
    if target.exists() and not force:
        if is_complete(target):
            logger.info("%s is already complete; left alone (use --force to rebuild it)", target)
            return FetchResult(spec.name, target, already_present=True, source=str(target))
        raise FetchError(
            f"{target} exists but is not a complete dataset folder (no {MARKER}, or images/ and masks/ do not pair "
            "up); move it away or pass --force to rebuild it"
        )

    expected = (sha256 or spec.sha256 or "").lower() or None
    downloaded: Path | None = None
    fresh_digest: str | None = None
    if archive is not None:
        source = Path(archive).expanduser()
        if not source.exists():
            raise FetchError(f"{source}: no such file or folder (given with --archive)")
        source_label = str(source)
    elif url is not None or (spec.download == "direct" and spec.urls):
        source_label = url or spec.urls[0]
        root.mkdir(parents=True, exist_ok=True)
        source = root / DOWNLOADS_DIR / _archive_filename(spec, url)
        if source.is_file():
            logger.info("reusing the downloaded %s", source)
        else:
            try:
                fresh_digest = download(
                    source_label, source, expected_sha256=expected, timeout=timeout, progress=progress
                )
            except FetchError:
                _remove_empty(source.parent)
                raise
        downloaded = source
    else:
        raise ManualDownloadRequired(spec.manual_message(str(root)))

    digest: str | None = None
    verified = False
    notes: list[str] = []
    if source.is_file():
        digest = fresh_digest or sha256_file(source)
        if expected is not None:
            if digest != expected:
                if downloaded is not None:
                    source.unlink(missing_ok=True)
                    _remove_empty(source.parent)
                raise FetchError(
                    f"{source}: sha256 mismatch: expected {expected}, got {digest}"
                    + ("; the download was deleted" if downloaded is not None else "")
                )
            verified = True
        else:
            notes.append(f"no known sha256 for {spec.title}; computed sha256 of {source.name}: {digest}")
            logger.warning("%s (pin it with --sha256)", notes[-1])

    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.fetch-", dir=root))
    keep_download = keep_archive
    try:
        if source.is_dir():
            raw = source
        else:
            raw = work / "raw"
            try:
                safe_extract(source, raw)
            except FetchError:
                keep_download = False  # an unsafe or corrupt archive is not worth keeping
                raise
        build = work / "build"
        build.mkdir()
        try:
            summary = spec.converter(raw, build)
        except ConversionError as exc:
            if downloaded is None:
                raise
            keep_download = True  # the archive may be fine; a rerun (after a fix) need not download it again
            raise ConversionError(
                f"{exc} (the download is kept at {downloaded} and reused by the next run)"
            ) from exc
        n_pairs = check_standard_layout(build)
        notes.extend(summary.notes)
        if spec.expected_pairs is not None and n_pairs != spec.expected_pairs:
            notes.append(f"{n_pairs} pairs, the official release has {spec.expected_pairs}")
            logger.warning("%s: %s", spec.name, notes[-1])
        atomic_write_json(build / MARKER, _marker(spec, summary, n_pairs, source_label, digest, verified))
        _swap_into_place(build, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if downloaded is not None and not keep_download:
            downloaded.unlink(missing_ok=True)
            _remove_empty(downloaded.parent)
    logger.info("%s: %d pairs in %s", spec.name, n_pairs, target)
    return FetchResult(
        spec.name,
        target,
        already_present=False,
        n_pairs=n_pairs,
        n_train=summary.n_train,
        n_test=summary.n_test,
        source=source_label,
        sha256=digest,
        sha256_verified=verified,
        notes=tuple(notes),
    )


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
