"""Benchmark: is decoding medical formats ever the bottleneck? Items/s of the source layer against the patch stage.

Writes realistic sizes into a temporary folder, then times, per format, (a) listing the folder
(``optidel.data.sources.list_items``: headers, series grouping, slide thumbnails) and (b) decoding every item with
``optidel.data.image.load_rgb`` in 2 threads (what select's workers and the array cache do), cold (first read of
each file: NIfTI volumes decoded once, then their slices come from the per-process volume cache):

- DICOM: a 512 x 512 CT series of ``--slices`` single-frame files, and one multi-frame object of the same frames;
- NIfTI: one 512 x 512 x ``--slices`` int16 ``.nii.gz`` volume (CT window ``soft-tissue``);
- WSI: a ``--wsi-side`` px square pyramidal RGB TIFF read through tiffslide, 256 px tiles at level 0.

The reference is the patch stage's measured rate (LiteMedSAM proposal + embedding, BENCHMARKS.md: ~0.65 img/s on
2 cores); the ratio printed is items/s / that rate (above 1: decoding is not the bottleneck).

Usage::

    python benchmarks/bench_sources.py                       # 64 slices, 4096 px slide
    python benchmarks/bench_sources.py --slices 128 --wsi-side 8192
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optidel.data.image import load_rgb
from optidel.data.sources import SourceOptions, list_items, samples

PATCH_STAGE_IMG_PER_S = 0.65  # BENCHMARKS.md, LiteMedSAM patch stage on 2 cores


def _ct_volume(n: int, side: int = 512, seed: int = 0) -> np.ndarray:
    """(n, side, side) int16 HU: air around an ellipse of soft tissue with bright blobs, varying per slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    body = (yy - side / 2) ** 2 / (side * 0.4) ** 2 + (xx - side / 2) ** 2 / (side * 0.35) ** 2 <= 1
    out = np.empty((n, side, side), np.int16)
    for k in range(n):
        sl = np.where(body, 40, -1000) + rng.normal(0, 15, (side, side))
        cy, cx = side / 2 + 60 * np.sin(k / 7), side / 2 + 60 * np.cos(k / 5)
        sl[(yy - cy) ** 2 + (xx - cx) ** 2 <= 400] = 300
        out[k] = sl.astype(np.int16)
    return out


def write_dicom(folder: Path, vol: np.ndarray) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(samples.bundled_dicom("CT_small.dcm"))
    base.Rows, base.Columns = vol.shape[1:]
    base.RescaleSlope, base.RescaleIntercept = 1, 0
    base.PixelRepresentation, base.BitsAllocated, base.BitsStored, base.HighBit = 1, 16, 16, 15
    series = generate_uid()
    (folder / "series").mkdir(parents=True)
    for k, sl in enumerate(vol):
        ds = base.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series, generate_uid(), k + 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0.0, 0.0, 1.0 * k]
        ds.PixelData = sl.tobytes()
        pydicom.dcmwrite(folder / "series" / f"IM{k:04d}.dcm", ds, enforce_file_format=True)
    mf = base.copy()
    mf.SOPInstanceUID, mf.NumberOfFrames, mf.PixelData = generate_uid(), len(vol), vol.tobytes()
    pydicom.dcmwrite(folder / "multiframe.dcm", mf, enforce_file_format=True)


def write_nifti(folder: Path, vol: np.ndarray) -> None:
    import nibabel as nib

    folder.mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), np.diag([0.7, 0.7, 1.5, 1.0])), folder / "ct.nii.gz"
    )


def measure(folder: Path, options: SourceOptions, threads: int = 2) -> dict[str, float]:
    t0 = time.perf_counter()
    listing = list_items(folder, options)
    t_list = time.perf_counter() - t0
    paths = [it.path for it in listing.items]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        shapes = [a.shape for a in ex.map(load_rgb, paths)]
    t_decode = time.perf_counter() - t0
    n = len(shapes)
    return {
        "items": n,
        "list_s": round(t_list, 3),
        "decode_s": round(t_decode, 3),
        "items_per_s": round(n / t_decode, 2),
        "items_per_s_incl_listing": round(n / (t_decode + t_list), 2),
        "x_patch_stage": round(n / (t_decode + t_list) / PATCH_STAGE_IMG_PER_S, 1),
        "skipped": len(listing.skipped),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--wsi-side", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sources.json")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    try:
        vol = _ct_volume(args.slices)
        write_dicom(root / "dicom", vol)
        write_nifti(root / "nifti", vol)
        samples.write_pyramidal_tiff(root / "wsi" / "slide.tif", size=args.wsi_side, tile=256)
        results = {
            "dicom series + multi-frame": measure(root / "dicom", SourceOptions(window="soft-tissue")),
            "nifti slices": measure(root / "nifti", SourceOptions(window="soft-tissue")),
            "wsi tiles": measure(root / "wsi", SourceOptions(wsi_tile=256, wsi_tissue=0.5, wsi_max_tiles=0)),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"slices": args.slices, "wsi_side": args.wsi_side, "threads": 2, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
