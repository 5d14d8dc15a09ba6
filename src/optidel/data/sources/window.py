"""Intensity windows: from stored values (Hounsfield units, MR intensities, 16-bit counts) to 8-bit grey.

A window is written as text, the same in options and in an item's locator:

- ``auto``: the format's default (DICOM: the file's VOI LUT or window centre/width; NIfTI: ``p0.5-99.5``);
- a CT preset by name (centre/width in HU, the usual radiology values): ``soft-tissue`` 40/400, ``lung`` -600/1500,
  ``bone`` 400/1800, ``brain`` 40/80, ``mediastinum`` 50/350, ``liver`` 60/160;
- numbers ``C:W`` (centre and width, e.g. ``40:400``; ``40/400`` and ``40,400`` are accepted and normalised);
- percentiles ``pLO-HI`` of the volume (or frame) values, e.g. ``p1-99`` (MR, whose intensities have no fixed scale);
- ``minmax``: the values' own range.

A linear window maps ``[C - W/2, C + W/2]`` to ``[0, 255]`` and clips outside it (values at or below the low end are
background: 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "mediastinum": (50.0, 350.0),
    "liver": (60.0, 160.0),
}
AUTO_PERCENTILES = (0.5, 99.5)
_NUMBERS = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[:/,]\s*(\d+(?:\.\d+)?)\s*$")
_PERCENTILES = re.compile(r"^p(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Window:
    """A parsed window: ``kind`` is ``auto``, ``linear`` (``centre``, ``width``), ``percentile`` (``lo``, ``hi``)
    or ``minmax``; ``text`` is its canonical spelling (safe inside a locator: no ``/`` or ``,``)."""

    kind: str
    text: str
    centre: float = 0.0
    width: float = 1.0
    lo: float = 0.0
    hi: float = 100.0


def _num(x: float) -> str:
    return f"{x:g}"


def parse_window(text: str) -> Window:
    """Parse a window spelling (see module docstring); raises ValueError naming the accepted forms."""
    t = str(text).strip().lower().replace("_", "-").replace(" ", "-")
    if t in ("auto", ""):
        return Window("auto", "auto")
    if t == "minmax":
        return Window("minmax", "minmax")
    if t in ("soft", "soft-tissue", "softtissue", "abdomen"):
        t = "soft-tissue"
    if t in CT_PRESETS:
        c, w = CT_PRESETS[t]
        return Window("linear", t, centre=c, width=w)
    m = _NUMBERS.match(str(text))
    if m:
        c, w = float(m.group(1)), float(m.group(2))
        if w <= 0:
            raise ValueError("window width must be > 0")
        return Window("linear", f"{_num(c)}:{_num(w)}", centre=c, width=w)
    m = _PERCENTILES.match(t)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if not 0 <= lo < hi <= 100:
            raise ValueError("percentiles need 0 <= LO < HI <= 100")
        return Window("percentile", f"p{_num(lo)}-{_num(hi)}", lo=lo, hi=hi)
    raise ValueError(
        f"unknown window {text!r}: use auto, minmax, a CT preset ({', '.join(CT_PRESETS)}), "
        "centre:width numbers like 40:400, or percentiles like p1-99"
    )


def window_range(values: np.ndarray, window: Window) -> tuple[float, float]:
    """The (low, high) stored values that map to 0 and 255 (``auto`` resolves to the default percentiles)."""
    if window.kind == "linear":
        return window.centre - window.width / 2.0, window.centre + window.width / 2.0
    finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    if finite.size == 0:
        return 0.0, 1.0
    if window.kind == "minmax":
        return float(finite.min()), float(finite.max())
    lo_q, hi_q = (window.lo, window.hi) if window.kind == "percentile" else AUTO_PERCENTILES
    lo, hi = np.percentile(finite, [lo_q, hi_q])
    return float(lo), float(hi)


def apply_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly to ``[0, 255]`` (clipped; NaN -> 0); a degenerate range gives 0.

    Args:
        values: any shape, any numeric dtype.
    Returns:
        uint8 of the same shape.
    """
    a = np.asarray(values, dtype=np.float32)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    out = (a - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Window ``values`` to uint8 (``auto`` = the default percentiles; formats with a stored window resolve
    ``auto`` themselves before calling this)."""
    lo, hi = window_range(values, window)
    return apply_range(values, lo, hi)


def foreground_fraction(grey: np.ndarray) -> float:
    """Share of pixels above the window's low end (grey > 0): what ``drop_empty`` compares with."""
    return float(np.count_nonzero(grey)) / max(1, grey.size)
