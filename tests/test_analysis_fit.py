"""Fits and their intervals: exact recovery, refusal with too few points, and honest coverage."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.bootstrap import fit_curve, interval, item_weights, resample_scores, summarise
from analysis.curves import Curve, scale_curves
from analysis.fit import FitError, fit_power_law, fit_saturating
from analysis.results import ItemScores, load_run
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
