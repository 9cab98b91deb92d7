"""Seed-to-seed noise: how much a score moves when only the training seed changes.

A point of a curve is the mean over its training seeds (`n<N>`, `n<N>_seed<S>`) of scores on the
same evaluation items. Its error has two parts: which items are in the test set (resampled by
the item bootstrap in analysis/bootstrap.py) and which seeds were trained (this module). A
resample of the curve is

    item-bootstrapped seed mean  +  mean of k_N seed deviations drawn with replacement

where the deviations are pooled over every point of the curve with at least two seeds, on the
logit scale (seed noise is about constant there: ±0.15 logits moves a 0.5 score by 0.04 and a
0.05 score by 0.007), and mapped back to each point's score. Two corrections make the seed part
unbiased:

* k/(k-1): the deviations from a mean of k seeds are smaller than the seeds' own spread;
* item noise: two seeds scored on the same items still differ by item-level chance (a model
  gets an item right by luck). That part is already in the item bootstrap, so the pooled
  between-seed variance V is shrunk by (1 - B/V), B being its item-level part estimated from
  the per-item scores of the seeds (Σ_i Var_s(x_si) / n²).

Because the seed variance is estimated from few seeds (e.g. 3 seeds x 5 scales = 10 degrees of
freedom), each resample also scales the seed part by sqrt(df / χ²_df): the intervals then widen
like a t rather than a normal interval when the seed variance itself is uncertain.

Points with one seed still get seed noise when other points of the curve have several (the
pooled estimate applies to every trained point); N = 0 (the base model) never does. A curve
with one seed at every N has no estimate: its intervals cover item noise only, and every
output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.curves import Curve

SINGLE_SEED_NOTE = (
    "single training seed per N: seed-to-seed variance is NOT included in the intervals "
    "(they cover evaluation-item noise only)"
)
_EDGE = 1e-6  # a mean score this close to 0 or 1 carries no logit-scale information


@dataclass(frozen=True)
class SeedNoise:
    """The pooled seed-deviation estimate of one curve."""

    residuals: np.ndarray  # logit-scale deviations, corrected (resampled in seed_draws)
    df: int  # sum over points of (seeds - 1): degrees of freedom of the estimate
    sd_logit: float  # seed-to-seed SD of one seed's score, logit scale (NaN: not estimable)

    @property
    def included(self) -> bool:
        return self.df > 0


@dataclass(frozen=True)
class _SeedPoint:
    """One point's seeds: their scores, the slope of the logit there, and the item part B."""

    values: np.ndarray
    scale: float  # p(1 - p) at the seed mean: d score / d logit
    item_var: float  # B: item-level chance in one seed's score


def _item_var(curve: Curve, k: int, values: np.ndarray) -> float:
    """Item-level chance in one seed's score at point k: Σ_i Var_s(num_si) / (Σ den)² from the
    seeds' per-item scores; lm-eval's stderr² (an upper bound) when items are missing."""
    items = curve.seed_items[k] if k < len(curve.seed_items) else []
    if items and all(it is not None for it in items):
        ids = items[0].doc_ids
        if all(np.array_equal(it.doc_ids, ids) for it in items[1:]):
            num = np.stack([it.num for it in items])
            total = float(items[0].den.sum())
            return float(num.var(axis=0, ddof=1).sum()) / total**2
    se = curve.stderr[k] * math.sqrt(len(values))  # one seed's stderr, from the mean's
    return float(se * se) if math.isfinite(se) else 0.0


def _seed_points(curve: Curve) -> list[_SeedPoint]:
    out = []
    for k in np.flatnonzero(curve.x > 0):
        values = curve.seeds_at(int(k))
        if len(values) < 2 or not np.isfinite(values).all():
            continue
        mean = float(values.mean())
        scale = mean * (1.0 - mean)
        if scale < _EDGE:
            continue
        out.append(_SeedPoint(values, scale, _item_var(curve, int(k), values)))
    return out


def estimate(curve: Curve) -> SeedNoise:
    """Pooled, corrected logit-scale seed deviations of `curve` (none with a single seed)."""
    pts = _seed_points(curve)
    df = sum(len(p.values) - 1 for p in pts)
    if df == 0:
        return SeedNoise(np.zeros(0), 0, math.nan)
    # pooled on the logit scale: a point's variances are divided by scale² (delta method)
    v = sum(float(p.values.var(ddof=1)) * (len(p.values) - 1) / p.scale**2 for p in pts)
    b = sum(p.item_var * (len(p.values) - 1) / p.scale**2 for p in pts)
    share = b / v if v > 0 else 1.0  # B/V: the part of the seed variance that is item chance
    keep = math.sqrt(max(0.0, 1.0 - share))
    residuals = np.concatenate([
        (p.values - p.values.mean()) / p.scale * math.sqrt(len(p.values) / (len(p.values) - 1))
        for p in pts
    ]) * keep  # fmt: skip
    return SeedNoise(residuals, df, math.sqrt(max(0.0, v - b) / df))


def seed_draws(noise: SeedNoise, curve: Curve, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The seed part of every resample, on the score scale, shape (n_boot, points).

    Point k (N > 0) gets the mean of its k_N seeds' worth of pooled deviations, mapped back
    with its p(1 - p); each resample is scaled by sqrt(df / χ²_df), the uncertainty of the
    estimated seed SD."""
    out = np.zeros((n_boot, len(curve.x)))
    if not noise.included or not np.any(noise.residuals):
        return out
    scale = curve.value * (1.0 - curve.value)
    u = np.sqrt(noise.df / rng.chisquare(noise.df, n_boot))
    for k in np.flatnonzero((curve.x > 0) & np.isfinite(scale) & (scale > _EDGE)):
        picks = rng.integers(0, len(noise.residuals), size=(n_boot, len(curve.seeds_at(int(k)))))
        out[:, k] = noise.residuals[picks].mean(1) * u * scale[k]
    return out


def item_sd(curve: Curve, boot: np.ndarray, mask: np.ndarray) -> float:
    """Root-mean-square over the points in `mask` of the item-only bootstrap SD of a score."""
    cols = boot[:, mask]
    cols = cols[:, np.isfinite(cols).any(0)]  # points without an interval have no item SD
    if cols.shape[1] == 0:
        return math.nan
    var = np.nanvar(cols, axis=0)
    return float(np.sqrt(var.mean()))


def seed_sd_scores(noise: SeedNoise, curve: Curve, mask: np.ndarray) -> float:
    """The pooled logit seed SD in score units, root-mean-square over the points in `mask`."""
    if not noise.included or not mask.any():
        return math.nan
    scale = curve.value[mask] * (1.0 - curve.value[mask])
    return float(noise.sd_logit * np.sqrt(np.nanmean(scale * scale)))
