"""V-information of a selected set: I_V(X -> Y) with Y from a source other than the one that defines hardness.

Xu et al. (2020) define, for a predictive family ``V``, the predictive conditional V-entropy
``H_V(Y|X) = inf_{f in V} E[-log f[X](Y)]``, the same with no side information ``H_V(Y|0)``, and the V-information
``I_V(X -> Y) = H_V(Y|0) - H_V(Y|X)``. OptiDEL argues that a good compact set has high V-information: diverse samples
raise ``H_V(Y|0)`` and hard samples change ``H_V(Y|X)``.

The estimator here (all quantities in nats; ``*_bits`` divide by ``ln 2``):

* ``X``: the patches' foundation-model embeddings (the representation the selection scored).
* ``Y``, one of (see docs/theory.md for why the choice matters):

  - ``lesion``: downstream labels, where the pool has masks: the share of the patch box covered by the lesion
    mask, in three bins (:func:`optidel.metrics.vinfo_labels.lesion_labels`);
  - ``lowlevel``: k-means pseudo-labels (k = 10) of low-level colour and texture statistics of the patch pixels
    (:func:`optidel.metrics.vinfo_labels.lowlevel_features`) - a representation different from the one scored;
  - ``embedding``: k-means pseudo-labels of the same embeddings X (:func:`pseudo_labels`). **Circular** for a
    margin- or prototype-hard set: its hardness is the distance to those very centroids, so hard patches are hard
    to label by construction. Kept for comparison only.

* ``V`` for ``H_V(Y|X)``: multinomial logistic regression on standardised features with a fixed L2 penalty
  (``C = 1`` by default), i.e. linear probes. A class missing from a fold's training part gets the Laplace floor
  ``1 / (n_train + k)`` and the probe's probabilities are scaled to make room for it.
* ``V`` for ``H_V(Y|0)``: the best constant predictor, the label marginal with Laplace smoothing
  ``(count_c + 1) / (n_train + k)``.
* Both are cross-fitted: k folds (stratified when every class has enough members), the model is fitted on k-1 folds
  and scored on the held-out fold, so neither entropy is the optimistic training loss. The finite-sample estimate can
  therefore fall slightly below 0 or (rarely) above ``log k``.

Whether ``I_V`` predicts downstream value is an empirical question: :func:`vinfo_miou_rank_correlation` gives
Spearman's rho between the sets' ``I_V`` and their arms' mIoU with a bootstrap interval over arms (benchmark tables).

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
    from threadpoolctl import threadpool_limits

    seen = np.unique(y_train)
    floor = 1.0 / (len(y_train) + k)
    out = np.full((x_test.shape[0], k), math.log(floor))
    if seen.size == 1:  # the probe can only predict the one class it saw
        out[:, seen[0]] = math.log(1.0 - floor * (k - 1))
        return out
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs")
    # one BLAS thread: these fits are tiny, and threads contending for busy cores made each one ~7x slower here
    with warnings.catch_warnings(), threadpool_limits(limits=1):
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


def compare_labelled(
    set_features: np.ndarray,
    set_labels: np.ndarray,
    pool_features: np.ndarray,
    pool_labels: np.ndarray,
    n_classes: int,
    n_random: int = 20,
    seed: int = 0,
    folds: int = 5,
    C: float = 1.0,
    n_boot: int = 1000,
) -> VInfoComparison:
    """``I_V(X -> Y)`` of the selected set vs random pool subsets of the same size, for labels given per row.

    Args:
        set_features: (n, D) and set_labels: (n,) int in ``[0, n_classes)``: the selected set.
        pool_features: (m, D) and pool_labels: (m,): the pool (random subsets are drawn from its rows).
        n_classes: k, the same for the set and the subsets.
        n_random, seed, folds, C, n_boot: see :func:`compare_with_random`.
    """
    pool = np.asarray(pool_features)
    sfeat = np.asarray(set_features)
    n = sfeat.shape[0]
    if n > pool.shape[0]:
        raise ValueError(f"the set ({n}) is larger than the pool ({pool.shape[0]})")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    set_est = estimate_vinfo(sfeat, set_labels, n_classes=n_classes, folds=folds, C=C, seed=seed)
    set_ci = _bootstrap_interval(set_est, n_boot, rng)
    rand = []
    for _ in range(n_random):
        idx = np.sort(rng.choice(pool.shape[0], size=n, replace=False))
        rand.append(
            estimate_vinfo(pool[idx], pool_labels[idx], n_classes=n_classes, folds=folds, C=C, seed=seed)
        )
    vals = np.array([e.vinfo for e in rand])
    rand_iv = (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))
    verdict = _verdict(set_est.vinfo, set_ci, float(vals.mean()), rand_iv)
    return VInfoComparison(set_est, set_ci, rand, rand_iv, verdict)


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
    """``I_V`` of the selected set vs random subsets of the pool, Y = k-means pseudo-labels of the same features.

    Circular when the set was chosen by its distances to k-means centroids of these features (module docstring);
    :func:`compare_labelled` takes labels from another source.

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
    _, assign = labeller if labeller is not None else pseudo_labels(pool, k, seed=seed)
    return compare_labelled(sfeat, assign(sfeat), pool, assign(pool), k, n_random, seed, folds, C, n_boot)


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


@dataclasses.dataclass(frozen=True)
class LabelSource:
    """Y for a V-information estimate, given per row of the set and of the pool.

    Attributes:
        name: ``lesion``, ``lowlevel``, ``embedding`` ...; description: one line for the report (what Y is).
        set_labels: (n,) int; pool_labels: (m,) int, both in ``[0, k)``.
        k: number of classes; circular: True when Y is built from the quantity that defines hardness.
    """

    name: str
    description: str
    set_labels: np.ndarray
    pool_labels: np.ndarray
    k: int
    circular: bool = False


def vinfo_report(
    set_embeddings: np.ndarray | str | Path,
    pool_embeddings: np.ndarray | str | Path,
    k: int = 10,
    n_random: int = 20,
    seed: int = 0,
    folds: int = 5,
    C: float = 1.0,
    labels: LabelSource | None = None,
) -> dict[str, Any]:
    """A JSON-able V-information report of a set against its pool (writes nothing).

    Args:
        set_embeddings: (n, D) array or ``.npy`` path: the selected set (X).
        pool_embeddings: (m, D) array or ``.npy`` path: the reference pool.
        k, n_random, seed, folds, C: see :func:`compare_with_random`.
        labels: Y per row (:class:`LabelSource`); None = k-means pseudo-labels of the embeddings themselves
            (``embedding``, circular for a margin- or prototype-hard set).

    Returns:
        ``{"estimator": ..., "set": ..., "random": ..., "verdict": ...}`` (nats and bits); ``estimator`` names Y
        (``label_source``, ``labels``, ``circular``) and the family V.
    """
    sfeat = as_embedding_array(set_embeddings)
    pool = as_embedding_array(pool_embeddings)
    if sfeat.shape[1] != pool.shape[1]:
        raise ValueError(f"set embeddings have D={sfeat.shape[1]} but pool embeddings D={pool.shape[1]}")
    if labels is None:
        _, assign = pseudo_labels(pool, k, seed=seed)
        labels = LabelSource(
            "embedding",
            f"faiss k-means (k-means++ init) pseudo-labels of the same embeddings, fitted on the pool, k={k}",
            assign(sfeat),
            assign(pool),
            k,
            circular=True,
        )
    cmp = compare_labelled(
        sfeat, labels.set_labels, pool, labels.pool_labels, labels.k, n_random, seed, folds, C
    )
    return {
        "estimator": {
            "reference": "Xu et al. ICLR 2020, I_V = H_V(Y|0) - H_V(Y|X)",
            "label_source": labels.name,
            "labels": labels.description,
            "circular": labels.circular,
            "k": labels.k,
            "family": f"multinomial logistic regression on standardised embeddings X, L2 with C={C}; "
            "constant = Laplace-smoothed marginal",
            "cross_fitting_folds": folds,
            "seed": seed,
            "n_set": int(sfeat.shape[0]),
            "n_pool": int(pool.shape[0]),
        },
    } | cmp.to_dict()


# ---------------------------------------------------------------------------------------------------- across arms
# Below this many arms the percentile bootstrap over arms is not reported: n arms have C(2n-1, n) distinct resamples
# (10 for 3 arms, 126 for 5, 462 for 6), many of them constant, so its "interval" mostly repeats the point estimate.
MIN_ARMS_FOR_INTERVAL = 6


@dataclasses.dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between two per-arm quantities, with a percentile bootstrap interval over arms.

    Attributes:
        rho: Spearman's rank correlation (NaN when a quantity is constant); ci: (low, high) at ``level``;
        n: arms; n_boot: bootstrap replicates (resampling arms with replacement; degenerate replicates skipped).
    """

    rho: float
    ci: tuple[float, float]
    n: int
    n_boot: int
    level: float = 0.95

    def __str__(self) -> str:
        if self.n < MIN_ARMS_FOR_INTERVAL:
            return (
                f"rho = {self.rho:.2f} (n = {self.n} arms; no interval: a bootstrap over fewer than "
                f"{MIN_ARMS_FOR_INTERVAL} arms has too few distinct resamples)"
            )
        return (
            f"rho = {self.rho:.2f} ({100 * self.level:.0f}% bootstrap CI {self.ci[0]:.2f} to {self.ci[1]:.2f}, "
            f"n = {self.n} arms)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rho": self.rho, "ci": list(self.ci), "n": self.n, "n_boot": self.n_boot, "level": self.level}


def vinfo_miou_rank_correlation(
    vinfo: Any, miou: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> RankCorrelation:
    """Does a set's ``I_V`` rank the benchmark's arms the way their downstream mIoU does?

    Args:
        vinfo: (n,) per-arm ``I_V`` estimates (one per selected set: method x ratio x seed).
        miou: (n,) the same arms' mIoU on one dataset (same order).
        n_boot: bootstrap replicates over arms; seed: their generator; level: interval coverage.
    Returns:
        :class:`RankCorrelation` (``str()`` is one line for a table); with fewer than ``MIN_ARMS_FOR_INTERVAL`` arms
        its ``ci`` is (NaN, NaN) and ``n_boot`` 0: no interval is claimed.

    Raises:
        ValueError: fewer than 3 arms, or the two lengths differ.
    """
    x = np.asarray(vinfo, np.float64)
    y = np.asarray(miou, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"vinfo and miou must be two (n,) arrays of the same length; got {x.shape}, {y.shape}"
        )
    if x.size < 3:
        raise ValueError(f"a rank correlation needs at least 3 arms, got {x.size}")

    if x.size < MIN_ARMS_FOR_INTERVAL:
        return RankCorrelation(
            float(_spearman_rows(x[None], y[None])[0]), (math.nan, math.nan), int(x.size), 0, level
        )
    rng = np.random.default_rng(seed)
    idx = np.concatenate([np.arange(x.size)[None], rng.integers(0, x.size, (n_boot, x.size))])
    rho_all = _spearman_rows(x[idx], y[idx])  # row 0: the arms as observed; then the bootstrap replicates
    rho = float(rho_all[0])
    reps = rho_all[1:][np.isfinite(rho_all[1:])]
    a = (1 - level) / 2
    ci = (
        (float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a)))
        if reps.size
        else (float("nan"), float("nan"))
    )
    return RankCorrelation(rho, ci, int(x.size), int(reps.size), level)


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of a, b (r, n): Pearson's r of their average ranks (as scipy's spearmanr);
    NaN where a row is constant."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1), np.nan)
