"""Teacher-student perceptron with probe-based data pruning (the OptiDEL paper's numerical experiments).

The setting of Sorscher et al. (2022), as used by the OptiDEL paper's official notebook: a pool of Gaussian inputs in
``N`` dimensions, a teacher perceptron that labels them, a *probe* direction (coordinate 0) that ranks examples by
difficulty (``|x0|``: small = near the probe's decision boundary = hard), a pruned subset of the pool, and a max-margin
student trained on it. The student's generalisation error is ``arccos(R) / pi`` with ``R`` the cosine between student
and teacher weights: for Gaussian inputs that is exactly the probability that the two disagree on a fresh input.

Layout: examples are rows, ``X: (P, N)`` (the notebook stores the transpose, ``(N, P)``).

References:
    - [0] Sorscher et al. Beyond neural scaling laws: beating power law scaling via data pruning. NeurIPS 2022.
      https://arxiv.org/abs/2206.14486
    - [1] Yang et al. A Self-Supervised Paradigm for Data-Efficient Medical Foundation Model Pre-training:
      V-information Optimization Framework (OptiDEL). https://arxiv.org/abs/2408.07107
    - [2] Lawson, Hanson. Solving Least Squares Problems (1974), ch. 23: least distance programming via NNLS.

Examples:
    >>> rng = np.random.default_rng(0)
    >>> X = make_pool(n_dim=30, n_pool=600, rng=rng)
    >>> w = make_teacher(n_dim=30, theta=np.deg2rad(10), rng=rng)
    >>> keep = prune(X, n_keep=120, strategy="hard", rng=rng)
    >>> student = max_margin(X[keep], label(X[keep], w))
    >>> 0.0 <= student_error(student, w) <= 0.5
    True
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import nnls

Strategy = Literal["hard", "easy", "random"]
STRATEGIES: tuple[str, ...] = ("hard", "easy", "random")


class NotSeparableError(ValueError):
    """The kept examples admit no weight vector with ``y (w . x) >= 1`` (cannot happen for teacher labels)."""


def make_pool(n_dim: int, n_pool: int, rng: np.random.Generator, repeats: int = 1) -> np.ndarray:
    """A pool of Gaussian inputs ``x ~ N(0, I / N)``.

    Args:
        n_dim: input dimension ``N``.
        n_pool: number of examples in the pool (``alpha_t * N``).
        rng: random generator.
        repeats: each distinct example appears this many times (the "redundant" pool): ``n_pool // repeats`` distinct
            examples, each repeated ``repeats`` times (consecutive rows).

    Returns:
        X: (n_pool // repeats * repeats, N) float64.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    n_unique = n_pool // repeats
    X = rng.standard_normal((n_unique, n_dim)) / np.sqrt(n_dim)
    return np.repeat(X, repeats, axis=0) if repeats > 1 else X


def make_teacher(n_dim: int, theta: float, rng: np.random.Generator, probe_index: int = 0) -> np.ndarray:
    """A unit-norm teacher at angle ``theta`` from the probe ``e_{probe_index}``.

    ``w[probe] = cos(theta)``; the other coordinates are a random direction scaled to norm ``sin(theta)``.

    Returns:
        w: (N,) with ``||w|| = 1``.
    """
    rest = rng.standard_normal(n_dim - 1)
    rest *= np.sin(theta) / np.linalg.norm(rest)
    return np.insert(rest, probe_index, np.cos(theta))


def downstream_teacher(teacher: np.ndarray, shift: float = 0.4, probe_index: int = 0) -> np.ndarray:
    """The biased downstream target: ``normalise(teacher + shift * 1)`` with the probe coordinate left unshifted.

    Args:
        teacher: (N,) teacher weights.
        shift: added to every coordinate except the probe's.

    Returns:
        w_down: (N,) unit vector.
    """
    w = teacher + shift
    w[probe_index] = teacher[probe_index]
    return w / np.linalg.norm(w)


def label(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Labels ``y = sign(X w)`` in {-1, +1} (an exact 0, a measure-zero event, counts as +1).

    Args:
        X: (P, N) inputs; w: (N,) weights.

    Returns:
        y: (P,) float64.
    """
    return np.where(X @ w >= 0.0, 1.0, -1.0)


def prune(
    X: np.ndarray, n_keep: int, strategy: Strategy, rng: np.random.Generator, probe_index: int = 0
) -> np.ndarray:
    """Indices of the ``n_keep`` examples kept by a pruning strategy that ranks by the probe field ``|x0|``.

    Args:
        X: (P, N) pool.
        n_keep: how many to keep (clipped to the pool size).
        strategy: "hard" keeps the smallest ``|x0|`` (near the probe's boundary), "easy" the largest, "random" a
            uniform subset.
        rng: random generator (used by "random" only).

    Returns:
        idx: (n_keep,) int indices into ``X`` (a stable sort: ties, e.g. repeated examples, stay together).
    """
    n_keep = max(0, min(int(n_keep), X.shape[0]))
    margin = np.abs(X[:, probe_index])
    if strategy == "hard":
        return np.argsort(margin, kind="stable")[:n_keep]
    if strategy == "easy":
        return np.argsort(-margin, kind="stable")[:n_keep]
    if strategy == "random":
        return np.sort(rng.choice(X.shape[0], size=n_keep, replace=False))
    raise ValueError(f"unknown pruning strategy {strategy!r}; expected one of {STRATEGIES}")


def _least_distance(A: np.ndarray) -> np.ndarray:
    """Least distance programming, ``min ||w|| s.t. A w >= 1``, by Lawson & Hanson's reduction to NNLS.

    Solve ``min_u ||E u - e||`` (``u >= 0``) with ``E = [A^T; 1^T]`` ((N+1, P)) and ``e = (0, ..., 0, 1)``; the residual
    ``r = E u - e`` gives ``w = -r[:N] / r[N]`` (``r[N] = 0`` means infeasible).

    Args:
        A: (P, N) rows ``y_i x_i``.

    Returns:
        w: (N,)
    """
    P, n = A.shape
    E = np.vstack([A.T, np.ones((1, P))])
    e = np.zeros(n + 1)
    e[n] = 1.0
    u, _ = nnls(E, e, maxiter=max(50 * P, 1000))
    r = E @ u - e
    if abs(r[n]) < 1e-14:
        raise NotSeparableError(
            f"{P} examples in {n} dimensions are not linearly separable through the origin"
        )
    return -r[:n] / r[n]


def max_margin(
    X: np.ndarray,
    y: np.ndarray,
    solver: Literal["nnls", "cvxpy"] = "nnls",
    tol: float = 1e-9,
    working_set: int | None = None,
) -> np.ndarray:
    """The hard-margin max-margin perceptron (no bias): ``argmin ||w||^2 s.t. y_i (w . x_i) >= 1``.

    The default solver is exact: Lawson-Hanson least-distance programming (an active-set QP method built on NNLS) inside
    a working-set loop. The QP is solved on the examples with the smallest Hebbian margins, then every constraint is
    checked and the most violated ones are added until none is violated by more than ``tol`` (at most ``N`` examples
    are support vectors, so a few rounds suffice even for 15,000 examples). ``solver="cvxpy"`` solves the same QP with
    cvxpy (Clarabel), slower; it is the reference the tests check against.

    Args:
        X: (P, N) kept inputs; y: (P,) labels in {-1, +1}.
        solver: "nnls" (default) or "cvxpy".
        tol: constraint violation accepted at the end (margins >= 1 - tol).
        working_set: size of the first working set (default ``4 N``).

    Returns:
        w: (N,) student weights. With no example (``P = 0``) the zero vector: the student knows nothing, and
        :func:`student_error` scores it 0.5 (chance).

    Raises:
        NotSeparableError: when no separating weight vector exists (never for labels from a linear teacher).
    """
    n_ex, n = X.shape
    if n_ex == 0:
        return np.zeros(n)
    A = y[:, None] * X
    if solver == "cvxpy":
        import cvxpy as cp

        w = cp.Variable(n)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(w)), [A @ w >= 1])
        prob.solve(solver=cp.CLARABEL)
        if w.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
            raise NotSeparableError(f"cvxpy: {prob.status} for {n_ex} examples in {n} dimensions")
        return np.asarray(w.value, dtype=float)
    if solver != "nnls":
        raise ValueError(f"unknown solver {solver!r}; expected 'nnls' or 'cvxpy'")
    m0 = working_set or 4 * n
    if n_ex > m0:
        # repeated examples are repeated constraints: solve on the distinct ones
        # (equal rows <=> equal keys, up to a measure-zero coincidence)
        key = A @ np.sqrt(np.arange(2.0, n + 2.0))
        _, first = np.unique(key, return_index=True)
        if first.size < n_ex:
            A = A[np.sort(first)]
            n_ex = A.shape[0]
    if n_ex <= m0:
        return _feasible(_least_distance(A), A)
    hebb = A.mean(axis=0)
    in_work = np.zeros(n_ex, dtype=bool)
    in_work[np.argsort(A @ hebb)[:m0]] = True
    add = max(2 * n, 16)
    for _ in range(1000):
        w = _least_distance(A[in_work])
        margins = A @ w
        # constraints outside the working set that the working-set solution violates
        violated = np.flatnonzero((margins < 1.0 - tol) & ~in_work)
        if violated.size == 0:
            return _feasible(w, A)
        in_work[violated[np.argsort(margins[violated])[:add]]] = True
    raise RuntimeError("max_margin working-set loop did not converge")  # pragma: no cover


def _feasible(w: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Rescale ``w`` so that every margin is >= 1 (NNLS round-off leaves margins ``1 - O(1e-9)``)."""
    m = float(np.min(A @ w))
    return w / m if 0.0 < m < 1.0 else w


def overlap(w_student: np.ndarray, w_ref: np.ndarray) -> float:
    """Cosine between two weight vectors (``R`` of the theory); 0 when either is the zero vector."""
    ns, nr = np.linalg.norm(w_student), np.linalg.norm(w_ref)
    if ns == 0.0 or nr == 0.0:
        return 0.0
    return float(np.clip(w_student @ w_ref / (ns * nr), -1.0, 1.0))


def student_error(w_student: np.ndarray, w_ref: np.ndarray) -> float:
    """Generalisation error ``arccos(R) / pi`` on Gaussian inputs (``R`` = :func:`overlap`); 0.5 for a zero student."""
    return float(np.arccos(overlap(w_student, w_ref)) / np.pi)
