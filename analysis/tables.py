"""Presentation tables (scores, fits, errors, budget, examples needed) as CSV, Markdown and LaTeX.

The Markdown and LaTeX writers are local (no tabulate/jinja2 dependency); LaTeX uses booktabs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.atomic import write_text

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}  # fmt: skip


OUTSIDE = " (estimate outside its interval)"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ci(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """`0.512 [0.48, 0.54]`; `0.512 [n/a]` when there is no interval (the reason is in the
    notes), and a mark when the estimate lies outside its own interval."""
    if _missing(value):
        return "–"
    if _missing(lo) or _missing(hi):
        return f"{value:.{digits}f} [n/a]"
    cell = f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return cell + ("" if lo - 1e-9 <= value <= hi + 1e-9 else OUTSIDE)


def fitted_scales(row: pd.Series | dict) -> str:
    """`4 scales N > 0`, or `2 of 4 scales N > 0 fitted; N=16, 64 left out: score 0 (...)`."""
    fitted, total = int(row["n_points"]), int(row.get("n_scales", row["n_points"]))
    if fitted == total:
        return f"{total} scales N > 0"
    left = row.get("left_out")
    return f"{fitted} of {total} scales N > 0 fitted" + (f"; {left}" if plain(left) else "")


def plain(value: object) -> str:
    """A text column of fits.csv, "" when empty (NaN after a CSV round trip)."""
    return "" if _missing(value) else str(value)


def notes(row: pd.Series | dict) -> str:
    """Everything that explains a missing or doubtful number of one fit, in one cell."""
    parts = [plain(row.get(k)) for k in ("left_out", "note", "flags")]
    return "; ".join(p for p in parts if p)


def count(value: float) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "∞" if value == math.inf else "–"
    return f"{value:,.0f}"


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex_escape(text: object) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text)).replace("∞", r"$\infty$")


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    cols = "l" * len(df.columns)
    body = [" & ".join(latex_escape(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
        " & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", "",
    ])  # fmt: skip


def write_table(df: pd.DataFrame, folder: Path, stem: str, caption: str) -> list[Path]:
    """Write stem.csv, stem.md and stem.tex; returns the paths."""
    return [
        write_text(folder / f"{stem}.csv", df.to_csv(index=False)),
        write_text(folder / f"{stem}.md", f"**{caption}**\n\n" + to_markdown(df)),
        write_text(folder / f"{stem}.tex", to_latex(df, caption, f"tab:{stem}")),
    ]


def _wide(points: pd.DataFrame, index: list[str], x: str, name: str) -> pd.DataFrame:
    """One row per `index`, one column `name=<x>` per x value; cells `value [lo, hi]`."""
    if points.empty:
        return pd.DataFrame()
    cells = [
        ci(v, lo, hi) if not _missing(v) else "NaN (left out)"
        for v, lo, hi in zip(points["value"], points["lo"], points["hi"], strict=True)
    ]
    pts = points.assign(cell=cells, x=points[x].astype(int))
    wide = pts.pivot_table(index=index, columns="x", values="cell", aggfunc="first")
    wide.columns = [f"{name}={c}" for c in wide.columns]
    return wide.reset_index().fillna("–")


def scores_table(points: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Models x N, one row per (model, training task, eval task, metric), with the prompt
    settings the results were produced with (from the tidy `table`; all distinct ones, so a
    curve whose points were scored differently shows it)."""
    wide = _wide(points, ["model", "task", "eval_task", "metric", "filter"], "n", "N")
    if wide.empty or table is None or "eval_settings" not in table:
        return wide
    keys = ["model", "task", "eval_task"]
    settings = (
        table.groupby(keys, dropna=False)["eval_settings"]
        .agg(lambda s: " | ".join(sorted(set(map(str, s)))))
        .reset_index()
        .rename(columns={"eval_settings": "settings"})
    )
    merged = wide.merge(settings, on=keys, how="left")
    first = ["model", "task", "eval_task", "metric", "filter", "settings"]
    return merged[first + [c for c in merged.columns if c not in first]]


def references_table(refs: pd.DataFrame) -> pd.DataFrame:
    """Reference models (stage `reference`): one row per (model, eval task, metric)."""
    if refs.empty:
        return pd.DataFrame()
    cols = ["model", "checkpoint", "eval_task", "metric", "filter", "value", "eval_settings"]
    out = refs[[c for c in cols if c in refs]].copy()
    out["value"] = out["value"].map(lambda v: f"{v:.3f}")
    return out.sort_values(["eval_task", "model", "checkpoint"]).reset_index(drop=True)


def fits_table(fits: pd.DataFrame) -> pd.DataFrame:
    """The fitted parameters with their intervals, one row per curve."""

    def get(row: pd.Series, name: str) -> str:
        return ci(
            row.get(name, math.nan),
            row.get(f"{name}_lo", math.nan),
            row.get(f"{name}_hi", math.nan),
        )

    def llo(row: pd.Series) -> str:
        cell = get(row, "llo_power_err")
        reason = plain(row.get("llo_power_note"))
        return f"n/a: {reason}" if cell == "–" and reason else cell

    rows = []
    for _, r in fits.iterrows():
        r2 = r.get("r2", math.nan)
        rows.append({
            "model": r["model"], "task": r["task"], "eval_task": r["eval_task"],
            "metric": f"{r['metric']},{r['filter']}",
            "scales fitted (log-log)": f"{int(r['n_points'])} of {int(r.get('n_scales', r['n_points']))}",
            "baseline (N=0)": get(r, "baseline"), "1/b": get(r, "inv_b"),
            "prefactor a": get(r, "prefactor"), "R² (log-log)": "–" if _missing(r2) else f"{r2:.3f}",
            "E (error floor)": get(r, "sat_E"), "alpha": get(r, "sat_alpha"),
            "leave-largest-out error (power)": llo(r), "notes": notes(r),
        })  # fmt: skip
    return pd.DataFrame(rows)


def inverse_table(inverse: pd.DataFrame) -> pd.DataFrame:
    if inverse.empty:
        return pd.DataFrame()
    out = inverse[["model", "task", "eval_task", "metric", "target", "form"]].copy()
    out["examples needed"] = [_examples_cell(v, lo, hi) for v, lo, hi in
                              zip(inverse["examples"], inverse["examples_lo"], inverse["examples_hi"], strict=True)]  # fmt: skip
    out["extrapolated"] = inverse["extrapolated"].map({True: "yes", False: "no"})
    return out


def _examples_cell(value: float, lo: float, hi: float) -> str:
    if _missing(lo) or _missing(hi):
        return f"{count(value)} [n/a]"
    outside = not (_missing(value) or lo <= value <= hi)
    return f"{count(value)} [{count(lo)}, {count(hi)}]" + (OUTSIDE if outside else "")


def budget_table(points: pd.DataFrame) -> pd.DataFrame:
    """Budgets B as columns, one row per (model, eval task, metric, SFT fraction r)."""
    return _wide(points, ["model", "eval_task", "metric", "sft_fraction"], "budget", "B")


def errors_table(counts: pd.DataFrame) -> pd.DataFrame:
    cols = [
        "model",
        "eval_task",
        "n",
        "responses",
        "incorrect",
        "format",
        "arithmetic",
        "reasoning",
        "other",
    ]
    return counts[counts["budget"].isna()][cols].sort_values(["model", "eval_task", "n"])
