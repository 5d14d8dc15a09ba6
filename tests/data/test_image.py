"""Decoding of every accepted format and rejection of every kind of bad file, generated here."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.data.image import ImageDecodeError, load_gray, load_rgb, read_header, resize_mask, resize_rgb


def _gradient(h: int = 20, w: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full((h, w), 77)], -1).astype(np.uint8)


def test_rgb_jpeg_and_png(tmp_path: Path) -> None:
    img = _gradient()
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    assert np.array_equal(load_rgb(tmp_path / "a.png"), img)
    jpg = load_rgb(tmp_path / "a.jpg")
    assert jpg.shape == (20, 30, 3) and jpg.dtype == np.uint8
    assert np.abs(jpg.astype(int) - img).mean() < 4


def test_grayscale_rgba_palette_cmyk(tmp_path: Path) -> None:
    g = _gradient()[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (20, 30, 3) and np.array_equal(out[..., 1], g)

    rgba = np.concatenate([_gradient(), np.full((20, 30, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_rgb(tmp_path / "rgba.png"), rgba[..., :3])

    Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(
        tmp_path / "p.png"
    )
    pal = load_rgb(tmp_path / "p.png")
    assert pal.shape == (20, 30, 3) and len(np.unique(pal.reshape(-1, 3), axis=0)) <= 16

    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "c.jpg")
    cmyk = load_rgb(tmp_path / "c.jpg")
    assert cmyk.shape == (20, 30, 3)
    assert np.abs(cmyk.astype(int) - _gradient()).mean() < 12


def test_16bit_png_and_tiff_are_scaled_by_their_range(tmp_path: Path) -> None:
    a = (
        np.linspace(1000, 4000, 20 * 30).reshape(20, 30).astype(np.uint16)
    )  # 12-bit data in a 16-bit container
    Image.fromarray(a).save(tmp_path / "a16.png")
    Image.fromarray(a).save(tmp_path / "a16.tif")
    for name in ("a16.png", "a16.tif"):
        out = load_rgb(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
        assert out.min() == 0 and out.max() == 255  # min-max scaling
        assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone
    full = load_rgb(tmp_path / "a16.png", high_bit="full")
    assert full.max() == round(4000 / 257)


def test_8bit_tiff(tmp_path: Path) -> None:
    Image.fromarray(_gradient()).save(tmp_path / "a.tif")
    assert np.array_equal(load_rgb(tmp_path / "a.tif"), _gradient())


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.fromarray(_gradient(20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(tmp_path / "rot.jpg")
    assert out.shape == (30, 20, 3)
    assert read_header(tmp_path / "rot.jpg").width == 20


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@pytest.mark.parametrize("where", ["before pixels", "after pixels"])
def test_png_exif_orientation_in_header_and_decode(tmp_path: Path, where: str) -> None:
    """A PNG's eXIf chunk may follow the pixel data: the header read finds it too, and agrees with the decode."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    if where == "before pixels":
        Image.fromarray(_gradient(20, 30)).save(buf, format="PNG", exif=exif.tobytes())
        data = buf.getvalue()
    else:
        Image.fromarray(_gradient(20, 30)).save(buf, format="PNG")
        data = buf.getvalue()
        iend = data.rindex(b"IEND") - 4
        data = (
            data[:iend] + _png_chunk(b"eXIf", exif.tobytes()[6:]) + data[iend:]
        )  # TIFF bytes, no "Exif\0\0"
    (tmp_path / "rot.png").write_bytes(data)
    assert load_rgb(tmp_path / "rot.png").shape == (30, 20, 3)
    h = read_header(tmp_path / "rot.png")
    assert (h.width, h.height) == (20, 30)


def test_png_header_decodes_no_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a plain PNG's header must not decode it (Pillow's getexif would, to look for a trailing eXIf)."""
    from PIL import PngImagePlugin

    Image.fromarray(_gradient(20, 30)).save(tmp_path / "a.png")

    def no_decode(self: Image.Image) -> None:
        raise AssertionError("pixels decoded for a header")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    h = read_header(tmp_path / "a.png")
    assert (h.width, h.height, h.format) == (30, 20, "PNG")


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("garbage", "not a recognised"),
        ("tiny", "too small"),
    ],
)
def test_bad_files_name_path_and_reason(tmp_path: Path, kind: str, reason: str) -> None:
    p = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            buf, "JPEG"
        )
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "garbage":
        p.write_bytes(b"this is not an image at all" * 10)
    else:
        Image.new("RGB", (1, 1)).save(p)
    with pytest.raises(ImageDecodeError) as e:
        load_rgb(p)
    assert e.value.path == p and reason in e.value.reason
    assert str(p) in str(e.value)


def test_absurdly_large_image_is_rejected_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(p)
    with pytest.raises(ImageDecodeError, match="too large"):
        load_rgb(p, max_pixels=100_000)


def test_mask_reading_and_resizing(tmp_path: Path) -> None:
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 5:20] = 200
    Image.fromarray(m).save(tmp_path / "m.png")
    g = load_gray(tmp_path / "m.png")
    assert g.shape == (40, 40) and g.max() == 200
    small = resize_mask(g > 127, 20)
    assert small.shape == (20, 20) and small.dtype == bool
    assert abs(small.mean() - (g > 127).mean()) < 0.02
    assert resize_rgb(_gradient(), 16).shape == (16, 16, 3)
