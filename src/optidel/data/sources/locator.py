"""Locators: one path-like string that names a 2D item inside a file (a frame, a slice, a page, a tile).

``FILE::FORMAT:key=value,key=value`` -- for example ``ct/vol.nii.gz::nifti:slice=12,axis=2,window=lung`` or
``slides/a.svs::wsi:level=0,x=1024,y=2048,size=512``; ``masks/a.png::image:label=2`` reads an ordinary mask with a
chosen label value. The part before ``::`` is the real file; the rest is the
item and the decoding choices that matter for its pixels (window, axis, label). The ``::`` chaining is fsspec's
convention for "inside this file".

Why a string and not an object: every consumer of pool images already passes paths around (worker processes, the
array cache, the patch table, the manifest's ``image_path`` column); a locator travels through all of them unchanged,
is hashable and picklable, and shows the item's provenance wherever the path is printed. Code that needs the real
file (to hash or stat it) calls :func:`real_file`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("dicom", "nifti", "tiff", "wsi", "image")
SEP = "::"
_TAIL = re.compile(r"^(dicom|nifti|tiff|wsi|image):([A-Za-z0-9_.=,:+\-]*)$")


@dataclass(frozen=True)
class Locator:
    """A parsed locator: the real ``file``, the ``fmt`` that decodes it and the item's ``params``."""

    file: Path
    fmt: str
    params: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return default

    def get_int(self, key: str, default: int = 0) -> int:
        v = self.get(key)
        return default if v is None else int(v)

    @property
    def item(self) -> str:
        """The item part without the file: ``nifti:slice=12,axis=2,window=lung``."""
        return f"{self.fmt}:" + ",".join(f"{k}={v}" for k, v in self.params)

    def path(self) -> Path:
        return Path(f"{self.file}{SEP}{self.item}")

    def __str__(self) -> str:
        return f"{self.file}{SEP}{self.item}"


def make_locator(file: str | Path, fmt: str, **params: object) -> Path:
    """The locator path of one item (parameters in the order given; ``None`` values are left out)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format {fmt!r}")
    kv = tuple((k, str(v)) for k, v in params.items() if v is not None)
    for k, v in kv:
        if any(c in v for c in ",/ ") or SEP in v:
            raise ValueError(f"locator value {k}={v!r} may not hold ',', '/', ' ' or '::'")
    return Locator(Path(file), fmt, kv).path()


def parse_locator(path: str | Path) -> Locator | None:
    """The :class:`Locator` of ``path``, or None when ``path`` is a plain file path."""
    s = str(path)
    if SEP not in s:
        return None
    head, tail = s.rsplit(SEP, 1)
    m = _TAIL.match(tail)
    if not m or not head:
        return None
    params: list[tuple[str, str]] = []
    for part in filter(None, m.group(2).split(",")):
        k, sep, v = part.partition("=")
        if not sep:
            return None
        params.append((k, v))
    return Locator(Path(head), m.group(1), tuple(params))


def is_locator(path: str | Path) -> bool:
    return parse_locator(path) is not None


def real_file(path: str | Path) -> Path:
    """The file a path or locator reads from."""
    loc = parse_locator(path)
    return loc.file if loc is not None else Path(path)


def item_format(path: str | Path) -> str:
    """The source format of a pool path: the locator's, else ``image``."""
    loc = parse_locator(path)
    return loc.fmt if loc is not None else "image"


def resolved(path: str | Path) -> str:
    """The path with its file resolved (links, ``..``), the locator's item kept: ``/abs/vol.nii.gz::nifti:...``."""
    loc = parse_locator(path)
    if loc is None:
        return str(Path(path).resolve())
    return f"{loc.file.resolve()}{SEP}{loc.item}"
