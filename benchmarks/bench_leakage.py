"""How fast is the leakage guard at pool scale (100k pool x 10k test images) on this machine?

Two parts, because the two costs scale differently:

1. Fingerprinting (decode + perceptual hash + thumbnail; linear in images): measured on real files, the shared
   Kvasir-SEG and PolypGen images (JPEGs of 332-1920 px and 512 px), with the default threads; the time for
   110k images is extrapolated from the measured rate.
2. Matching (faiss range search on the thumbnails + hash check; 100k x 10k): run at full size on synthetic
   fingerprints made from the real ones so that their similarity structure is realistic: every synthetic
   thumbnail is a real one plus noise (cosine ~0.85 to it; two made from the same real image ~0.72, like
   neighbouring endoscopy frames; the real data's closest non-duplicates reach 0.956), its hash that of the real
   image with 8 (of 64) and 32 (of 256) random bits flipped. 200 test images are
   planted in the pool as copies (thumbnail + small noise, hashes with 2 and 6 bits flipped); the run must find exactly
   those.

    .venv/bin/python benchmarks/bench_leakage.py [--data ../shared/data] [--pool 100000] [--test 10000]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from optidel.data.leakage import HASH_BYTES, Fingerprints, find_leaks, fingerprint_images
from optidel.data.pool import list_pool


def synthetic(real: Fingerprints, n: int, rng: np.random.Generator, prefix: str) -> Fingerprints:
    """n fingerprints around the real ones: thumbnail = normalise(real + noise) with cosine ~0.85 to its real base
    (two made from one base: ~0.72), hash = the base's with 8 random bits flipped."""
    a = rng.integers(0, len(real), n)
    d = real.thumb.shape[1]
    t = real.thumb[a] + 0.62 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    bits = np.unpackbits(real.phash[a], axis=1)
    bits[np.arange(n)[:, None], rng.integers(0, 64, (n, 8))] ^= 1
    fine = np.unpackbits(real.phash_fine[a], axis=1)
    fine[np.arange(n)[:, None], rng.integers(0, 256, (n, 32))] ^= 1
    names = [f"{prefix}{i}" for i in range(n)]  # distinct file hashes: no exact duplicate
    return Fingerprints(
        names,
        names,
        np.packbits(bits, axis=1),
        t.astype(np.float32),
        np.ones(n, bool),
        np.packbits(fine, axis=1),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--pool", type=int, default=100_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--planted", type=int, default=200)
    args = ap.parse_args()
    data = Path(args.data)
    paths = [im.path for im in list_pool([f"{data / 'kvasir-seg'}:all", f"{data / 'polypgen'}:all"])]
    import faiss

    print(
        f"cores {os.cpu_count()}, faiss threads {faiss.omp_get_max_threads()}, load {os.getloadavg()[0]:.1f}"
    )
    t0 = time.perf_counter()
    real = fingerprint_images(paths)
    dt = time.perf_counter() - t0
    rate = len(paths) / dt
    print(
        f"fingerprints: {len(paths)} real images in {dt:.1f} s = {rate:.0f} img/s "
        f"-> {(args.pool + args.test) / rate / 60:.1f} min for {args.pool + args.test} images (extrapolated)"
    )
    rng = np.random.default_rng(0)
    test = synthetic(real, args.test, rng, "test")
    pool = synthetic(real, args.pool, rng, "pool")
    planted_pool = rng.choice(args.pool, args.planted, replace=False)
    planted_test = rng.choice(args.test, args.planted, replace=False)
    t = test.thumb[planted_test] + 0.02 * rng.standard_normal((args.planted, test.thumb.shape[1])) / np.sqrt(
        test.thumb.shape[1]
    )
    pool.thumb[planted_pool] = t / np.linalg.norm(t, axis=1, keepdims=True)
    bits = np.unpackbits(test.phash[planted_test], axis=1)
    bits[np.arange(args.planted)[:, None], rng.integers(0, 64, (args.planted, 2))] ^= 1
    pool.phash[planted_pool] = np.packbits(bits, axis=1)
    fine = np.unpackbits(test.phash_fine[planted_test], axis=1)
    fine[np.arange(args.planted)[:, None], rng.integers(0, 256, (args.planted, 6))] ^= 1
    pool.phash_fine[planted_pool] = np.packbits(fine, axis=1)
    assert pool.phash.shape[1] == HASH_BYTES
    t0 = time.perf_counter()
    leaks = find_leaks(pool, test)
    dt = time.perf_counter() - t0
    want = set(zip(planted_pool.tolist(), planted_test.tolist(), strict=True))
    got = set(zip(leaks.pool.tolist(), leaks.test.tolist(), strict=True))
    print(
        f"matching: {args.pool} pool x {args.test} test in {dt:.1f} s; planted {len(want)}, found {len(got)}, "
        f"planted found {len(want & got)}, others {len(got - want)}"
    )


if __name__ == "__main__":
    main()
