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

from analysis import draw
from analysis import figures as fg
from analysis.cli import main
from analysis.judge import JudgeConfig
from analysis.labels import load_labels
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
        "fig1_scaling", "fig2_size_llama-3", "fig3_errors_sah_gsm8k",
        *{f"fig_budget_{m}" for m in MODELS},
    }  # fmt: skip
    for paths in analysed.figures.values():
        assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[1].read_bytes()[:5] == b"%PDF-"
    report = (out_dir / "report.md").read_text()
    assert "figures/fig1_scaling.png" in report and "1/b = " in report
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


def _clean(fig) -> None:
    """Every figure: no two texts overlap, none is cut off at the edge of the page."""
    assert fg.text_overlaps(fig) == []
    assert fg.text_outside(fig) == []
    plt.close(fig)


def _grid_panels(analysed):
    opt = Options(out=analysed.run.run_dir / "analysis", level=0.9)
    return draw.scaling_panels(analysed, load_labels(opt.labels))["synthetic"]


def test_fig1_is_a_panel_grid_with_each_models_exponent_and_interval(analysed):
    panels = _grid_panels(analysed)
    with fg.paper_style():
        fig = fg.scaling_grid(panels, 0.9)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["GSM8K", "Multihop QA (HotpotQA)"]
    assert [ax.get_ylabel() for ax in axes] == ["exact match (strict: #### answer)", "exact match"]
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])  # one N axis for all panels
    fits = analysed.fits_df.set_index(["model", "eval_task"])
    for ax, task in zip(axes, TASKS, strict=True):
        assert ax.get_xscale() == "log" and len(ax.containers) == len(MODELS)
        legend = ax.get_legend()
        assert legend.get_title().get_text() == "1/b [90% interval]"
        # Llama-3 8B before 70B: models by size, each with its own fitted 1/b and interval
        expected = [
            f"{r['inv_b']:.2f} [{r['inv_b_lo']:.2f}, {r['inv_b_hi']:.2f}]"
            for r in (fits.loc[(m, task)] for m in ("llama-3-8b", "llama-3-70b"))
        ]
        assert [t.get_text() for t in legend.get_texts()] == expected
    (top,) = fig.legends
    assert [t.get_text() for t in top.get_texts()] == ["Llama-3 8B", "Llama-3 70B",
                                                       "N = 0 (base model)"]  # fmt: skip
    _clean(fig)


def test_fig2_panels_per_eval_task_curves_per_n_at_the_true_sizes(analysed):
    pts = analysed.points_df
    ylabel = "exact match (strict: #### answer)"  # longer than a panel is high: wrapped
    panels = [fg.BandPanel(t, ylabel, pts[pts["eval_task"] == t]) for t in TASKS]
    with fg.paper_style():
        fig = fg.size_grid(panels, "Llama-3: score vs model size", 0.9)
    assert len(fig.axes) == len(TASKS)
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and "model size" in ax.get_xlabel()
        curves = [ln for ln in ax.lines if len(ln.get_xdata())]
        assert len(curves) == pts["n"].nunique()  # one curve per N
        for ln in curves:
            assert sorted(ln.get_xdata()) == [8.0, 70.0]  # at the sizes, not shifted sideways
        assert [t.get_text() for t in ax.get_xticklabels()] == ["8B", "70B"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "N = 0 (base model)" and labels[1] == "N = 100"
    assert labels[-1] == "shaded: 90% interval"
    _clean(fig)


def test_budget_figure_draws_every_fraction_at_its_own_budget(analysed):
    budget = analysed.budget_df[analysed.budget_df["model"] == "llama-3-8b"]
    panels = [fg.BandPanel(t, "acc", budget[budget["eval_task"] == t]) for t in TASKS]
    with fg.paper_style():
        fig = fg.budget_grid(panels, "Llama-3 8B", 0.9)
    assert len(fig.axes) == len(TASKS)
    for ax in fig.axes:
        curves = [ln for ln in ax.lines if len(ln.get_xdata())]
        assert len(curves) == 2
        for ln in curves:  # the old sideways dodge put r = 0.5 and r = 1 at different budgets
            assert sorted(ln.get_xdata()) == [1000.0, 5000.0]
        assert len(ax.collections) == 2  # each fraction's interval as a band
        assert ax.get_xscale() == "log" and "budget B" in ax.get_xlabel()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "SFT fraction r = 0.5", "SFT fraction r = 1 (SFT only)", "shaded: 90% interval"]  # fmt: skip
    _clean(fig)


def _error_bars(fig) -> dict[str, list[float]]:
    ax = fig.axes[0]
    return {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}


def test_fig3_leads_with_total_mistakes_and_says_categories_overlap(analysed):
    errs = analysed.errors_df
    counts = errs[(errs["model"] == "llama-3-8b") & errs["budget"].isna()].sort_values("n")
    with fg.paper_style():
        fig = fg.errors_figure(counts, "Llama-3 8B")
    bars = _error_bars(fig)
    assert list(bars) == ["total mistakes", "format (no #### answer)", "arithmetic slip",
                          "reasoning (LLM judge)", "other"]  # fmt: skip
    assert bars["total mistakes"] == counts["incorrect"].tolist()
    assert bars["reasoning (LLM judge)"] == counts["reasoning"].tolist()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "100", "500", "1k", "5k", "10k"]
    assert len({c.patches[0].get_hatch() for c in ax.containers}) == 5  # greyscale-safe
    assert fg.OVERLAP_NOTE in [" ".join(t.get_text().split()) for t in fig.texts]
    assert not [t for t in ax.texts if t.get_gid() == fg.NOT_JUDGED_GID]
    _clean(fig)


def test_fig3_without_a_judge_shows_reasoning_as_not_judged_not_as_zero(analysed):
    errs = analysed.errors_df
    counts = errs[(errs["model"] == "llama-3-8b") & errs["budget"].isna()].assign(judged=False)
    with fg.paper_style():
        fig = fg.errors_grid([("Llama-3 8B", counts), ("Llama-3 70B", counts)], "GSM8K")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        labels = [c.get_label() for c in ax.containers]
        assert "reasoning (LLM judge)" not in labels  # no bar of height 0 for nobody looked
        assert "other (incl. reasoning: not judged)" in labels
        marks = [t for t in ax.texts if t.get_gid() == fg.NOT_JUDGED_GID]
        assert len(marks) == len(counts) and {t.get_text() for t in marks} == {"not judged"}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "reasoning: not judged (no --judge-url)" in legend
    _clean(fig)


def test_user_style_file_is_applied_on_top_of_the_study_style(analysed, tmp_path):
    style = tmp_path / "mine.mplstyle"
    style.write_text("axes.titlesize: 15\nlines.linewidth: 3\n")
    panels = _grid_panels(analysed)
    with fg.paper_style(style):
        fig = fg.scaling_grid(panels, 0.9)
        assert plt.rcParams["pdf.fonttype"] == 42  # the study's settings stay under the user's
    assert fig.axes[0].title.get_fontsize() == 15
    assert max(ln.get_linewidth() for ln in fig.axes[0].lines) == 3
    plt.close(fig)
    with fg.paper_style():
        fig = fg.scaling_grid(panels, 0.9)
    assert fig.axes[0].title.get_fontsize() == 9  # sah.mplstyle
    plt.close(fig)
    with pytest.raises(fg.FigureStyleError, match="missing.mplstyle does not exist"):
        with fg.paper_style(tmp_path / "missing.mplstyle"):
            pass
    # not UTF-8 (was a raw UnicodeDecodeError), a value matplotlib cannot take (was a log line)
    binary, bad = tmp_path / "binary.mplstyle", tmp_path / "bad.mplstyle"
    binary.write_bytes(b"\xff\xfefont.size: 9")
    bad.write_text("font.size: big\n")
    for path, why in ((binary, "utf-8"), (bad, "Could not convert 'big'")):
        with pytest.raises(fg.FigureStyleError, match=f"{path.name}: .*{why}"):
            with fg.paper_style(path):
                pass


def test_labels_and_style_options_reach_the_written_figures(analysed, tmp_path):
    """`Options.labels` / `Options.style` (the CLI's --labels / --style) go through draw_all."""
    labels = tmp_path / "labels.yaml"
    labels.write_text("tasks: {sah_gsm8k: Grade-school maths}\nmodels: {'llama-3-*': Llama}\n")
    opt = Options(out=tmp_path / "out", n_boot=50, formats=("png",), progress=False)
    opt.labels, opt.style = labels, None
    out = types.SimpleNamespace(**{**vars(analysed), "figures": {}, "tables": []})
    seen = []
    real = fg.save

    def keep(fig, folder, stem, formats=fg.FORMATS):
        seen.append((stem, [ax.get_title() for ax in fig.axes], fig))
        return real(fig, folder, stem, formats)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fg, "save", keep)
        draw.draw_all(out, opt)
    titles = dict((stem, t) for stem, t, _ in seen)
    assert titles["fig1_scaling"][0] == "Grade-school maths"
    md = (tmp_path / "out" / "tables" / "fits.md").read_text()
    assert "Grade-school maths" in md and "| Llama " in md
    assert "sah_gsm8k" in (tmp_path / "out" / "tables" / "fits.csv").read_text()  # ids in CSV
    assert (tmp_path / "out" / "figures" / "fig1_scaling.png").is_file()


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

    def facts100_outputs(run, out, **options):
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
    # the hook is handed the run already loaded, not its folder to read (and warn about) again
    ((run, out),) = written
    assert run.run_dir == run_dir.resolve() and out == (tmp_path / "a").resolve()
    assert "sah_facts100_direct" in set(run.table["eval_task"])
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
