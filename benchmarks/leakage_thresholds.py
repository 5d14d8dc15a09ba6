"""Check the leakage guard's thresholds on the shared data: how far are true non-duplicates, how close are copies?

For Kvasir-SEG, PolypGen and DRIVE: every test image's nearest train image (highest thumbnail cosine, smallest
perceptual-hash distances) — train and test are different frames (DRIVE: different eyes), so these are the closest
*non-duplicates* the thresholds must reject — and copies of the test images that must be found: re-encoded as JPEG (quality 60 and 85)
and resized (0.6x and 0.4x, bicubic, then JPEG 85). Also Kvasir-SEG test against PolypGen train (a cross-dataset
check: both are colonoscopy). Prints percentiles and the extremes, and the pairs that pass the current thresholds.

    .venv/bin/python benchmarks/leakage_thresholds.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from optidel.data.leakage import (
    LeakageThresholds,
    find_leaks,
    fingerprint_images,
    hamming,
    nearest_distances,
)
from optidel.data.pool import list_pool


def altered_copies(paths: list[str], folder: Path) -> dict[str, list[str]]:
    """Four altered copies of every image: JPEG q60, JPEG q85, 0.6x + q85, 0.4x + q85."""
    out: dict[str, list[str]] = {"jpeg60": [], "jpeg85": [], "resize0.6": [], "resize0.4": []}
    for i, p in enumerate(paths):
        im = Image.open(p).convert("RGB")
        w, h = im.size
        for name, scale, q in (
            ("jpeg60", 1, 60),
            ("jpeg85", 1, 85),
            ("resize0.6", 0.6, 85),
            ("resize0.4", 0.4, 85),
        ):
            img = (
                im
                if scale == 1
                else im.resize((max(8, int(w * scale)), max(8, int(h * scale))), Image.BICUBIC)
            )
            dst = folder / f"{name}_{i:05d}.jpg"
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=q)
            dst.write_bytes(buf.getvalue())
            out[name].append(str(dst))
    return out


def describe(name: str, cos: np.ndarray, ham: np.ndarray, fine: np.ndarray) -> None:
    q = [0, 50, 90, 99, 100]
    print(
        f"{name:42s} n={cos.size:5d}  cosine p{q}: {np.round(np.percentile(cos, q), 4).tolist()}  "
        f"hamming64: {np.percentile(ham, q).astype(int).tolist()}  hamming256: "
        f"{np.percentile(fine, q).astype(int).tolist()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    thr = LeakageThresholds()
    print(f"thresholds: {thr}")
    data = Path(args.data)
    fps = {}
    for ds in ("kvasir-seg", "polypgen", "drive"):
        for split in ("train", "test"):
            ims = list_pool([f"{data / ds}:{split}"])
            fps[ds, split] = ([im.uid for im in ims], fingerprint_images([im.path for im in ims]))
    pairs = (
        ("kvasir-seg", "kvasir-seg"),
        ("polypgen", "polypgen"),
        ("polypgen", "kvasir-seg"),
        ("drive", "drive"),
    )
    for a, b in pairs:
        (pid, pool), (tid, test) = fps[a, "train"], fps[b, "test"]
        nd = nearest_distances(pool, test)
        describe(f"non-dup: {b} test -> nearest {a} train", nd["cosine"], nd["hamming"], nd["fine_hamming"])
        top = np.argsort(-nd["cosine"])[:3]
        print("   highest cosines:", [(tid[j], round(float(nd["cosine"][j]), 4)) for j in top])
        leaks = find_leaks(pool, test, thr)
        print(
            f"   pairs passing the thresholds: {len(leaks)}",
            [(pid[i], tid[j], k) for i, j, k in zip(leaks.pool, leaks.test, leaks.kind, strict=True)][:10],
        )
    with tempfile.TemporaryDirectory() as tmp:
        for ds in ("kvasir-seg", "polypgen", "drive"):
            _, test = fps[ds, "test"]
            copies = altered_copies(test.paths, Path(tmp))
            for name, paths in copies.items():
                fp = fingerprint_images(paths, description=name)
                cos = (fp.thumb * test.thumb).sum(axis=1)
                fine = hamming(fp.phash_fine, test.phash_fine)
                describe(f"copies: {ds} test, {name}", cos, hamming(fp.phash, test.phash), fine)
                found = find_leaks(fp, test, thr)
                hit = np.isin(np.arange(len(fp)), found.pool[found.pool == found.test])
                print(f"   found {int(hit.sum())} of {len(fp)} copies")


if __name__ == "__main__":
    main()
