"""One image-source layer for every command: Pillow images, TIFF (tifffile), DICOM (pydicom), NIfTI (nibabel) and
whole-slide images (tiffslide / openslide) as 2D items with stable ids and provenance.

- :func:`list_items` turns a folder into items (``optidel.data.pool`` and ``optidel.data.inventory`` use it);
- an item's path is the file itself or a locator ``FILE::FORMAT:...`` naming a frame, slice, page or tile
  (:mod:`optidel.data.sources.locator`); ``optidel.data.image.load_rgb`` decodes either, lazily, one item at a time;
- :class:`SourceOptions` holds the user's choices (slice axis, stride, window, drop-empty, TIFF pages, WSI tiling).

``docs/formats.md`` explains how these choices change what a pool holds.
"""

from optidel.data.sources.config import DEFAULT_OPTIONS, SourceOptions, SourceOptionsError
from optidel.data.sources.item import SkipFile, Skipped, SourceItem
from optidel.data.sources.listing import Listing, list_items
from optidel.data.sources.locator import is_locator, make_locator, parse_locator, real_file

__all__ = [
    "DEFAULT_OPTIONS",
    "Listing",
    "SkipFile",
    "Skipped",
    "SourceItem",
    "SourceOptions",
    "SourceOptionsError",
    "is_locator",
    "list_items",
    "make_locator",
    "parse_locator",
    "real_file",
]
