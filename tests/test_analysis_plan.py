"""`python -m analysis plan`: items and seeds needed for a target half-width on 1/b."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.plan import Truth, cheapest, half_widths
from analysis.synthetic import make_synthetic_run

SCALES = np.array([100.0, 500.0, 1000.0, 5000.0, 10000.0])


def _truth(seed_sd: float) -> Truth:
    return Truth("t", SCALES, 0.02 * SCALES**0.3, seed_sd, "assumed")


def test_half_width_shrinks_with_items_and_seeds_and_matches_the_binomial_spread():
    table = half_widths(_truth(0.15), (250, 4000), (1, 8), sims=1000, level=0.9)
    hw = table.set_index(["items", "seeds"])["half_width"]
    assert hw[(4000, 1)] < hw[(250, 1)] and hw[(250, 8)] < hw[(250, 1)]
    assert hw[(4000, 8)] == table["half_width"].min()
    assert (table["bias"].abs() < 0.01).all()
    # no seed noise: the half-width of one seed is z_0.95 · the OLS slope's binomial SD
    (row,) = half_widths(_truth(0.0), (1000,), (1,), sims=2000, level=0.9).itertuples()
    p = 0.02 * SCALES**0.3
    x = np.log(SCALES) - np.log(SCALES).mean()
    var_logp = (1 - p) / (p * 1000)  # delta method: Var(log p_hat)
    expected = 1.645 * np.sqrt((x * x * var_logp).sum()) / (x * x).sum()
    assert row.half_width == pytest.approx(expected, rel=0.1)


def test_cheapest_design_prefers_fewer_seeds_then_fewer_items():
    table = pd.DataFrame({"items": [500, 1000, 500, 1000], "seeds": [1, 1, 3, 3],
                          "half_width": [0.05, 0.019, 0.018, 0.01]})  # fmt: skip
    best = cheapest(table, 0.02)
    assert (best["seeds"], best["items"]) == (1, 1000)
    assert cheapest(table, 0.001) is None


def test_plan_command_from_assumed_accuracies(capsys, tmp_path):
    out = tmp_path / "plan.csv"
    code = main(["plan", "--accuracies", "0.08,0.13,0.16,0.26,0.32", "--items", "500,4000",
                 "--seeds", "1,8", "--half_width", "0.05", "--sims", "300", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "seed SD 0.150 logits (assumed)" in text and "-> ±0.05 needs" in text
    table = pd.read_csv(out)
    assert len(table) == 4 and set(table["seeds"]) == {1, 8}


def test_plan_command_from_a_pilot_takes_its_seed_sd_and_item_count(capsys, tmp_path):
    run = make_synthetic_run(tmp_path, models=("llama-3-8b",), n_items=300, n_seeds=3,
                             seed_sd=0.3)  # fmt: skip
    assert main(["plan", "--pilot", str(run), "--items", "1000", "--seeds", "1,3",
                 "--sims", "200"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "llama-3-8b gsm8k->sah_gsm8k" in text and "logits (pilot (10 df))" in text
    assert "\n300 " in text  # the pilot's own item count is one of the rows


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accuracies", "0.1,0.2", "--scales", "100,500,1000"], "one accuracy per scale"),
        (["--accuracies", "0.1,1.2,0.3", "--scales", "1,2,3"], "strictly between 0 and 1"),
        (["--accuracies", "0.1,0.2,0.3", "--scales", "0,100,500"], "at least 3 scales N > 0"),
        (["--accuracies", "0.1,0.2,0.3,0.4,0.5", "--half-width", "0"], "--half-width must be > 0"),
    ],
)
def test_plan_bad_input_is_one_clear_line(capsys, argv, message):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_plan_out_that_cannot_be_written_is_one_clear_line_before_the_simulation(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["plan", "--accuracies", "0.1,0.2,0.3", "--scales", "100,500,1000", "--sims", "100"]
    assert main([*argv, "--out", str(blocker / "plan.csv")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "a-file" in captured.err
    assert "Traceback" not in captured.err and "half-width" not in captured.out
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main([*argv, "--items", "100", "--seeds", "1", "--out", str(folder)]) == 2
    assert str(folder) in capsys.readouterr().err


def test_a_pilot_without_item_counts_plans_on_the_items_grid(capsys, tmp_path):
    """Results without n-samples/sample_len give NaN item counts: that was a raw ValueError."""
    import json

    run = make_synthetic_run(tmp_path, models=("llama-3-8b",), n_items=50, n_seeds=2)
    for path in run.rglob("results_*.json"):
        data = json.loads(path.read_text())
        data.pop("n-samples", None)
        for metrics in data["results"].values():
            metrics.pop("sample_len", None)
        path.write_text(json.dumps(data))
    for path in run.rglob("samples_*.jsonl"):
        path.unlink()  # nothing left to count items from
    code = main(["plan", "--pilot", str(run), "--items", "100", "--seeds", "1", "--sims", "100"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 0, captured.err
    assert "\n100 " in captured.out


def test_plan_ci_out_of_range_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["plan", "--accuracies", "0.1,0.2,0.3", "--ci", "1.5"])
    assert stop.value.code == 2 and "--ci must be in (0, 1)" in capsys.readouterr().err
