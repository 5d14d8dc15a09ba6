"""Leakage guard: pool images that are exact or near duplicates of a downstream test image.

A pre-training pool that holds the very frames of a downstream test set (Kvasir-SEG's images come from
Hyper-Kvasir, for instance) inflates every pre-trained arm. This module finds such pairs between a pool and the test
splits it is evaluated on.

Per image, from one decode (JPEGs are decoded at a reduced scale with PIL's ``draft``: the fingerprints below need
at most 64 px; the same path is used for pool and test images):

- ``sha1``: SHA-1 of the file bytes -> **exact** duplicates (the same file);
- ``phash``: the 64-bit DCT perceptual hash of ``imagehash`` (grey 32 x 32, top-left 8 x 8 DCT block against its
  median). The library is used as is: per image it costs ~1 ms against ~4 ms for the decode, so a vectorised
  rewrite would save little;
- ``thumb``: a 16 x 16 RGB thumbnail (box filter), mean-subtracted and L2-normalised, 768 values. Its cosine is the
  "embedding cosine": a compact image embedding that survives re-encoding and resizing, computable at pool scale
  on CPUs (a foundation-model embedding of 100k images would take hours on 2 cores).

A pool image and a test image are a **near** duplicate when ``cosine >= cosine_min`` AND ``hamming <= hamming_max``
AND (the 256-bit hash, ``imagehash.phash(hash_size=16)`` of 64 x 64 grey, differs in at most ``fine_hamming_max``
bits OR ``cosine >= cosine_sure``):
the thumbnail cosine finds the candidates, the hashes confirm the structure (the finer one separates image families
that look alike at 16 px, such as fundus photographs). The defaults
(:class:`LeakageThresholds`) were checked on the shared data (``benchmarks/leakage_thresholds.py``, numbers in
BENCHMARKS.md): between the train and test splits of Kvasir-SEG and of PolypGen — true non-duplicates apart from
what the script lists — and against re-encoded (JPEG quality 60/85) and resized (0.6x, 0.4x) copies of the test
images, which must be found.

Search at scale uses faiss: the test thumbnails, projected onto their 96 leading principal components, in a flat L2
index; the pool is queried in chunks with ``range_search`` at the radius that ``cosine_min`` implies (every
candidate, not a fixed k; the projection loses none, see :func:`_projection`), then the exact cosine and the hamming
check run on the candidates only; exact duplicates by a hash table. ``benchmarks/bench_leakage.py`` measures 100k x 10k.

Fingerprints are cached (``cache_dir``) per list of files (path, size, mtime), so the selections of a benchmark
compute each pool's and test split's fingerprints once.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from optidel.log import logger
from optidel.runtime.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from optidel.runtime.errors import OptidelError
from optidel.runtime.progress import track

THUMB_SIDE = 16  # thumbnail side: 16 x 16 x 3 = 768 values
THUMB_DIM = THUMB_SIDE * THUMB_SIDE * 3
HASH_BYTES = 8  # 64-bit perceptual hash
FINE_HASH_BYTES = 32  # 256-bit perceptual hash (imagehash hash_size=16: 64 x 64 grey, 16 x 16 DCT block)
DRAFT_SIDE = 128  # JPEGs are decoded at the smallest DCT scale that keeps at least this size
QUERY_CHUNK = 8192  # pool rows per faiss query
PCA_DIM = 96  # candidate search in this many principal components of the thumbnails
PCA_SAMPLE = 20000  # thumbnails that fit the PCA
PCA_MIN_ROWS = 4 * PCA_DIM  # fewer: search the full thumbnails


class LeakageError(OptidelError):
    """A leakage check that cannot run (no test images, unreadable cache); ``exit_code`` 2."""

    exit_code = 2


@dataclass(frozen=True)
class LeakageThresholds:
    """When a pool image counts as a near duplicate of a test image (see the module docstring).

    Attributes:
        cosine_min: thumbnail cosine at or above which a pair is a candidate. Measured on the shared data
            (``benchmarks/leakage_thresholds.py``): a test image's nearest train image reaches at most 0.956
            (Kvasir-SEG), 0.940 (PolypGen), 0.920 (Kvasir-SEG test vs PolypGen train); JPEG re-encodings (quality
            60, 85) and 0.6x / 0.4x resizes of the test images stay at or above 0.9987.
        hamming_max: perceptual-hash bits (of 64) that may differ for a candidate to count. The same copies differ
            in at most 4 bits; nearest non-duplicates in 6 or more, so the hash alone would have no margin: it only
            confirms a cosine candidate (a colour-alike frame with another structure is rejected).
        fine_hamming_max: bits (of 256) of the finer perceptual hash that may differ. Needed where whole images
            look alike at 16 px: DRIVE's 20 train and 20 test fundus photographs (different eyes) give 84 pairs
            with cosine >= 0.98 and 64-bit distance 2-12, but 256-bit distances of 24 or more; the JPEG/resized
            copies above (and of DRIVE's test images) differ in at most 16 of 256 bits. A narrow margin: raise it
            only with a check like benchmarks/leakage_thresholds.py on the new kind of images.
        cosine_sure: a candidate at least this close counts whatever the 256-bit hash says: on smooth images
            (little fine structure) a re-encoding flips many fine DCT bits (64-70 of 256 on the tests' synthetic
            blobs) while the thumbnail cosine stays ~0.9996. The measured copies stay at or above 0.9987, DRIVE's
            closest non-duplicates at or below 0.9947.
    """

    cosine_min: float = 0.98
    hamming_max: int = 12
    fine_hamming_max: int = 20
    cosine_sure: float = 0.998


@dataclass
class Fingerprints:
    """Fingerprints of a list of images (row i = ``paths[i]``).

    Attributes:
        paths: the image files.
        sha1: (n,) hex digests of the file bytes ("" when unreadable).
        phash: (n, 8) uint8 packed 64-bit perceptual hashes; phash_fine: (n, 32) uint8 packed 256-bit ones.
        thumb: (n, 768) float32 unit-norm thumbnails (zeros for an unreadable or flat image).
        ok: (n,) bool, decoded.
    """

    paths: list[str]
    sha1: list[str]
    phash: np.ndarray
    thumb: np.ndarray
    ok: np.ndarray
    phash_fine: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)


def _decode_small(data: bytes, path: Path) -> Image.Image:
    """The image at a reduced scale when the format allows (JPEG draft), else full; RGB. Other formats fall back
    to :func:`optidel.data.image.load_rgb` (16-bit, TIFF ...)."""
    try:
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
        return im.convert("RGB")
    except Exception:
        from optidel.data.image import load_rgb

        return Image.fromarray(load_rgb(path))


def fingerprint_image(path: str | Path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """(sha1 of the bytes, (8,) packed phash, (768,) float32 unit-norm thumbnail, (32,) packed 256-bit phash).

    An item inside a file (a locator: volume slice, video frame, slide tile) is decoded by
    :func:`optidel.data.image.load_rgb` and its sha1 is that of its decoded pixels.

    Raises:
        OSError or optidel.data.image.ImageDecodeError: the file cannot be read or decoded.
    """
    import imagehash

    from optidel.data.sources.locator import is_locator

    path = Path(path)
    if is_locator(path):  # an item inside a file (slice, frame, tile): hash its decoded pixels
        from optidel.data.image import load_rgb

        arr = load_rgb(path)
        sha1 = hashlib.sha1(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()
        im = Image.fromarray(arr)
    else:
        data = path.read_bytes()
        sha1 = hashlib.sha1(data).hexdigest()
        im = _decode_small(data, path)
    ph = np.packbits(np.asarray(imagehash.phash(im).hash, bool).ravel())
    fine = np.packbits(np.asarray(imagehash.phash(im, hash_size=16).hash, bool).ravel())
    t = np.asarray(im.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX), np.float32).ravel()
    t -= t.mean()
    norm = float(np.linalg.norm(t))
    return sha1, ph, (t / norm if norm > 1e-6 else np.zeros_like(t)), fine


def _list_key(paths: Sequence[str | Path]) -> str:
    from optidel.data.sources.locator import real_file

    h = hashlib.sha1(b"leakage-fp-v2")
    for p in paths:
        try:
            st = real_file(p).stat()
            sig = f"{real_file(p).resolve()}\t{st.st_size}\t{st.st_mtime_ns}"
        except OSError:
            sig = "missing"
        h.update(f"{p}\t{sig}\n".encode())
    return h.hexdigest()[:16]


def fingerprint_images(
    paths: Sequence[str | Path],
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    description: str = "fingerprints",
) -> Fingerprints:
    """Fingerprints of many images, decoded by ``workers`` threads (PIL releases the GIL while decoding).

    Args:
        paths: image files (an unreadable one is logged and gets ``ok = False``).
        workers: threads; None = ``min(4, cores)``.
        cache_dir: keep the result in ``cache_dir/leakage-fp-<key>.npz`` (key: every path, size, mtime).
        description: progress-bar label.
    """
    paths = [str(p) for p in paths]
    cache = None
    if cache_dir is not None and paths:
        cache = Path(cache_dir) / f"leakage-fp-{_list_key(paths)}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return Fingerprints(
                    paths, z["sha1"].tolist(), z["phash"], z["thumb"], z["ok"], z["phash_fine"]
                )
    n = len(paths)
    sha1 = [""] * n
    phash = np.zeros((n, HASH_BYTES), np.uint8)
    thumb = np.zeros((n, THUMB_DIM), np.float32)
    ok = np.zeros(n, bool)
    fine = np.zeros((n, FINE_HASH_BYTES), np.uint8)

    def one(i: int) -> tuple[int, Any]:
        try:
            return i, fingerprint_image(paths[i])
        except Exception as e:  # an unreadable file is reported, never fatal
            return i, e

    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as ex:
        for i, res in track(ex.map(one, range(n)), description, total=n):
            if isinstance(res, Exception):
                logger.warning("leakage: cannot read %s (%s); it is not checked", paths[i], res)
                continue
            sha1[i], phash[i], thumb[i], fine[i] = res
            ok[i] = True
    fp = Fingerprints(paths, sha1, phash, thumb, ok, fine)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cache, "wb") as f:
            np.savez(f, sha1=np.asarray(sha1), phash=phash, thumb=thumb, ok=ok, phash_fine=fine)
    return fp


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distances of packed hashes: a (n, B), b (n, B) uint8 -> (n,) int."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1).astype(np.int64)


@dataclass
class LeakPairs:
    """Pool-test pairs that are duplicates (one row per pair, sorted by pool row then test row).

    Attributes:
        pool: (m,) int64 pool rows; test: (m,) int64 test rows.
        kind: (m,) ``exact`` (same bytes) or ``near``.
        cosine: (m,) thumbnail cosine; hamming: (m,) 64-bit and fine_hamming: (m,) 256-bit hash distances.
    """

    pool: np.ndarray
    test: np.ndarray
    kind: list[str]
    cosine: np.ndarray
    hamming: np.ndarray
    thresholds: LeakageThresholds = field(default_factory=LeakageThresholds)
    fine_hamming: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.pool.size)

    def leaking_pool_rows(self) -> np.ndarray:
        """Sorted unique pool rows that duplicate some test image."""
        return np.unique(self.pool)


def _projection(pool: np.ndarray, test: np.ndarray) -> tuple[Any, int]:
    """An orthonormal PCA projection of the thumbnails to ``PCA_DIM`` dims (faiss), for the candidate search.

    A projection onto orthonormal directions never lengthens a difference, so every pair within the L2 radius in
    full space is within it after projection: the search in the small space finds a superset of the candidates
    (no duplicate is lost), ~8x cheaper than in 768 dims; the exact cosine is then checked on the full thumbnails.
    Small problems (fewer than ``PCA_MIN_ROWS`` rows to fit it) search the full thumbnails.
    """
    import faiss

    rng = np.random.default_rng(0)
    sample = np.concatenate([test, pool[rng.choice(len(pool), min(len(pool), PCA_SAMPLE), replace=False)]])
    if sample.shape[0] < PCA_MIN_ROWS:
        return (lambda x: np.ascontiguousarray(x, np.float32)), THUMB_DIM
    pca = faiss.PCAMatrix(THUMB_DIM, PCA_DIM)
    pca.train(np.ascontiguousarray(sample[:PCA_SAMPLE], np.float32))
    return (lambda x: pca.apply(np.ascontiguousarray(x, np.float32))), PCA_DIM


def find_leaks(
    pool: Fingerprints, test: Fingerprints, thresholds: LeakageThresholds | None = None
) -> LeakPairs:
    """Every (pool, test) pair that is an exact or near duplicate (see the module docstring).

    Args:
        pool, test: fingerprints (:func:`fingerprint_images`).
        thresholds: the near-duplicate rule; default :class:`LeakageThresholds`.
    """
    import faiss

    thr = thresholds or LeakageThresholds()
    pairs: dict[tuple[int, int], str] = {}
    by_sha: dict[str, list[int]] = {}
    for j, s in enumerate(test.sha1):
        if s:
            by_sha.setdefault(s, []).append(j)
    for i, s in enumerate(pool.sha1):
        for j in by_sha.get(s, []) if s else []:
            pairs[(i, j)] = "exact"
    t_ok = np.flatnonzero(test.ok)
    p_ok = np.flatnonzero(pool.ok)
    if t_ok.size and p_ok.size:
        project, dim = _projection(pool.thumb[p_ok], test.thumb[t_ok])
        index = faiss.IndexFlatL2(dim)
        index.add(project(test.thumb[t_ok]))
        radius = 2.0 * (1.0 - thr.cosine_min) + 1e-5  # unit vectors: cos >= c  <=>  |x - y|^2 <= 2 (1 - c)
        for lo in range(0, p_ok.size, QUERY_CHUNK):
            rows = p_ok[lo : lo + QUERY_CHUNK]
            lims, _, idx = index.range_search(project(pool.thumb[rows]), radius)
            qi = np.repeat(rows, np.diff(lims).astype(np.int64))
            tj = t_ok[idx]
            cos = np.einsum("ij,ij->i", pool.thumb[qi], test.thumb[tj])  # exact, on the full thumbnails
            close = (cos >= thr.cosine_min) & (hamming(pool.phash[qi], test.phash[tj]) <= thr.hamming_max)
            if pool.phash_fine is not None and test.phash_fine is not None:
                fine = hamming(pool.phash_fine[qi], test.phash_fine[tj])
                close &= (fine <= thr.fine_hamming_max) | (cos >= thr.cosine_sure)
            for i, j in zip(qi[close].tolist(), tj[close].tolist(), strict=True):
                pairs.setdefault((i, j), "near")
    keys = sorted(pairs)
    pi = np.asarray([k[0] for k in keys], np.int64)
    tj = np.asarray([k[1] for k in keys], np.int64)
    cos = (pool.thumb[pi] * test.thumb[tj]).sum(axis=1) if keys else np.zeros(0, np.float32)
    ham = hamming(pool.phash[pi], test.phash[tj]) if keys else np.zeros(0, np.int64)
    fine = None
    if pool.phash_fine is not None and test.phash_fine is not None:
        fine = hamming(pool.phash_fine[pi], test.phash_fine[tj]) if keys else np.zeros(0, np.int64)
    return LeakPairs(pi, tj, [pairs[k] for k in keys], cos.astype(np.float32), ham, thr, fine)


def nearest_distances(pool: Fingerprints, test: Fingerprints) -> dict[str, np.ndarray]:
    """For every test image: the highest thumbnail cosine and the smallest hamming distance to any pool image.

    The distribution over true non-duplicates (a dataset's train vs its test split) is what the thresholds must
    clear with a margin (``benchmarks/leakage_thresholds.py``). Returns ``{"cosine", "hamming", "fine_hamming"}``,
    each (n_test,) (each minimum over the pool on its own, not over one pair).
    """
    import faiss

    ip = faiss.IndexFlatIP(THUMB_DIM)
    ip.add(np.ascontiguousarray(pool.thumb, np.float32))
    cos, _ = ip.search(np.ascontiguousarray(test.thumb, np.float32), 1)
    bi = faiss.IndexBinaryFlat(HASH_BYTES * 8)
    bi.add(np.ascontiguousarray(pool.phash))
    ham, _ = bi.search(np.ascontiguousarray(test.phash), 1)
    out = {"cosine": cos[:, 0], "hamming": ham[:, 0].astype(np.int64)}
    if pool.phash_fine is not None and test.phash_fine is not None:
        bf = faiss.IndexBinaryFlat(FINE_HASH_BYTES * 8)
        bf.add(np.ascontiguousarray(pool.phash_fine))
        fh, _ = bf.search(np.ascontiguousarray(test.phash_fine), 1)
        out["fine_hamming"] = fh[:, 0].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------------------- outputs
def write_leak_table(
    path: str | Path,
    pairs: LeakPairs,
    pool_ids: Sequence[str],
    pool: Fingerprints,
    test_ids: Sequence[str],
    test: Fingerprints,
) -> Path:
    """``leaks.csv``: one row per pair (pool uid and path, test uid and path, kind, cosine, hamming)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["pool_image", "pool_path", "test_image", "test_path", "kind", "cosine", "hamming", "hamming_256"]
    )
    fine = pairs.fine_hamming if pairs.fine_hamming is not None else np.full(len(pairs), -1)
    rows = zip(pairs.pool, pairs.test, pairs.kind, pairs.cosine, pairs.hamming, fine, strict=True)
    for i, j, k, c, h, f in rows:
        w.writerow([pool_ids[i], pool.paths[i], test_ids[j], test.paths[j], k, f"{c:.4f}", int(h), int(f)])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _thumb_png(path: str, side: int) -> bytes:
    with Image.open(path) as im:
        im.draft("RGB", (side, side))
        im = im.convert("RGB")
        im.thumbnail((side, side))
        out = io.BytesIO()
        im.save(out, format="PNG")
        return out.getvalue()


def write_gallery(
    out_dir: str | Path,
    pairs: LeakPairs,
    pool_ids: Sequence[str],
    pool: Fingerprints,
    test_ids: Sequence[str],
    test: Fingerprints,
    max_pairs: int = 200,
) -> list[Path]:
    """``gallery.html`` (self-contained, up to ``max_pairs`` pairs side by side) and ``gallery.png`` (first 40:
    pool image left, test image right)."""
    import base64
    import html

    out_dir = Path(out_dir)
    rows = []
    shown = min(len(pairs), max_pairs)
    for r in range(shown):
        i, j = int(pairs.pool[r]), int(pairs.test[r])
        imgs = []
        for p in (pool.paths[i], test.paths[j]):
            try:
                b64 = base64.b64encode(_thumb_png(p, 160)).decode()
                imgs.append(f'<img src="data:image/png;base64,{b64}">')
            except Exception:
                imgs.append("(unreadable)")
        cap = f"{pairs.kind[r]} cos {pairs.cosine[r]:.3f} hamming {int(pairs.hamming[r])}"
        rows.append(
            f"<tr><td>{imgs[0]}<br>{html.escape(pool_ids[i])}</td><td>{imgs[1]}<br>{html.escape(test_ids[j])}</td>"
            f"<td>{cap}</td></tr>"
        )
    more = f"<p>{len(pairs) - shown} more pairs in leaks.csv</p>" if len(pairs) > shown else ""
    page = (
        "<!doctype html><meta charset='utf-8'><title>optidel leakage</title>"
        f"<h1>Pool images that duplicate a test image: {len(pairs)} pairs</h1>"
        f"<p>near: thumbnail cosine &ge; {pairs.thresholds.cosine_min}, 64-bit perceptual-hash distance &le; "
        f"{pairs.thresholds.hamming_max} and (256-bit &le; {pairs.thresholds.fine_hamming_max} or cosine &ge; "
        f"{pairs.thresholds.cosine_sure}); exact: same file bytes.</p>"
        "<table border=1 cellpadding=4><tr><th>pool image</th><th>test image</th><th>match</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )
    written = [out_dir / "gallery.html"]
    atomic_write_text(written[0], page)
    if len(pairs):
        written.append(_gallery_png(out_dir / "gallery.png", pairs, pool, test, min(40, len(pairs))))
    else:
        (out_dir / "gallery.png").unlink(missing_ok=True)
    return written


def _gallery_png(path: Path, pairs: LeakPairs, pool: Fingerprints, test: Fingerprints, n: int) -> Path:
    """The first ``n`` pairs, one row each: pool image | test image, 160 px, with the match written above them."""
    from PIL import ImageDraw

    side, cap = 160, 14
    sheet = Image.new("RGB", (2 * side + 12, n * (side + cap + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    for r in range(n):
        y = r * (side + cap + 6)
        draw.text(
            (4, y + 1),
            f"{pairs.kind[r]}  cos {pairs.cosine[r]:.3f}  ham {int(pairs.hamming[r])}",
            fill="black",
        )
        for c, p in enumerate((pool.paths[int(pairs.pool[r])], test.paths[int(pairs.test[r])])):
            try:
                sheet.paste(Image.open(io.BytesIO(_thumb_png(p, side))), (4 + c * (side + 4), y + cap))
            except Exception:
                draw.text((4 + c * (side + 4), y + cap + 40), "(unreadable)", fill="red")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------- the guard
def downstream_test_splits(pool_sources: Sequence[str | Path]) -> list[str]:
    """``PATH:test`` of every pool source that is a segmentation dataset with a test split (unless the source is
    that test split itself): the test sets a pool made of ``DATASET:train`` must not leak into."""
    from optidel.data.pool import parse_source
    from optidel.data.segmentation import is_seg_dataset, load_seg_dataset

    out: list[str] = []
    for s in pool_sources:
        src = parse_source(s)
        if src.split in ("test", "all") or not is_seg_dataset(src.path):
            continue
        if "test" in load_seg_dataset(src.path, check_sizes=False).split_counts():
            t = f"{src.path}:test"
            if t not in out:
                out.append(t)
    return out


@dataclass
class LeakageCheck:
    """A pool checked against test splits.

    Attributes:
        against: the test sources checked; pool_ids, test_ids: uids of the rows of ``pool_fp`` / ``test_fp``.
        pairs: the duplicate pairs (rows index ``pool_ids`` / ``test_ids``).
    """

    against: list[str]
    pool_ids: list[str]
    test_ids: list[str]
    pool_fp: Fingerprints
    test_fp: Fingerprints
    pairs: LeakPairs

    def leaking(self) -> np.ndarray:
        """(n_pool,) bool: the pool image duplicates some test image."""
        mask = np.zeros(len(self.pool_ids), bool)
        mask[self.pairs.leaking_pool_rows()] = True
        return mask

    def summary(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "n_pool_images": len(self.pool_ids),
            "n_test_images": len(self.test_ids),
            "n_pairs": len(self.pairs),
            "n_exact_pairs": self.pairs.kind.count("exact"),
            "n_leaking_pool_images": int(self.leaking().sum()),
            "unreadable_pool_images": int((~self.pool_fp.ok).sum()),
            "unreadable_test_images": int((~self.test_fp.ok).sum()),
            "thresholds": dataclasses.asdict(self.pairs.thresholds),
        }


def check_pool(
    pool_ids: Sequence[str],
    pool_paths: Sequence[str | Path],
    against: Sequence[str | Path],
    thresholds: LeakageThresholds | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> LeakageCheck:
    """Fingerprint a pool and the ``against`` test sources (``DATASET:test``, folders) and find the duplicates.

    Raises:
        LeakageError: an ``against`` source cannot be listed or holds no image.
    """
    from optidel.data.pool import PoolError, list_pool

    if not against:
        raise LeakageError("leakage: no test split to check against (give --against DATASET:test)")
    try:
        tests = list_pool([str(a) for a in against])
    except (PoolError, FileNotFoundError) as e:
        raise LeakageError(f"leakage: {e}") from e
    pool_fp = fingerprint_images(pool_paths, workers, cache_dir, "leakage: pool fingerprints")
    test_fp = fingerprint_images([t.path for t in tests], workers, cache_dir, "leakage: test fingerprints")
    pairs = find_leaks(pool_fp, test_fp, thresholds)
    check = LeakageCheck(
        [str(a) for a in against], list(pool_ids), [t.uid for t in tests], pool_fp, test_fp, pairs
    )
    logger.info(
        "leakage: %d of %d pool images duplicate one of %d test images (%s)",
        int(check.leaking().sum()),
        len(pool_ids),
        len(tests),
        ", ".join(check.against),
    )
    return check


def write_check(out_dir: str | Path, check: LeakageCheck) -> dict[str, Any]:
    """``leaks.csv``, ``gallery.html`` / ``gallery.png`` and ``summary.json`` of a check into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_leak_table(
        out / "leaks.csv", check.pairs, check.pool_ids, check.pool_fp, check.test_ids, check.test_fp
    )
    write_gallery(out, check.pairs, check.pool_ids, check.pool_fp, check.test_ids, check.test_fp)
    summary = check.summary()
    write_summary(out / "summary.json", summary)
    return summary
