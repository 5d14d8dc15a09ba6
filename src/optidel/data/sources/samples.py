"""Small sample files of every format the source layer reads, for tests, benchmarks and the docs' examples.

Real pixel data where packages ship it (pydicom's ``CT_small.dcm`` / ``MR_small.dcm``), synthetic otherwise; every
writer is seeded and writes a few KB to a few MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def blobs(rng: np.random.Generator, h: int, w: int, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A smooth texture with ``n`` bright discs, and the discs' mask: (H, W) float32 in [0, 1], (H, W) bool."""
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(rng.random((h, w)).astype(np.float32), 2.0)
    img = (img - img.min()) / max(1e-6, float(img.max() - img.min())) * 0.5
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx, r = (
            rng.integers(h // 5, h - h // 5),
            rng.integers(w // 5, w - w // 5),
            rng.integers(3, max(4, h // 6)),
        )
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    img[mask] += 0.5
    return np.clip(img, 0, 1), mask


def write_cvc_like_tiff(path: Path, rgb: np.ndarray) -> Path:
    """A TIFF as CVC-ClinicDB's originals are stored: 3 samples per pixel, photometric MinIsBlack (Pillow rejects
    it). ``rgb``: (H, W, 3) uint8."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, photometric="minisblack", planarconfig="contig")
    return path


def write_cvc_like_dataset(root: Path, n: int = 12, size: int = 64, seed: int = 0) -> Path:
    """``root/images/*.tif`` (3-sample MinIsBlack) and ``root/masks/*.tif`` (1-sample 0/255) like CVC-ClinicDB."""
    import tifffile

    rng = _rng(seed)
    for i in range(n):
        img, mask = blobs(rng, size, size)
        rgb = np.stack([img, img * 0.8, img * 0.6], axis=2)
        write_cvc_like_tiff(root / "images" / f"{i + 1}.tif", (rgb * 255).astype(np.uint8))
        (root / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            root / "masks" / f"{i + 1}.tif", mask.astype(np.uint8) * 255, photometric="minisblack"
        )
    return root


def write_multipage_16bit_tiff(path: Path, pages: int = 3, size: int = 48, seed: int = 0) -> Path:
    """A multi-page TIFF of 12-bit values in 16-bit samples (each page a different image)."""
    import tifffile

    rng = _rng(seed)
    stack = np.stack([(blobs(rng, size, size)[0] * 4095).astype(np.uint16) for _ in range(pages)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, stack, photometric="minisblack")
    return path


def write_pyramidal_tiff(path: Path, size: int = 1024, tile: int = 256, seed: int = 0) -> Path:
    """A tiled pyramidal RGB TIFF (levels 1, 1/2, 1/4 as sub-IFDs): a slide-like image, white glass with a dark
    tissue disc in the middle, readable by tiffslide."""
    import tifffile

    rng = _rng(seed)
    yy, xx = np.mgrid[:size, :size]
    tissue = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size * 0.3) ** 2
    img = np.full((size, size, 3), 240, np.uint8)
    noise = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    img[tissue] = (np.array([150, 60, 120], np.uint8) + noise[tissue] // 2).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        opts = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib"}
        tw.write(img, subifds=2, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER", **opts)
        for k in (2, 4):
            tw.write(img[::k, ::k], subfiletype=1, **opts)
    return path


def _ct_small():
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def write_dicom_series(folder: Path, n: int = 4, shuffle_names: bool = True) -> list[Path]:
    """``n`` single-frame CT files of one series (CT_small's pixels, shifted per slice), named in an order that is
    not the slice order, positions along the slice normal 0, 2.5, 5 ... mm."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    base = _ct_small()
    series = generate_uid()
    order = list(range(n))[::-1] if shuffle_names else list(range(n))
    out = []
    for name_idx, k in enumerate(order):
        ds = base.copy()
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        arr = ds.pixel_array.astype(np.int16)
        ds.PixelData = np.roll(arr, 8 * k, axis=1).tobytes()
        p = folder / f"IM{name_idx:04d}.dcm"
        pydicom.dcmwrite(p, ds, enforce_file_format=True)
        out.append(p)
    return out


def write_multiframe_dicom(path: Path, frames: int = 3) -> Path:
    """A multi-frame MR object: MR_small's pixels, then the same scaled by 1/2 and flipped."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    a = ds.pixel_array.astype(np.int16)
    stack = np.stack([a, a // 2, a[::-1]][:frames] + [a] * max(0, frames - 3))
    ds.SOPInstanceUID = generate_uid()
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_monochrome1_dicom(path: Path) -> Path:
    """MR_small marked MONOCHROME1 (high values dark): the reader must invert it after windowing."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def bundled_dicom(name: str) -> Path:
    """A file pydicom ships (``CT_small.dcm``, ``MR_small.dcm``, ``MR_small_jpeg_ls_lossless.dcm``, ``rtplan.dcm``)."""
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    if p is None:
        raise FileNotFoundError(f"pydicom does not ship {name}")
    return Path(str(p))


def write_nifti_pair(image: Path, label: Path, shape=(40, 36, 6), seed: int = 0) -> tuple[Path, Path]:
    """A CT-like volume (HU, -1000 air around a 40 HU body with 300 HU blobs) and its label volume (blobs = 1), 2 mm
    slices along the third axis (the acquisition axis)."""
    import nibabel as nib

    rng = _rng(seed)
    x, y, z = shape
    vol = np.full(shape, -1000.0, np.float32)
    lab = np.zeros(shape, np.uint8)
    yy, xx = np.mgrid[:x, :y]
    body = (yy - x / 2) ** 2 / (x * 0.4) ** 2 + (xx - y / 2) ** 2 / (y * 0.4) ** 2 <= 1
    for k in range(z):
        sl = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, (x, y))
        if k > 0:  # the first slice has no lesion
            _, blob = blobs(rng, x, y, 1)
            blob &= body
            sl[blob] = 300.0
            lab[..., k] = blob
        vol[..., k] = sl
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    image.parent.mkdir(parents=True, exist_ok=True)
    label.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol.astype(np.int16), aff), image)
    nib.save(nib.Nifti1Image(lab, aff), label)
    return image, label


def write_truncated_nifti(path: Path, seed: int = 1) -> Path:
    """A .nii.gz cut in the middle of its data (the header reads, the pixels do not)."""
    tmp = path.with_name("tmp_" + path.name)
    write_nifti_pair(tmp, path.with_name("tmp_lab_" + path.name), (64, 64, 16), seed)
    data = tmp.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    tmp.unlink()
    path.with_name("tmp_lab_" + path.name).unlink()
    return path


def write_png(path: Path, size: int = 64, seed: int = 0) -> Path:
    from PIL import Image

    img, _ = blobs(_rng(seed), size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.stack([img, img, img], 2) * 255).astype(np.uint8)).save(path)
    return path


def write_mixed_pool(root: Path) -> Path:
    """A folder mixing a DICOM series (4 slices), a multi-frame DICOM (3 frames), a NIfTI volume (6 slices) and 3
    PNGs: 16 items."""
    write_dicom_series(root / "ct_series", 4)
    write_multiframe_dicom(root / "cine.dcm", 3)
    write_nifti_pair(root / "volume.nii.gz", root.parent / f".{root.name}-labels" / "volume.nii.gz")
    for i in range(3):
        write_png(root / "photos" / f"p{i}.png", seed=i)
    return root
