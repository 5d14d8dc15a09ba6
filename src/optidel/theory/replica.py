"""Replica theory of a max-margin student trained on a probe-pruned Gaussian pool.

The theory of Sorscher et al. (2022), Appendix "Perceptron theory", for the teacher-student setting of
:mod:`optidel.theory.perceptron`: inputs ``x ~ N(0, I_N / N)``, teacher ``T`` (unit norm), a probe direction ``e0`` at
angle ``theta`` from the teacher, labels ``y = sign(T . x)``. The pool holds ``alpha_t * N`` examples; pruning by the
probe keeps the fraction ``f`` with the smallest ``|z0|`` (hard), the largest (easy) or a uniform random fraction, where
``z0 = sqrt(N) e0 . x ~ N(0, 1)``. In the limit ``N -> inf`` with ``alpha = alpha_t * f`` fixed, the kept examples'
projections on the probe follow the truncated density ``phi(z0) 1[|z0| < k] / f`` (hard; ``k = sqrt(2) erfinv(f)``),
``phi(z0) 1[|z0| > k'] / f`` (easy; ``k' = sqrt(2) erfinv(1 - f)``) or ``phi(z0)`` (random), and every direction
orthogonal to the probe stays standard normal.

Order parameters of the (unit-norm) student ``J``: ``R = J . T`` (overlap with the teacher), ``S`` (overlap with the
in-plane direction orthogonal to the teacher, ``v = (cos(theta) T - e0) / sin(theta)``), the residual norm
``Q = sqrt(1 - R^2 - S^2)`` (isotropic in the remaining ``N - 2`` directions) and the margin ``kappa``. With the teacher
field ``t = sqrt(N) T . x`` and the in-plane field ``v``, the student field is ``R t + S v + Q xi`` (``xi ~ N(0, 1)``).
Replica symmetry at ``q -> 1`` (the max-margin / Gardner capacity limit) gives, with ``a = kappa - y (R t + S v)``,
``g(a, Q) = E_xi[(a - Q xi)_+^2] = (a^2 + Q^2) Phi(a/Q) + a Q phi(a/Q)``:

* ``Q^2 = alpha E[g(a, Q)]``                                   (the volume of solutions shrinks to zero),
* ``R (1 - alpha E[Phi(a/Q)]) = alpha E[(a Phi(a/Q) + Q phi(a/Q)) y t]``   (stationarity in ``R``),
* ``S (1 - alpha E[Phi(a/Q)]) = alpha E[(a Phi(a/Q) + Q phi(a/Q)) y v]``   (stationarity in ``S``),

i.e. ``(R, S)`` maximise ``Q^2 - alpha E[g]`` and ``kappa`` is the largest margin for which that maximum is still >= 0.
(These equations are derived here from Gardner's volume calculation with the pruned input density, following the
construction of Sorscher et al.'s appendix; random pruning at ``f = 1`` recovers the textbook max-stability perceptron,
``eps ~ 0.5005 / alpha``.) Because ``1 - alpha E[Phi] -> 0`` as alpha grows, the solver uses the equivalent,
cancellation-free form of :func:`saddle_point_residual`. Random pruning and ``theta = 0`` have ``S = 0`` by symmetry
(two unknowns, solved by a bracketed maximisation of ``kappa``); otherwise Powell's hybrid method runs with
predictor-corrector continuation from the unpruned pool (``f = 1``) down the curve.

The expectations run over the pruned density of ``(t, v)``; they are computed with graded Gauss-Legendre rules that
put nodes where the integrand changes fast (near the student's margin and the pruning edge), so they stay accurate as
``Q -> 0``. The test error of the student is ``arccos(R) / pi``.

References:
    - [0] Sorscher, Geirhos, Shekhar, Ganguli, Morcos. Beyond neural scaling laws: beating power law scaling via data
      pruning. NeurIPS 2022. https://arxiv.org/abs/2206.14486 (Appendix A: perceptron theory).
    - [1] Gardner. The space of interactions in neural network models. J. Phys. A 21 (1988).
    - [2] Engel, Van den Broeck. Statistical Mechanics of Learning. CUP 2001 (ch. 3-4, the max-stability perceptron).

Examples:
    >>> sol = solve_saddle_point(alpha=2.0, f=1.0, theta=0.0, strategy="random")
    >>> 0.0 < sol.error < 0.5
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import optimize, special

Strategy = Literal["hard", "easy", "random"]

_L = 9.0  # half-width of the integration box; phi(9) ~ 1e-18
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
# offsets (in units of the feature width) of the break points of the graded rule around a focus point
_GRADES = np.sort(np.array([0.0] + [s * 2.0**j for j in range(-2, 6) for s in (-1.0, 1.0)]))
# fixed break points that resolve the Gaussian weight itself
_FIXED = np.arange(-_L, _L + 1e-9, 3.0)


@dataclasses.dataclass(frozen=True)
class SaddlePoint:
    """A solution of the saddle-point equations.

    Attributes:
        alpha: examples kept per dimension, ``alpha_t * f``.
        f: kept fraction of the pool.
        theta: probe-teacher angle (radians).
        strategy: "hard", "easy" or "random".
        R: student-teacher overlap (cosine).
        S: student overlap with the in-plane direction orthogonal to the teacher.
        kappa: the max-margin student's margin (fields have unit variance).
        residual: max-norm of the equations' residual at the solution.
    """

    alpha: float
    f: float
    theta: float
    strategy: str
    R: float
    S: float
    kappa: float
    residual: float

    @property
    def Q(self) -> float:
        return math.sqrt(max(0.0, 1.0 - self.R**2 - self.S**2))

    @property
    def error(self) -> float:
        """Generalisation error ``arccos(R) / pi`` on the (unpruned) input distribution."""
        return float(np.arccos(np.clip(self.R, -1.0, 1.0)) / np.pi)

    @property
    def probe_overlap(self) -> float:
        """Overlap of the student with the probe ``e0``: ``R cos(theta) - S sin(theta)`` (see :func:`in_plane_basis`)."""
        return self.R * math.cos(self.theta) - self.S * math.sin(self.theta)

    @property
    def perp_overlap(self) -> float:
        """Overlap with the unit vector ``u = (T - cos(theta) e0) / sin(theta)`` (teacher's part orthogonal to the probe)."""
        return self.R * math.sin(self.theta) + self.S * math.cos(self.theta)


def pruning_threshold(f: float, strategy: Strategy) -> float:
    """The probe-field threshold that keeps a fraction ``f`` of a standard normal pool.

    Hard pruning keeps ``|z0| < k`` with ``k = sqrt(2) erfinv(f)``; easy keeps ``|z0| > k`` with
    ``k = sqrt(2) erfinv(1 - f)``; random has no threshold (returns ``inf``).
    """
    if not 0.0 < f <= 1.0:
        raise ValueError(f"kept fraction f must lie in (0, 1], got {f}")
    if strategy == "hard":
        return float(math.sqrt(2.0) * special.erfinv(f)) if f < 1.0 else math.inf
    if strategy == "easy":
        return float(math.sqrt(2.0) * special.erfinv(1.0 - f))
    if strategy == "random":
        return math.inf
    raise ValueError(f"unknown pruning strategy {strategy!r}; expected hard, easy or random")


def _graded_nodes(
    lo: np.ndarray, hi: np.ndarray, focus: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes/weights on ``[lo, hi]`` (per row), sub-intervals graded geometrically around focus points.

    Args:
        lo, hi: (M,) interval ends (rows with ``hi <= lo`` get zero weights).
        focus: pairs ``(centre, width)`` of (M,) arrays: where the integrand changes fast, and over which scale.

    Returns:
        row, nodes, weights: flat arrays over the non-empty sub-intervals; ``row`` says which of the M intervals
        each node belongs to.
    """
    hi = np.maximum(hi, lo)
    m = lo.shape[0]
    parts = [np.broadcast_to(_FIXED, (m, _FIXED.size))]
    for centre, width in focus:
        parts.append(centre[:, None] + np.maximum(width, 1e-12)[:, None] * _GRADES[None, :])
    bp = np.sort(np.clip(np.concatenate(parts, axis=1), lo[:, None], hi[:, None]), axis=1)
    bp = np.concatenate([lo[:, None], bp, hi[:, None]], axis=1)
    a, b = bp[:, :-1], bp[:, 1:]
    live = b > a
    row = np.broadcast_to(np.arange(m)[:, None], a.shape)[live]
    half = 0.5 * (b - a)[live]
    mid = 0.5 * (b + a)[live]
    nodes = mid[:, None] + half[:, None] * _GL_X[None, :]
    weights = half[:, None] * _GL_W[None, :]
    return np.repeat(row, _GL_X.size), nodes.ravel(), weights.ravel()


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class _Averages:
    """Averages over the kept examples (and the noise ``xi``) at given order parameters."""

    g: float  # E[g(a, Q)] = E[(a - Q xi)_+^2]
    big: float  # E[Phi(a/Q)]: the fraction of examples at (or inside) the margin
    h: float  # E[h], h = a Phi + Q phi = E_xi[(a - Q xi)_+]
    ht: float  # E[h y t]
    hv: float  # E[h y v]
    mass: float  # E[1] (1 up to quadrature error)


def _is_one_dimensional(theta: float, strategy: Strategy) -> bool:
    """True when the pruning leaves the in-plane field ``v`` a full standard normal (random pruning, or theta = 0)."""
    return strategy == "random" or math.sin(theta) < 1e-12


def _averages(R: float, S: float, kappa: float, f: float, theta: float, strategy: Strategy) -> _Averages:
    """Averages over the pruned density of the teacher field ``t`` and the in-plane field ``v``.

    Uses the symmetry ``(t, v) -> (-t, -v)`` (the integrands and the pruned density are even), so only ``t > 0``
    (``y = +1``) is integrated and doubled. The probe field is ``z0 = cos(theta) t - sin(theta) v``. When ``v`` is a
    full standard normal (:func:`_is_one_dimensional`) it is folded into the noise: ``S v + Q xi ~ N(0, S^2 + Q^2)``.
    """
    Q = math.sqrt(max(1.0 - R * R - S * S, 0.0))
    k = pruning_threshold(f, strategy)
    c, s = math.cos(theta), math.sin(theta)
    one_d = _is_one_dimensional(theta, strategy)
    Qe = math.sqrt(max(1.0 - R * R, 0.0)) if one_d else Q  # noise of the field beyond R t
    Qe = max(Qe, 1e-14)
    t_lo, t_hi = 0.0, _L
    if one_d and strategy == "hard":
        t_hi = min(k, _L)
    elif one_d and strategy == "easy":
        t_lo = min(k, _L)
    focus = [(np.array([kappa / max(R, 1e-3)]), np.array([max(Qe / max(R, 1e-3), 1e-12)]))]
    if not one_d and math.isfinite(k):
        focus.append((np.array([k / c]), np.array([s / c])))  # where the kept v-interval sweeps past v = 0
    _, t, wt = _graded_nodes(np.array([t_lo]), np.array([t_hi]), focus)
    wt = wt * _normal_pdf(t)
    norm = 2.0 / (f if strategy != "random" else 1.0)
    if one_d:
        a = kappa - R * t
        u = a / Qe
        big = special.ndtr(u)
        h = a * big + Qe * _normal_pdf(u)
        g = (a * a + Qe * Qe) * big + a * Qe * _normal_pdf(u)
        acc = [np.sum(wt * g), np.sum(wt * big), np.sum(wt * h), np.sum(wt * h * t), 0.0, np.sum(wt)]
        return _Averages(*(norm * float(x) for x in acc))
    M = t.shape[0]
    if strategy == "hard":  # |c t - s v| < k  <=>  (c t - k)/s < v < (c t + k)/s
        intervals = [(np.clip((c * t - k) / s, -_L, _L), np.clip((c * t + k) / s, -_L, _L))]
    else:  # easy: |c t - s v| > k
        intervals = [
            (np.full(M, -_L), np.clip((c * t - k) / s, -_L, _L)),
            (np.clip((c * t + k) / s, -_L, _L), np.full(M, _L)),
        ]
    # the integrand in v changes over a width Q/|S| around v_c, where a = 0
    v_focus = [((kappa - R * t) / S, np.full(M, max(Q / abs(S), 1e-12)))] if abs(S) > 1e-12 else []
    acc = np.zeros(6)
    for lo, hi in intervals:
        row, v, wv = _graded_nodes(lo, hi, v_focus)
        tt = t[row]
        w = wt[row] * wv * _normal_pdf(v)
        a = kappa - (R * tt + S * v)
        u = a / Qe
        big = special.ndtr(u)
        small = _normal_pdf(u)
        h = a * big + Qe * small
        g = (a * a + Qe * Qe) * big + a * Qe * small
        acc += [
            np.sum(w * g),
            np.sum(w * big),
            np.sum(w * h),
            np.sum(w * h * tt),
            np.sum(w * h * v),
            np.sum(w),
        ]
    return _Averages(*(norm * float(x) for x in acc))


def capacity_gap(
    R: float, S: float, kappa: float, alpha: float, f: float, theta: float, strategy: Strategy
) -> float:
    """``Q^2 - alpha E[g]``: >= 0 iff a student with overlaps ``(R, S)`` can reach margin ``kappa`` (Gardner volume)."""
    return 1.0 - R * R - S * S - alpha * _averages(R, S, kappa, f, theta, strategy).g


def saddle_point_residual(
    R: float, S: float, kappa: float, alpha: float, f: float, theta: float, strategy: Strategy
) -> np.ndarray:
    """Residuals of the saddle-point equations in their well-conditioned form (zero at a solution).

    The stationarity conditions ``alpha E[h y t] = R lam`` and ``alpha E[h y v] = S lam`` with
    ``lam = 1 - alpha E[Phi]`` suffer from cancellation at large alpha (``lam -> 0``). Euler's theorem for the
    degree-2 homogeneous ``g`` gives ``kappa E[h] - R E[h y t] - S E[h y v] + Q^2 E[Phi] = E[g]``; with the volume
    condition this turns the system into the equivalent ``E[h y t] = R kappa E[h]``, ``E[h y v] = S kappa E[h]`` (and
    ``lam = alpha kappa E[h]`` at the solution), free of cancellation.

    Returns:
        (3,) array: ``[log(alpha E[g] / Q^2), E[h y t] / (kappa E[h]) - R, E[h y v] / (kappa E[h]) - S]`` (the last
        entry is 0 when the problem is one-dimensional, see :func:`_is_one_dimensional`).
    """
    av = _averages(R, S, kappa, f, theta, strategy)
    Q2 = max(1.0 - R * R - S * S, 1e-300)
    kh = max(kappa * av.h, 1e-300)
    last = 0.0 if _is_one_dimensional(theta, strategy) else av.hv / kh - S
    return np.array([math.log(max(alpha * av.g, 1e-300) / Q2), av.ht / kh - R, last])


def _kappa_of_direction(
    R: float, S: float, alpha: float, f: float, theta: float, strategy: Strategy, hint: float | None = None
) -> float:
    """The largest margin with ``capacity_gap >= 0`` for a fixed student direction (the gap falls as kappa grows)."""

    def gap(kap: float) -> float:
        return capacity_gap(R, S, kap, alpha, f, theta, strategy)

    if gap(0.0) <= 0.0:
        return 0.0
    lo, hi = 0.0, (hint * 2.0 if hint else 1.0)
    while gap(hi) > 0.0:
        lo, hi = hi, hi * 4.0
        if hi > 1e8:
            raise RuntimeError(f"margin unbounded for R={R}, S={S}, alpha={alpha}")
    return float(optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=400))


def _solve_one_dimensional(
    alpha: float,
    f: float,
    theta: float,
    strategy: Strategy,
    guess: SaddlePoint | None = None,
    tol: float = 1e-10,
) -> SaddlePoint:
    """Random pruning or theta = 0 (``S = 0``): maximise the margin over the angle to the teacher.

    With a ``guess`` (a neighbouring solution) Powell's hybrid method solves the two equations in
    ``(log phi, log kappa)`` (``R = cos(phi)``). Otherwise, or if that fails, a robust search: ``kappa(phi)`` is 0 at
    ``phi = 0`` (the teacher's own margin vanishes in the limit) and unimodal; its maximum is found by bracketing the
    root of ``d kappa / d R``, which on the curve ``kappa(phi)`` has the sign of ``E[h t] - R kappa E[h]`` (see
    :func:`saddle_point_residual`), in ``log(phi)``.
    """
    if guess is not None:

        def eqs(p: np.ndarray) -> np.ndarray:
            R, _, kap = _decode(np.array([p[0], 0.0, p[1]]))
            return saddle_point_residual(R, 0.0, kap, alpha, f, theta, strategy)[:2]

        p0 = _encode(guess.R, 0.0, guess.kappa)[[0, 2]]
        try:
            sol = optimize.root(eqs, p0, method="hybr", options={"xtol": 1e-13})
            res = float(np.max(np.abs(eqs(sol.x))))
        except (ValueError, ZeroDivisionError, OverflowError, FloatingPointError):
            res = math.inf
        if math.isfinite(res) and res < tol:
            R, _, kap = _decode(np.array([sol.x[0], 0.0, sol.x[1]]))
            return SaddlePoint(
                alpha=alpha, f=f, theta=theta, strategy=strategy, R=R, S=0.0, kappa=kap, residual=res
            )

    def kappa_at(logphi: float) -> float:
        return _kappa_of_direction(math.cos(math.exp(logphi)), 0.0, alpha, f, theta, strategy)

    def slope(logphi: float) -> float:  # d kappa / d log(phi), sign only matters
        phi = math.exp(logphi)
        R = math.cos(phi)
        kap = kappa_at(logphi)
        if kap <= 0.0:
            return 1.0 if phi < 1.0 else -1.0
        av = _averages(R, 0.0, kap, f, theta, strategy)
        return -(av.ht / (kap * av.h) - R)

    grid = np.linspace(math.log(1e-8), math.log(math.pi / 2), 28)
    vals = [slope(x) for x in grid]
    for i in range(len(grid) - 1):
        if vals[i] > 0.0 >= vals[i + 1]:
            x = optimize.brentq(slope, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)
            break
    else:
        raise RuntimeError(f"no maximum of the margin found for alpha={alpha}, f={f}, strategy={strategy}")
    R = math.cos(math.exp(x))
    kap = kappa_at(x)
    res = float(np.max(np.abs(saddle_point_residual(R, 0.0, kap, alpha, f, theta, strategy))))
    return SaddlePoint(alpha=alpha, f=f, theta=theta, strategy=strategy, R=R, S=0.0, kappa=kap, residual=res)


def _decode(p: np.ndarray) -> tuple[float, float, float]:
    """``(log phi, atanh s, log kappa)`` -> ``(R, S, kappa)`` with ``R = cos(phi)``, ``S = s sin(phi)``."""
    phi = math.exp(float(np.clip(p[0], -40.0, math.log(math.pi))))
    sfrac = math.tanh(float(p[1]))
    return math.cos(phi), sfrac * math.sin(phi), math.exp(float(np.clip(p[2], -200.0, 30.0)))


def _encode(R: float, S: float, kappa: float) -> np.ndarray:
    phi = math.acos(min(max(R, -1.0), 1.0))
    phi = max(phi, 1e-300)
    sfrac = float(np.clip(S / max(math.sin(phi), 1e-300), -1 + 1e-12, 1 - 1e-12))
    return np.array([math.log(phi), math.atanh(sfrac), math.log(max(kappa, 1e-300))])


def _stationarity(p: np.ndarray, alpha: float, f: float, theta: float, strategy: Strategy) -> np.ndarray:
    """:func:`saddle_point_residual` in the unconstrained parameters ``(log phi, atanh s, log kappa)``."""
    R, S, kap = _decode(p)
    return saddle_point_residual(R, S, kap, alpha, f, theta, strategy)


def _newton(
    alpha: float, f: float, theta: float, strategy: Strategy, start: np.ndarray, tol: float
) -> SaddlePoint | None:
    """Powell's hybrid method on :func:`_stationarity` from encoded parameters ``start``; ``None`` on failure."""
    try:
        sol = optimize.root(
            _stationarity, start, args=(alpha, f, theta, strategy), method="hybr", options={"xtol": 1e-13}
        )
        res = float(np.max(np.abs(_stationarity(sol.x, alpha, f, theta, strategy))))
    except (ValueError, ZeroDivisionError, OverflowError, FloatingPointError):
        return None
    if not np.isfinite(res) or res > tol:
        return None
    R, S, kap = _decode(sol.x)
    return SaddlePoint(alpha=alpha, f=f, theta=theta, strategy=strategy, R=R, S=S, kappa=kap, residual=res)


def _follow(
    path: Callable[[float], tuple[float, float]],
    s_from: float,
    s_to: float,
    start: SaddlePoint,
    theta: float,
    strategy: Strategy,
    tol: float,
    prev: SaddlePoint | None = None,
) -> SaddlePoint:
    """Follow a solution along ``s -> (alpha(s), f(s))`` from ``s_from`` (solution ``start``) to ``s_to``.

    Predictor: linear extrapolation of the encoded parameters from the last two solutions (``prev``, ``start``);
    corrector: :func:`_newton`. The step halves on failure and grows after success.
    """
    cur, cur_s = start, s_from
    last: tuple[SaddlePoint, float] | None = None
    if prev is not None:
        last = (prev, math.log(prev.f))
    step = s_to - s_from
    while cur_s != s_to:
        nxt_s = s_to if abs(step) >= abs(s_to - cur_s) else cur_s + step
        alpha, f = path(nxt_s)
        p_cur = _encode(cur.R, cur.S, cur.kappa)
        guesses = [p_cur]
        if last is not None and last[1] != cur_s:
            p_last = _encode(last[0].R, last[0].S, last[0].kappa)
            guesses.insert(0, p_cur + (p_cur - p_last) * (nxt_s - cur_s) / (cur_s - last[1]))
        sol = None
        for g in guesses:
            sol = _newton(alpha, f, theta, strategy, g, tol)
            if sol is not None:
                break
        if sol is None:
            step /= 2.0
            if abs(step) < 1e-5:
                raise RuntimeError(
                    f"saddle point continuation stalled at f={cur.f:.5g} (alpha={cur.alpha:.4g}) for theta={theta}, "
                    f"strategy={strategy}"
                )
            continue
        last = (cur, cur_s)
        cur, cur_s = sol, nxt_s
        step *= 1.5
    return cur


def _unpruned(alpha: float, theta: float, strategy: Strategy) -> SaddlePoint:
    """The ``f = 1`` solution (no pruning: one-dimensional, ``S = 0``) relabelled with ``strategy``."""
    sol = _solve_one_dimensional(alpha, 1.0, theta, "random")
    return dataclasses.replace(sol, strategy=strategy)


def solve_saddle_point(
    alpha: float,
    f: float,
    theta: float,
    strategy: Strategy,
    guess: SaddlePoint | None = None,
    tol: float = 1e-10,
) -> SaddlePoint:
    """Solve the saddle-point equations for one (alpha, f, theta, strategy).

    Random pruning and ``theta = 0`` are one-dimensional problems (``S = 0``), solved by a bracketed maximisation of
    the margin. Otherwise Powell's hybrid method runs on the stationarity conditions from ``guess``; without a guess
    (or when it fails) the solution is followed in ``f`` at fixed ``alpha`` from the unpruned pool (``f = 1``,
    one-dimensional).

    Args:
        alpha: examples kept per dimension (``alpha_t * f``); must be > 0.
        f: kept fraction of the pool, in (0, 1] (sets the pruning threshold).
        theta: angle between probe and teacher, radians.
        strategy: "hard", "easy" or "random".
        guess: a nearby solution.
        tol: tolerance on :func:`saddle_point_residual`.

    Returns:
        The solution (``R``, ``S``, ``kappa`` and the residual reached).

    Raises:
        RuntimeError: when the equations cannot be solved.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    pruning_threshold(f, strategy)  # validates f and strategy
    if _is_one_dimensional(theta, strategy):
        return _solve_one_dimensional(alpha, f, theta, strategy, guess=guess, tol=tol)
    if guess is not None:
        sol = _newton(alpha, f, theta, strategy, _encode(guess.R, guess.S, guess.kappa), tol)
        if sol is not None:
            return sol
    start = _unpruned(alpha, theta, strategy)
    if f == 1.0:
        return start
    return _follow(lambda s: (alpha, math.exp(s)), 0.0, math.log(f), start, theta, strategy, tol)


def solve_curve(
    alpha_t: float,
    fs: Sequence[float],
    theta: float,
    strategy: Strategy,
    alpha_scale: float = 1.0,
    tol: float = 1e-10,
) -> list[SaddlePoint]:
    """Solutions along a grid of kept fractions for a pool of ``alpha_t * N`` examples.

    The curve is followed from the unpruned pool (``f = 1``) down to the smallest ``f``, along the path
    ``alpha = alpha_scale * alpha_t * f``, by predictor-corrector continuation.

    Args:
        alpha_t: pool size per dimension.
        fs: kept fractions in (0, 1], any order.
        theta: probe-teacher angle (radians).
        strategy: "hard", "easy" or "random".
        alpha_scale: multiplies ``alpha = alpha_t * f`` (e.g. 1/10 for a pool whose examples are each repeated 10
            times: the max-margin solution only sees the distinct examples).
        tol: tolerance on :func:`saddle_point_residual`.

    Returns:
        One :class:`SaddlePoint` per entry of ``fs``, in the order of ``fs``.
    """
    fs = [float(x) for x in fs]
    if _is_one_dimensional(theta, strategy):
        out1: dict[int, SaddlePoint] = {}
        prev1: SaddlePoint | None = None
        for i in sorted(range(len(fs)), key=lambda i: -fs[i]):
            prev1 = _solve_one_dimensional(
                alpha_scale * alpha_t * fs[i], fs[i], theta, strategy, guess=prev1, tol=tol
            )
            out1[i] = prev1
        return [out1[i] for i in range(len(fs))]

    def path(s: float) -> tuple[float, float]:
        return alpha_scale * alpha_t * math.exp(s), math.exp(s)

    order = sorted(range(len(fs)), key=lambda i: -fs[i])
    cur = _unpruned(alpha_scale * alpha_t, theta, strategy)
    prev: SaddlePoint | None = None
    out: dict[int, SaddlePoint] = {}
    for i in order:
        if fs[i] != cur.f:
            nxt = _follow(path, math.log(cur.f), math.log(fs[i]), cur, theta, strategy, tol, prev)
            prev, cur = cur, nxt
        out[i] = cur
    return [out[i] for i in range(len(fs))]


def in_plane_basis(teacher: np.ndarray, probe_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal ``(e0, u)`` of the probe-teacher plane: ``e0`` the probe, ``u`` the teacher's part orthogonal to it.

    Args:
        teacher: (N,) unit-norm teacher.

    Returns:
        e0, u: (N,) unit vectors; ``teacher = cos(theta) e0 + sin(theta) u``. For ``theta = 0`` ``u`` is an arbitrary
        unit vector orthogonal to ``e0``.
    """
    n = teacher.shape[0]
    e0 = np.zeros(n)
    e0[probe_index] = 1.0
    rest = teacher - teacher[probe_index] * e0
    nr = np.linalg.norm(rest)
    if nr < 1e-12:
        u = np.zeros(n)
        u[(probe_index + 1) % n] = 1.0
    else:
        u = rest / nr
    return e0, u
