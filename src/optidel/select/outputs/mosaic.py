"""2x2 mosaics: the paper's synthesis step ("every M = 4 hard patches are combined into one new image").

Grouping (which 4 chosen patches share an image; the paper does not say):

- ``random``: a seeded shuffle, then consecutive fours;
- ``diverse``: the four come from four different k-means clusters wherever the counts allow (greedy: each group
  takes one patch from each of the four clusters with the most patches left, ties broken by a seeded shuffle).
  This maximises the number of groups whose four tiles are all from different clusters.

Tiles: 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right; each ``size / 2`` pixels. A patch fills its
tile (``tile_fit``, :func:`render_tile`) by

- ``context``: the patch box grows to a square of side ``max(box w, box h)`` around the box centre, shifted (not
  padded) to lie inside the source image, and that square region of the source is resized to the tile. The tile
  shows the whole patch plus its surroundings, with no black bars and no distortion. When the box is longer than
  the image's shorter side, the square is the largest that fits (side = that shorter side), centred on the box: the
  box's two far ends are cut (:func:`box_cut`), the tile still has no bar. Until 2026-12-02 such a tile kept the
  full rectangle and was letterboxed like ``pad`` (1-5% of the tiles' area on the endoscopy selections); the
  ``cpu-endoscopy`` context arms were measured with that rendering;
- ``pad``: the box's own crop, resized so the longer side fits, aspect kept, centred on black (black bars when the
  box is not square: MAE then spends loss on flat black areas, SimCLR sees the bars in both views);
- ``stretch``: the box's crop resized to the square tile (distorts the aspect ratio).

A group may have empty tiles (``-1``) only when fewer than 4 x images patches could be chosen; they stay black.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from PIL import Image

from optidel.data.image import resize_rgb

EMPTY = -1


def group_random(n_items: int, rng: np.random.Generator, per_group: int = 4) -> np.ndarray:
    """Random groups of positions ``0..n_items-1``.

    Returns:
        (ceil(n_items / per_group), per_group) int64; the last row is padded with -1.
    """
    perm = rng.permutation(n_items)
    return _pack(perm, per_group)


def _pack(seq: np.ndarray, per_group: int) -> np.ndarray:
    g = -(-len(seq) // per_group)
    out = np.full(g * per_group, EMPTY, np.int64)
    out[: len(seq)] = seq
    return out.reshape(g, per_group)


def group_diverse(clusters: np.ndarray, rng: np.random.Generator, per_group: int = 4) -> np.ndarray:
    """Groups of positions whose members come from different clusters where possible.

    Args:
        clusters: (n,) int cluster of each chosen item.
    Returns:
        (ceil(n / per_group), per_group) int64 positions into ``clusters`` (-1 pads the last group).
    """
    clusters = np.asarray(clusters)
    n = clusters.size
    labels = np.unique(clusters)
    rng.shuffle(labels)  # random tie-break between equally large clusters
    members: dict[int, list[int]] = {}
    for lab in labels.tolist():
        idx = np.flatnonzero(clusters == lab)
        members[lab] = rng.permutation(idx).tolist()
    # max-heap on (remaining count, tie-break rank)
    heap = [(-len(members[lab]), t, lab) for t, lab in enumerate(labels.tolist())]
    heapq.heapify(heap)
    groups: list[list[int]] = []
    while heap:
        taken = [heapq.heappop(heap) for _ in range(min(per_group, len(heap)))]
        group = [members[lab].pop() for _, _, lab in taken]
        for negc, t, lab in taken:
            if negc + 1 < 0:
                heapq.heappush(heap, (negc + 1, t, lab))
        # too few distinct clusters left: fill the group from the largest remaining ones
        while len(group) < per_group and heap:
            negc, t, lab = heapq.heappop(heap)
            group.append(members[lab].pop())
            if negc + 1 < 0:
                heapq.heappush(heap, (negc + 1, t, lab))
        groups.append(group)
    flat = np.asarray([p for g in groups for p in g], np.int64)
    assert flat.size == n
    out = np.full((len(groups), per_group), EMPTY, np.int64)
    for i, g in enumerate(groups):
        out[i, : len(g)] = g
    return out


def crop(img: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """img: (H, W, 3); box ``x0, y0, x1, y1`` (exclusive) -> (y1 - y0, x1 - x0, 3), at least 1 x 1."""
    x0, y0, x1, y1 = clip_box(box, *img.shape[:2])
    return img[y0:y1, x0:x1]


def clip_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """Box ``x0, y0, x1, y1`` (exclusive) clipped to a (height, width) image, at least 1 x 1."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = min(max(0, x0), width - 1), min(max(0, y0), height - 1)
    x1, y1 = max(x0 + 1, min(width, x1)), max(y0 + 1, min(height, y1))
    return x0, y0, x1, y1


TILE_FITS: tuple[str, ...] = ("pad", "stretch", "context")


def fit_tile(patch: np.ndarray, tile: int, fit: str = "pad") -> np.ndarray:
    """A crop (h, w, 3) uint8 -> (tile, tile, 3) uint8, by ``pad`` (aspect kept, centred on black) or ``stretch``.

    ``context`` needs the source image around the crop (:func:`render_tile`); given a crop alone (e.g. a whole pool
    image resized by an image-level method) nothing surrounds it, so it is letterboxed exactly like ``pad``.
    """
    if fit == "stretch":
        return resize_rgb(patch, tile)
    if fit not in ("pad", "context"):
        raise ValueError(f"unknown tile fit {fit!r} ({', '.join(TILE_FITS)})")
    h, w = patch.shape[:2]
    s = tile / max(h, w)
    nh, nw = max(1, min(tile, round(h * s))), max(1, min(tile, round(w * s)))
    small = resize_rgb(patch, (nh, nw))
    out = np.zeros((tile, tile, 3), np.uint8)
    y, x = (tile - nh) // 2, (tile - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


def _context_span(lo: int, hi: int, side: int, extent: int) -> tuple[int, int]:
    """``[a, a + min(side, extent))`` centred on ``(lo + hi) / 2`` and shifted to lie inside ``[0, extent)``."""
    side = min(side, extent)
    a = int(round((lo + hi) / 2 - side / 2))
    a = min(max(0, a), extent - side)
    return a, a + side


def context_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """The square around a patch box that ``context`` tiles show, inside a (height, width) image.

    Args:
        box: ``x0, y0, x1, y1`` (exclusive), clipped to the image first.
    Returns:
        ``x0, y0, x1, y1`` of a square of side ``min(max(box w, box h), height, width)`` centred on the box and
        shifted inside the image. Always square, so a ``context`` tile never has bars; a side below the box's long
        side cuts the box's ends (:func:`box_cut`).
    """
    x0, y0, x1, y1 = clip_box(box, height, width)
    side = min(max(x1 - x0, y1 - y0), height, width)
    cx0, cx1 = _context_span(x0, x1, side, width)
    cy0, cy1 = _context_span(y0, y1, side, height)
    return cx0, cy0, cx1, cy1


def box_cut(box: Sequence[int], height: int, width: int) -> float:
    """The share of a patch box's area that its ``context`` square leaves out (0 = the whole box is in the tile).

    Non-zero only for a box longer than the image's shorter side, whose square is cut to fit the image.
    """
    x0, y0, x1, y1 = clip_box(box, height, width)
    cx0, cy0, cx1, cy1 = context_box(box, height, width)
    inside = max(0, min(x1, cx1) - max(x0, cx0)) * max(0, min(y1, cy1) - max(y0, cy0))
    return 1.0 - inside / ((x1 - x0) * (y1 - y0))


def render_tile(img: np.ndarray, box: Sequence[int], tile: int, fit: str = "pad") -> np.ndarray:
    """The tile of one patch: img (H, W, 3) uint8 and its box -> (tile, tile, 3) uint8 (see the module docstring).

    ``context`` resizes the source square :func:`context_box`; ``pad`` and ``stretch`` fit the box's own crop
    (:func:`fit_tile`).
    """
    if fit == "context":
        h, w = img.shape[:2]
        return fit_tile(crop(img, context_box(box, h, w)), tile, "pad")
    return fit_tile(crop(img, box), tile, fit)


def bar_fraction(box: Sequence[int], height: int, width: int, fit: str = "pad") -> float:
    """The share of a patch's tile that stays black under ``fit`` (0 = no bars), from its box alone.

    ``pad`` shows the box resized with its aspect kept, so the bars cover ``1 - short side / long side`` of the tile
    (up to the rounding of the resize); ``stretch`` and ``context`` (a square region, :func:`context_box`) never
    leave bars. The report and ``metrics.json`` give the mean over the selected patches.
    """
    if fit in ("stretch", "context"):
        return 0.0
    x0, y0, x1, y1 = clip_box(box, height, width)
    w, h = x1 - x0, y1 - y0
    return 1.0 - min(w, h) / max(w, h)


def compose(tiles: Sequence[np.ndarray | None], size: int) -> np.ndarray:
    """Four tiles (each (size/2, size/2, 3) uint8, or None = black) -> one (size, size, 3) uint8 2x2 mosaic."""
    if len(tiles) != 4:
        raise ValueError(f"a 2x2 mosaic needs 4 tiles, got {len(tiles)}")
    t = size // 2
    out = np.zeros((size, size, 3), np.uint8)
    for i, tile in enumerate(tiles):
        if tile is None:
            continue
        if tile.shape != (t, t, 3):
            raise ValueError(f"tile {i} has shape {tile.shape}, expected ({t}, {t}, 3)")
        r, c = divmod(i, 2)
        out[r * t : (r + 1) * t, c * t : (c + 1) * t] = tile
    return out


def save_png(img: np.ndarray, path: str) -> None:
    """Write (H, W, 3) uint8 as PNG atomically (deterministic bytes: no timestamps)."""
    from optidel.runtime.atomic import atomic_open

    with atomic_open(path, "wb") as f:
        Image.fromarray(img).save(f, format="PNG", optimize=False, compress_level=6)
