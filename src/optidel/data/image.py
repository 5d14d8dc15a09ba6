"""Robust image decoding: any common format in, RGB ``uint8`` out, or a clear error naming the file.

Accepted: JPEG, PNG, TIFF (8/16/32-bit and float), BMP, GIF, WebP; grayscale, RGBA, LA, palette (with or without
transparency) and CMYK. EXIF orientation is applied. Alpha is dropped (the colour channels are kept as stored).
Pillow is the fast path; what it cannot decode, or would decode with a loss, goes to the source layer
(``optidel.data.sources``): TIFFs Pillow rejects or would truncate (3 samples marked greyscale as in CVC-ClinicDB,
more than 8 bits per sample in colour, OME-TIFF pages) through tifffile, DICOM through pydicom, NIfTI slices through
nibabel, whole-slide tiles through tiffslide. A path may be a locator ``FILE::FORMAT:...`` naming one frame, slice,
page or tile (``optidel.data.sources.locator``); it is decoded the same way everywhere.

High bit depth: 16-bit, 32-bit integer and float images are scaled **linearly from the image's own [min, max] to
[0, 255]** (``high_bit="minmax"``, the default: right for 10/12/14-bit data stored in 16-bit containers, which would be
nearly black under a fixed shift), or by the container's full range (``high_bit="full"``: 16-bit ``v / 257``), which
keeps absolute intensities comparable across images. A constant image maps to 0. (DICOM and NIfTI use intensity
windows instead: ``optidel.data.sources.window``.)

Rejected, with the path and the reason (:class:`ImageDecodeError`): zero-byte files, truncated or undecodable data,
images with a side below ``min_side`` pixels, and images above ``max_pixels`` pixels (decompression bombs).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from optidel.data.errors import ImageDecodeError
from optidel.data.sources import decode as sources_decode
from optidel.data.sources import tiff as sources_tiff
from optidel.data.sources.locator import parse_locator
from optidel.data.sources.scaling import HighBit, _to_uint8

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
MIN_SIDE = 8
MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb limit (2x its warning level): ~13k x 13k

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageHeader:
    """What the file's header says, read without decoding the pixels."""

    width: int
    height: int
    mode: str
    format: str | None


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has an image extension and is not hidden (``.``-prefixed)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _open(path: Path, max_pixels: int, min_side: int) -> Image.Image:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError as e:
        raise ImageDecodeError(path, "not a recognised image format (undecodable)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(path, f"image too large (decompression-bomb guard): {e}") from e
    except OSError as e:
        kind = "truncated or corrupt data" if "runcated" in str(e) else "cannot open image"
        raise ImageDecodeError(path, f"{kind} ({e})") from e
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageDecodeError(path, f"image too large: {w}x{h} = {w * h} pixels > limit {max_pixels}")
    if min(w, h) < min_side:
        im.close()
        raise ImageDecodeError(path, f"image too small: {w}x{h} (a side below {min_side} px)")
    return im


def _check_size(path: str | Path, w: int, h: int, max_pixels: int, min_side: int) -> None:
    if w * h > max_pixels:
        raise ImageDecodeError(path, f"image too large: {w}x{h} = {w * h} pixels > limit {max_pixels}")
    if min(w, h) < min_side:
        raise ImageDecodeError(path, f"image too small: {w}x{h} (a side below {min_side} px)")


def _is_source_item(path: str | Path) -> bool:
    """A locator, or a plain DICOM / NIfTI / whole-slide file: decoded by the source layer, not Pillow."""
    loc = parse_locator(path)
    if loc is not None:
        return loc.fmt != "image"
    return sources_decode.plain_format(Path(path)) is not None


def is_copyable(path: str | Path) -> bool:
    """A plain image file (not an item inside a file, not DICOM / NIfTI / a slide): copying its bytes gives an image
    other tools open too."""
    return parse_locator(path) is None and sources_decode.plain_format(Path(path)) is None


def _plain(path: str | Path) -> Path:
    """The file of a plain path or of an ``image`` locator (``a.png::image:label=2``: the label is for masks)."""
    loc = parse_locator(path)
    return loc.file if loc is not None else Path(path)


def _tiff_fallback(path: Path, err: ImageDecodeError) -> bool:
    """Pillow failed on a TIFF for a reason tifffile may not share (not empty, not too small or large)."""
    final = ("empty file", "image too", "cannot read file")
    return path.suffix.lower() in sources_tiff.TIFF_EXTENSIONS and not err.reason.startswith(final)


def _pillow_loses_data(im: Image.Image) -> bool:
    """A TIFF Pillow opens but would reduce: colour with more than 8 bits per sample."""
    if im.format != "TIFF":
        return False
    bits = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
    bits = bits if isinstance(bits, tuple) else (bits,) if bits else ()
    return len(bits) > 1 and max(bits) > 8


def read_header(path: str | Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> ImageHeader:
    """Read size and mode from the header only (cheap); raises :class:`ImageDecodeError` for unusable files."""
    if _is_source_item(path):
        w, h, fmt = sources_decode.item_size(path)
        _check_size(path, w, h, max_pixels, min_side)
        return ImageHeader(w, h, "RGB", fmt)
    path = _plain(path)
    try:
        return _pillow_header(path, max_pixels, min_side)
    except ImageDecodeError as e:
        if not _tiff_fallback(path, e):
            raise
        w, h = _checked_tiff_size(path, max_pixels, min_side)
        return ImageHeader(w, h, "RGB", "TIFF")


def _pillow_header(path: Path, max_pixels: int, min_side: int) -> ImageHeader:
    im = _open(path, max_pixels, min_side)
    try:
        w, h = im.size
        orientation = 1
        if hasattr(im, "getexif") and (im.format != "PNG" or "exif" in im.info or _png_has_exif(path)):
            orientation = im.getexif().get(0x0112, 1)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        return ImageHeader(w, h, im.mode, im.format)
    except Exception as e:  # a header that PIL can open but not interpret
        raise ImageDecodeError(path, f"unreadable header ({e})") from e
    finally:
        im.close()


def _png_has_exif(path: Path) -> bool:
    """Whether a PNG holds an ``eXIf`` chunk anywhere, found by walking the chunk headers (no pixel is decoded).

    Written by hand because Pillow's ``getexif`` on a PNG decodes the whole image to look for an ``eXIf`` chunk after
    the pixel data; a header read would then cost a full decode. A truncated or odd file answers True, so that
    Pillow decides.
    """
    with path.open("rb") as f:
        f.seek(8)  # the PNG signature
        while True:
            head = f.read(8)
            if len(head) < 8:
                return True
            length, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                return False
            f.seek(length + 4, 1)  # chunk data and CRC


def _checked_tiff_size(path: Path, max_pixels: int, min_side: int) -> tuple[int, int]:
    """(W, H) of a TIFF read through tifffile (the Pillow fallback), checked against the size limits."""
    _, _, (w, h) = sources_tiff.tiff_info(path)
    _check_size(path, w, h, max_pixels, min_side)
    return w, h


def load_rgb(
    path: str | Path,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    high_bit: HighBit = "minmax",
) -> np.ndarray:
    """Decode an image file, or one item inside a file (a locator), to RGB.

    Returns:
        img: (H, W, 3) uint8, EXIF orientation applied.

    Raises:
        ImageDecodeError: naming the file and the problem (empty, truncated, undecodable, too small, too large,
            "needs optional decoder ...").
    """
    if _is_source_item(path):
        out = sources_decode.decode_rgb(path)
        _check_size(path, out.shape[1], out.shape[0], max_pixels, min_side)
        return out
    path = _plain(path)
    try:
        return _pillow_rgb(path, max_pixels, min_side, high_bit)
    except ImageDecodeError as e:
        if not _tiff_fallback(path, e):
            raise
        _checked_tiff_size(path, max_pixels, min_side)
        return sources_tiff.load_tiff_rgb(path, 0, high_bit)


def _pillow_rgb(path: Path, max_pixels: int, min_side: int, high_bit: HighBit) -> np.ndarray:
    im = _open(path, max_pixels, min_side)
    if _pillow_loses_data(im):
        im.close()
        raise ImageDecodeError(path, "more than 8 bits per colour sample: read through tifffile")
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("RGB",):
            out = np.asarray(im, dtype=np.uint8)
        elif mode in ("L", "1"):
            g = np.asarray(im.convert("L"), dtype=np.uint8)
            out = np.repeat(g[..., None], 3, axis=2)
        elif mode.startswith("I;16") or mode in ("I", "F"):
            a = np.asarray(im)
            bits = (
                16
                if mode.startswith("I;16") or (mode == "I" and a.size and a.max() <= 65535 and a.min() >= 0)
                else 32
            )
            g = _to_uint8(a, high_bit, bits)
            out = np.repeat(g[..., None], 3, axis=2)
        elif mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "La", "RGBa"):
            if mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            out = np.asarray(im.convert("RGB"), dtype=np.uint8)
        else:
            try:
                out = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (ValueError, OSError) as e:
                raise ImageDecodeError(path, f"unsupported image mode {mode!r}") from e
        if out.ndim != 3 or out.shape[2] != 3:
            raise ImageDecodeError(path, f"decoded to an unexpected shape {out.shape}")
        return np.ascontiguousarray(out)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = str(e)
        reason = "truncated or corrupt data" if "truncated" in msg or "broken" in msg else "undecodable data"
        raise ImageDecodeError(path, f"{reason} ({msg})") from e
    finally:
        im.close()


def load_gray(path: str | Path, max_pixels: int = MAX_PIXELS, min_side: int = 1) -> np.ndarray:
    """Decode an image (or an item) as a single channel: (H, W) uint8 (masks: read as grayscale, EXIF orientation
    applied; TIFFs Pillow cannot read through tifffile, several samples combined as luminance)."""
    if _is_source_item(path):
        out = sources_decode.decode_rgb(path)[..., 0]
        _check_size(path, out.shape[1], out.shape[0], max_pixels, min_side)
        return np.ascontiguousarray(out)
    path = _plain(path)
    try:
        return _pillow_gray(path, max_pixels, min_side)
    except ImageDecodeError as e:
        if not _tiff_fallback(path, e):
            raise
        _checked_tiff_size(path, max_pixels, min_side)
        return sources_tiff.load_tiff_gray(path, 0)


def _pillow_gray(path: Path, max_pixels: int, min_side: int) -> np.ndarray:
    im = _open(path, max_pixels, min_side)
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16") or im.mode in ("I", "F"):
            return _to_uint8(np.asarray(im), "minmax", 16)
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return np.ascontiguousarray(np.asarray(im.convert("L"), dtype=np.uint8))
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(path, f"undecodable data ({e})") from e
    finally:
        im.close()


def resize_rgb(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize (stretch) to ``size`` (an int gives a square), antialiased bicubic.

    Args:
        img: (H, W, 3) uint8.
    Returns:
        (S_h, S_w, 3) uint8.
    """
    w, h = (size, size) if isinstance(size, int) else (size[1], size[0])
    if img.shape[0] == h and img.shape[1] == w:
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0))


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask (H, W) to ``size`` by area averaging, then > 0.5 (no aliasing of thin structures)."""
    w, h = (size, size) if isinstance(size, int) else (size[1], size[0])
    if mask.shape == (h, w):
        return mask.astype(bool)
    m = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(m.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)) > 127
