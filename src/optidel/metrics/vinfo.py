"""V-information of a selected set, with k-means pseudo-labels of foundation-model embeddings.

Xu et al. (2020) define, for a predictive family ``V``, the predictive conditional V-entropy
``H_V(Y|X) = inf_{f in V} E[-log f[X](Y)]``, the same with no side information ``H_V(Y|0)``, and the V-information
``I_V(X -> Y) = H_V(Y|0) - H_V(Y|X)``. OptiDEL argues that a good compact set has high V-information: diverse samples
raise ``H_V(Y|0)`` and hard samples change ``H_V(Y|X)``.

The estimator here (all quantities in nats; ``*_bits`` divide by ``ln 2``):

* ``Y``: k-means cluster pseudo-labels of foundation-model embeddings (:func:`pseudo_labels`), fitted once on a
  reference set (the pool) with faiss, starting from k-means++ centroids (``sklearn.cluster.kmeans_plusplus``).
* ``V`` for ``H_V(Y|X)``: multinomial logistic regression on standardised features with a fixed L2 penalty
  (``C = 1`` by default), i.e. linear probes. A class missing from a fold's training part gets the Laplace floor
  ``1 / (n_train + k)`` and the probe's probabilities are scaled to make room for it.
* ``V`` for ``H_V(Y|0)``: the best constant predictor, the label marginal with Laplace smoothing
  ``(count_c + 1) / (n_train + k)``.
* Both are cross-fitted: k folds (stratified when every class has enough members), the model is fitted on k-1 folds
  and scored on the held-out fold, so neither entropy is the optimistic training loss. The finite-sample estimate can
  therefore fall slightly below 0 or (rarely) above ``log k``.

Caveat (see docs/theory.md): measured *on the set itself*, examples near cluster boundaries make the pseudo-label
harder to predict, so a hard set has a *higher* ``H_V(Y|X)`` and, other things equal, a lower ``I_V`` than a set of
cluster centres; a class-balanced (diverse) set has the higher ``H_V(Y|0)``.

References:
    - [0] Xu, Zhao, Song, Stewart, Ermon. A Theory of Usable Information under Computational Constraints. ICLR 2020.
      https://arxiv.org/abs/2002.10689
    - [1] Yang et al. (OptiDEL). https://arxiv.org/abs/2408.07107
    - [2] Arthur, Vassilvitskii. k-means++: the advantages of careful seeding. SODA 2007.

Examples:
    >>> rng = np.random.default_rng(0)
    >>> pool = rng.standard_normal((600, 8)).astype(np.float32) + np.repeat(np.eye(8)[:3] * 6, 200, axis=0)
    >>> centroids, assign = pseudo_labels(pool, k=3, seed=0)
    >>> est = estimate_vinfo(pool[:300], assign(pool[:300]), n_classes=3, seed=0)
    >>> bool(0.0 <= est.vinfo <= np.log(3) + 0.05)
    True
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class VInfoEstimate:
    """A cross-fitted V-information estimate.

    Attributes:
        n: number of examples; k: number of label classes (``log k`` bounds ``H_V(Y|0)``).
        h_y: ``H_V(Y|0)`` in nats (cross-entropy of the Laplace-smoothed marginal on held-out folds).
        h_y_given_x: ``H_V(Y|X)`` in nats (cross-entropy of the linear probe on held-out folds).
        folds: number of cross-fitting folds; C: inverse L2 strength of the probe.
        loss_y, loss_y_given_x: (n,) held-out per-example losses (for bootstrap intervals).
    """

    n: int
    k: int
    h_y: float
    h_y_given_x: float
    folds: int
    C: float
    loss_y: np.ndarray = dataclasses.field(repr=False, compare=False)
    loss_y_given_x: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def vinfo(self) -> float:
        """``I_V(X -> Y) = H_V(Y|0) - H_V(Y|X)`` in nats."""
        return self.h_y - self.h_y_given_x

    @property
    def vinfo_bits(self) -> float:
        return self.vinfo / LN2

    @property
    def h_y_bits(self) -> float:
        return self.h_y / LN2

    @property
    def h_y_given_x_bits(self) -> float:
        return self.h_y_given_x / LN2

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (nats and bits)."""
        return {
            "n": self.n,
            "k": self.k,
            "folds": self.folds,
            "C": self.C,
            "h_y_nats": self.h_y,
            "h_y_given_x_nats": self.h_y_given_x,
            "vinfo_nats": self.vinfo,
            "h_y_bits": self.h_y_bits,
            "h_y_given_x_bits": self.h_y_given_x_bits,
            "vinfo_bits": self.vinfo_bits,
            "log_k_nats": math.log(self.k),
        }


def _folds(labels: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-fitting splits: stratified when every present class has >= n_folds members, else plain shuffled."""
    from sklearn.model_selection import KFold, StratifiedKFold

    _, counts = np.unique(labels, return_counts=True)
    if counts.min() >= n_folds:
        split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(labels, labels)
    else:
        split = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(labels)
    return [(tr, te) for tr, te in split]


def _laplace_marginal(train_labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(train_labels, minlength=k).astype(float)
    return (counts + 1.0) / (counts.sum() + k)


def _probe_log_proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int, C: float, max_iter: int
) -> np.ndarray:
    """Log-probabilities (n_test, k) of a standardised multinomial logistic-regression probe."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    seen = np.unique(y_train)
    floor = 1.0 / (len(y_train) + k)
    out = np.full((x_test.shape[0], k), math.log(floor))
    if seen.size == 1:  # the probe can only predict the one class it saw
        out[:, seen[0]] = math.log(1.0 - floor * (k - 1))
        return out
    scaler = StandardScaler().fit(x_train)
    # the same strictly convex problem either way; Newton is faster while the Hessian ((D+1) k)^2 is small
    solver = "newton-cholesky" if (x_train.shape[1] + 1) * seen.size <= 2000 else "lbfgs"
    clf = LogisticRegression(C=C, max_iter=max_iter, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x_train), y_train)
    logp = clf.predict_log_proba(scaler.transform(x_test))  # (n_test, len(seen))
    room = 1.0 - floor * (k - seen.size)
    out[:, clf.classes_] = logp + math.log(room)
    return out


def estimate_vinfo(
    features_set: np.ndarray,
    labels_set: np.ndarray,
    n_classes: int | None = None,
    folds: int = 5,
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 1000,
) -> VInfoEstimate:
    """Cross-fitted ``I_V(X -> Y)`` of a labelled set, with ``V`` = linear probes (see the module docstring).

    Args:
        features_set: (n, D) features (e.g. foundation-model embeddings of the selected patches).
        labels_set: (n,) int labels in ``[0, n_classes)`` (e.g. :func:`pseudo_labels` clusters).
        n_classes: ``k``; default ``labels_set.max() + 1``. Pass the labeller's k so sets are comparable.
        folds: cross-fitting folds (reduced to ``n`` when the set is tiny).
        C: inverse L2 strength of the logistic regression (fixed, not tuned).
        seed: fold assignment seed.
        max_iter: lbfgs iterations of the probe.

    Returns:
        The estimate (entropies in nats, per-example held-out losses).

    Raises:
        ValueError: on mismatched shapes, fewer than 2 examples, or labels outside ``[0, k)``.
    """
    x = np.asarray(features_set, dtype=np.float64)
    y = np.asarray(labels_set).astype(np.int64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features (n, D) and labels (n,) must align; got {x.shape} and {y.shape}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 examples to cross-fit, got {n}")
    k = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{y.min()}, {y.max()}]")
    n_folds = max(2, min(folds, n))
    loss0 = np.empty(n)
    lossx = np.empty(n)
    for tr, te in _folds(y, n_folds, seed):
        marg = _laplace_marginal(y[tr], k)
        loss0[te] = -np.log(marg[y[te]])
        logp = _probe_log_proba(x[tr], y[tr], x[te], k, C, max_iter)
        lossx[te] = -logp[np.arange(te.size), y[te]]
    return VInfoEstimate(
        n=n,
        k=k,
        h_y=float(loss0.mean()),
        h_y_given_x=float(lossx.mean()),
        folds=n_folds,
        C=C,
        loss_y=loss0,
        loss_y_given_x=lossx,
    )


def pseudo_labels(
    reference_features: np.ndarray, k: int, seed: int = 0, niter: int = 25
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """k-means pseudo-labels fitted on a reference (pool) set: faiss k-means from k-means++ centroids.

    Args:
        reference_features: (m, D) embeddings of the reference set.
        k: number of clusters (``m >= k``).
        seed: seeds k-means++ (sklearn) and faiss's sub-sampling.
        niter: Lloyd iterations.

    Returns:
        centroids: (k, D) float32; assign: ``features (n, D) -> labels (n,) int64`` (nearest centroid, L2).
    """
    import faiss
    from sklearn.cluster import kmeans_plusplus

    x = np.ascontiguousarray(reference_features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"need (m, D) reference features with m >= k={k}; got shape {x.shape}")
    init, _ = kmeans_plusplus(x, n_clusters=k, random_state=seed)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, max_points_per_centroid=1 << 20)
    threads = faiss.omp_get_max_threads()
    if x.shape[0] * k * x.shape[1] < 50_000_000:  # small problems: OpenMP spin-up costs more than it saves
        faiss.omp_set_num_threads(1)
    try:
        km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    centroids = np.array(km.centroids, dtype=np.float32).reshape(k, x.shape[1])
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(centroids)

    def assign(features: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(features, dtype=np.float32)
        _, idx = index.search(q, 1)
        return idx[:, 0].astype(np.int64)

    return centroids, assign


@dataclasses.dataclass(frozen=True)
class VInfoComparison:
    """The selected set's V-information against random subsets of the pool of the same size.

    Attributes:
        set_estimate: the set's estimate; set_interval: 95% bootstrap interval of its ``I_V`` (nats; resampling the
            held-out losses over examples, models not refitted).
        random_estimates: one estimate per random subset; random_interval: 2.5-97.5 percentiles of their ``I_V``.
        verdict: one line.
    """

    set_estimate: VInfoEstimate
    set_interval: tuple[float, float]
    random_estimates: list[VInfoEstimate]
    random_interval: tuple[float, float]
    verdict: str

    @property
    def random_mean(self) -> float:
        return float(np.mean([e.vinfo for e in self.random_estimates]))

    def to_dict(self) -> dict[str, Any]:
        r = self.random_estimates
        return {
            "set": self.set_estimate.to_dict() | {"vinfo_ci95_nats": list(self.set_interval)},
            "random": {
                "n_draws": len(r),
                "vinfo_mean_nats": self.random_mean,
                "vinfo_mean_bits": self.random_mean / LN2,
                "vinfo_p2.5_p97.5_nats": list(self.random_interval),
                "h_y_mean_nats": float(np.mean([e.h_y for e in r])),
                "h_y_given_x_mean_nats": float(np.mean([e.h_y_given_x for e in r])),
            },
            "verdict": self.verdict,
        }


def _bootstrap_interval(est: VInfoEstimate, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    diff = est.loss_y - est.loss_y_given_x
    idx = rng.integers(0, est.n, size=(n_boot, est.n))
    vals = diff[idx].mean(axis=1)
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def _verdict(
    set_iv: float, set_ci: tuple[float, float], rand_mean: float, rand_iv: tuple[float, float]
) -> str:
    head = f"I_V(set) = {set_iv:.3f} nats (95% CI {set_ci[0]:.3f}-{set_ci[1]:.3f}) vs random {rand_mean:.3f} ({rand_iv[0]:.3f}-{rand_iv[1]:.3f})"
    if set_ci[0] > rand_iv[1]:
        return head + ": higher than random subsets of the same size"
    if set_ci[1] < rand_iv[0]:
        return head + ": lower than random subsets of the same size"
    return head + ": not distinguishable from random subsets of the same size"


def compare_with_random(
    set_features: np.ndarray,
    pool_features: np.ndarray,
    k: int = 10,
    n_random: int = 20,
    seed: int = 0,
    folds: int = 5,
    C: float = 1.0,
    n_boot: int = 1000,
    labeller: tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> VInfoComparison:
    """``I_V`` of the selected set vs random subsets of the pool of the same size (same pseudo-labeller, same k).

    Args:
        set_features: (n, D) embeddings of the selected set.
        pool_features: (m, D) embeddings of the pool (fits the pseudo-labeller; random subsets are drawn from it).
        k: k-means clusters (pseudo-label classes).
        n_random: random subsets.
        seed: seeds the labeller, the random subsets, the folds and the bootstrap.
        folds, C: see :func:`estimate_vinfo`.
        n_boot: bootstrap resamples for the set's interval.
        labeller: a ``(centroids, assign)`` from :func:`pseudo_labels` to reuse.

    Returns:
        The comparison, with a one-line verdict.
    """
    pool = np.asarray(pool_features)
    sfeat = np.asarray(set_features)
    n = sfeat.shape[0]
    if n > pool.shape[0]:
        raise ValueError(f"the set ({n}) is larger than the pool ({pool.shape[0]})")
    _, assign = labeller if labeller is not None else pseudo_labels(pool, k, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    set_est = estimate_vinfo(sfeat, assign(sfeat), n_classes=k, folds=folds, C=C, seed=seed)
    set_ci = _bootstrap_interval(set_est, n_boot, rng)
    rand = []
    for _ in range(n_random):
        idx = np.sort(rng.choice(pool.shape[0], size=n, replace=False))
        sub = pool[idx]
        rand.append(estimate_vinfo(sub, assign(sub), n_classes=k, folds=folds, C=C, seed=seed))
    vals = np.array([e.vinfo for e in rand])
    rand_iv = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))
    verdict = _verdict(set_est.vinfo, set_ci, float(vals.mean()), rand_iv)
    return VInfoComparison(set_est, set_ci, rand, rand_iv, verdict)


def as_embedding_array(x: np.ndarray | str | Path) -> np.ndarray:
    """An (n, D) array, or a .npy file of one (checked: exists, 2-D) loaded as float32."""
    if isinstance(x, str | Path):
        path = Path(x)
        if not path.is_file():
            raise FileNotFoundError(f"embeddings file {path} does not exist")
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 2:
            raise ValueError(f"embeddings file {path} holds shape {arr.shape}, expected (n, D)")
        return np.asarray(arr, dtype=np.float32)
    return np.asarray(x)


def vinfo_report(
    set_embeddings: np.ndarray | str | Path,
    pool_embeddings: np.ndarray | str | Path,
    k: int = 10,
    n_random: int = 20,
    seed: int = 0,
    folds: int = 5,
    C: float = 1.0,
) -> dict[str, Any]:
    """A JSON-able V-information report of a set against its pool (writes nothing).

    Args:
        set_embeddings: (n, D) array or ``.npy`` path: the selected set.
        pool_embeddings: (m, D) array or ``.npy`` path: the reference pool.
        k, n_random, seed, folds, C: see :func:`compare_with_random`.

    Returns:
        ``{"estimator": ..., "set": ..., "random": ..., "verdict": ...}`` (nats and bits).
    """
    sfeat = as_embedding_array(set_embeddings)
    pool = as_embedding_array(pool_embeddings)
    if sfeat.shape[1] != pool.shape[1]:
        raise ValueError(f"set embeddings have D={sfeat.shape[1]} but pool embeddings D={pool.shape[1]}")
    cmp = compare_with_random(sfeat, pool, k=k, n_random=n_random, seed=seed, folds=folds, C=C)
    return {
        "estimator": {
            "reference": "Xu et al. ICLR 2020, I_V = H_V(Y|0) - H_V(Y|X)",
            "labels": f"faiss k-means (k-means++ init) pseudo-labels fitted on the pool, k={k}",
            "family": f"multinomial logistic regression on standardised features, L2 with C={C}; constant = Laplace-smoothed marginal",
            "cross_fitting_folds": folds,
            "seed": seed,
            "n_set": int(sfeat.shape[0]),
            "n_pool": int(pool.shape[0]),
        },
    } | cmp.to_dict()
