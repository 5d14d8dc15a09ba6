"""k-means: default k, cluster recovery on a separable mixture, exact nearest/second-nearest distances, memmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optidel.metrics.embedding import l2_normalize
from optidel.select.config import default_k
from optidel.select.rank.cluster import assign, run_kmeans, sample_rows


def mixture(n_per: int, centers: np.ndarray, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(centers)), n_per)
    x = centers[labels] + noise * rng.normal(size=(labels.size, centers.shape[1]))
    perm = rng.permutation(labels.size)
    return x[perm].astype(np.float32), labels[perm]


def test_default_k_rule() -> None:
    assert default_k(0) == 2 and default_k(3) == 2
    assert default_k(31_250) == 125  # sqrt(31250 / 2) = 125
    assert default_k(2_000_000) == 1000 and default_k(10**8) == 1000


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_recovers_well_separated_clusters(distance: str) -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 16)) * 10
    x, labels = mixture(150, centers, 0.3)
    res = run_kmeans(x, 6, distance=distance, niter=20, seed=0)
    # each found cluster holds exactly one true cluster (purity 1) and all six are found
    for c in range(6):
        members = labels[res.cluster == c]
        assert members.size > 0 and np.all(members == members[0])
    assert len(np.unique(res.cluster)) == 6
    assert np.all(res.d2 >= res.d1)
    if distance == "cosine":
        assert np.allclose(np.linalg.norm(res.centroids, axis=1), 1, atol=1e-4)
        assert res.d1.min() >= -1e-5 and res.d2.max() <= 2 + 1e-5


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_assign_matches_brute_force(distance: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    c = rng.normal(size=(5, 8)).astype(np.float32)
    if distance == "cosine":
        c = l2_normalize(c)
        d = 1 - l2_normalize(x) @ c.T
    else:
        d = np.linalg.norm(x[:, None, :] - c[None], axis=2)
    cluster, d1, d2 = assign(x, c, distance, chunk=64)  # several chunks
    srt = np.sort(d, axis=1)
    assert np.array_equal(cluster, d.argmin(axis=1))
    assert np.allclose(d1, srt[:, 0], atol=1e-4) and np.allclose(d2, srt[:, 1], atol=1e-4)


def test_memmap_input_and_determinism(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 12)) * 5
    x, _ = mixture(100, centers, 0.5)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    a = run_kmeans(mm, 4, seed=7, points_per_centroid=50)  # trains on a 200-row sample
    b = run_kmeans(x, 4, seed=7, points_per_centroid=50)
    assert np.array_equal(a.cluster, b.cluster) and np.allclose(a.d1, b.d1)


def test_sample_rows_and_errors() -> None:
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    s = sample_rows(x, 5, np.random.default_rng(0))
    assert s.shape == (5, 2) and np.all(np.diff(s[:, 0]) > 0)  # distinct rows, read in order
    assert sample_rows(x, 50, np.random.default_rng(0)).shape == (20, 2)
    with pytest.raises(ValueError, match="at least k"):
        run_kmeans(x[:3], 5)
