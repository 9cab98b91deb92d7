"""The whole analysis of one run directory: read, fit with intervals, categorise errors, draw,
tabulate, report. `python -m analysis` is a thin command line over `analyse`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analysis import figures as fg
from analysis.atomic import remove_stale_temps, write_text
from analysis.bootstrap import (
    CurveFit,
    curve_rng,
    fit_curve,
    hierarchical_scores,
    inverse,
    nan_warnings,
    points,
    summarise,
)
from analysis.curves import budget_curves, scale_curves, select_primary
from analysis.draw import draw_all, reference_lines  # noqa: F401 (re-exported)
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
    labels: Path | None = None  # YAML label map on top of analysis/labels.py's defaults
    style: Path | None = None  # .mplstyle applied on top of analysis/sah.mplstyle


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
        res = hierarchical_scores(c, opt.n_boot, curve_rng(opt.seed, c))
        rows += points(c, res.scores, res.method, opt.level, "budget")
    return pd.DataFrame(rows)


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
    draw_all(out, opt)  # tables, figures, Facts100 (analysis/draw.py)
    out.report = write_report(out, opt)
    return out
