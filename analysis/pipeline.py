"""The whole analysis of one run directory: read, fit with intervals, categorise errors, draw,
tabulate, report. `python -m analysis` is a thin command line over `analyse`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analysis import figures as fg
from analysis import tables as tb
from analysis.atomic import remove_stale_temps, write_text
from analysis.bootstrap import (
    CurveFit,
    curve_rng,
    fit_curve,
    inverse,
    nan_warnings,
    points,
    resample_scores,
    summarise,
)
from analysis.curves import budget_curves, scale_curves, select_primary
from analysis.errors import error_counts
from analysis.judge import Judge, JudgeConfig
from analysis.metrics import MetricKey
from analysis.results import ResultsError, RunData, load_run

log = logging.getLogger(__name__)


@dataclass
class Options:
    out: Path
    n_boot: int = 1000
    level: float = 0.90
    seed: int = 0
    metrics: dict[str, MetricKey] = field(default_factory=dict)
    targets: tuple[float, ...] = (0.5, 0.75)
    judge: JudgeConfig | None = None
    error_tasks: str = "*gsm8k*"
    formats: tuple[str, ...] = fg.FORMATS
    strict: bool = False
    progress: bool = True


@dataclass
class Outputs:
    run: RunData
    fits: list[CurveFit]
    fits_df: pd.DataFrame
    points_df: pd.DataFrame
    budget_df: pd.DataFrame
    inverse_df: pd.DataFrame
    errors_df: pd.DataFrame
    references_df: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    tables: list[Path] = field(default_factory=list)
    facts100: list[Path] = field(default_factory=list)
    judge_calls: int = 0
    report: Path | None = None


def _ylabel(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    return f"{r['metric']} ({r['filter']})" if r["filter"] != "none" else str(r["metric"])


def _warn(run: RunData, message: str, strict: bool = False) -> None:
    """A warning listed in the report (an error with `strict`)."""
    if strict:
        raise ResultsError(message)
    log.warning(message)
    run.warnings.append(message)


def _fit_all(run: RunData, primary: pd.DataFrame, opt: Options) -> list[CurveFit]:
    curves = scale_curves(run, primary)
    fits = [fit_curve(c, opt.n_boot, opt.level, opt.seed)
            for c in tqdm(curves, desc="fitting (bootstrap)", disable=not opt.progress)]  # fmt: skip
    for cf in fits:
        for message in cf.warnings:  # a score that is not a number: a malformed results file
            _warn(run, message, opt.strict)
    return fits


def _budget_points(run: RunData, primary: pd.DataFrame, opt: Options) -> pd.DataFrame:
    rows = []
    for c in budget_curves(run, primary):
        for message in nan_warnings(c):
            _warn(run, message, opt.strict)
        boot, method = resample_scores(c, opt.n_boot, curve_rng(opt.seed, c))
        rows += points(c, boot, method, opt.level, "budget")
    return pd.DataFrame(rows)


def _group_stem(prefix: str, run: RunData, rows: pd.DataFrame, *parts: object) -> str:
    """File stem naming the experiment / training task only when they are ambiguous."""
    table = run.table
    multi_exp = table["experiment"].nunique() > 1
    eval_task = rows["eval_task"].iloc[0]
    multi_task = table[table["eval_task"] == eval_task]["task"].nunique() > 1
    return fg.slug(prefix, rows["experiment"].iloc[0] if multi_exp else None,
                   rows["task"].iloc[0] if multi_task else None, *parts)  # fmt: skip


def _draw_scaling(out: Outputs, folder: Path, opt: Options) -> None:
    by_group: dict[tuple, list[CurveFit]] = {}
    for cf in out.fits:
        if not cf.fit_mask.any():
            continue  # base model only: nothing to draw on a log N axis (it is in the tables)
        k = cf.curve.key
        by_group.setdefault((k["experiment"], k["task"], k["eval_task"]), []).append(cf)
    for (_, task, eval_task), fits in sorted(by_group.items()):
        rows = out.points_df[
            (out.points_df["eval_task"] == eval_task) & (out.points_df["task"] == task)
        ]
        series = {cf.curve.label: str(cf.curve.key["model"]) for cf in fits}
        title = f"{eval_task} (trained on {task})"
        refs = reference_lines(out.references_df, task, eval_task)
        fig = fg.scaling_figure(fits, title, _ylabel(rows), series, refs)
        stem = _group_stem("fig1_scaling", out.run, rows, eval_task)
        out.figures[stem] = fg.save(fig, folder, stem, opt.formats)


def reference_lines(refs: pd.DataFrame, task: str, eval_task: str) -> list[tuple[str, float]]:
    """Reference models on one figure: hub/local baselines of the eval task, and Trainer
    checkpoints of runs on the training task (named `<model> n1000 step 200`)."""
    if refs.empty:
        return []
    rows = refs[(refs["eval_task"] == eval_task) & refs["task"].isin([task, "reference"])]
    return [(reference_name(r), float(r["value"])) for _, r in rows.iterrows()]


def reference_name(row: pd.Series) -> str:
    leaf = str(row["checkpoint"]).rsplit("/", 1)[-1]
    if row["task"] == "reference":
        return str(row["model"])
    return f"{row['model']} {leaf.replace('-step', ' step ')}"


def _draw_each(out: Outputs, folder: Path, opt: Options, df: pd.DataFrame, prefix: str,
               keys: list[str], make) -> None:  # fmt: skip
    """One figure per group of `df`: `make(rows, group) -> (figure, stem parts)` or None."""
    if df.empty:
        return
    for values, rows in df.groupby(keys, sort=True):
        made = make(rows, dict(zip(keys, values, strict=True)))
        if made is not None:
            stem = _group_stem(prefix, out.run, rows, *made[1])
            out.figures[stem] = fg.save(made[0], folder, stem, opt.formats)


def _draw_sizes(out: Outputs, folder: Path, opt: Options) -> None:
    def make(rows: pd.DataFrame, g: dict):
        if rows["size_b"].nunique() < 2:
            return None  # one size: nothing to compare within the family
        title = f"{g['family']}: {g['eval_task']} vs model size"
        return fg.size_figure(rows, title, _ylabel(rows)), (g["family"], g["eval_task"])

    pts = (
        out.points_df.dropna(subset=["family", "size_b"])
        if not out.points_df.empty
        else out.points_df
    )
    _draw_each(
        out, folder, opt, pts, "fig2_size", ["experiment", "family", "task", "eval_task"], make
    )


def _draw_errors(out: Outputs, folder: Path, opt: Options) -> None:
    def make(rows: pd.DataFrame, g: dict):
        title = f"{g['model']}: error categories on {g['eval_task']}"
        return fg.errors_figure(rows, title), (g["model"], g["eval_task"])

    scale = out.errors_df[out.errors_df["budget"].isna()]
    _draw_each(
        out, folder, opt, scale, "fig3_errors", ["experiment", "model", "task", "eval_task"], make
    )


def _draw_budget(out: Outputs, folder: Path, opt: Options) -> None:
    def make(rows: pd.DataFrame, g: dict):
        title = f"{g['model']}: {g['eval_task']} vs budget"
        return fg.budget_figure(rows, title, _ylabel(rows)), (g["model"], g["eval_task"])

    keys = ["experiment", "model", "task", "eval_task"]
    _draw_each(out, folder, opt, out.budget_df, "fig_budget", keys, make)


def _facts100(run_dir: Path, out_dir: Path) -> list[Path]:
    """Facts100 figures/tables from analysis/facts100.py, when that module exists."""
    try:
        from analysis.facts100 import facts100_outputs
    except ModuleNotFoundError as e:
        if e.name != "analysis.facts100":
            raise
        return []
    return list(facts100_outputs(run_dir, out_dir))


def _write_tables(out: Outputs, out_dir: Path) -> None:
    folder = out_dir / "tables"
    specs = [
        (tb.scores_table(out.points_df, out.run.table), "scores", "Scores by number of fine-tuning examples N "
         f"(primary metric; {out.fits[0].level:.0%} item-bootstrap intervals)" if out.fits else "Scores"),
        (tb.fits_table(out.fits_df), "fits", "Power-law and saturating fits with intervals"),
        (tb.inverse_table(out.inverse_df), "examples_needed", "Examples needed to reach a target score"),
        (tb.budget_table(out.budget_df), "budget", "Scores by total budget B and SFT fraction r"),
        (tb.errors_table(out.errors_df), "errors", "Wrong responses by error category"),
    ]  # fmt: skip
    for df, stem, caption in specs:
        if not df.empty:
            out.tables += tb.write_table(df, folder, stem, caption)


def analyse(run_dir: Path, opt: Options) -> Outputs:
    """Run everything and write `opt.out` (see docs/analysis.md for what each file holds)."""
    from analysis.report import write_report

    for folder in {opt.out, *([opt.judge.cache_dir] if opt.judge else [])}:
        remove_stale_temps(folder)  # left by an earlier run that was killed mid-write
    run = load_run(run_dir, strict=opt.strict, progress=opt.progress)
    primary = select_primary(run.table, opt.metrics, lambda message: _warn(run, message))
    fits = _fit_all(run, primary, opt)
    judge = Judge(opt.judge) if opt.judge else None
    out = Outputs(
        run=run,
        fits=fits,
        fits_df=pd.DataFrame([summarise(cf) for cf in fits]),
        points_df=pd.DataFrame([p for cf in fits for p in points(cf.curve, cf.boot, cf.method, opt.level, "n")]),
        budget_df=_budget_points(run, primary, opt),
        inverse_df=pd.DataFrame([r for cf in fits for r in inverse(cf, list(opt.targets))]),
        errors_df=error_counts(run, judge, opt.error_tasks),
        references_df=primary[primary["stage"] == "reference"],
    )  # fmt: skip
    out.judge_calls = judge.calls if judge else 0
    opt.out.mkdir(parents=True, exist_ok=True)
    write_text(opt.out / "results.csv", run.table.to_csv(index=False))
    write_text(opt.out / "fits.csv", out.fits_df.to_csv(index=False))
    write_text(opt.out / "points.csv", out.points_df.to_csv(index=False))
    write_text(opt.out / "errors.csv", out.errors_df.to_csv(index=False))
    _write_tables(out, opt.out)
    folder = opt.out / "figures"
    with fg.paper_style():
        for draw in (_draw_scaling, _draw_sizes, _draw_errors, _draw_budget):
            draw(out, folder, opt)
    if run.table["eval_task"].str.startswith("sah_facts100").any():
        out.facts100 = _facts100(run.run_dir, opt.out)
    out.report = write_report(out, opt)
    return out
