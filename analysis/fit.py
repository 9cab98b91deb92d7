"""Curve fits of performance P against the number of fine-tuning examples D (= N > 0).

Two forms, both vectorised over a leading "resample" axis so that one call fits every bootstrap
resample at once (see analysis/uncertainty.py); a single fit is the same call with one row.

* Power law (the paper's form): least squares of log P on log D,
      log P = log a + (1/b) log D      i.e.  P = a * D**(1/b).
  Closed form, so a batch is a handful of sums. N = 0 is never in this fit (log 0).
* Saturating: error (1 - P) decays to a floor,
      err = E + A * D**(-alpha),  E >= 0, A >= 0, alpha in [1e-3, 4].
  Solved by variable projection: for a given alpha the model is linear in (E, A), so the
  constrained least-squares (E, A) has a closed form; alpha is found by a grid search refined
  with golden-section search on that 1-D profile. No start point, no divergence with few points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA_RANGE = (1e-3, 4.0)
# 100 log-spaced alphas (a cell is 8% wide): on 2400 noisy 5-point curves the refined optimum was
# identical to a 160-point grid, at 60% of the cost
_GRID = np.geomspace(*ALPHA_RANGE, 100)
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
_TINY = 1e-15


class FitError(ValueError):
    """Too few points (or unusable values) for the requested fit."""


@dataclass
class PowerLaw:
    """Batch of power-law fits; each field has shape (resamples,)."""

    slope: np.ndarray  # 1/b, the exponent
    intercept: np.ndarray  # log a
    r2: np.ndarray  # in log-log space
    n_points: np.ndarray

    @classmethod
    def unavailable(cls, rows: int) -> PowerLaw:
        """`rows` fits that could not be made (all NaN), e.g. resamples without an interval."""
        nan = np.full(rows, np.nan)
        return cls(slope=nan, intercept=nan.copy(), r2=nan.copy(), n_points=np.zeros(rows))

    def predict(self, d: np.ndarray | float) -> np.ndarray:
        """P at D (broadcast: result shape (resamples, len(d)))."""
        d = np.atleast_1d(np.asarray(d, dtype=float))
        return np.exp(self.intercept[:, None] + self.slope[:, None] * np.log(d)[None, :])

    def examples_needed(self, target: float) -> np.ndarray:
        """D at which P reaches `target`; inf when the fitted curve never rises to it."""
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.exp((np.log(target) - self.intercept) / self.slope)
        return np.where(np.isnan(self.slope), np.nan, np.where(self.slope > 0, d, np.inf))


@dataclass
class Saturating:
    """Batch of saturating fits err = E + A*D**-alpha; each field has shape (resamples,)."""

    floor: np.ndarray  # E: the error left with unlimited data
    amplitude: np.ndarray  # A
    alpha: np.ndarray
    r2: np.ndarray  # on the error scale

    @classmethod
    def unavailable(cls, rows: int) -> Saturating:
        """`rows` fits that could not be made (all NaN)."""
        nan = np.full(rows, np.nan)
        return cls(floor=nan, amplitude=nan.copy(), alpha=nan.copy(), r2=nan.copy())

    def predict(self, d: np.ndarray | float) -> np.ndarray:
        """P = 1 - err at D (shape (resamples, len(d)))."""
        d = np.atleast_1d(np.asarray(d, dtype=float))
        err = self.floor[:, None] + self.amplitude[:, None] * d[None, :] ** -self.alpha[:, None]
        return 1.0 - err

    def examples_needed(self, target: float) -> np.ndarray:
        """D at which P reaches `target`; inf when the floor E is at or above 1 - target."""
        gap = 1.0 - target - self.floor
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = (self.amplitude / gap) ** (1.0 / self.alpha)
        reached = np.where(gap > 0, np.where(self.amplitude > 0, d, 1.0), np.inf)
        failed = np.isnan(self.floor) | np.isnan(self.amplitude) | np.isnan(self.alpha)
        return np.where(failed, np.nan, reached)  # a fit that could not be made: NaN, not inf


def _check_points(d: np.ndarray, minimum: int, what: str) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise FitError(f"{what}: data scales must be finite and > 0 (N = 0 is the baseline)")
    if len(d) < minimum:
        shown = ", ".join(f"{x:g}" for x in d) or "none"
        raise FitError(
            f"{what} needs at least {minimum} data scales with N > 0, got {len(d)} (N = {shown})"
        )
    return d


def fit_power_law(d: np.ndarray, p: np.ndarray) -> PowerLaw:
    """Least squares of log P on log D for each row of `p` (shape (resamples, K) or (K,)).

    Points with P <= 0 cannot be logged and are left out of that row's fit; a row with fewer
    than two usable points gets NaN.
    """
    x = np.log(_check_points(d, 2, "power-law fit"))
    p = np.atleast_2d(np.asarray(p, dtype=float))
    w = (np.isfinite(p) & (p > 0)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(w > 0, np.log(np.where(w > 0, p, 1.0)), 0.0)
        n = w.sum(1)
        xm = (w * x).sum(1) / n
        ym = (w * y).sum(1) / n
        xc = np.where(w > 0, x[None, :] - xm[:, None], 0.0)
        yc = np.where(w > 0, y - ym[:, None], 0.0)
        sxx = (xc * xc).sum(1)
        slope = (xc * yc).sum(1) / sxx
        intercept = ym - slope * xm
        sst = (yc * yc).sum(1)
        sse = ((yc - slope[:, None] * xc) ** 2).sum(1)
        r2 = np.where(sst > 0, 1.0 - sse / sst, 1.0)
    bad = (n < 2) | ~(sxx > 0)
    nan = np.full_like(slope, np.nan)
    return PowerLaw(
        slope=np.where(bad, nan, slope),
        intercept=np.where(bad, nan, intercept),
        r2=np.where(bad, nan, r2),
        n_points=n,
    )


def _profile(k: int, sz, szz, sy, syy, szy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of y on E + A*z with E >= 0, A >= 0, from the sums over the K points
    (sz = sum z, szz = sum z^2, sy, syy, szy; all broadcastable), so a whole grid of alphas
    costs one matrix product. Returns (E, A, SSE).

    The objective is a convex quadratic, so the constrained optimum is the unconstrained one
    when feasible, else the best of the two boundary solutions (A = 0 or E = 0).
    """
    zm, ym = sz / k, sy / k
    szz_c = szz - k * zm * zm
    with np.errstate(divide="ignore", invalid="ignore"):
        a_free = np.where(szz_c > _TINY, (szy - k * zm * ym) / szz_c, 0.0)
        a_e0 = np.maximum(szy / np.maximum(szz, _TINY), 0.0)
    e_free = ym - a_free * zm

    def sse(e, a):
        return syy - 2 * e * sy - 2 * a * szy + k * e * e + 2 * e * a * sz + a * a * szz

    zero = np.zeros(np.broadcast_shapes(np.shape(a_free), np.shape(e_free)))
    e_a0 = zero + np.maximum(ym, 0.0)
    best_e, best_a, best = e_a0, zero, sse(e_a0, zero)  # A = 0
    cand = sse(zero, zero + a_e0)  # E = 0
    better = cand < best
    best_e, best_a, best = (
        np.where(better, 0.0, best_e),
        np.where(better, a_e0, best_a),
        np.minimum(cand, best),
    )
    free_ok = (e_free >= 0) & (a_free >= 0)
    cand = np.where(free_ok, sse(e_free, a_free), np.inf)
    better = cand < best
    return (
        np.where(better, e_free, best_e),
        np.where(better, a_free, best_a),
        np.minimum(cand, best),
    )


def _sums(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sums over the last axis of z (resamples, K) against y (resamples, K)."""
    return z.sum(-1), (z * z).sum(-1), y.sum(-1), (y * y).sum(-1), (z * y).sum(-1)


def fit_saturating(d: np.ndarray, p: np.ndarray, iterations: int = 28) -> Saturating:
    """Fit err = 1 - P = E + A*D**-alpha for each row of `p` (shape (resamples, K) or (K,)).

    A row with a non-finite score gets NaN (leave such points out before fitting)."""
    logd = np.log(_check_points(d, 3, "saturating fit (E, A, alpha)"))
    y = 1.0 - np.atleast_2d(np.asarray(p, dtype=float))
    finite = np.isfinite(y).all(1)
    if not finite.all():
        out = Saturating.unavailable(len(y))
        if finite.any():
            fitted = fit_saturating(d, 1.0 - y[finite], iterations)
            for name in ("floor", "amplitude", "alpha", "r2"):
                getattr(out, name)[finite] = getattr(fitted, name)
        return out
    k = len(logd)
    sy, syy = y.sum(1), (y * y).sum(1)
    # 1) grid over alpha: z has shape (grid, K); sum z*y for every (resample, alpha) is y @ z.T
    z = np.exp(-_GRID[:, None] * logd[None, :])
    _, _, sse = _profile(k, z.sum(1)[None, :], (z * z).sum(1)[None, :], sy[:, None],
                         syy[:, None], y @ z.T)  # fmt: skip
    i = np.argmin(sse, axis=1)
    log_grid = np.log(_GRID)
    lo = log_grid[np.maximum(i - 1, 0)]
    hi = log_grid[np.minimum(i + 1, len(_GRID) - 1)]

    # 2) golden-section search on log alpha inside the bracketing grid cells, all rows at once;
    #    28 steps shrink the 0.17-wide bracket to ~2e-7 (a parabolic finish would save steps,
    #    but the profile has a kink where the E >= 0 constraint starts to bind)
    def cost(log_alpha: np.ndarray) -> np.ndarray:
        return _profile(k, *_sums(np.exp(-np.exp(log_alpha)[:, None] * logd[None, :]), y))[2]

    c = hi - _GOLDEN * (hi - lo)
    e = lo + _GOLDEN * (hi - lo)
    fc, fe = cost(c), cost(e)
    for _ in range(iterations):
        left = fc < fe
        hi = np.where(left, e, hi)
        lo = np.where(left, lo, c)
        c_new = hi - _GOLDEN * (hi - lo)
        e_new = lo + _GOLDEN * (hi - lo)
        c, e = np.where(left, c_new, e), np.where(left, c, e_new)
        f_new = cost(np.where(left, c, e))
        fc, fe = np.where(left, f_new, fe), np.where(left, fc, f_new)
    alpha = np.exp((lo + hi) / 2.0)
    z = np.exp(-alpha[:, None] * logd[None, :])
    floor, amp, _ = _profile(k, *_sums(z, y))
    sse = ((y - floor[:, None] - amp[:, None] * z) ** 2).sum(1)  # direct: exact near zero
    sst = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / sst, 1.0)
    return Saturating(floor=floor, amplitude=amp, alpha=alpha, r2=r2)


@dataclass
class BinomialPowerLaw:
    """Batch of power laws P = a * D**(1/b) fitted by binomial likelihood on the accuracy scale;
    each field has shape (resamples,). Unlike the log-log fit it keeps scores of 0."""

    slope: np.ndarray  # 1/b
    intercept: np.ndarray  # log a

    @classmethod
    def unavailable(cls, rows: int) -> BinomialPowerLaw:
        """`rows` fits that could not be made (all NaN)."""
        nan = np.full(rows, np.nan)
        return cls(slope=nan, intercept=nan.copy())


def _binomial_ll(theta, x, p, n):
    """Log-likelihood of the binomial power law in (log a, 1/b); -inf where some P >= 1."""
    eta = theta[:, :1] + theta[:, 1:] * x[None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = -np.expm1(eta)
        ll = (n * (p * eta + (1.0 - p) * np.log(q))).sum(1)
    return np.where((q > 0).all(1), ll, -np.inf)


def _binomial_newton_step(theta, x, p, n):
    """Newton step of the log-likelihood (gradient and 2x2 Hessian in closed form)."""
    big_p = np.exp(theta[:, :1] + theta[:, 1:] * x[None, :])
    q = 1.0 - big_p
    with np.errstate(divide="ignore", invalid="ignore"):
        g = n * (p - (1.0 - p) * big_p / q)
        h = -n * (1.0 - p) * big_p / (q * q)
        g0, g1 = g.sum(1), (g * x).sum(1)
        h00, h01, h11 = h.sum(1), (h * x).sum(1), (h * x * x).sum(1)
        det = h00 * h11 - h01 * h01
        step = np.stack([(-h11 * g0 + h01 * g1) / det, (h01 * g0 - h00 * g1) / det], 1)
    return np.where(np.isfinite(step) & (det > _TINY)[:, None], step, 0.0)


def fit_binomial_power_law(
    d: np.ndarray, p: np.ndarray, trials: np.ndarray, iterations: int = 30
) -> BinomialPowerLaw:
    """Maximise Σ_N n_N [p_N log P_N + (1 - p_N) log(1 - P_N)] with P_N = a * N**(1/b), for each
    row of `p` (shape (resamples, K) or (K,)); `trials` (K,) is the number of scored items per
    point. Damped Newton from the log-log fit, all rows at once, with step halving so that
    every P_N stays below 1. A row that is all zeros or all ones, or has a non-finite score,
    gets NaN."""
    x = np.log(_check_points(d, 2, "binomial power-law fit"))
    p = np.atleast_2d(np.asarray(p, dtype=float))
    n = np.broadcast_to(np.asarray(trials, dtype=float), p.shape[1:])[None, :]
    ok = np.isfinite(p).all(1) & ((p * n).sum(1) > 0) & (((1.0 - p) * n).sum(1) > 0)
    pc = np.where(ok[:, None], np.clip(p, 0.0, 1.0), 0.5)
    start = fit_power_law(d, np.clip(pc, 0.5 / n, 1.0 - 0.5 / n))
    theta = np.stack([start.intercept, start.slope], 1)
    theta = np.where(np.isfinite(theta), theta, 0.0)
    # start strictly inside P < 1 at every point
    theta[:, 0] -= np.maximum(0.0, (theta[:, :1] + theta[:, 1:] * x).max(1) + 1e-3)
    ll = _binomial_ll(theta, x, pc, n)
    for _ in range(iterations):
        step = _binomial_newton_step(theta, x, pc, n)
        moving = np.abs(step).max(1) > 1e-10  # rows that converged stay where they are
        if not moving.any():
            break  # Newton from the log-log start: a handful of iterations
        t = moving.astype(float)
        slack = 1e-10 * (1.0 + np.abs(ll))  # rounding near the optimum is not a worse step
        for _ in range(30):  # halve until the likelihood does not fall (and P < 1 everywhere)
            cand_ll = _binomial_ll(theta + t[:, None] * step, x, pc, n)
            worse = moving & ~(cand_ll >= ll - slack)
            if not worse.any():
                break
            t = np.where(worse, t / 2.0, t)
        t = np.where(worse, 0.0, t)
        theta = theta + t[:, None] * step
        ll = np.where(t > 0, cand_ll, ll)
    nan = np.full(len(theta), np.nan)
    return BinomialPowerLaw(
        slope=np.where(ok, theta[:, 1], nan), intercept=np.where(ok, theta[:, 0], nan)
    )
