"""Whole-slide images through tiffslide (openslide for formats only it reads, when installed): tissue tiles.

For one slide:

1. **Level**: ``wsi_level``, or, with ``wsi_magnification``, the level whose objective power (the slide's
   ``objective-power`` / downsample; without it, 10 / microns-per-pixel) is closest to it.
2. **Grid**: non-overlapping ``wsi_tile`` x ``wsi_tile`` tiles of that level (partial tiles at the right and bottom
   edges are left out).
3. **Tissue**: a thumbnail (longest side <= 1024 px) is thresholded by Otsu's method [0] on its grey values (tissue
   is darker than the glass); a tile is kept when the tissue share of its footprint on the thumbnail is at least
   ``wsi_tissue``.
4. **Cap**: more than ``wsi_max_tiles`` tiles -> a sample seeded by ``seed`` and the slide's name, kept in
   reading order (y, then x).

Each tile is an item ``FILE::wsi:level=L,x=X,y=Y,size=S`` (X, Y in level-0 pixels, as ``read_region`` takes them)
with the id ``<slide>/L<level>_x<X>_y<Y>``; pixels are read only when the tile is decoded.

[0] N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. SMC 9(1), 1979.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.sources.item import SkipFile

WSI_EXTENSIONS = (".svs", ".ndpi", ".scn", ".bif", ".vms", ".vmu", ".mrxs", ".svslide")
OPENSLIDE_ONLY = (".vms", ".vmu", ".mrxs")
THUMB_SIDE = 1024


@dataclass(frozen=True)
class Tile:
    level: int
    x: int  # level-0 pixels
    y: int
    size: int  # pixels at ``level``


def open_slide(path: Path):
    """A tiffslide (or openslide) slide object; raises :class:`SkipFile` naming the missing reader or the error."""
    if path.suffix.lower() in OPENSLIDE_ONLY:
        try:
            import openslide
        except ImportError as e:
            raise SkipFile(path, "needs optional reader openslide-python for this slide format") from e
        try:
            return openslide.OpenSlide(str(path))
        except Exception as e:  # openslide raises its own error types; the file is named either way
            raise SkipFile(path, f"unreadable slide ({e})") from e
    import tiffslide

    try:
        return tiffslide.TiffSlide(path)
    except (
        Exception
    ) as e:  # tiffslide/tifffile/zarr raise many types for bad files; none may escape as a traceback
        raise SkipFile(
            path, f"unreadable slide ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e


def choose_level(slide, level: int, magnification: float | None, path: Path) -> int:
    if magnification is None:
        if level >= slide.level_count:
            raise SkipFile(path, f"level {level} does not exist (the slide has {slide.level_count})")
        return level
    props = slide.properties
    power = props.get("tiffslide.objective-power") or props.get("openslide.objective-power")
    mpp = props.get("tiffslide.mpp-x") or props.get("openslide.mpp-x")
    if not power and mpp:
        power = 10.0 / float(mpp)  # the usual convention: 0.25 um/px ~ 40x, 0.5 um/px ~ 20x
    if not power:
        raise SkipFile(
            path, "no objective power or pixel size in the slide's metadata: choose wsi_level instead"
        )
    powers = [float(power) / float(d) for d in slide.level_downsamples]
    return int(np.argmin([abs(p - magnification) for p in powers]))


def _otsu_tissue(thumb: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    grey = thumb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if float(grey.max()) - float(grey.min()) < 1e-3:
        return np.zeros(grey.shape, bool)
    return grey < threshold_otsu(grey)


def list_tiles(
    path: Path, tile: int, level: int, magnification: float | None, tissue: float, cap: int, seed: int
) -> list[Tile]:
    """The kept tiles of one slide (see module docstring), in reading order."""
    slide = open_slide(path)
    try:
        lv = choose_level(slide, level, magnification, path)
        w0, h0 = slide.dimensions
        lw, lh = slide.level_dimensions[lv]
        down = float(slide.level_downsamples[lv])
        scale = max(w0, h0) / THUMB_SIDE
        thumb = np.asarray(
            slide.get_thumbnail((max(1, int(w0 / max(scale, 1))), max(1, int(h0 / max(scale, 1))))).convert(
                "RGB"
            )
        )
    except SkipFile:
        raise
    except Exception as e:  # a slide whose levels cannot be read is named, not raised
        raise SkipFile(
            path, f"unreadable slide ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e
    finally:
        slide.close()
    mask = _otsu_tissue(thumb)
    ty, tx = mask.shape[0] / h0, mask.shape[1] / w0  # thumbnail pixels per level-0 pixel
    tiles = []
    for j in range(lh // tile):
        for i in range(lw // tile):
            x0, y0 = int(i * tile * down), int(j * tile * down)
            side = tile * down
            a, b = int(y0 * ty), max(int(y0 * ty) + 1, int(np.ceil((y0 + side) * ty)))
            c, d = int(x0 * tx), max(int(x0 * tx) + 1, int(np.ceil((x0 + side) * tx)))
            frac = float(mask[a:b, c:d].mean()) if mask[a:b, c:d].size else 0.0
            if frac >= tissue:
                tiles.append(Tile(lv, x0, y0, tile))
    if cap and len(tiles) > cap:
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
        keep = np.sort(rng.choice(len(tiles), cap, replace=False))
        tiles = [tiles[int(k)] for k in keep]
    return tiles


def read_tile(path: Path, level: int, x: int, y: int, size: int) -> np.ndarray:
    """Pixels of one tile: (size, size, 3) uint8 RGB (alpha dropped)."""
    try:
        slide = open_slide(path)
    except SkipFile as e:
        raise ImageDecodeError(path, e.reason) from e
    try:
        region = slide.read_region((x, y), level, (size, size))
        return np.ascontiguousarray(np.asarray(region.convert("RGB"), dtype=np.uint8))
    except Exception as e:  # see open_slide
        raise ImageDecodeError(path, f"unreadable tile at level {level}, x={x}, y={y} ({e})") from e
    finally:
        slide.close()
