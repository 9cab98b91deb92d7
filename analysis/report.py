"""report.md: the numbers, the figures and how they were obtained, in one page."""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis import tables as tb
from analysis.atomic import write_text
from analysis.metrics import PRIMARY_METRICS

if TYPE_CHECKING:
    from analysis.pipeline import Options, Outputs


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _headline(fits: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in fits.iterrows():
        others = "; ".join(p for p in (tb.plain(r.get("note")), tb.plain(r.get("flags"))) if p)
        if "inv_b" in r and not math.isnan(r.get("inv_b", math.nan)):
            lines.append(
                f"- **{r['model']}** on {r['eval_task']} ({r['metric']},{r['filter']}): "
                f"1/b = {tb.ci(r['inv_b'], r['inv_b_lo'], r['inv_b_hi'])}, "
                f"R² = {r['r2']:.3f}, {tb.fitted_scales(r)}"
                + (f" (note: {others})" if others else "")
            )
        else:
            lines.append(f"- **{r['model']}** on {r['eval_task']}: no power-law fit ({others})")
    return lines


def _defaults(tasks: list[str]) -> str:
    """The default primary metrics that apply to the eval tasks present."""
    used = [(p, k) for p, k in PRIMARY_METRICS if any(fnmatch.fnmatchcase(t, p) for t in tasks)]
    return ", ".join(f"{p} → {k}" for p, k in used) or "none apply"


def _section(title: str, df: pd.DataFrame, intro: str = "") -> list[str]:
    if df.empty:
        return []
    return [f"## {title}", "", *([intro, ""] if intro else []), tb.to_markdown(df), ""]


def write_report(out: Outputs, opt: Options) -> Path:
    root = opt.out
    run, table = out.run, out.run.table
    level = f"{opt.level:.0%}"
    method = ", ".join(sorted(set(out.fits_df.get("ci_method", pd.Series(dtype=str))))) or "none"
    lines = [
        f"# Analysis of `{run.run_dir}`",
        "",
        f"{table['checkpoint'].nunique()} checkpoints, {table['model'].nunique()} models, "
        f"eval tasks: {', '.join(sorted(table['eval_task'].unique()))}. "
        f"Intervals are {level} percentile intervals from {opt.n_boot} resamples "
        f"({method}); seed {opt.seed}. Primary metrics: defaults "
        f"{_defaults(sorted(table['eval_task'].unique()))}"
        + (
            f"; overridden: {', '.join(f'{t} → {k}' for t, k in opt.metrics.items())}"
            if opt.metrics
            else ""
        )
        + ". How each number is computed: docs/analysis.md.",
        "",
        "## Scaling exponents (P = a·N^(1/b), least squares in log-log over N > 0)",
        "",
        *_headline(out.fits_df),
        "",
    ]
    lines += _section("Fits", tb.fits_table(out.fits_df),
                      "E and alpha: saturating fit err = E + A·N^(−alpha) (err = 1 − score). "
                      "Leave-largest-out: fit without the largest N, predicted minus observed "
                      "score at that N (interval from the same paired resamples).")  # fmt: skip
    lines += _section("Scores", tb.scores_table(out.points_df, out.run.table))
    lines += _section("Reference models", tb.references_table(out.references_df),
                      "Evaluated with `sah-eval sweep --models`; drawn as dash-dot lines.")  # fmt: skip
    lines += _section("Examples needed to reach a target score", tb.inverse_table(out.inverse_df),
                      "Extrapolated = beyond the largest N measured; treat with care.")  # fmt: skip
    lines += _section(
        "Budget split (SFT fraction r of budget B, then DPO)", tb.budget_table(out.budget_df)
    )
    judged = f"LLM judge {opt.judge.model} at {opt.judge.url}" if opt.judge else "no LLM judge"
    lines += _section("Error taxonomy", tb.errors_table(out.errors_df),
                      f"Wrong responses (strict-match) per category; one response can be in several. "
                      f"Deterministic format and arithmetic checks; {judged}"
                      f"{f' ({out.judge_calls} requests this run)' if opt.judge else ''}.")  # fmt: skip
    lines += ["## Figures", ""]
    for stem, paths in sorted(out.figures.items()):
        png = next((p for p in paths if p.suffix == ".png"), paths[0])
        lines += [f"### {stem}", "", f"![{stem}]({_rel(png, root)})", ""]
    if out.facts100:
        lines += [
            "## Facts100",
            "",
            *[f"- [{_rel(p, root)}]({_rel(p, root)})" for p in out.facts100],
            "",
        ]
    lines += ["## Files", "", *[f"- {_rel(p, root)}" for p in out.tables],
              "- fits.csv, points.csv, results.csv, errors.csv", ""]  # fmt: skip
    if run.warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in run.warnings], ""]
    return write_text(root / "report.md", "\n".join(lines))
