"""Confidence intervals by resampling evaluation items, and the per-curve fit summaries.

Why items: every score on a curve is a mean over the same evaluation items, so the noise that
matters is which items happened to be in the test set. One bootstrap resample draws the item
indices with replacement ONCE and applies them to every checkpoint of the curve (paired across
N), recomputes every score, and refits. Resampling the 5-6 (N, score) points instead would give
falsely narrow intervals (and many resamples with <= 3 distinct N).

Training seeds are the second level (analysis/seeds.py): each resample adds a draw of pooled
seed-to-seed deviations to the item-resampled seed mean, so with several seeds the intervals
cover training noise too; with one seed per N they cover item noise only and say so.

Everything is vectorised: a resample is a row of item multiplicities W (resamples x items), the
scores of all resamples are two matrix products (W @ num.T) / (W @ den.T), and the fits in
analysis/fit.py take all rows at once.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields
from functools import partial

import numpy as np

from analysis import seeds as sd
from analysis.curves import Curve
from analysis.fit import (
    BinomialPowerLaw,
    FitError,
    PowerLaw,
    Saturating,
    fit_binomial_power_law,
    fit_power_law,
    fit_saturating,
)

PAIRED = "item bootstrap, paired across N"
UNPAIRED = "item bootstrap, unpaired (item sets differ across N)"
PARAMETRIC = "normal approximation from lm-eval stderr (no per-item samples)"
NO_INTERVAL = "no interval (no per-item samples and no numeric lm-eval stderr)"
SEEDS = "training seeds (pooled seed deviations)"
_NO_A = 1e-12  # a saturating amplitude A below this is zero: alpha is then undetermined


def curve_rng(seed: int, curve: Curve) -> np.random.Generator:
    """A generator per curve, so a curve's intervals do not depend on which others are present."""
    return np.random.default_rng([seed, zlib.crc32(curve.label.encode())])


def item_weights(rng: np.random.Generator, n_boot: int, n_items: int) -> np.ndarray:
    """Multiplicity of each item in each resample, shape (n_boot, n_items)."""
    kind = np.int32 if n_boot * n_items < 2**31 else np.int64  # int32: half the memory traffic
    idx = rng.integers(0, n_items, size=(n_boot, n_items), dtype=kind)
    idx += (np.arange(n_boot, dtype=kind) * n_items)[:, None]
    return (
        np.bincount(idx.ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items).astype(float)
    )


def resample_scores(curve: Curve, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Scores of every point in every resample, shape (n_boot, points), and the method used.

    A point whose score is not a number is NaN in every resample (it is left out everywhere),
    and so is a point with neither per-item samples nor a numeric stderr (no interval)."""
    items = curve.items
    if curve.has_items and all(np.array_equal(it.doc_ids, items[0].doc_ids) for it in items):
        w = item_weights(rng, n_boot, len(items[0].doc_ids))
        num = np.stack([it.num for it in items])
        den = np.stack([it.den for it in items])
        with np.errstate(divide="ignore", invalid="ignore"):
            scores, method = (w @ num.T) / (w @ den.T), PAIRED
    else:
        scores, method = _resample_each(curve, n_boot, rng)
    scores[:, ~np.isfinite(curve.value)] = np.nan
    return scores, method


def _resample_each(curve: Curve, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Unpaired fallback: each point's items on their own, or a normal draw with its stderr."""
    scores = np.full((n_boot, len(curve.x)), np.nan)
    methods = set()
    for k, it in enumerate(curve.items):
        if it is not None:
            w = item_weights(rng, n_boot, len(it.doc_ids))
            with np.errstate(divide="ignore", invalid="ignore"):
                scores[:, k] = (w @ it.num) / (w @ it.den)
            methods.add(UNPAIRED)
        elif np.isfinite(curve.stderr[k]):
            scores[:, k] = curve.value[k] + curve.stderr[k] * rng.standard_normal(n_boot)
            methods.add(PARAMETRIC)
        elif np.isfinite(curve.value[k]):
            methods.add(NO_INTERVAL)  # lm-eval wrote stderr "N/A": not a zero-width interval
    return scores, " + ".join(sorted(methods))


@dataclass
class Resamples:
    """Every resample of one curve: item noise alone, and item plus seed noise."""

    scores: np.ndarray  # (n_boot, points): what the fits and intervals use
    items_only: np.ndarray  # (n_boot, points): the item level alone (item SDs)
    method: str
    noise: sd.SeedNoise


def hierarchical_scores(curve: Curve, n_boot: int, rng: np.random.Generator) -> Resamples:
    """Items (paired across N) and then training seeds; the seed level only when some point
    has two or more seeds (see analysis/seeds.py)."""
    items_only, method = resample_scores(curve, n_boot, rng)
    noise = sd.estimate(curve)
    if not noise.included:
        return Resamples(items_only, items_only, method, noise)
    scores = np.clip(items_only + sd.seed_draws(noise, curve, n_boot, rng), 0.0, 1.0)
    return Resamples(scores, items_only, f"{method} + {SEEDS}", noise)


def interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; NaN resamples (failed fits) are left out, inf kept (no interpolation)."""
    finite_or_inf = samples[~np.isnan(samples)]
    if finite_or_inf.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite_or_inf, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def inside(point: float, lo: float, hi: float) -> bool:
    """Whether `point` lies in [lo, hi]; True when there is nothing to compare (a NaN)."""
    if math.isnan(point) or math.isnan(lo) or math.isnan(hi):
        return True
    tol = 1e-9 * max(1.0, abs(point)) if math.isfinite(point) else 0.0
    return lo - tol <= point <= hi + tol


def scales_text(xs: np.ndarray) -> str:
    return ", ".join(f"{x:g}" for x in xs)


@dataclass
class CurveFit:
    """Point fits and their bootstrap distributions for one scale curve."""

    curve: Curve
    level: float
    method: str
    boot: np.ndarray  # (n_boot, points) resampled scores
    items_boot: np.ndarray  # (n_boot, points) item level alone
    noise: sd.SeedNoise
    power: PowerLaw | None = None
    power_boot: PowerLaw | None = None
    binomial: BinomialPowerLaw | None = None
    binomial_boot: BinomialPowerLaw | None = None
    saturating: Saturating | None = None
    saturating_boot: Saturating | None = None
    notes: tuple[str, ...] = ()  # why something is missing or left out (fits.csv `note`)
    warnings: tuple[str, ...] = ()  # problems with the inputs (scores that are not numbers)

    @property
    def fit_mask(self) -> np.ndarray:
        """N > 0 with a finite score: the points of the saturating fit."""
        return (self.curve.x > 0) & np.isfinite(self.curve.value)

    @property
    def power_mask(self) -> np.ndarray:
        """The fit_mask points with a score > 0: the points of the log-log (power-law) fit."""
        return self.fit_mask & (self.curve.value > 0)

    @property
    def baseline(self) -> float:
        at0 = self.curve.value[self.curve.x == 0]
        return float(at0[0]) if at0.size else math.nan


def left_out(cf: CurveFit) -> list[str]:
    """Why each N > 0 point is not in the log-log fit, e.g. `N=16, 64 left out: score 0
    (log-log needs > 0)`; empty when every point is in it."""
    c, out = cf.curve, []
    low = cf.fit_mask & ~cf.power_mask
    if low.any():
        what = "score 0" if np.all(c.value[low] == 0) else "score <= 0"
        out.append(f"N={scales_text(c.x[low])} left out: {what} (log-log needs > 0)")
    bad = (c.x > 0) & ~np.isfinite(c.value)
    if bad.any():
        out.append(f"N={scales_text(c.x[bad])} left out: score is not a number (see warnings)")
    return out


def nan_warnings(curve: Curve) -> list[str]:
    """One warning per point whose score is not a number, naming the curve, N and the file."""
    out = []
    for k in np.flatnonzero(~np.isfinite(curve.value)):
        where = f" in {curve.source(k)}" if curve.source(k) else ""
        value = "NaN" if np.isnan(curve.value[k]) else f"{curve.value[k]}"
        out.append(f"{curve.label}: {curve.x_name}={curve.x[k]:g}: score is {value}{where}; "
                   "left out of the fits and the bootstrap")  # fmt: skip
    return out


def _degenerate(cf: CurveFit) -> str | None:
    """Why no fit can be made from these scores (fewer than 2 scales with a score > 0)."""
    n_fit, n_pos = int(cf.fit_mask.sum()), int(cf.power_mask.sum())
    if n_fit < 2 or n_pos >= 2:
        return None  # too few scales at all: the fits' own messages name them
    values = cf.curve.value[cf.fit_mask]
    if n_pos == 1:
        why = f"only N={scales_text(cf.curve.x[cf.power_mask])} has a score > 0"
    else:
        why = f"all {n_fit} scores at N > 0 are 0" if np.all(values == 0) else "no score > 0"
    return f"fits not available: {why} (a fit needs at least 2 scales with a score > 0)"


def _boot_rows(cf: CurveFit, mask: np.ndarray) -> np.ndarray | None:
    """The resampled scores of the points in `mask`; None when one of them has no interval."""
    rows = cf.boot[:, mask]
    return None if np.isnan(rows).all(0).any() else rows


def _rows_of(batch, start: int, stop: int | None):
    """Rows start:stop of a batch of fits (PowerLaw, Saturating, BinomialPowerLaw)."""
    return type(batch)(**{f.name: getattr(batch, f.name)[start:stop] for f in fields(batch)})


def _point_and_boot(fit, d: np.ndarray, value: np.ndarray, rows: np.ndarray | None,
                    unavailable):  # fmt: skip
    """The point fit and the fit of every resample, in one batched call (row 0 is the point:
    rows are fitted independently, so this is the same as two calls, with half the overhead).
    `rows` None (a point without an interval): the resamples get `unavailable`."""
    if rows is None:
        return fit(d, value), unavailable
    both = fit(d, np.vstack([value[None, :], rows]))
    return _rows_of(both, 0, 1), _rows_of(both, 1, None)


def _fit_masked(cf: CurveFit, mask: np.ndarray, fit, unavailable) -> tuple:
    """(point, resamples, notes) of `fit` on the points in `mask`; (None, None, [why]) when
    the fit raises FitError."""
    d, rows = cf.curve.x[mask], _boot_rows(cf, mask)
    try:
        point, boot = _point_and_boot(fit, d, cf.curve.value[mask], rows, unavailable)
    except FitError as e:
        return None, None, [str(e)]
    return point, boot, []


def _fit_power(cf: CurveFit) -> list[str]:
    cf.power, cf.power_boot, notes = _fit_masked(
        cf, cf.power_mask, fit_power_law, PowerLaw.unavailable(cf.boot.shape[0])
    )
    if cf.power is not None and np.isnan(cf.power.slope[0]):
        cf.power = cf.power_boot = None
        return ["power law: fewer than 2 distinct scales with a score > 0"]
    return notes


def trials(curve: Curve) -> np.ndarray:
    """Scored items per point (times the seeds averaged there): the binomial fit's weights."""
    return np.nan_to_num(curve.n_items.astype(float), nan=1.0) * curve.n_seeds


def _fit_binomial(cf: CurveFit) -> list[str]:
    """The binomial-likelihood power law over every N > 0 with a score (zeros included)."""
    mask = cf.fit_mask
    fit = partial(fit_binomial_power_law, trials=trials(cf.curve)[mask])
    cf.binomial, cf.binomial_boot, notes = _fit_masked(
        cf, mask, fit, BinomialPowerLaw.unavailable(cf.boot.shape[0])
    )
    if cf.binomial is not None and np.isnan(cf.binomial.slope[0]):
        cf.binomial = cf.binomial_boot = None
        return ["binomial power law: not available (all scores 0 or all 1)"]
    return notes


def _fit_saturating(cf: CurveFit) -> list[str]:
    cf.saturating, cf.saturating_boot, notes = _fit_masked(
        cf, cf.fit_mask, fit_saturating, Saturating.unavailable(cf.boot.shape[0])
    )
    if cf.saturating is not None and cf.saturating.amplitude[0] <= _NO_A:
        return ["saturating fit: A = 0 (the error does not fall with N), so alpha is undetermined"]
    return notes


def _interval_notes(cf: CurveFit) -> list[str]:
    """Points that have a score but no interval (no samples, lm-eval stderr "N/A")."""
    none = np.isfinite(cf.curve.value) & np.isnan(cf.boot).all(0)
    if not none.any():
        return []
    fits = "; so the fits have no intervals" if (none & cf.fit_mask).any() else ""
    return [f"N={scales_text(cf.curve.x[none])}: no interval (no per-item samples and lm-eval's "
            f"stderr is not a number, e.g. 'N/A'){fits}"]  # fmt: skip


def fit_curve(curve: Curve, n_boot: int, level: float, seed: int) -> CurveFit:
    """Fit both forms to a scale curve, on the point values and on every resample.

    The same points are left out of the point fit and of every resample: N = 0 (the baseline),
    scores that are not numbers (a warning) and, for the log-log fit only, scores <= 0."""
    res = hierarchical_scores(curve, n_boot, curve_rng(seed, curve))
    cf = CurveFit(curve=curve, level=level, method=res.method, boot=res.scores,
                  items_boot=res.items_only, noise=res.noise)  # fmt: skip
    cf.warnings = tuple(nan_warnings(curve))
    degenerate = _degenerate(cf)
    notes = (
        [degenerate] if degenerate else [*_fit_power(cf), *_fit_binomial(cf), *_fit_saturating(cf)]
    )
    cf.notes = tuple(notes + _interval_notes(cf))
    return cf


def with_interval(row: dict, name: str, point: float, samples: np.ndarray, level: float) -> None:
    """`name`, `name_lo`, `name_hi`; an estimate outside its own interval is added to `flags`."""
    lo, hi = interval(samples, level)
    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = point, lo, hi
    if not inside(point, lo, hi):
        flag = f"{name} = {point:.4g} lies outside its interval [{lo:.4g}, {hi:.4g}]"
        row["flags"] = "; ".join(filter(None, [row.get("flags", ""), flag]))


def _llo_reason(cf: CurveFit, form: str, mask: np.ndarray, train: np.ndarray) -> str | None:
    """Why the leave-largest-out check of `form` cannot be made (None when it can)."""
    fitted = cf.power if form == "power" else cf.saturating
    need, what = (2, "log-log fit") if form == "power" else (3, "saturating fit")
    if fitted is None:
        return f"no {what}"
    if train.sum() < need:
        return f"needs at least {need + 1} scales in the {what}, has {int(mask.sum())}"
    return None


def _llo_form(cf: CurveFit, row: dict, form: str, train: np.ndarray, k: int) -> None:
    fit = fit_power_law if form == "power" else fit_saturating
    d, held, observed = cf.curve.x[train], cf.curve.x[k], cf.curve.value[k]
    rows = _boot_rows(cf, train)
    fitted, fitted_boot = _point_and_boot(fit, d, cf.curve.value[train], rows, None)
    point = fitted.predict(held)[0, 0]
    boot = fitted_boot.predict(held)[:, 0] if rows is not None else np.full(len(cf.boot), np.nan)
    row[f"llo_{form}_pred"] = point
    with_interval(row, f"llo_{form}_err", point - observed, boot - cf.boot[:, k], cf.level)
    if rows is None:
        row[f"llo_{form}_note"] = "no interval (a point has no interval)"


def leave_largest_out(cf: CurveFit, row: dict) -> None:
    """Refit each form without the largest fitted N, predict the score there; the error's
    interval is bootstrapped (paired). A check that cannot be made says why in llo_<form>_note."""
    if not cf.fit_mask.any():
        row["llo_power_note"] = row["llo_sat_note"] = "no scale N > 0 with a score"
        return
    k = int(np.flatnonzero(cf.fit_mask)[-1])
    row["llo_n"], row["llo_observed"] = cf.curve.x[k], cf.curve.value[k]
    for form, mask in (("power", cf.power_mask), ("sat", cf.fit_mask)):
        train = mask.copy()
        train[k] = False
        reason = _llo_reason(cf, form, mask, train)
        try:
            if reason is None:
                _llo_form(cf, row, form, train, k)
        except FitError as e:
            reason = str(e)
        if reason is not None:
            row[f"llo_{form}_note"] = reason


def _power_columns(cf: CurveFit, row: dict) -> None:
    p, pb, level = cf.power, cf.power_boot, cf.level
    with_interval(row, "inv_b", p.slope[0], pb.slope, level)
    row["b"] = 1.0 / p.slope[0] if p.slope[0] != 0 else math.inf
    with_interval(row, "prefactor", math.exp(p.intercept[0]), np.exp(pb.intercept), level)
    row["r2"] = p.r2[0]


def _binomial_columns(cf: CurveFit, row: dict) -> None:
    b, bb, level = cf.binomial, cf.binomial_boot, cf.level
    row["binom_n_points"] = int(cf.fit_mask.sum())
    with_interval(row, "binom_inv_b", b.slope[0], bb.slope, level)
    with_interval(row, "binom_prefactor", math.exp(b.intercept[0]), np.exp(bb.intercept), level)


def lack_of_fit(cf: CurveFit) -> tuple[float, int, float]:
    """(statistic, degrees of freedom, p-value) of the log-log power law's lack of fit.

    T = Σ_N r_N² / var_N, with r the log-log residuals and var_N the resampled variance of
    log P_N (item noise, plus seed noise when there are several seeds). Its null distribution
    is the bootstrap's own: T* = Σ_N (r*_N - r_N)² / var_N over the resamples, i.e. how much
    the residuals move by noise alone. p = share of T* >= T. A small p: the points scatter
    around the line more than the noise in the intervals allows (a curved truth, or noise the
    intervals leave out, such as seed noise with one seed per N)."""
    mask = cf.power_mask
    k = int(mask.sum())
    if cf.power is None or cf.power_boot is None or k < 3:
        return math.nan, max(k - 2, 0), math.nan
    x = cf.curve.x[mask]
    resid = np.log(cf.curve.value[mask]) - np.log(cf.power.predict(x)[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(cf.boot[:, mask])
        boot_resid = logs - np.log(cf.power_boot.predict(x))
    good = np.isfinite(boot_resid).all(1)
    if good.sum() < 10:
        return math.nan, k - 2, math.nan
    var = logs[good].var(axis=0, ddof=1)
    if not (var > 0).all():
        return math.nan, k - 2, math.nan
    stat = float((resid**2 / var).sum())
    null = (((boot_resid[good] - resid) ** 2) / var).sum(1)
    return stat, k - 2, float((null >= stat).mean())


def _noise_columns(cf: CurveFit, row: dict) -> None:
    """Seeds per point, seed-to-seed and item SDs, and whether seeds are in the intervals."""
    c, trained = cf.curve, cf.fit_mask
    noise = cf.noise
    per_point = c.n_seeds[trained] if trained.any() else np.array([0])
    row["n_seeds"], row["n_seeds_max"] = int(per_point.min()), int(per_point.max())
    row["seed_df"] = noise.df
    row["seed_sd"] = sd.seed_sd_scores(noise, c, trained)
    row["seed_sd_logit"] = noise.sd_logit
    row["item_sd"] = sd.item_sd(c, cf.items_boot, trained)
    row["seed_note"] = "" if noise.included else sd.SINGLE_SEED_NOTE


def _saturating_columns(cf: CurveFit, row: dict) -> None:
    s, sb, level = cf.saturating, cf.saturating_boot, cf.level
    with_interval(row, "sat_E", s.floor[0], sb.floor, level)
    with_interval(row, "sat_A", s.amplitude[0], sb.amplitude, level)
    if s.amplitude[0] > _NO_A:  # with A = 0, alpha does not change the curve: undetermined
        alpha = np.where(sb.amplitude > _NO_A, sb.alpha, np.nan)
        with_interval(row, "sat_alpha", s.alpha[0], alpha, level)
    else:
        row["sat_alpha"] = row["sat_alpha_lo"] = row["sat_alpha_hi"] = math.nan
    row["sat_r2"] = s.r2[0]


def summarise(cf: CurveFit) -> dict[str, object]:
    """One row of fits.csv. `n_points` counts the scales in the log-log fit (of `n_scales`
    with N > 0), `left_out` says why the others are not; `note` why a number is missing and
    `flags` any estimate that lies outside its own interval."""
    c, level = cf.curve, cf.level
    mask = cf.power_mask if cf.power is not None else np.zeros(len(c.x), bool)
    row: dict[str, object] = dict(c.key)
    row.update(n_scales=int((c.x > 0).sum()), n_points=int(mask.sum()),
               left_out="; ".join(left_out(cf)),
               n_min=float(c.x[mask].min()) if mask.any() else math.nan,
               n_max=float(c.x[mask].max()) if mask.any() else math.nan,
               n_items=float(np.nanmin(c.n_items)), ci_level=level, ci_method=cf.method,
               n_boot=cf.boot.shape[0])  # fmt: skip
    at0 = c.x == 0
    if at0.any():
        with_interval(row, "baseline", cf.baseline, cf.boot[:, at0][:, 0], level)
    _noise_columns(cf, row)
    if cf.power is not None and cf.power_boot is not None:
        _power_columns(cf, row)
    row["lof_stat"], row["lof_df"], row["lof_p"] = lack_of_fit(cf)
    if cf.binomial is not None and cf.binomial_boot is not None:
        _binomial_columns(cf, row)
    if cf.saturating is not None and cf.saturating_boot is not None:
        _saturating_columns(cf, row)
    leave_largest_out(cf, row)
    row["note"] = "; ".join(cf.notes)
    row["flags"] = row.pop("flags", "")
    return row


def points(curve: Curve, boot: np.ndarray, method: str, level: float, x_name: str) -> list[dict]:
    """Per-point rows (score with its interval) for tables and error bars."""
    rows = []
    for k, x in enumerate(curve.x):
        row = dict(curve.key)
        row[x_name] = x
        row.update(value=curve.value[k], stderr=curve.stderr[k], n_items=curve.n_items[k],
                   n_seeds=int(curve.n_seeds[k]), ci_method=method)  # fmt: skip
        row["lo"], row["hi"] = interval(boot[:, k], level)
        row["note"] = _point_note(curve.value[k], row["lo"])
        rows.append(row)
    return rows


def _point_note(value: float, lo: float) -> str:
    if not np.isfinite(value):
        return "score is not a number: left out (see warnings)"
    if math.isnan(lo):
        return "no interval: no per-item samples and lm-eval's stderr is not a number"
    return ""


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
            with_interval(row, "examples", float(point.examples_needed(target)[0]),
                          boot.examples_needed(target), cf.level)  # fmt: skip
            row["extrapolated"] = bool(row["examples"] > n_max)
            row["flags"] = row.get("flags", "")
            rows.append(row)
    return rows
