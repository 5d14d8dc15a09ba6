"""The per-image computation of the patch stage: decode, propose, embed, check shapes, clip boxes.

Shared by the in-process path of :func:`optidel.select.patches.store.process_shards` and the worker processes of
:mod:`optidel.select.patches.workers` (it lives apart from both so neither imports the other's internals).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from optidel.data.image import ImageDecodeError, load_rgb
from optidel.runtime.errors import OptidelError
from optidel.select.patches.types import ImagePatches, PatchEmbedder, PatchProposer

T = TypeVar("T")
R = TypeVar("R")


class PatchStageError(OptidelError, RuntimeError):
    """The patch stage cannot run (no embeddings from the proposer and no embedder, a bad shard ...)."""

    exit_code = 1


def prefetched(fn: Callable[[T], R], items: Sequence[T] | Iterable[T], workers: int = 1) -> Iterator[R]:
    """``map(fn, items)`` in order, computed ``workers`` threads ahead (at most ``2 x workers`` results pending).

    An exception raised by ``fn`` is raised when its item is reached.
    """
    if workers < 1:
        yield from map(fn, items)
        return
    ahead = 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as ex:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def embedding_dim(proposer: PatchProposer, embedder: PatchEmbedder | None) -> int:
    if embedder is not None:
        return int(embedder.dim)
    if proposer.embed_dim is None:
        raise PatchStageError(
            f"patch proposer {proposer.name!r} does not embed its patches: give an embedder "
            "(--embedder PATH/encoder.safetensors or --embedder timm:ARCH)"
        )
    return int(proposer.embed_dim)


def _load_or_error(path: Path) -> np.ndarray | ImageDecodeError:
    try:
        return load_rgb(path)
    except ImageDecodeError as e:
        return e


def _clean_boxes(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4).copy()
    b[:, 0] = np.clip(b[:, 0], 0, w - 1)
    b[:, 1] = np.clip(b[:, 1], 0, h - 1)
    b[:, 2] = np.clip(np.maximum(b[:, 2], b[:, 0] + 1), 1, w)
    b[:, 3] = np.clip(np.maximum(b[:, 3], b[:, 1] + 1), 1, h)
    return b.astype(np.int32)


def _propose(proposer: PatchProposer, imgs: list[np.ndarray]) -> list[ImagePatches]:
    """One call per batch when the proposer has ``process_batch`` (e.g. one LiteMedSAM encoder batch)."""
    batch_fn = getattr(proposer, "process_batch", None)
    if batch_fn is not None and len(imgs) > 1:
        out = list(batch_fn(imgs))
        if len(out) != len(imgs):
            raise PatchStageError(
                f"proposer {proposer.name!r} returned {len(out)} results for {len(imgs)} images"
            )
        return out
    return [proposer.process(img) for img in imgs]


@dataclass
class ImageResult:
    """One pool image's outcome (picklable: worker processes send it back).

    Attributes:
        index: the image's position in the pool listing.
        w, h: its size in pixels (0 when unreadable).
        patches: its patches, boxes clipped to the image (None when unreadable).
        emb: (P, dim) float32 embeddings of the patches (None when unreadable).
        error: why the image could not be read (None when it could).
    """

    index: int
    w: int = 0
    h: int = 0
    patches: ImagePatches | None = None
    emb: np.ndarray | None = None
    error: str | None = None


def _finish(
    index: int,
    path: Path,
    img: np.ndarray,
    patches: ImagePatches,
    proposer: PatchProposer,
    embedder: PatchEmbedder | None,
    dim: int,
) -> ImageResult:
    """Embed (or take the proposer's embeddings), check shapes, clip boxes."""
    h, w = img.shape[:2]
    n = len(patches)
    emb = embedder.embed(img, patches) if embedder is not None else patches.embeddings
    if n and emb is None:
        raise PatchStageError(f"{path}: proposer {proposer.name!r} returned no embeddings")
    emb = np.zeros((0, dim), np.float32) if emb is None else np.asarray(emb, np.float32).reshape(n, -1)
    if emb.shape != (n, dim):
        raise PatchStageError(f"{path}: embeddings of shape {emb.shape}, expected ({n}, {dim})")
    patches.boxes = _clean_boxes(patches.boxes, w, h)
    patches.embeddings = None  # kept once, in ``emb``
    return ImageResult(index, w, h, patches, np.ascontiguousarray(emb))


def compute_images(
    items: Sequence[tuple[int, Path]],
    proposer: PatchProposer,
    embedder: PatchEmbedder | None,
    dim: int,
    workers: int = 1,
    batch_size: int = 1,
) -> Iterator[ImageResult]:
    """Patches and embeddings of pool images, in this process: one result per item.

    Args:
        items: (pool index, image path) pairs.
        workers: threads that decode images ahead.
        batch_size: readable images per proposer call (used when the proposer has ``process_batch``).
    Yields:
        an :class:`ImageResult` per item; an unreadable image's comes as soon as it is read, the others in order.
    Raises:
        PatchStageError: when the proposer or embedder returns the wrong shape.
    """
    pending: list[tuple[int, Path, np.ndarray]] = []

    def flush() -> list[ImageResult]:
        results = _propose(proposer, [p[2] for p in pending])
        done = [
            _finish(index, path, img, patches, proposer, embedder, dim)
            for (index, path, img), patches in zip(pending, results, strict=True)
        ]
        pending.clear()
        return done

    decoded = prefetched(lambda it: _load_or_error(it[1]), items, workers)
    for (index, path), img in zip(items, decoded, strict=True):
        if isinstance(img, ImageDecodeError):
            yield ImageResult(index, error=img.reason)
            continue
        pending.append((index, path, img))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()
