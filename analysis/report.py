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


def _num(row: pd.Series, key: str) -> float:
    value = row.get(key, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _noise_text(r: pd.Series) -> str:
    """`3 seeds per N, seed SD 0.031, item SD 0.012` or the plain single-seed statement."""
    item = _num(r, "item_sd")
    items = f"item SD {item:.3f}" if math.isfinite(item) else "item SD n/a"
    if tb.plain(r.get("seed_note")):
        return f"{items}; {tb.plain(r.get('seed_note'))}"
    lo, hi = int(_num(r, "n_seeds")), int(_num(r, "n_seeds_max"))
    seeds = f"{lo} seeds per N" if lo == hi else f"{lo}–{hi} seeds per N"
    return f"{seeds} (seed SD {_num(r, 'seed_sd'):.3f}, {_num(r, 'seed_df'):.0f} df), {items}"


def _extra_fits(r: pd.Series) -> str:
    """Lack of fit and the binomial-likelihood fit, beside the headline log-log 1/b."""
    parts = []
    p = _num(r, "lof_p")
    if math.isfinite(p):
        single = bool(tb.plain(r.get("seed_note")))
        why = ("more than item noise allows: seed noise, which these intervals leave out, or a "
               "curved truth" if single else "more than item and seed noise allow: the law "
               "may not fit")  # fmt: skip
        verdict = f" (points scatter {why})" if p < 0.05 else ""
        parts.append(f"lack of fit p = {p:.3f}{verdict}")
    if math.isfinite(_num(r, "binom_inv_b")):
        cell = tb.ci(r["binom_inv_b"], r["binom_inv_b_lo"], r["binom_inv_b_hi"])
        parts.append(f"binomial fit 1/b = {cell} on {int(_num(r, 'binom_n_points'))} scales")
    return "; ".join(parts)


def _headline(fits: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in fits.iterrows():
        others = "; ".join(p for p in (tb.plain(r.get("note")), tb.plain(r.get("flags"))) if p)
        if "inv_b" in r and not math.isnan(r.get("inv_b", math.nan)):
            extra = _extra_fits(r)
            lines.append(
                f"- **{r['model']}** on {r['eval_task']} ({r['metric']},{r['filter']}): "
                f"1/b = {tb.ci(r['inv_b'], r['inv_b_lo'], r['inv_b_hi'])}, "
                f"R² = {r['r2']:.3f}, {tb.fitted_scales(r)}"
                + (f"; {extra}" if extra else "")
                + f"; {_noise_text(r)}"
                + (f" (note: {others})" if others else "")
            )
        else:
            lines.append(f"- **{r['model']}** on {r['eval_task']}: no power-law fit ({others})")
    return lines


def _seed_summary(fits: pd.DataFrame) -> list[str]:
    """One plain sentence on whether training-seed variance is in the intervals."""
    if fits.empty or "seed_note" not in fits:
        return []
    single = int(fits["seed_note"].map(tb.plain).astype(bool).sum())
    if single == 0:
        return ["Intervals include training-seed variance (every curve has several seeds at "
                "some N; pooled seed deviations are resampled with the items).", ""]  # fmt: skip
    which = "every curve has" if single == len(fits) else f"{single} of {len(fits)} curves have"
    return [f"**Seed variance is not included** where {which} a single training seed per N: "
            "those intervals cover evaluation-item noise only. Train more seeds "
            "(`n<N>_seed<S>/`) to include it; `python -m analysis plan` says how many.", ""]  # fmt: skip


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
        *_seed_summary(out.fits_df),
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
