"""Presentation tables: built as DataFrames, written by pandas (Markdown via tabulate, LaTeX via
Styler with booktabs); the fits table takes new fits.csv columns; "not judged" is not 0."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import tables as tb
from analysis.labels import Labels


def _fit_row(**extra) -> dict:
    row = {"model": "llama-3-8b", "task": "gsm8k", "eval_task": "sah_gsm8k",
           "metric": "exact_match", "filter": "strict-match", "n_points": 5, "n_scales": 5,
           "inv_b": 0.25, "inv_b_lo": 0.2, "inv_b_hi": 0.3, "prefactor": 0.05,
           "prefactor_lo": 0.04, "prefactor_hi": 0.06, "r2": 0.98, "baseline": 0.1,
           "baseline_lo": 0.08, "baseline_hi": 0.12, "sat_E": 0.1, "sat_E_lo": 0.0,
           "sat_E_hi": 0.2, "sat_alpha": 0.3, "sat_alpha_lo": 0.2, "sat_alpha_hi": 0.4,
           "llo_power_err": 0.01, "llo_power_err_lo": -0.02, "llo_power_err_hi": 0.04,
           "left_out": "", "note": "", "flags": ""}  # fmt: skip
    return {**row, **extra}


def test_markdown_is_a_padded_pipe_table_with_pipes_in_cells_escaped():
    df = pd.DataFrame({"model": ["llama-3-8b", "a"], "settings": ["x | y", "0-shot"]})
    md = tb.to_markdown(df)
    lines = md.strip().split("\n")
    assert len(lines) == 4 and lines[1].startswith("|:-")
    # padded columns (readable as plain text): every line has the same length
    assert len({len(line) for line in lines}) == 1
    assert "x \\| y" in lines[2]
    assert [c.strip() for c in lines[2].strip("|").split(" | ")] == ["llama-3-8b", "x \\| y"]


def test_latex_is_a_booktabs_float_with_specials_escaped():
    df = pd.DataFrame({"eval_task": ["sah_gsm8k"], "examples needed": ["∞ [5,000, ∞]"],
                       "share %": ["50% & up"]})  # fmt: skip
    tex = tb.to_latex(df, "Fits: 1/b & E_0 (90%)", "tab:fits")
    for piece in (r"\begin{table}[t]", r"\centering", r"\toprule", r"\midrule", r"\bottomrule",
                  r"\label{tab:fits}", r"\begin{tabular}{lll}"):  # fmt: skip
        assert piece in tex, piece
    assert r"\caption{Fits: 1/b \& E\_0 (90\%)}" in tex
    assert r"eval\_task & examples needed & share \% \\" in tex
    assert r"sah\_gsm8k & $\infty$ [5,000, $\infty$] & 50\% \& up \\" in tex


def test_fits_table_shows_new_columns_only_when_the_fits_have_them():
    plain = tb.fits_table(pd.DataFrame([_fit_row()]))
    assert "1/b (binomial fit)" not in plain and "seed SD" not in plain
    assert plain.iloc[0]["1/b"] == "0.250 [0.200, 0.300]"
    rich = tb.fits_table(pd.DataFrame([_fit_row(
        binom_inv_b=0.22, binom_inv_b_lo=0.18, binom_inv_b_hi=0.26, lof_p=0.41, seed_sd=0.012,
        item_sd=0.009, n_seeds=3, n_seeds_max=3, seed_note="")]))  # fmt: skip
    cells = rich.iloc[0]
    assert cells["1/b (binomial fit)"] == "0.220 [0.180, 0.260]"
    assert (cells["lack-of-fit p"], cells["seed SD"], cells["item SD"]) == ("0.410", "0.012",
                                                                             "0.009")  # fmt: skip
    assert cells["seeds per N"] == "3"
    headers = list(rich.columns)
    assert headers.index("1/b") < headers.index("1/b (binomial fit)") < headers.index("notes")
    # one seed everywhere: no "seeds per N" column
    one = tb.fits_table(pd.DataFrame([_fit_row(n_seeds=1, n_seeds_max=1)]))
    assert "seeds per N" not in one


def test_fits_table_columns_are_a_list_one_can_extend():
    columns = [*tb.FIT_COLUMNS[:-1], tb.interval_column("my 1/b", "my_inv_b"), tb.FIT_COLUMNS[-1]]
    table = tb.fits_table(pd.DataFrame([_fit_row(my_inv_b=0.3, my_inv_b_lo=0.2,
                                                 my_inv_b_hi=0.4)]), columns)  # fmt: skip
    assert list(table.columns)[-2:] == ["my 1/b", "notes"]
    assert table.iloc[0]["my 1/b"] == "0.300 [0.200, 0.400]"
    missing = tb.fits_table(pd.DataFrame([_fit_row()]), columns)  # a missing value: a dash
    assert missing.iloc[0]["my 1/b"] == "–"


def _counts(judged: bool) -> pd.DataFrame:
    return pd.DataFrame({"experiment": "e", "model": "m", "task": "gsm8k",
                         "eval_task": "sah_gsm8k", "n": [100, 0], "budget": math.nan,
                         "responses": 10, "correct": [6, 4], "incorrect": [4, 6], "format": [1, 3],
                         "arithmetic": [2, 2], "reasoning": [1 if judged else 0, 2 if judged else 0],
                         "other": [1, 1], "judged": judged})  # fmt: skip


def test_errors_table_says_not_judged_instead_of_zero():
    table = tb.errors_table(_counts(judged=False))
    assert table["reasoning"].tolist() == ["not judged", "not judged"]
    assert table["n"].tolist() == [0, 100] and table["incorrect (total)"].tolist() == [6, 4]
    judged = tb.errors_table(_counts(judged=True))
    assert judged["reasoning"].tolist() == [2, 1]
    unread = tb.errors_table(_counts(judged=True).assign(judge_unreadable=[0, 3]))
    assert unread["reasoning"].tolist() == ["2 (+3 unreadable)", 1]
    assert tb.errors_table(_counts(True).iloc[:0]).empty


def test_write_table_keeps_identifiers_in_csv_and_shows_labels_in_md_and_tex(tmp_path):
    df = tb.fits_table(pd.DataFrame([_fit_row()]))
    paths = tb.write_table(df, tmp_path, "fits", "Fits", Labels.defaults())
    assert [p.name for p in paths] == ["fits.csv", "fits.md", "fits.tex"]
    csv = pd.read_csv(tmp_path / "fits.csv")
    assert csv.loc[0, "model"] == "llama-3-8b" and csv.loc[0, "eval_task"] == "sah_gsm8k"
    md = (tmp_path / "fits.md").read_text()
    assert md.startswith("**Fits**\n\n|") and "| Llama-3 8B " in md and "| GSM8K " in md
    assert "| eval task " in md and "| trained on " in md
    assert "Llama-3 8B & GSM8K & GSM8K &" in (tmp_path / "fits.tex").read_text()


@pytest.mark.parametrize(("value", "cell"), [(math.inf, "∞"), (math.nan, "–"), (12345.4, "12,345")])
def test_count_cells(value, cell):
    assert tb.count(value) == cell
