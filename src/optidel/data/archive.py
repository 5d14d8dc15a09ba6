"""Safe archive extraction (zip, tar and compressed tars) for ``optidel data fetch`` and the converters.

Every entry is checked before the first byte is written: absolute paths, ``..`` escapes, symbolic and hard links,
device files, fifos and sockets raise :class:`UnsafeArchiveError` naming the entry, and nothing is extracted.

Decompression bombs are refused **while writing**, by the bytes actually written (a header can understate them):

- ``max_total_bytes`` (default 64 GiB): all entries together;
- ``max_ratio`` (default 250): bytes written per compressed byte -- per entry for zip (its ``compress_size``), for the
  whole archive for tars (bytes written so far / archive file size; a ``.tar.gz`` compresses its entries together).
  Images and volumes compress by 1-20x; 250x is text or zeros. A zip of 1 GB of zeros is ~1 MB: ratio ~1000.

On refusal the partly written file is removed, and the target folder too when this call created it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from optidel.data.errors import FetchError, UnsafeArchiveError

MAX_TOTAL_BYTES = 64 * 2**30
MAX_RATIO = 250.0
_CHUNK = 1 << 16


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
    size: int  # as the header claims
    compressed: int | None  # zip: the entry's compressed size; tar: None (see module docstring)
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
            opener = lambda info=info: zf.open(info)  # noqa: E731
            entries.append(_Entry(rel, info.is_dir(), info.file_size, info.compress_size, opener))
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
            entries.append(_Entry(rel, m.isdir(), m.size, None, lambda m=m: tf.extractfile(m)))  # type: ignore[arg-type,return-value]
    return entries


class _Budget:
    """Counts the bytes written and refuses past the limits (see module docstring)."""

    def __init__(self, archive: Path, max_total: int, max_ratio: float):
        self.archive, self.max_total, self.max_ratio = archive, max_total, max_ratio
        self.total = 0
        self.archive_size = max(1, archive.stat().st_size)

    def add(self, entry: _Entry, written: int, n: int) -> None:
        self.total += n
        if self.total > self.max_total:
            raise UnsafeArchiveError(
                f"{self.archive}: extracting writes more than the {self.max_total}-byte limit "
                f"(at entry {str(entry.rel)!r}): a decompression bomb or an unexpectedly large archive"
            )
        if entry.compressed is not None:
            ratio, what = written / max(1, entry.compressed), f"entry {str(entry.rel)!r}"
        else:
            ratio, what = self.total / self.archive_size, "the archive"
        if ratio > self.max_ratio:
            raise UnsafeArchiveError(
                f"{self.archive}: {what} expands more than {self.max_ratio:g}x its compressed size "
                f"({written} bytes written so far): a decompression bomb"
            )


def _write_entry(e: _Entry, dst: Path, budget: _Budget) -> None:
    written = 0
    try:
        with e.open() as src, open(dst, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                written += len(chunk)
                budget.add(e, written, len(chunk))
    except UnsafeArchiveError:
        dst.unlink(missing_ok=True)
        raise
    os.chmod(dst, 0o644)


def safe_extract(
    archive: str | Path,
    target: str | Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> int:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``target`` after checking every entry.

    Files are written with mode 0o644 (archive permissions and owners are ignored).

    Args:
        archive: the archive file.
        target: folder to extract into (created if missing).
        max_total_bytes, max_ratio: decompression-bomb limits on the bytes written (module docstring).

    Returns:
        The number of files written.

    Raises:
        UnsafeArchiveError: an absolute path, a ``..`` escape, a link, a device file/fifo/socket, or a limit passed;
            the message names the entry.
        FetchError: the file is not a readable zip/tar archive.
    """
    archive, target = Path(archive), Path(target)
    kind = archive_kind(archive)
    created = not target.exists()
    try:
        with contextlib.ExitStack() as stack:
            if kind == "zip":
                entries = _zip_entries(stack.enter_context(zipfile.ZipFile(archive)), archive)
            else:
                entries = _tar_entries(stack.enter_context(tarfile.open(archive, "r:*")), archive)
            declared = sum(e.size for e in entries)
            if declared > max_total_bytes:
                raise UnsafeArchiveError(
                    f"{archive}: entries declare {declared} bytes, over the {max_total_bytes} limit"
                )
            return _extract_entries(entries, archive, target, _Budget(archive, max_total_bytes, max_ratio))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise FetchError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    except UnsafeArchiveError:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _extract_entries(entries: list[_Entry], archive: Path, target: Path, budget: _Budget) -> int:
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
        _write_entry(e, dst, budget)
        n_files += 1
    return n_files
