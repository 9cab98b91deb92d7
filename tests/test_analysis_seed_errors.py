"""The error taxonomy with several training seeds: one row per seed, one bar group per N."""

from __future__ import annotations

import pandas as pd

from analysis import draw
from analysis.pipeline import Options, analyse
from analysis.synthetic import make_synthetic_run


def test_errors_keep_each_seed_and_fig3_averages_them(tmp_path):
    run = make_synthetic_run(tmp_path, models=("llama-3-8b",), eval_tasks=("sah_gsm8k",),
                             scales=(0, 100, 1000), n_items=80, n_seeds=3, seed_sd=0.3)  # fmt: skip
    out = analyse(run, Options(out=tmp_path / "an", n_boot=20, formats=("png",), progress=False))
    errs = pd.read_csv(tmp_path / "an" / "errors.csv")
    assert sorted(errs.loc[errs["n"] == 100, "seed"]) == [0, 1, 2]
    assert list(errs.loc[errs["n"] == 0, "seed"]) == [0]  # the base model is seed-free
    bars = draw.seed_mean(out.errors_df)
    assert list(bars["n"]) == [0, 100, 1000]  # one group per N, not per checkpoint
    at_100 = errs[errs["n"] == 100]
    assert bars.loc[bars["n"] == 100, "format"].item() == at_100["format"].mean()
    assert "fig3_errors_sah_gsm8k" in out.figures
