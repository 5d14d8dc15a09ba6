"""The images stage: ``OUT/images/`` from a selection (2x2 mosaics, single patches, copied pool images, or the noise
images of the ``noise`` control).

``images/`` is rebuilt in ``.images-KEY.partial`` (one atomic PNG at a time, so a killed write resumes) and swapped
in; a stamp (``OUT/cache/images.json``) records which selection it holds, so a rerun with the same one only reads.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optidel.data.image import ImageDecodeError, is_copyable, load_rgb, read_header
from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.runtime.atomic import atomic_open
from optidel.runtime.progress import track
from optidel.select.config import SelectConfig
from optidel.select.outputs.mosaic import compose, fit_tile, render_tile, save_png
from optidel.select.outputs.noise import write_noise_images
from optidel.select.patches.compute import prefetched
from optidel.select.patches.store import PatchStore
from optidel.select.stage_cache import StageCache
from optidel.select.strategies.base import SelectionResult

RENDER_BATCH = 128  # output images rendered per batch (their source images are decoded once per batch)


@dataclass
class OutputMap:
    """Where each selected id went: ``names[i]`` (None if it could not be written) and ``tiles[i]`` (or None)."""

    names: list[str | None]
    tiles: np.ndarray | None
    sizes: list[tuple[int, int]] = field(default_factory=list)  # image level: (w, h) of each source image
    key: str = ""


def write_images(
    cfg: SelectConfig,
    cache: StageCache,
    pool: Sequence[PoolImage],
    result: SelectionResult,
    store: Callable[[], PatchStore],
) -> OutputMap:
    """Write ``OUT/images/`` (mosaics, single patches, or copied pool images); cached by the selection's key.

    Args:
        store: the patch store (asked for at patch level only).
    """
    out = Path(cfg.out)
    key = cache.images_key(result)
    images_dir = out / "images"
    t0 = time.perf_counter()
    stamp = cache.stamp("images", key, images_dir)
    if stamp is not None and all((images_dir / n).is_file() for n in stamp["names"] if n):
        tiles = None if stamp["tiles"] is None else np.asarray(stamp["tiles"], np.int64)
        cache.record("images", time.perf_counter() - t0, True, stamp.get("seconds"))
        logger.info("images: cached (%d files)", len({n for n in stamp["names"] if n}))
        return OutputMap(stamp["names"], tiles, [tuple(s) for s in stamp.get("sizes", [])], key)
    tmp = out / f".images-{key}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    if result.level == "patch":
        omap = render_patches(cfg, pool, store(), result, tmp)
    elif result.content == "noise":
        omap = noise_images(cfg, result, tmp)
    else:
        omap = copy_images(cfg, pool, result, tmp)
    omap.key = key
    old = out / ".images-old"
    shutil.rmtree(old, ignore_errors=True)
    if images_dir.exists():
        os.replace(images_dir, old)
    os.replace(tmp, images_dir)
    shutil.rmtree(old, ignore_errors=True)
    secs = time.perf_counter() - t0
    cache.write_stamp(
        "images",
        {
            "key": key,
            "names": omap.names,
            "seconds": secs,
            "tiles": None if omap.tiles is None else omap.tiles.tolist(),
            "sizes": [list(s) for s in omap.sizes],
        },
    )
    cache.record("images", secs, False)
    logger.info("images: %d files in %s (%.1f s)", len({n for n in omap.names if n}), images_dir, secs)
    return omap


def _render_jobs(
    result: SelectionResult,
) -> tuple[list[str | None], np.ndarray | None, list[tuple[str, list[int]]]]:
    """Output names per selected position, tile per position (mosaics) and (file name, patch ids) per output."""
    n = result.ids.size
    names: list[str | None] = [None] * n
    jobs = []
    if result.groups is None:
        for i in range(n):
            names[i] = f"patch_{i:05d}.png"
            jobs.append((f"patch_{i:05d}.png", [int(result.ids[i])]))
        return names, None, jobs
    tiles = np.full(n, -1, np.int64)
    for g, row in enumerate(result.groups):
        name = f"mosaic_{g:05d}.png"
        for t, pos in enumerate(row.tolist()):
            if pos >= 0:
                names[pos] = name
                tiles[pos] = t
        jobs.append((name, [int(result.ids[p]) if p >= 0 else -1 for p in row.tolist()]))
    return names, tiles, jobs


def render_patches(
    cfg: SelectConfig, pool: Sequence[PoolImage], store: PatchStore, result: SelectionResult, folder: Path
) -> OutputMap:
    """Crop the selected patches from their pool images into 2x2 mosaics (or single images) in ``folder``."""
    image_index = store.image_index
    boxes = store.boxes
    syn = cfg.synthesis
    names, tiles, jobs = _render_jobs(result)
    tile_px = syn.mosaic_size // 2 if result.groups is not None else syn.mosaic_size
    todo = [j for j in jobs if not (folder / j[0]).is_file()]  # resume a killed write
    for b in track(range(0, len(todo), RENDER_BATCH), f"images ({RENDER_BATCH} per step)"):
        batch = todo[b : b + RENDER_BATCH]
        need = sorted({int(image_index[pid]) for _, pids in batch for pid in pids if pid >= 0})
        images = prefetched(lambda i: load_rgb(pool[i].path), need, cfg.runtime.workers)
        decoded = dict(zip(need, images, strict=True))
        for name, pids in batch:
            tiles_img = [
                None
                if pid < 0
                else render_tile(decoded[int(image_index[pid])], boxes[pid], tile_px, syn.tile_fit)
                for pid in pids
            ]
            img = compose(tiles_img, syn.mosaic_size) if result.groups is not None else tiles_img[0]
            save_png(img, str(folder / name))
    return OutputMap(names, tiles)


def noise_images(cfg: SelectConfig, result: SelectionResult, folder: Path) -> OutputMap:
    """One noise PNG of ``mosaic_size`` px per selected position (the ``noise`` control), seeded by (seed, position)."""
    size = cfg.synthesis.mosaic_size
    names = write_noise_images(folder, int(result.ids.size), size, cfg.seed)
    return OutputMap(list(names), None, [(size, size)] * len(names))


def copy_images(
    cfg: SelectConfig, pool: Sequence[PoolImage], result: SelectionResult, folder: Path
) -> OutputMap:
    """Copy (``image_copy=copy``) or resize to ``mosaic_size`` PNGs the selected pool images into ``folder``."""
    syn = cfg.synthesis
    names: list[str | None] = []
    sizes: list[tuple[int, int]] = []
    for i, idx in enumerate(track(result.ids.tolist(), "images")):
        im = pool[idx]
        try:
            if syn.image_copy == "copy" and is_copyable(im.path):  # slices, frames, DICOM ...: written as PNG
                hdr = read_header(im.path)
                name = f"image_{i:05d}{im.path.suffix.lower()}"
                if not (folder / name).is_file():
                    with atomic_open(folder / name, "wb") as f, open(im.path, "rb") as src:
                        shutil.copyfileobj(src, f)
                sizes.append((hdr.width, hdr.height))
            else:
                name = f"image_{i:05d}.png"
                img = load_rgb(im.path)
                if not (folder / name).is_file():
                    save_png(fit_tile(img, syn.mosaic_size, syn.tile_fit), str(folder / name))
                sizes.append((img.shape[1], img.shape[0]))
            names.append(name)
        except ImageDecodeError as e:
            if cfg.runtime.strict:
                raise
            logger.warning("skipping unreadable pool image %s: %s", e.path, e.reason)
            names.append(None)
            sizes.append((0, 0))
    return OutputMap(names, None, sizes)
