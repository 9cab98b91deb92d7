"""Confidence intervals by resampling evaluation items, and the per-curve fit summaries.

Why items: every score on a curve is a mean over the same evaluation items, so the noise that
matters is which items happened to be in the test set. One bootstrap resample draws the item
indices with replacement ONCE and applies them to every checkpoint of the curve (paired across
N), recomputes every score, and refits. Resampling the 5-6 (N, score) points instead would give
falsely narrow intervals (and many resamples with <= 3 distinct N).

Everything is vectorised: a resample is a row of item multiplicities W (resamples x items), the
scores of all resamples are two matrix products (W @ num.T) / (W @ den.T), and the fits in
analysis/fit.py take all rows at once.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from analysis.curves import Curve
from analysis.fit import FitError, PowerLaw, Saturating, fit_power_law, fit_saturating

PAIRED = "item bootstrap, paired across N"
UNPAIRED = "item bootstrap, unpaired (item sets differ across N)"
PARAMETRIC = "normal approximation from lm-eval stderr (no per-item samples)"


def curve_rng(seed: int, curve: Curve) -> np.random.Generator:
    """A generator per curve, so a curve's intervals do not depend on which others are present."""
    return np.random.default_rng([seed, zlib.crc32(curve.label.encode())])


def item_weights(rng: np.random.Generator, n_boot: int, n_items: int) -> np.ndarray:
    """Multiplicity of each item in each resample, shape (n_boot, n_items)."""
    idx = rng.integers(0, n_items, size=(n_boot, n_items))
    idx += (np.arange(n_boot) * n_items)[:, None]
    return (
        np.bincount(idx.ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items).astype(float)
    )


def resample_scores(curve: Curve, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Scores of every point in every resample, shape (n_boot, points), and the method used."""
    items = curve.items
    if curve.has_items and all(np.array_equal(it.doc_ids, items[0].doc_ids) for it in items):
        w = item_weights(rng, n_boot, len(items[0].doc_ids))
        num = np.stack([it.num for it in items])
        den = np.stack([it.den for it in items])
        with np.errstate(divide="ignore", invalid="ignore"):
            return (w @ num.T) / (w @ den.T), PAIRED
    scores = np.empty((n_boot, len(curve.x)))
    methods = set()
    for k, it in enumerate(items):
        if it is not None:
            w = item_weights(rng, n_boot, len(it.doc_ids))
            with np.errstate(divide="ignore", invalid="ignore"):
                scores[:, k] = (w @ it.num) / (w @ it.den)
            methods.add(UNPAIRED)
        else:
            se = curve.stderr[k] if np.isfinite(curve.stderr[k]) else 0.0
            scores[:, k] = curve.value[k] + se * rng.standard_normal(n_boot)
            methods.add(PARAMETRIC)
    return scores, " + ".join(sorted(methods))


def interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; NaN resamples (failed fits) are left out, inf kept (no interpolation)."""
    finite_or_inf = samples[~np.isnan(samples)]
    if finite_or_inf.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite_or_inf, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


@dataclass
class CurveFit:
    """Point fits and their bootstrap distributions for one scale curve."""

    curve: Curve
    level: float
    method: str
    boot: np.ndarray  # (n_boot, points) resampled scores
    power: PowerLaw | None = None
    power_boot: PowerLaw | None = None
    saturating: Saturating | None = None
    saturating_boot: Saturating | None = None
    notes: tuple[str, ...] = ()

    @property
    def fit_mask(self) -> np.ndarray:
        return self.curve.x > 0

    @property
    def baseline(self) -> float:
        at0 = self.curve.value[self.curve.x == 0]
        return float(at0[0]) if at0.size else math.nan


def fit_curve(curve: Curve, n_boot: int, level: float, seed: int) -> CurveFit:
    """Fit both forms to a scale curve, on the point values and on every resample."""
    boot, method = resample_scores(curve, n_boot, curve_rng(seed, curve))
    cf = CurveFit(curve=curve, level=level, method=method, boot=boot)
    mask = cf.fit_mask
    d = curve.x[mask]
    notes = []
    try:
        cf.power = fit_power_law(d, curve.value[mask])
        cf.power_boot = fit_power_law(d, boot[:, mask])
        if np.isnan(cf.power.slope[0]):
            notes.append("power law: fewer than 2 scores > 0")
            cf.power = cf.power_boot = None
    except FitError as e:
        notes.append(str(e))
    try:
        cf.saturating = fit_saturating(d, curve.value[mask])
        cf.saturating_boot = fit_saturating(d, boot[:, mask])
    except FitError as e:
        notes.append(str(e))
    cf.notes = tuple(notes)
    return cf


def _with_interval(row: dict, name: str, point: float, samples: np.ndarray, level: float) -> None:
    row[name] = point
    row[f"{name}_lo"], row[f"{name}_hi"] = interval(samples, level)


def leave_largest_out(cf: CurveFit, row: dict) -> None:
    """Fit without the largest N, predict it; the error's interval is bootstrapped (paired)."""
    mask = cf.fit_mask
    d = cf.curve.x[mask]
    if len(d) < 3:
        row["llo_note"] = "needs >= 3 scales with N > 0"
        return
    train, held = d[:-1], d[-1]
    observed, observed_boot = cf.curve.value[mask][-1], cf.boot[:, mask][:, -1]
    row["llo_n"], row["llo_observed"] = held, observed
    fits: list[tuple[str, object]] = [("power", fit_power_law)]
    if len(train) >= 3:
        fits.append(("sat", fit_saturating))
    for name, fit in fits:
        point = fit(train, cf.curve.value[mask][:-1]).predict(held)[0, 0]
        boot = fit(train, cf.boot[:, mask][:, :-1]).predict(held)[:, 0]
        row[f"llo_{name}_pred"] = point
        _with_interval(row, f"llo_{name}_err", point - observed, boot - observed_boot, cf.level)


def summarise(cf: CurveFit) -> dict[str, object]:
    """One row of fits.csv."""
    c, level = cf.curve, cf.level
    mask = cf.fit_mask
    row: dict[str, object] = dict(c.key)
    row.update(n_points=int(mask.sum()), n_min=float(c.x[mask].min()) if mask.any() else math.nan,
               n_max=float(c.x[mask].max()) if mask.any() else math.nan,
               n_items=float(np.nanmin(c.n_items)), ci_level=level, ci_method=cf.method,
               n_boot=cf.boot.shape[0])  # fmt: skip
    at0 = c.x == 0
    if at0.any():
        _with_interval(row, "baseline", cf.baseline, cf.boot[:, at0][:, 0], level)
    if cf.power is not None and cf.power_boot is not None:
        _with_interval(row, "inv_b", cf.power.slope[0], cf.power_boot.slope, level)
        row["b"] = 1.0 / cf.power.slope[0] if cf.power.slope[0] != 0 else math.inf
        _with_interval(row, "prefactor", math.exp(cf.power.intercept[0]),
                       np.exp(cf.power_boot.intercept), level)  # fmt: skip
        row["r2"] = cf.power.r2[0]
    if cf.saturating is not None and cf.saturating_boot is not None:
        s, sb = cf.saturating, cf.saturating_boot
        _with_interval(row, "sat_E", s.floor[0], sb.floor, level)
        _with_interval(row, "sat_A", s.amplitude[0], sb.amplitude, level)
        _with_interval(row, "sat_alpha", s.alpha[0], sb.alpha, level)
        row["sat_r2"] = s.r2[0]
    leave_largest_out(cf, row)
    row["note"] = "; ".join(cf.notes)
    return row


def points(curve: Curve, boot: np.ndarray, method: str, level: float, x_name: str) -> list[dict]:
    """Per-point rows (score with its interval) for tables and error bars."""
    rows = []
    for k, x in enumerate(curve.x):
        row = dict(curve.key)
        row[x_name] = x
        row.update(value=curve.value[k], stderr=curve.stderr[k], n_items=curve.n_items[k],
                   ci_method=method)  # fmt: skip
        row["lo"], row["hi"] = interval(boot[:, k], level)
        rows.append(row)
    return rows


def inverse(cf: CurveFit, targets: list[float]) -> list[dict[str, object]]:
    """Examples needed to reach each target score, for both fitted forms, with intervals."""
    rows = []
    n_max = cf.curve.x.max()
    forms = [("power", cf.power, cf.power_boot), ("saturating", cf.saturating, cf.saturating_boot)]
    for target in targets:
        for form, point, boot in forms:
            if point is None or boot is None:
                continue
            row = dict(cf.curve.key)
            row.update(target=target, form=form)
            _with_interval(row, "examples", float(point.examples_needed(target)[0]),
                           boot.examples_needed(target), cf.level)  # fmt: skip
            row["extrapolated"] = bool(row["examples"] > n_max)
            rows.append(row)
    return rows
