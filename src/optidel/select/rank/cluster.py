"""k-means over patch embeddings that may not fit in RAM: k-means++ seeding, faiss Lloyd iterations, chunked assignment.

faiss's own random initialisation gives poor clusters (2.5x the inertia on 100k x 384, see ENVIRONMENT.md), so the
initial centroids come from k-means++ (Arthur & Vassilvitskii 2007, ``sklearn.cluster.kmeans_plusplus``) on a sample
of at most ``init_sample`` rows, then faiss runs Lloyd iterations on a sample of at most
``points_per_centroid x k`` rows (faiss subsamples to this size anyway; sampling here bounds RAM). The assignment of
every row (nearest and second-nearest centroid) then streams over the memory-mapped embeddings in chunks.

Distances:

- ``cosine`` (default): rows are L2-normalised, k-means is spherical (centroids renormalised every iteration), and
  ``d = 1 - cos(x, c)`` in [0, 2].
- ``l2``: raw rows, Euclidean ``d = ||x - c||``.

- [0] Arthur & Vassilvitskii, k-means++: the advantages of careful seeding, SODA 2007.
- [1] Johnson, Douze & Jegou, Billion-scale similarity search with GPUs (faiss), 2017.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from optidel.log import logger
from optidel.metrics.embedding import l2_normalize

Distance = Literal["cosine", "l2"]
CHUNK_ROWS = 65536


@dataclass
class KMeansResult:
    """Clusters of n embeddings.

    Attributes:
        centroids: (k, D) float32 (unit norm for ``cosine``).
        cluster: (n,) int32, index of the nearest centroid.
        d1: (n,) float32, distance to the nearest centroid.
        d2: (n,) float32, distance to the second-nearest centroid (d2 >= d1).
        distance: ``cosine`` or ``l2``.
        inertia: mean d1 (a quality number for logs and reports).
    """

    centroids: np.ndarray
    cluster: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    distance: Distance
    inertia: float

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def import_faiss() -> Any:
    """``import faiss`` with its OpenMP runtime set to ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set a policy).

    faiss-cpu ships its own libgomp, which reads the policy once, when it is loaded. Spinning (active) waits make
    faiss several times slower on a loaded machine (measured: 5.9 s vs 0.9 s for a k-means on 2 shared cores); the
    variable is removed again right after the import, so torch's own runtime is not affected.
    """
    if "faiss" in sys.modules:
        return sys.modules["faiss"]
    set_here = "OMP_WAIT_POLICY" not in os.environ
    if set_here:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import faiss
    finally:
        if set_here:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return faiss


def faiss_threads(work: float) -> int:
    """Threads for a faiss call of ``work`` multiply-adds: 1 for small jobs (OpenMP start-up and spinning cost
    more than they save there, and it avoids fighting torch's thread pool), else faiss's default."""

    if work < 5e8:
        return 1
    return max(1, min(os.cpu_count() or 1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))


class FaissThreads:
    """Context manager: ``faiss.omp_set_num_threads(n)`` inside, the previous value restored after."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self) -> None:
        faiss = import_faiss()

        self.prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        faiss = import_faiss()

        faiss.omp_set_num_threads(self.prev)


def iter_chunks(n: int, chunk: int = CHUNK_ROWS) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``."""
    for start in range(0, n, chunk):
        yield slice(start, min(n, start + chunk))


def _prepare(x: np.ndarray, distance: Distance) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return l2_normalize(x) if distance == "cosine" else x


def sample_rows(emb: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct rows of ``emb`` (n, D), read in index order (cheap on a memmap); all rows when m >= n."""
    n = emb.shape[0]
    if m >= n:
        return np.asarray(emb, dtype=np.float32)
    idx = np.sort(rng.choice(n, size=m, replace=False))
    return np.asarray(emb[idx], dtype=np.float32)


def kmeans_plusplus_init(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ initial centroids of x: (m, D) -> (k, D) float32 (``sklearn.cluster.kmeans_plusplus``).

    Run in float64 with one BLAS thread: sklearn's float32 path computes distances in upcast chunks, and multi-threaded
    BLAS on its small per-step products spins; both made 20k x 256, k = 707 take 256 s instead of 16 s on 2 loaded
    cores.
    """
    from sklearn.cluster import kmeans_plusplus
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        centers, _ = kmeans_plusplus(np.asarray(x, np.float64), k, random_state=seed % (2**32))
    return np.ascontiguousarray(centers, dtype=np.float32)


def fit_kmeans(
    emb: np.ndarray,
    k: int,
    distance: Distance = "cosine",
    niter: int = 20,
    seed: int = 0,
    init_sample: int = 20000,
    points_per_centroid: int = 256,
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """Centroids of ``emb`` (n, D) (an array or a memmap; only samples are loaded).

    ``stats``, when given, receives ``sample_seconds``, ``init_seconds`` (k-means++), ``train_seconds`` (faiss),
    ``train_rows`` and ``objective``.

    Returns:
        centroids: (k, D) float32.

    Raises:
        ValueError: when there are fewer rows than clusters.
    """
    faiss = import_faiss()

    n, dim = emb.shape
    if k < 1 or n < k:
        raise ValueError(f"k-means needs at least k={k} rows, got {n}")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    train = _prepare(sample_rows(emb, max(k, min(n, points_per_centroid * k)), rng), distance)
    t1 = time.perf_counter()
    m_init = max(init_sample, k)
    init_rows = (
        train
        if train.shape[0] <= m_init
        else train[np.sort(rng.choice(train.shape[0], m_init, replace=False))]
    )
    init = kmeans_plusplus_init(init_rows, k, seed)
    if distance == "cosine":
        init = l2_normalize(init)
    t2 = time.perf_counter()
    km = faiss.Kmeans(
        dim,
        k,
        niter=niter,
        seed=seed % (2**31),
        spherical=distance == "cosine",
        max_points_per_centroid=max(points_per_centroid, (train.shape[0] + k - 1) // k),
        min_points_per_centroid=1,
        verbose=False,
    )
    with FaissThreads(faiss_threads(float(train.shape[0]) * k * dim * niter)):
        km.train(train, init_centroids=init)
    t3 = time.perf_counter()
    objective = float(km.obj[-1]) if len(km.obj) else 0.0
    logger.info(
        "k-means: k=%d, trained on %d of %d rows (sample %.1f s, k-means++ %.1f s, faiss %d iterations %.1f s)",
        k,
        train.shape[0],
        n,
        t1 - t0,
        t2 - t1,
        niter,
        t3 - t2,
    )
    if stats is not None:
        stats.update(
            sample_seconds=t1 - t0,
            init_seconds=t2 - t1,
            train_seconds=t3 - t2,
            train_rows=float(train.shape[0]),
            objective=objective,
        )
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def assign(
    emb: np.ndarray, centroids: np.ndarray, distance: Distance = "cosine", chunk: int = CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest centroid of every row, streamed in chunks.

    Args:
        emb: (n, D) embeddings (array or memmap).
        centroids: (k, D), k >= 2.
    Returns:
        cluster: (n,) int32; d1: (n,) float32; d2: (n,) float32 (see the module docstring for the distances).
    """
    faiss = import_faiss()

    k, dim = centroids.shape
    if k < 2:
        raise ValueError("assign needs at least 2 centroids (d2 is the second-nearest)")
    index = faiss.IndexFlatIP(dim) if distance == "cosine" else faiss.IndexFlatL2(dim)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    n = emb.shape[0]
    cluster = np.empty(n, np.int32)
    d1 = np.empty(n, np.float32)
    d2 = np.empty(n, np.float32)
    threads = faiss_threads(float(min(n, chunk)) * k * dim)
    for sl in iter_chunks(n, chunk):
        x = _prepare(emb[sl], distance)
        with FaissThreads(threads):
            dist, idx = index.search(x, 2)
        dist = 1.0 - dist if distance == "cosine" else np.sqrt(np.maximum(dist, 0.0))
        cluster[sl] = idx[:, 0]
        d1[sl] = dist[:, 0]
        d2[sl] = np.maximum(dist[:, 1], dist[:, 0])
    return cluster, d1, d2


def run_kmeans(
    emb: np.ndarray,
    k: int,
    distance: Distance = "cosine",
    niter: int = 20,
    seed: int = 0,
    init_sample: int = 20000,
    points_per_centroid: int = 256,
    chunk: int = CHUNK_ROWS,
) -> KMeansResult:
    """Fit k-means on ``emb`` (n, D) and assign every row: see :func:`fit_kmeans` and :func:`assign`."""
    centroids = fit_kmeans(emb, k, distance, niter, seed, init_sample, points_per_centroid)
    cluster, d1, d2 = assign(emb, centroids, distance, chunk)
    return KMeansResult(centroids, cluster, d1, d2, distance, float(d1.mean()) if d1.size else 0.0)
