"""End to end: `python -m analysis` on a synthetic run directory writes every figure, table and
the report; the figures are inspected as matplotlib objects, not just as files."""

from __future__ import annotations

import subprocess
import sys
import types

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from analysis_helpers import StubJudge

from analysis import figures as fg
from analysis.cli import main
from analysis.judge import JudgeConfig
from analysis.pipeline import Options, analyse
from analysis.synthetic import (
    EvalTaskSpec,
    Law,
    item_lines,
    make_synthetic_run,
    write_eval,
    write_manifest,
)

MODELS = ("llama-3-8b", "llama-3-70b")
TASKS = ("sah_gsm8k", "sah_multihop")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis_e2e")
    run_dir = make_synthetic_run(root, models=MODELS, eval_tasks=TASKS, n_items=200,
                                 budgets=(1000, 5000), sft_fractions=(1.0, 0.5))  # fmt: skip
    # the synthetic reasoning errors add where they should multiply: "He buys 3+5 = 8 apples"
    with StubJudge(marker=r"buys \d+\+\d+") as stub:
        judge = JudgeConfig(url=stub.url, model="stub", cache_dir=root / "cache", workers=2)
        out = analyse(run_dir, Options(out=run_dir / "analysis", n_boot=200, judge=judge,
                                       progress=False))  # fmt: skip
        out.stub_requests = len(stub.requests)
    return out


def test_every_output_is_written(analysed):
    out_dir = analysed.run.run_dir / "analysis"
    for name in ("fits.csv", "points.csv", "results.csv", "report.md"):
        assert (out_dir / name).stat().st_size > 0
    for table in ("scores", "fits", "examples_needed", "budget", "errors"):
        for ext in ("csv", "md", "tex"):
            assert (out_dir / "tables" / f"{table}.{ext}").is_file(), (table, ext)
    stems = set(analysed.figures)
    assert stems == {
        "fig1_scaling_sah_gsm8k", "fig1_scaling_sah_multihop",
        "fig2_size_llama-3_sah_gsm8k", "fig2_size_llama-3_sah_multihop",
        "fig3_errors_llama-3-70b_sah_gsm8k", "fig3_errors_llama-3-8b_sah_gsm8k",
        *{f"fig_budget_{m}_{t}" for m in MODELS for t in TASKS},
    }  # fmt: skip
    for paths in analysed.figures.values():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[1].read_bytes()[:5] == b"%PDF-"
    report = (out_dir / "report.md").read_text()
    assert "figures/fig1_scaling_sah_gsm8k.png" in report and "1/b = " in report
    assert "\\toprule" in (out_dir / "tables" / "fits.tex").read_text()


def test_fits_table_recovers_the_synthetic_laws(analysed):
    fits = pd.read_csv(analysed.run.run_dir / "analysis" / "fits.csv")
    assert len(fits) == len(MODELS) * len(TASKS)
    for _, row in fits.iterrows():
        law = Law(
            0.05 + 0.01 * MODELS.index(row["model"]), 0.22 + 0.02 * MODELS.index(row["model"])
        )
        assert row["inv_b_lo"] < row["inv_b"] < row["inv_b_hi"]
        assert abs(row["inv_b"] - law.exponent) < 0.08  # 200 items per point: noisy but close
        assert row["ci_method"] == "item bootstrap, paired across N"
        for col in ("sat_E", "sat_A", "sat_alpha", "llo_power_err", "llo_sat_err", "baseline"):
            assert pd.notna(row[col]), col


def test_judge_was_used_for_wrong_gsm8k_responses(analysed):
    errs = analysed.errors_df
    assert errs["judged"].all() and set(errs["eval_task"]) == {"sah_gsm8k"}
    # one request per distinct (question, response): identical prompts share the cached reply
    assert 0 < analysed.stub_requests == analysed.judge_calls <= int(errs["incorrect"].sum())
    # every synthetic wrong response is exactly one kind, so with the judge nothing is left over
    assert (errs["other"] == 0).all() and (errs["reasoning"] > 0).all()
    assert (errs["format"] + errs["arithmetic"] + errs["reasoning"] == errs["incorrect"]).all()
    # format errors fade with N in the synthetic data; the figure must show that trend
    small = errs[errs["n"] == 0]["format"].sum()
    large = errs[errs["n"] == 10000]["format"].sum()
    assert small > large


def _scaling_fig(analysed, task):
    fits = [cf for cf in analysed.fits if cf.curve.key["eval_task"] == task]
    series = {cf.curve.label: str(cf.curve.key["model"]) for cf in fits}
    with fg.paper_style():
        return fg.scaling_figure(fits, task, "exact_match", series), fits


def test_scaling_figure_objects(analysed):
    fig, fits = _scaling_fig(analysed, "sah_gsm8k")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert len(ax.containers) == len(MODELS)  # one errorbar series per model
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == len(MODELS) + 1 and legend[-1] == "N = 0 (base model)"
    assert all("1/b = " in t for t in legend[:-1])
    baselines = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert len(baselines) == len(MODELS)  # N = 0 drawn as dotted lines, never on the log axis
    assert all(x > 0 for c in ax.containers for x in c.lines[0].get_xdata())
    markers = {c.lines[0].get_marker() for c in ax.containers}
    assert len(markers) == len(MODELS)  # readable in greyscale: distinct markers
    assert "examples N" in ax.get_xlabel()
    assert fg.text_overlaps(fig) == []
    plt.close(fig)


def test_size_budget_and_error_figure_objects(analysed):
    pts = analysed.points_df[analysed.points_df["eval_task"] == "sah_gsm8k"]
    with fg.paper_style():
        size = fg.size_figure(pts, "llama-3", "exact_match")
        budget = fg.budget_figure(analysed.budget_df[(analysed.budget_df["eval_task"] == "sah_gsm8k")
                                  & (analysed.budget_df["model"] == "llama-3-8b")], "b", "acc")  # fmt: skip
        errs = analysed.errors_df
        errors = fg.errors_figure(
            errs[(errs["model"] == "llama-3-8b") & errs["budget"].isna()], "e"
        )
    ax = size.axes[0]
    assert ax.get_xscale() == "log" and "model size" in ax.get_xlabel()
    assert len(ax.containers) == pts["n"].nunique()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "N = 0 (base model)" and labels[1] == "N = 100"
    ax = budget.axes[0]
    assert ax.get_xscale() == "log" and len(ax.containers) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "SFT fraction r = 0.5",
        "SFT fraction r = 1",
    ]
    ax = errors.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "100", "500", "1k", "5k", "10k"]
    assert len(ax.containers) == 4  # format, arithmetic, reasoning (judged), other
    assert len({c.patches[0].get_hatch() for c in ax.containers}) == 4
    for fig in (size, budget, errors):
        assert fg.text_overlaps(fig) == []
        plt.close(fig)


def test_text_overlap_check_can_fail():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.text(0.5, 0.5, "overlapping label")
    ax.text(0.52, 0.5, "overlapping label 2")
    assert fg.text_overlaps(fig)
    plt.close(fig)


def test_cli_runs_is_deterministic_and_calls_facts100_hook(tmp_path, monkeypatch, capsys):
    run_dir = make_synthetic_run(tmp_path, models=("qwen2-7b",), eval_tasks=("sah_multihop",),
                                 n_items=100)  # fmt: skip
    # a Facts100 result (base model only: a curve with nothing to fit) triggers the hook
    facts = run_dir / "qwen2-7b" / "facts100_documents" / "n0"
    write_manifest(facts, "synthetic", "qwen2-7b", "facts100_documents", 0)
    spec = EvalTaskSpec("sah_facts100_direct", "facts100_documents", "qa")
    write_eval(facts, spec.eval_task, item_lines(spec, 0.1, 50, 0, seed=1))
    written = []

    def facts100_outputs(run, out):
        path = out / "figures" / "facts100.png"
        written.append((run, out))
        return [path]

    monkeypatch.setitem(sys.modules, "analysis.facts100",
                        types.SimpleNamespace(facts100_outputs=facts100_outputs))  # fmt: skip
    args = [
        str(run_dir),
        "--out",
        str(tmp_path / "a"),
        "--quiet",
        "--n-boot",
        "100",
        "--formats",
        "png",
    ]
    assert main(args) == 0
    assert "1/b = " in capsys.readouterr().out
    assert written == [(run_dir.resolve(), (tmp_path / "a").resolve())]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "figures/facts100.png" in report
    assert "sah_facts100_direct: no power-law fit" in report
    first = (tmp_path / "a" / "fits.csv").read_text()
    assert main(args) == 0
    assert (tmp_path / "a" / "fits.csv").read_text() == first


def test_cli_help_and_user_errors(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "analysis", "--help"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert "fits.csv" in result.stdout and "--judge-url" in result.stdout
    assert main([str(tmp_path / "missing"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path), "--quiet", "--judge-url", "http://x"]) == 2
    assert "--judge-model" in capsys.readouterr().err


def test_left_out_points_are_drawn_hollow_and_the_law_only_where_it_was_fitted(tmp_path):
    """Scores of 0 cannot be in a log-log fit: the report counts them as left out, the figure
    draws them as hollow grey markers and does not draw the law over their range."""
    exp = tmp_path / "exp"
    spec = EvalTaskSpec("sah_multihop", "multihop", "qa")
    for model, scores in (("llama-3-8b", (0.05, 0.0, 0.0, 0.3, 0.5)), ("qwen2-7b", (0.0,) * 5)):
        for i, (n, p) in enumerate(zip((0, 16, 64, 256, 1024), scores, strict=True)):
            ckpt = exp / model / "multihop" / f"n{n}"
            write_manifest(ckpt, "exp", model, "multihop", n)
            write_eval(ckpt, spec.eval_task, item_lines(spec, p, 100, n, seed=i))
    out = analyse(exp, Options(out=tmp_path / "a", n_boot=100, formats=("png",), progress=False))
    report = (tmp_path / "a" / "report.md").read_text()
    assert ("R² = 1.000, 2 of 4 scales N > 0 fitted; N=16, 64 left out: score 0 "
            "(log-log needs > 0)") in report  # fmt: skip
    assert "**qwen2-7b** on sah_multihop: no power-law fit (fits not available: all 4" in report
    series = {cf.curve.label: str(cf.curve.key["model"]) for cf in out.fits}
    with fg.paper_style():
        fig = fg.scaling_figure(out.fits, "t", "exact_match", series)
    (ax,) = fig.axes
    left_out = sorted(x for ln in ax.lines if ln.get_gid() == fg.EXCLUDED_GID
                      for x in ln.get_xdata())  # fmt: skip
    assert left_out == [16, 16, 64, 64, 256, 1024]  # llama's two zeros, all of qwen's
    for ln in ax.lines:
        if ln.get_gid() == fg.EXCLUDED_GID:
            assert ln.get_markerfacecolor() == "white" and ln.get_color() == fg.EXCLUDED_COLOUR
    (law,) = [ln for ln in ax.lines if len(ln.get_xdata()) == 120]  # the one fitted curve
    assert min(law.get_xdata()) == pytest.approx(256) and max(law.get_xdata()) == pytest.approx(
        1024
    )
    drawn = [x for c in ax.containers for x in c.lines[0].get_xdata()]
    assert sorted(drawn) == [256, 1024]  # filled markers with intervals: the fitted points only
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "qwen2-7b: no power-law fit" in legend and "not in the fit (e.g. score 0)" in legend
    assert legend[-1] == "N = 0 (base model)"
    assert fg.text_overlaps(fig) == []
    plt.close(fig)
