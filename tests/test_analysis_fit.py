"""Fits and their intervals: exact recovery, refusal with too few points, and honest coverage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import tables as tb
from analysis.bootstrap import (
    NO_INTERVAL,
    fit_curve,
    inside,
    interval,
    inverse,
    item_weights,
    points,
    resample_scores,
    summarise,
    with_interval,
)
from analysis.curves import Curve, scale_curves
from analysis.fit import FitError, fit_power_law, fit_saturating
from analysis.pipeline import Options, analyse
from analysis.results import ItemScores, ResultsError, load_run
from analysis.synthetic import Law, make_synthetic_run

D = np.array([100.0, 500.0, 1000.0, 5000.0, 10000.0])
TRUE_EXPONENT = 0.25


def test_power_law_recovers_exact_exponent_and_prefactor():
    fit = fit_power_law(D, 0.08 * D**0.25)
    assert fit.slope[0] == pytest.approx(0.25, abs=1e-12)
    assert np.exp(fit.intercept[0]) == pytest.approx(0.08, rel=1e-10)
    assert fit.r2[0] == pytest.approx(1.0)
    # inverse use: N needed for P = 0.5 is (0.5 / 0.08) ** 4
    assert fit.examples_needed(0.5)[0] == pytest.approx((0.5 / 0.08) ** 4, rel=1e-9)


def test_power_law_leaves_out_zero_scores_per_row():
    p = np.vstack([0.1 * D**0.3, 0.1 * D**0.3])
    p[1, 0] = 0.0  # log(0) is undefined: that row is fitted on the other four points
    fit = fit_power_law(D, p)
    np.testing.assert_allclose(fit.slope, [0.3, 0.3], atol=1e-12)
    assert list(fit.n_points) == [5, 4]
    with pytest.raises(FitError, match="at least 2"):
        fit_power_law(D[:1], p[:1, :1])


@pytest.mark.parametrize(
    ("floor", "amp", "alpha"),
    [(0.1, 2.0, 0.5), (0.0, 3.0, 0.3), (0.25, 0.8, 0.9), (0.05, 10.0, 1.5)],
)
def test_saturating_recovers_exact_parameters(floor, amp, alpha):
    p = 1.0 - (floor + amp * D**-alpha)
    fit = fit_saturating(D, p)
    assert fit.floor[0] == pytest.approx(floor, abs=1e-6)
    assert fit.amplitude[0] == pytest.approx(amp, rel=1e-4)
    assert fit.alpha[0] == pytest.approx(alpha, rel=1e-4)
    target = 1.0 - floor - amp * 2000.0**-alpha
    assert fit.examples_needed(target)[0] == pytest.approx(2000.0, rel=1e-3)
    assert np.isinf(fit.examples_needed(1.0 - floor / 2)[0]) or floor == 0.0  # below the floor


def test_saturating_with_three_points_fits_and_with_two_refuses():
    d = np.array([100.0, 1000.0, 10000.0])
    fit = fit_saturating(d, 1.0 - (0.2 + 3.0 * d**-0.7))
    assert np.isfinite([fit.floor[0], fit.amplitude[0], fit.alpha[0]]).all()
    np.testing.assert_allclose(fit.predict(d)[0], 1.0 - (0.2 + 3.0 * d**-0.7), atol=1e-6)
    for k in (1, 2):
        with pytest.raises(FitError, match=rf"at least 3 data scales with N > 0, got {k}"):
            fit_saturating(d[:k], np.full(k, 0.5))
    with pytest.raises(FitError, match="N = 0 is the baseline"):
        fit_saturating(np.array([0.0, 10.0, 100.0]), np.array([0.1, 0.2, 0.3]))


def test_saturating_flat_data_has_no_amplitude():
    fit = fit_saturating(D, np.full(5, 0.7))
    assert fit.floor[0] == pytest.approx(0.3)
    assert fit.amplitude[0] == pytest.approx(0.0, abs=1e-12)


def test_fit_recovers_exponent_from_synthetic_run_directory(tmp_path):
    run_dir = make_synthetic_run(tmp_path, models=("llama-3-8b",), eval_tasks=("sah_multihop",),
                                 law=lambda i, t: Law(0.08, TRUE_EXPONENT, 0.05), n_items=1000)  # fmt: skip
    run = load_run(run_dir, progress=False)
    rows = run.table[(run.table["metric"] == "exact_match")]
    (curve,) = scale_curves(run, rows)
    assert list(curve.x) == [0, 100, 500, 1000, 5000, 10000]
    row = summarise(fit_curve(curve, n_boot=1000, level=0.9, seed=0))
    assert row["ci_method"].startswith("item bootstrap, paired")
    assert row["inv_b_lo"] <= TRUE_EXPONENT <= row["inv_b_hi"]
    assert row["inv_b"] == pytest.approx(TRUE_EXPONENT, abs=0.04)
    assert 0.0 < row["inv_b_hi"] - row["inv_b_lo"] < 0.1
    assert row["baseline_lo"] <= 0.05 <= row["baseline_hi"]
    # leave-largest-out: fitted on N <= 5000, the power law predicts N = 10000 within its interval
    assert row["llo_n"] == 10000
    assert row["llo_power_err_lo"] <= 0.0 <= row["llo_power_err_hi"]


def _simulate_curve(rng: np.random.Generator, law: Law, items: int) -> np.ndarray:
    p = np.array([law.accuracy(d) for d in D])
    return (rng.random((len(D), items)) < p[:, None]).astype(float)


def test_item_bootstrap_interval_covers_truth_about_90_percent_of_the_time():
    """200 simulated studies (accuracy 0.08*N^0.25, binomial noise over 1000 items): the 90%
    item-bootstrap interval of 1/b must contain 0.25 in about 90% of them. With 200 studies
    the observed rate has a standard error of ~2 points, so [0.84, 0.96] is a 3-sigma band."""
    rng = np.random.default_rng(12345)
    law, sims, items, n_boot = Law(0.08, TRUE_EXPONENT), 200, 1000, 400
    hits, widths = 0, []
    for _ in range(sims):
        x = _simulate_curve(rng, law, items)
        boot = (item_weights(rng, n_boot, items) @ x.T) / items
        lo, hi = interval(fit_power_law(D, boot).slope, 0.9)
        hits += lo <= TRUE_EXPONENT <= hi
        widths.append(hi - lo)
    assert 0.84 <= hits / sims <= 0.96, hits / sims
    # and the intervals are informative, not trivially wide
    assert 0.01 < np.median(widths) < 0.08


def test_resampling_is_paired_across_checkpoints():
    """One resample draws the same items for every N: identical item scores stay identical."""
    x = np.random.default_rng(0).random(300) < 0.4
    items = [ItemScores(np.arange(300), x.astype(float), np.ones(300)) for _ in range(3)]
    curve = Curve({"model": "m"}, np.array([10.0, 100.0, 1000.0]), np.full(3, x.mean()),
                  np.full(3, np.nan), np.full(3, 300.0), items)  # fmt: skip
    boot, method = resample_scores(curve, 200, np.random.default_rng(1))
    assert method.startswith("item bootstrap, paired")
    np.testing.assert_array_equal(boot[:, 0], boot[:, 2])
    assert boot[:, 0].std() > 0.01


def test_unpaired_and_parametric_fallbacks_are_reported():
    rng = np.random.default_rng(0)
    a = ItemScores(np.arange(100), (rng.random(100) < 0.5).astype(float), np.ones(100))
    b = ItemScores(np.arange(50, 150), (rng.random(100) < 0.5).astype(float), np.ones(100))
    curve = Curve({"model": "m"}, np.array([10.0, 100.0, 1000.0]), np.array([a.value, b.value, 0.6]),
                  np.array([np.nan, np.nan, 0.02]), np.full(3, 100.0), [a, b, None])  # fmt: skip
    boot, method = resample_scores(curve, 2000, rng)
    assert "unpaired" in method and "normal approximation" in method
    assert boot[:, 2].std() == pytest.approx(0.02, rel=0.1)


def test_without_samples_intervals_come_from_lm_eval_stderr(tmp_path):
    run_dir = make_synthetic_run(tmp_path, models=("llama-3-8b",), eval_tasks=("sah_multihop",),
                                 law=lambda i, t: Law(0.08, TRUE_EXPONENT, 0.05), n_items=400,
                                 log_samples=False)  # fmt: skip
    run = load_run(run_dir, progress=False)
    assert not run.table["has_samples"].any() and not run.items
    (curve,) = scale_curves(run, run.table[run.table["metric"] == "exact_match"])
    row = summarise(fit_curve(curve, n_boot=500, level=0.9, seed=0))
    assert row["ci_method"].startswith("normal approximation from lm-eval stderr")
    assert row["inv_b_lo"] < row["inv_b"] < row["inv_b_hi"]
    assert row["inv_b"] == pytest.approx(TRUE_EXPONENT, abs=0.06)


# ---------------------------------------------------------------- every point accounted for

KEY = {"experiment": "e", "model": "m", "task": "t", "eval_task": "sah_multihop",
       "metric": "exact_match", "filter": "none", "family": None, "size_b": None}  # fmt: skip


def _items_curve(scores, xs=(0.0, 16.0, 64.0, 256.0, 1024.0), n=200) -> Curve:
    """A curve whose points are scored on the same n items (paired), item i right when i < p*n."""
    items = []
    for k, p in enumerate(scores):
        right = np.roll(np.arange(n) < round(p * n), 7 * k)
        items.append(ItemScores(np.arange(n), right.astype(float), np.ones(n)))
    return Curve(dict(KEY), np.array(xs), np.array([it.value for it in items]),
                 np.full(len(xs), 0.01), np.full(len(xs), float(n)), items)  # fmt: skip


def _estimates_inside_intervals(row: dict) -> list[str]:
    """Names of estimates that lie outside their own interval."""
    return [name for name in row if f"{name}_lo" in row and f"{name}_hi" in row
            and not inside(row[name], row[f"{name}_lo"], row[f"{name}_hi"])]  # fmt: skip


def test_zero_scores_are_left_out_of_the_log_log_fit_and_said_so():
    cf = fit_curve(_items_curve([0.05, 0.0, 0.0, 0.3, 0.5]), n_boot=300, level=0.9, seed=0)
    row = summarise(cf)
    assert (row["n_points"], row["n_scales"]) == (2, 4)
    assert row["left_out"] == "N=16, 64 left out: score 0 (log-log needs > 0)"
    assert tb.fitted_scales(row) == (
        "2 of 4 scales N > 0 fitted; N=16, 64 left out: score 0 (log-log needs > 0)"
    )
    assert (row["n_min"], row["n_max"]) == (256.0, 1024.0)
    # the saturating fit can use the zeros (error 1); the log-log check cannot be made: why
    assert np.isfinite(row["sat_E"]) and np.isnan(row.get("llo_power_err", np.nan))
    assert row["llo_power_note"] == "needs at least 3 scales in the log-log fit, has 2"
    cells = tb.fits_table(pd.DataFrame([row])).iloc[0]
    assert cells["scales fitted (log-log)"] == "2 of 4"
    assert cells["leave-largest-out error (power)"].startswith("n/a: needs at least 3")
    assert "N=16, 64 left out: score 0" in cells["notes"]


@pytest.mark.parametrize(
    ("scores", "why"),
    [
        ([0.0, 0.0, 0.0, 0.0, 0.0], "all 4 scores at N > 0 are 0"),
        ([0.05, 0.0, 0.0, 0.0, 0.3], "only N=1024 has a score > 0"),
    ],
)
def test_degenerate_curve_has_no_fit_and_no_estimate_outside_its_interval(scores, why):
    cf = fit_curve(_items_curve(scores), n_boot=300, level=0.9, seed=0)
    assert cf.power is None and cf.saturating is None
    row = summarise(cf)
    assert why in row["note"] and "fits not available" in row["note"]
    for name in ("inv_b", "sat_E", "sat_alpha", "llo_power_err", "llo_sat_err"):
        assert np.isnan(row.get(name, np.nan)), name
    assert row["llo_power_note"] == "no log-log fit"
    assert _estimates_inside_intervals(row) == [] and row["flags"] == ""
    cells = tb.fits_table(pd.DataFrame([row])).iloc[0]
    assert cells["alpha"] == "–" and cells["1/b"] == "–" and why in cells["notes"]


def test_estimates_outside_their_interval_are_flagged():
    # a flat curve: A = 0, so alpha says nothing about the curve and is not reported
    flat = summarise(fit_curve(_items_curve([0.3] * 5), n_boot=200, level=0.9, seed=0))
    assert np.isnan(flat["sat_alpha"]) and "alpha is undetermined" in flat["note"]
    assert _estimates_inside_intervals(flat) == []
    row: dict = {}
    with_interval(row, "sat_alpha", 0.047, np.full(100, 0.833), 0.9)
    assert row["flags"] == "sat_alpha = 0.047 lies outside its interval [0.833, 0.833]"
    assert tb.ci(0.047, 0.833, 0.833).endswith("(estimate outside its interval)")
    assert tb.ci(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"


def _set_result(results_file, key: str, value) -> None:
    data = json.loads(results_file.read_text())
    data["results"]["sah_multihop"][key] = value
    results_file.write_text(json.dumps(data))


def test_nan_score_is_named_left_out_everywhere_and_the_analysis_goes_on(tmp_path):
    run_dir = make_synthetic_run(tmp_path, models=("llama-3-8b",), eval_tasks=("sah_multihop",),
                                 law=lambda i, t: Law(0.08, TRUE_EXPONENT, 0.05), n_items=300)  # fmt: skip
    results = next((run_dir / "llama-3-8b" / "multihop" / "n1000").rglob("results_*.json"))
    _set_result(results, "exact_match,none", float("nan"))
    out = analyse(run_dir, Options(out=tmp_path / "a", n_boot=100, formats=("png",),
                                   progress=False))  # fmt: skip
    (warning,) = [w for w in out.run.warnings if "score is NaN" in w]
    assert "llama-3-8b multihop->sah_multihop exact_match,none: N=1000" in warning
    assert str(results) in warning and "llama-3-8b/multihop/n1000" in warning
    (cf,) = out.fits
    k = list(cf.curve.x).index(1000.0)
    assert np.isnan(cf.boot[:, k]).all()  # its items are not resampled either
    row = out.fits_df.iloc[0]
    assert (row["n_points"], row["n_scales"]) == (4, 5) and "N=1000 left out" in row["left_out"]
    assert row["inv_b_lo"] <= row["inv_b"] <= row["inv_b_hi"]
    assert np.isfinite(row["llo_power_err"]) and np.isfinite(row["sat_alpha"])
    point = out.points_df[out.points_df["n"] == 1000].iloc[0]
    assert np.isnan(point["lo"]) and "not a number" in point["note"]
    assert "NaN (left out)" in (tmp_path / "a" / "tables" / "scores.md").read_text()
    assert any(stem.startswith("fig1_scaling") for stem in out.figures)  # drawn all the same
    with pytest.raises(ResultsError, match="N=1000: score is NaN in checkpoint"):
        analyse(run_dir, Options(out=tmp_path / "b", n_boot=20, formats=("png",), strict=True,
                                 progress=False))  # fmt: skip


def test_stderr_na_without_samples_gives_no_interval_not_a_zero_width_one(tmp_path):
    run_dir = make_synthetic_run(tmp_path, models=("llama-3-8b",), eval_tasks=("sah_multihop",),
                                 n_items=200, log_samples=False)  # fmt: skip
    for results in run_dir.rglob("results_*.json"):
        _set_result(results, "exact_match_stderr,none", "N/A")
    run = load_run(run_dir, progress=False)
    (curve,) = scale_curves(run, run.table[run.table["metric"] == "exact_match"])
    assert np.isnan(curve.stderr).all()
    cf = fit_curve(curve, n_boot=200, level=0.9, seed=0)
    assert cf.method == NO_INTERVAL
    pts = pd.DataFrame(points(cf.curve, cf.boot, cf.method, 0.9, "n"))
    assert pts["lo"].isna().all() and pts["hi"].isna().all()
    assert pts["note"].str.startswith("no interval").all()
    row = summarise(cf)
    assert np.isfinite(row["inv_b"]) and np.isnan(row["inv_b_lo"]) and np.isnan(row["inv_b_hi"])
    assert "no interval" in row["note"] and "'N/A'" in row["note"]
    assert tb.ci(row["inv_b"], row["inv_b_lo"], row["inv_b_hi"]).endswith("[n/a]")
    assert all(np.isnan(r["examples_lo"]) for r in inverse(cf, [0.5]))  # NaN, not [inf, inf]


def test_binomial_power_law_recovers_exact_law_and_keeps_zero_scores():
    from analysis.fit import fit_binomial_power_law

    fit = fit_binomial_power_law(D, 0.08 * D**0.25, 1000)
    assert fit.slope[0] == pytest.approx(0.25, abs=1e-8)
    assert np.exp(fit.intercept[0]) == pytest.approx(0.08, rel=1e-7)
    # a score of 0 is information (the accuracy is small there), not a point to drop
    cf = fit_curve(_items_curve([0.05, 0.0, 0.02, 0.3, 0.5]), n_boot=200, level=0.9, seed=0)
    row = summarise(cf)
    assert row["n_points"] == 3 and row["binom_n_points"] == 4  # N = 0 is in neither
    assert row["binom_inv_b_lo"] <= row["binom_inv_b"] <= row["binom_inv_b_hi"]


def test_binomial_fit_is_more_efficient_than_log_log_least_squares():
    """Same simulated studies (0.02·N^0.3, 1,319 items): the binomial likelihood's 1/b
    scatters less than the log-log fit's (about 10% smaller SD measured)."""
    from analysis.fit import fit_binomial_power_law

    rng = np.random.default_rng(0)
    scores = rng.binomial(1319, 0.02 * D**0.3, size=(2000, len(D))) / 1319
    binomial = fit_binomial_power_law(D, scores, 1319).slope
    loglog = fit_power_law(D, scores).slope
    assert abs(binomial.mean() - 0.3) < 0.003 and abs(loglog.mean() - 0.3) < 0.003
    assert binomial.std() < 0.95 * loglog.std()


def test_lack_of_fit_flags_a_saturating_truth_and_not_a_power_law():
    """With 4000 items per point, a truth that bends (err = 0.1 + 5·N^-0.5) scatters around
    a straight log-log line far more than item noise allows; a true power law does not."""
    from analysis.simulate import Setting, simulate_curve

    rng = np.random.default_rng(2)
    xs = (0.0, *D)
    bent = Setting(xs, (0.05, *(1 - (0.1 + 5.0 * d**-0.5) for d in D)), n_items=4000)
    straight = Setting(xs, (0.05, *(0.02 * d**0.3 for d in D)), n_items=4000)

    def p_values(setting, studies):
        return np.array([summarise(fit_curve(simulate_curve(rng, setting), 200, 0.9, s))["lof_p"]
                         for s in range(studies)])  # fmt: skip

    p_bent, p_straight = p_values(bent, 4), p_values(straight, 24)
    assert p_bent.max() < 0.01, p_bent
    assert np.mean(p_straight < 0.05) <= 0.2, p_straight
    assert 0.2 < np.median(p_straight) < 0.8  # p-values of a true model spread over (0, 1)
