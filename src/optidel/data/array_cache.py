"""Decoded, resized images cached as one ``uint8`` array per (file list, size), so many epochs are cheap.

Arrays live in ``$OPTIDEL_CACHE`` (default ``~/.cache/optidel``) under ``arrays/<key>.npy``, where the key hashes the
resolved paths (locators of slices, frames and tiles: the file and the item with its window), their sizes and
modification times, the target size and the kind (image or mask). They are written row by row into a memory-mapped
file (a pool of 10k slices is never held in memory: items are decoded one at a time, once), renamed into place when
complete, memory-mapped on load, and rebuilt automatically when any file changes.
Resizing stretches to a square ``size x size`` (antialiased bicubic for images; area-average then > 0.5 for masks).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.image import load_rgb, resize_mask, resize_rgb
from optidel.data.segmentation import load_mask
from optidel.data.sources.locator import parse_locator
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_json
from optidel.runtime.progress import track

CACHE_VERSION = 1  # image stacks
# mask stacks: 2 = label masks (0/1 ...) read as non-zero foreground; 3 = 16/32-bit label masks read by their stored
# labels (segmentation.load_mask)
MASK_CACHE_VERSION = 3


def cache_root() -> Path:
    return Path(os.environ.get("OPTIDEL_CACHE", Path.home() / ".cache" / "optidel"))


@dataclass
class ArrayStack:
    """Decoded files stacked in one array.

    Attributes:
        array: (N, S, S, 3) uint8 for images, (N, S, S) bool for masks; N = number of good files.
        paths: the N files, in order.
        bad: (path, reason) of each file that could not be decoded (left out).
    """

    array: np.ndarray
    paths: list[Path]
    bad: list[tuple[Path, str]] = field(default_factory=list)


def _key(paths: Sequence[Path], size: int, kind: str) -> str:
    version = CACHE_VERSION if kind == "image" else MASK_CACHE_VERSION
    h = hashlib.sha1(f"v{version}:{kind}:{size}".encode())
    for p in paths:
        loc = parse_locator(p)
        if loc is None:  # plain files: the key is the one they always had
            st = p.stat()
            h.update(f"\n{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            st = loc.file.stat()
            h.update(f"\n{loc.file.resolve()}::{loc.item}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _row_file(root: Path, key: str, n: int, shape: tuple[int, ...], dtype: type) -> tuple[Path, np.ndarray]:
    """A fresh memory-mapped ``.npy`` under ``root`` (a temporary name) with ``n`` rows of ``shape``."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{uuid.uuid4().hex[:8]}.npy.tmp"
    return tmp, np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, *shape))


def _finish_rows(root: Path, key: str, tmp: Path, arr: np.ndarray, n_kept: int) -> Path:
    """Trim to the ``n_kept`` rows written (copying in chunks when files were left out) and rename into place."""
    final = root / f"{key}.npy"
    if n_kept < arr.shape[0]:
        tmp2, small = _row_file(root, key, n_kept, arr.shape[1:], arr.dtype.type)
        for i in range(0, n_kept, 256):
            small[i : i + 256] = arr[i : min(i + 256, n_kept)]
        small.flush()
        del small
        tmp.unlink(missing_ok=True)
        tmp = tmp2
    else:
        arr.flush()
    os.replace(tmp, final)
    return final


def _decode_one(path: Path, size: int, kind: str) -> np.ndarray:
    if kind == "image":
        return resize_rgb(load_rgb(path), size)
    return resize_mask(load_mask(path), size)


def load_stack(
    paths: Sequence[str | Path],
    size: int,
    kind: str = "image",
    strict: bool = False,
    use_cache: bool = True,
    workers: int = 2,
    description: str | None = None,
) -> ArrayStack:
    """Decode, resize and stack ``paths`` (cached on disk; see module docstring).

    Args:
        paths: files or locators (``optidel.data.sources.locator``).
        kind: ``image`` -> (N, S, S, 3) uint8 RGB; ``mask`` -> (N, S, S) bool (``segmentation.load_mask``'s rule).
        strict: raise :class:`ImageDecodeError` on the first bad file instead of leaving it out.
    """
    if kind not in ("image", "mask"):
        raise ValueError(f"kind must be 'image' or 'mask', got {kind!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no files to load")
    key = _key(paths, size, kind)
    root = cache_root() / "arrays"
    npy, meta = root / f"{key}.npy", root / f"{key}.json"
    if use_cache and npy.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if strict and info["bad"]:
            p, r = info["bad"][0]
            raise ImageDecodeError(p, r)
        arr = np.load(npy, mmap_mode="r")
        kept = [paths[i] for i in info["kept"]]
        return ArrayStack(arr, kept, [(Path(p), r) for p, r in info["bad"]])

    shape = (size, size, 3) if kind == "image" else (size, size)
    dtype = np.uint8 if kind == "image" else np.bool_
    tmp: Path | None = None
    if use_cache:
        tmp, out = _row_file(root, key, len(paths), shape, dtype)
    else:
        out = np.empty((len(paths), *shape), dtype)
    kept_idx: list[int] = []
    bad: list[tuple[Path, str]] = []

    def work(i: int):
        try:
            return i, _decode_one(paths[i], size, kind), None
        except ImageDecodeError as e:
            if strict:
                raise
            return i, None, e

    desc = description or f"decoding {len(paths)} {kind}s at {size}px"
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            for i, arr, err in track(ex.map(work, range(len(paths))), desc, total=len(paths)):
                if err is not None:
                    logger.warning("skipping %s: %s", err.path, err.reason)
                    bad.append((err.path, err.reason))
                    continue
                out[len(kept_idx)] = arr
                kept_idx.append(i)
    except BaseException:
        if tmp is not None:
            del out
            tmp.unlink(missing_ok=True)
        raise
    if tmp is None:
        return ArrayStack(out[: len(kept_idx)], [paths[i] for i in kept_idx], bad)
    _finish_rows(root, key, tmp, out, len(kept_idx))
    del out
    atomic_write_json(
        meta, {"kept": kept_idx, "bad": [[str(p), r] for p, r in bad], "size": size, "kind": kind}
    )
    return ArrayStack(np.load(npy, mmap_mode="r"), [paths[i] for i in kept_idx], bad)
