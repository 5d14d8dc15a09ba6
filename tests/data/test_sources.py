"""The image-source layer on real files packages ship (pydicom's CT_small/MR_small, nibabel's test volumes) and on
files written here: TIFF (CVC-ClinicDB-like, multi-page 16-bit, pyramidal), DICOM (series, multi-frame,
MONOCHROME1, compressed without its decoder, no pixel data) and NIfTI (pairs, truncated)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from optidel.data.array_cache import load_stack
from optidel.data.errors import ImageDecodeError
from optidel.data.image import load_rgb, read_header
from optidel.data.pool import list_pool
from optidel.data.segmentation import load_mask, load_seg_dataset
from optidel.data.sources import (
    SourceOptions,
    SourceOptionsError,
    list_items,
    parse_locator,
    real_file,
    samples,
)
from optidel.data.sources.dicom import missing_decoder
from optidel.data.sources.locator import make_locator, resolved
from optidel.data.sources.scaling import scale_to_uint8
from optidel.data.sources.window import CT_PRESETS, parse_window

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


# ------------------------------------------------------------------------------------------------------------ TIFF


def test_cvc_like_tiff_is_read_through_tifffile_exactly(tmp_path: Path) -> None:
    rgb = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    p = samples.write_cvc_like_tiff(tmp_path / "1.tif", rgb)
    with pytest.raises(UnidentifiedImageError):  # what made CVC-ClinicDB unreadable before
        Image.open(p)
    assert np.array_equal(load_rgb(p), rgb)
    h = read_header(p)
    assert (h.width, h.height) == (52, 40)
    assert [it.id for it in list_items(tmp_path).items] == ["1"]  # one item, the plain path, id as before


def test_multipage_16bit_tiff_gives_one_item_per_page(tmp_path: Path) -> None:
    import tifffile

    p = samples.write_multipage_16bit_tiff(tmp_path / "stack.tif", pages=3)
    stack = tifffile.imread(p)
    items = list_items(tmp_path).items
    assert [it.id for it in items] == ["stack/page_0000", "stack/page_0001", "stack/page_0002"]
    for k, it in enumerate(items):
        img = load_rgb(it.path)
        assert np.array_equal(img[..., 0], scale_to_uint8(stack[k]))  # 12-bit data, min-max scaled, no loss
    first = list_items(tmp_path, SourceOptions(tiff_pages="first")).items
    assert [(it.id, it.path) for it in first] == [("stack", p)]


def test_pyramidal_tiff_is_tiled_through_tiffslide(tmp_path: Path) -> None:
    import tifffile

    p = samples.write_pyramidal_tiff(tmp_path / "slides" / "s1.tif", size=1024)
    full = tifffile.imread(p)
    items = list_items(
        tmp_path / "slides", SourceOptions(wsi_tile=128, wsi_tissue=0.5, wsi_max_tiles=0)
    ).items
    assert items and all(it.fmt == "wsi" for it in items)
    ids = [it.id for it in items]
    assert ids[0].startswith("s1/L0_x") and len(set(ids)) == len(ids)
    centre = (512 - 64, 512 - 64)
    # the tissue is a disc of radius ~307 px at the centre: corner tiles are glass, the centre tile is tissue
    locs = [parse_locator(it.path) for it in items]
    xy = {(loc.get_int("x"), loc.get_int("y")) for loc in locs}
    assert (0, 0) not in xy and (384, 384) in xy and centre not in xy  # grid-aligned tiles only
    loc = locs[0]
    x, y = loc.get_int("x"), loc.get_int("y")
    assert np.array_equal(load_rgb(items[0].path), full[y : y + 128, x : x + 128])
    capped = list_items(tmp_path / "slides", SourceOptions(wsi_tile=128, wsi_max_tiles=3, seed=1)).items
    again = list_items(tmp_path / "slides", SourceOptions(wsi_tile=128, wsi_max_tiles=3, seed=1)).items
    assert len(capped) == 3 and capped == again and {it.id for it in capped} <= set(ids)
    level1 = list_items(tmp_path / "slides", SourceOptions(wsi_tile=128, wsi_magnification=10)).items
    assert level1 and all(it.id.startswith("s1/L1_") for it in level1)  # 0.5 um/px ~ 20x; 10x is level 1


# ------------------------------------------------------------------------------------------------------------ DICOM


def test_ct_small_windows_follow_the_stored_hounsfield_units() -> None:
    p = samples.bundled_dicom("CT_small.dcm")
    ds = pydicom.dcmread(p)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    for name in ("soft-tissue", "lung"):
        c, w = CT_PRESETS[name]
        expected = np.clip(np.rint((hu - (c - w / 2)) / w * 255), 0, 255).astype(np.uint8)
        got = load_rgb(make_locator(p, "dicom", frame=0, window=name))[..., 0]
        assert np.abs(got.astype(int) - expected).max() <= 1
    assert not np.array_equal(
        load_rgb(make_locator(p, "dicom", frame=0, window="lung")),
        load_rgb(make_locator(p, "dicom", frame=0, window="bone")),
    )
    assert load_rgb(p).shape == (128, 128, 3)  # a plain .dcm path: frame 0, the file's own window


def test_dicom_series_is_read_in_slice_order(tmp_path: Path) -> None:
    files = samples.write_dicom_series(tmp_path / "series", n=4, shuffle_names=True)
    items = list_items(tmp_path).items
    assert [it.id for it in items] == [f"series/slice_{k:04d}" for k in range(4)]
    zs = [float(pydicom.dcmread(real_file(it.path)).ImagePositionPatient[2]) for it in items]
    assert zs == sorted(zs) and real_file(items[0].path) == files[-1]  # names were written in reverse order
    strided = list_items(tmp_path, SourceOptions(slice_stride=2)).items
    assert [it.id for it in strided] == ["series/slice_0000", "series/slice_0002"]


def test_multiframe_dicom_gives_each_frame(tmp_path: Path) -> None:
    p = samples.write_multiframe_dicom(tmp_path / "cine.dcm", frames=3)
    items = list_items(tmp_path, SourceOptions(window="minmax")).items
    assert [it.id for it in items] == ["cine/frame_0000", "cine/frame_0001", "cine/frame_0002"]
    f0, f2 = load_rgb(items[0].path), load_rgb(items[2].path)
    assert np.array_equal(f2, f0[::-1])  # frame 2 was written as frame 0 flipped
    raw = pydicom.dcmread(p).pixel_array
    assert raw.shape[0] == 3


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    m1 = samples.write_monochrome1_dicom(tmp_path / "m1.dcm")
    m2 = samples.bundled_dicom("MR_small.dcm")
    a, b = load_rgb(m1).astype(int), load_rgb(m2).astype(int)
    assert np.array_equal(a, 255 - b) and b.std() > 10


def test_compressed_dicom_without_decoder_is_skipped_with_reason(tmp_path: Path) -> None:
    src = samples.bundled_dicom("MR_small_jpeg_ls_lossless.dcm")
    ts = pydicom.dcmread(src, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if missing_decoder(ts) is None:
        pytest.skip("a JPEG-LS decoder is installed here (optidel[dicom-codecs]); nothing to refuse")
    p = Path(shutil.copy(src, tmp_path / "jpegls.dcm"))
    listing = list_items(tmp_path)
    assert not listing.items
    (sk,) = listing.skipped
    assert sk.path == p and "needs optional decoder" in sk.reason and "dicom-codecs" in sk.reason
    with pytest.raises(ImageDecodeError, match="needs optional decoder"):
        load_rgb(p)


def test_dicom_without_pixel_data_is_skipped(tmp_path: Path) -> None:
    shutil.copy(samples.bundled_dicom("rtplan.dcm"), tmp_path / "plan.dcm")
    (sk,) = list_items(tmp_path).skipped
    assert "no pixel data" in sk.reason


# ------------------------------------------------------------------------------------------------------------ NIfTI


def test_nifti_slices_axis_stride_and_drop_empty(tmp_path: Path) -> None:
    img, _ = samples.write_nifti_pair(
        tmp_path / "v" / "ct.nii.gz", tmp_path / "lab.nii.gz", shape=(40, 36, 6)
    )
    vol = np.asarray(nib.load(img).dataobj)
    vol[..., 3] = -1000  # an all-air slice
    nib.save(nib.Nifti1Image(vol, nib.load(img).affine), img)
    items = list_items(tmp_path / "v").items
    assert [it.id for it in items] == [f"ct/slice_{k:04d}" for k in range(6)]  # axis 2: the thick (2 mm) one
    assert all(parse_locator(it.path).get("axis") == "2" for it in items)
    assert load_rgb(items[0].path).shape == (36, 40, 3)  # shown transposed: rows = the second voxel axis
    assert len(list_items(tmp_path / "v", SourceOptions(slice_stride=2)).items) == 3
    kept = list_items(tmp_path / "v", SourceOptions(window="soft-tissue", drop_empty=0.05)).items
    assert [it.id for it in kept] == [f"ct/slice_{k:04d}" for k in (0, 1, 2, 4, 5)]
    sag = list_items(tmp_path / "v", SourceOptions(slice_axis="sagittal")).items
    assert len(sag) == 40  # an RAS affine: sagittal slices run along voxel axis 0
    soft = load_rgb(make_locator(img, "nifti", slice=0, axis=2, window="soft-tissue"))[..., 0]
    assert soft.min() == 0 and 100 < np.median(soft[soft > 0]) < 160  # air -> 0, 40 HU -> ~128


def test_nibabel_bundled_volumes() -> None:
    data = Path(nib.__file__).parent / "tests" / "data"
    for name in ("anatomical.nii", "example4d.nii.gz"):
        listing = list_items_of(data / name)
        shape = nib.load(data / name).shape
        axis = int(parse_locator(listing.items[0].path).get("axis"))
        assert len(listing.items) == shape[axis] and not listing.skipped
        assert load_rgb(listing.items[len(listing.items) // 2].path).std() > 0


def list_items_of(file: Path):
    """List one file by linking it into a fresh folder."""
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / file.name).symlink_to(file)
    return list_items(d)


def test_truncated_nifti_is_skipped_with_reason(tmp_path: Path) -> None:
    samples.write_truncated_nifti(tmp_path / "cut.nii.gz")
    listing = list_items(tmp_path)
    assert not listing.items and "truncated or corrupt volume" in listing.skipped[0].reason


def test_nifti_segmentation_pairs_slice_by_slice(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    samples.write_nifti_pair(root / "images" / "case1.nii.gz", root / "labels" / "case1_seg.nii.gz")
    samples.write_nifti_pair(root / "images" / "case2.nii.gz", root / "labels" / "case2_seg.nii.gz", seed=3)
    ds = load_seg_dataset(root)
    assert len(ds.pairs) == 12 and not ds.problems
    by_case = {}
    for p in ds.pairs:
        by_case.setdefault(p.id.split("/")[0], set()).add(p.split)
    assert all(len(s) == 1 for s in by_case.values())  # every slice of a volume in the volume's split
    lab = np.asarray(nib.load(root / "labels" / "case1_seg.nii.gz").dataobj)
    pair = next(p for p in ds.pairs if p.id == "case1/slice_0002")
    assert np.array_equal(load_mask(pair.mask), np.flipud(lab[..., 2].T) != 0)
    assert not load_mask(
        next(p for p in ds.pairs if p.id == "case1/slice_0000").mask
    ).any()  # no lesion there
    assert load_rgb(pair.image).shape[:2] == load_mask(pair.mask).shape
    from optidel.data.inventory import take_inventory

    inv = take_inventory(root)  # what `optidel data info` shows
    assert inv.n_pairs == 12 and inv.n_images == 12 and not inv.bad
    assert inv.formats["nifti"] == {"files": 2, "items": 12, "skipped": 0}
    assert inv.mask_conventions == {"label volume/frame": 12}


# ------------------------------------------------------------------------------------------------------- the layer


def test_locators_round_trip_and_options_are_checked(tmp_path: Path) -> None:
    loc = make_locator(
        tmp_path / "a b" / "v.nii.gz", "nifti", slice=3, axis=2, window=parse_window("40/400").text
    )
    parsed = parse_locator(loc)
    assert parsed.file == tmp_path / "a b" / "v.nii.gz" and parsed.get("window") == "40:400"
    assert parse_locator(tmp_path / "plain.png") is None and resolved(loc).endswith(
        "::nifti:slice=3,axis=2,window=40:400"
    )
    with pytest.raises(SourceOptionsError, match="window"):
        SourceOptions(window="sunny")
    with pytest.raises(SourceOptionsError, match="slice_stride"):
        SourceOptions(slice_stride=0)
    assert parse_window("p1-99").text == "p1-99" and parse_window("LUNG").centre == -600


def test_mixed_pool_lists_lazily_and_keeps_plain_images_as_before(tmp_path: Path) -> None:
    root = samples.write_mixed_pool(tmp_path / "mixed")
    pool = list_pool([root])
    assert len(pool) == 16 and len({im.uid for im in pool}) == 16
    plain = [im for im in pool if parse_locator(im.path) is None]
    assert [(im.id, im.path) for im in plain] == [
        (f"photos/p{i}", root / "photos" / f"p{i}.png") for i in range(3)
    ]
    stack = load_stack([im.path for im in pool], 32, "image", workers=1)
    assert stack.array.shape == (16, 32, 32, 3) and isinstance(stack.array, np.memmap) and not stack.bad
    again = load_stack([im.path for im in pool], 32, "image", workers=1)
    assert np.array_equal(np.asarray(stack.array), np.asarray(again.array))


def test_plain_pools_keep_their_fingerprint_lines(tmp_path: Path) -> None:
    """The patch-stage cache key hashes these lines: for ordinary images they are exactly what they were before the
    source layer (uid, resolved path, size, SHA-1), so users' SAM caches stay valid; items of one file hash it once."""
    import hashlib

    from optidel.select.stage_cache import pool_file_lines

    for i in range(3):
        samples.write_png(tmp_path / "plain" / "sub" / f"im{i}.png", seed=i)
    pool = list_pool([tmp_path / "plain"])
    old = [
        f"{im.uid}\t{im.path.resolve()}\t{im.path.stat().st_size}\t"
        f"{hashlib.sha1(im.path.read_bytes()).hexdigest()}\n".encode()
        for im in pool
    ]
    assert [im.uid for im in pool] == [f"plain/sub/im{i}" for i in range(3)] and pool_file_lines(pool) == old
    samples.write_nifti_pair(tmp_path / "vol" / "v.nii.gz", tmp_path / "lab.nii.gz")
    lines = pool_file_lines(list_pool([tmp_path / "vol"]))
    assert len(set(lines)) == 6 and all(b"::nifti:slice=" in ln for ln in lines)
