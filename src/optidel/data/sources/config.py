"""The user's choices for reading medical formats: one frozen dataclass that pools and datasets take.

Every field has a default that reads a folder sensibly without any option; ``docs/formats.md`` shows how each choice
changes what a pool holds. The CLI exposes them as ``--set sources.<field>=<value>`` (see the command's help).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from optidel.runtime.errors import OptidelError

SLICE_AXES = ("auto", "axial", "coronal", "sagittal", "0", "1", "2")
TiffPages = Literal["all", "first"]


class SourceOptionsError(OptidelError):
    """An invalid value in :class:`SourceOptions`; the message names the field."""

    exit_code = 2


@dataclass(frozen=True)
class SourceOptions:
    """How volumes, multi-frame files and slides become 2D pool items.

    Attributes:
        slice_axis: NIfTI slicing axis: ``auto`` (the acquisition's slice axis: the header's ``slice_dim`` when set,
            else the voxel axis with clearly the largest spacing, else the third voxel axis), ``axial`` / ``coronal``
            / ``sagittal`` (from the affine's orientation), or a voxel axis ``0`` / ``1`` / ``2``.
        slice_stride: keep every n-th slice of a volume or DICOM series (every n-th frame of a multi-frame file).
        window: intensity window for DICOM and NIfTI (see :mod:`optidel.data.sources.window`): ``auto`` (DICOM: the
            file's VOI LUT or window centre/width, else the frame's min-max; NIfTI: percentiles 0.5-99.5 of the
            volume), a CT preset (``soft-tissue``, ``lung``, ``bone``, ``brain``, ``mediastinum``, ``liver``),
            ``C:W`` numbers (``40:400``), percentiles ``pLO-HI`` (``p1-99``) or ``minmax``.
        drop_empty: drop slices/frames whose fraction of non-background pixels (above the window's low end) is
            below this; 0 keeps every slice. Reading a volume once while listing is the cost.
        tiff_pages: multi-page TIFF: ``all`` (each page an item) or ``first``.
        wsi_tile: whole-slide tile side in pixels at the chosen level.
        wsi_level: pyramid level to tile (0 = full resolution); ignored when ``wsi_magnification`` is set.
        wsi_magnification: objective power to tile at (e.g. 20); picks the level closest to it.
        wsi_tissue: keep tiles whose tissue fraction (Otsu on a thumbnail) is at least this.
        wsi_max_tiles: cap of tiles per slide (a seeded sample when more qualify); 0 = no cap.
        mask_label: for label masks and label volumes: the label value that is foreground; None = every non-zero
            label (see :func:`optidel.data.segmentation.mask_foreground`).
        seed: seed of the tile sample.
    """

    slice_axis: str = "auto"
    slice_stride: int = 1
    window: str = "auto"
    drop_empty: float = 0.0
    tiff_pages: TiffPages = "all"
    wsi_tile: int = 512
    wsi_level: int = 0
    wsi_magnification: float | None = None
    wsi_tissue: float = 0.5
    wsi_max_tiles: int = 200
    mask_label: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        from optidel.data.sources.window import parse_window

        if str(self.slice_axis) not in SLICE_AXES:
            raise SourceOptionsError(
                f"slice_axis={self.slice_axis!r}: expected one of {', '.join(SLICE_AXES)}"
            )
        if self.slice_stride < 1:
            raise SourceOptionsError(f"slice_stride={self.slice_stride}: must be >= 1")
        if not 0.0 <= self.drop_empty < 1.0:
            raise SourceOptionsError(f"drop_empty={self.drop_empty}: must be in [0, 1)")
        if self.tiff_pages not in ("all", "first"):
            raise SourceOptionsError(f"tiff_pages={self.tiff_pages!r}: expected 'all' or 'first'")
        if self.wsi_tile < 16:
            raise SourceOptionsError(f"wsi_tile={self.wsi_tile}: must be >= 16")
        if self.wsi_level < 0 or self.wsi_max_tiles < 0:
            raise SourceOptionsError("wsi_level and wsi_max_tiles must be >= 0")
        if self.wsi_magnification is not None and self.wsi_magnification <= 0:
            raise SourceOptionsError(f"wsi_magnification={self.wsi_magnification}: must be > 0")
        if not 0.0 <= self.wsi_tissue <= 1.0:
            raise SourceOptionsError(f"wsi_tissue={self.wsi_tissue}: must be in [0, 1]")
        try:
            parse_window(self.window)
        except ValueError as e:
            raise SourceOptionsError(f"window={self.window!r}: {e}") from e

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


DEFAULT_OPTIONS = SourceOptions()
