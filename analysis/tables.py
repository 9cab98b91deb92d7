"""Presentation tables (scores, fits, errors, budget, examples needed) as CSV, Markdown and LaTeX.

Each table is a pandas DataFrame of display cells; pandas writes it (`DataFrame.to_markdown`,
which uses `tabulate`, and `Styler.to_latex` with booktabs rules, which uses `jinja2`). The CSV
keeps identifiers (`sah_gsm8k`, `llama-3-8b`); Markdown and LaTeX show readable labels
(analysis/labels.py) when `write_table` is given them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.atomic import write_text
from analysis.labels import Labels

OUTSIDE = " (estimate outside its interval)"
NOT_JUDGED = "not judged"
# LaTeX specials in a caption (cells and headers are escaped by pandas' Styler)
_CAPTION_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}  # fmt: skip


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


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
    parts = [plain(row.get(k)) for k in ("left_out", "note", "seed_note", "flags")]
    return "; ".join(p for p in parts if p)


def count(value: float) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "∞" if value == math.inf else "–"
    return f"{value:,.0f}"


# ------------------------------------------------------------------------------ writers
def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas + tabulate); `|` inside a cell is escaped."""
    cells = df.astype(str).apply(lambda col: col.str.replace("|", "\\|", regex=False))
    cells.columns = [str(c).replace("|", "\\|") for c in df.columns]
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"


def latex_escape(text: object) -> str:
    return "".join(_CAPTION_ESCAPES.get(ch, ch) for ch in str(text)).replace("∞", r"$\infty$")


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table float (pandas' Styler; cells and headers escaped by it)."""
    styler = df.astype(str).style.hide(axis="index").format(escape="latex")
    styler = styler.format_index(escape="latex", axis=1)
    tex = styler.to_latex(
        caption=latex_escape(caption),
        label=label,
        hrules=True,
        position="t",
        position_float="centering",
        column_format="l" * len(df.columns),
    )
    return tex.replace("∞", r"$\infty$")


def display(df: pd.DataFrame, labels: Labels | None) -> pd.DataFrame:
    """Identifier columns (model, task, eval_task) shown as readable labels."""
    if labels is None:
        return df
    mapping: dict[str, Callable[[object], str]] = {"model": labels.model, "task": labels.training,
                                                   "eval_task": labels.task}  # fmt: skip
    out = df.copy()
    for col, fn in mapping.items():
        if col in out:
            out[col] = out[col].map(fn)
    headers = {"eval_task": "eval task", "task": "trained on"}
    return out.rename(columns={c: h for c, h in headers.items() if c in out})


def write_table(df: pd.DataFrame, folder: Path, stem: str, caption: str,
                labels: Labels | None = None) -> list[Path]:  # fmt: skip
    """Write stem.csv (identifiers), stem.md and stem.tex (labels); returns the paths."""
    shown = display(df, labels)
    return [
        write_text(folder / f"{stem}.csv", df.to_csv(index=False)),
        write_text(folder / f"{stem}.md", f"**{caption}**\n\n" + to_markdown(shown)),
        write_text(folder / f"{stem}.tex", to_latex(shown, caption, f"tab:{stem}")),
    ]


# ------------------------------------------------------------------------------ tables
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


@dataclass(frozen=True)
class Column:
    """One column of the fits table: its header, the fits.csv column(s) it needs (the first
    decides whether an `optional` column is shown at all) and how a cell is made."""

    header: str
    needs: tuple[str, ...]
    cell: Callable[[pd.Series], str]
    optional: bool = False  # shown only when fits.csv has `needs[0]` with a value somewhere
    when: Callable[[pd.DataFrame], bool] | None = None  # a further condition for showing it


def _get(row: pd.Series, name: str, default: object = math.nan) -> object:
    value = row.get(name, default)
    return default if _missing(value) else value


def interval_column(header: str, name: str, optional: bool = False, digits: int = 3) -> Column:
    """`name` with `name_lo`, `name_hi` as `value [lo, hi]`."""
    return Column(header, (name,), lambda r: ci(_get(r, name), _get(r, f"{name}_lo"),
                                                _get(r, f"{name}_hi"), digits), optional)  # fmt: skip


def number_column(header: str, name: str, digits: int = 3, optional: bool = False) -> Column:
    def cell(r: pd.Series) -> str:
        v = _get(r, name)
        return "–" if _missing(v) else f"{float(v):.{digits}f}"

    return Column(header, (name,), cell, optional)


def _llo(row: pd.Series) -> str:
    cell = ci(_get(row, "llo_power_err"), _get(row, "llo_power_err_lo"),
              _get(row, "llo_power_err_hi"))  # fmt: skip
    reason = plain(row.get("llo_power_note"))
    return f"n/a: {reason}" if cell == "–" and reason else cell


def _scales(row: pd.Series) -> str:
    return f"{int(row['n_points'])} of {int(_get(row, 'n_scales', row['n_points']))}"


def _seeds(row: pd.Series) -> str:
    lo, hi = _get(row, "n_seeds"), _get(row, "n_seeds_max", _get(row, "n_seeds"))
    return "–" if _missing(lo) else (f"{int(lo)}" if lo == hi else f"{int(lo)}–{int(hi)}")


# The fits table, left to right. A new fits.csv column is one more entry here (optional=True
# keeps the table unchanged for runs that do not have it).
FIT_COLUMNS: list[Column] = [
    Column("model", ("model",), lambda r: str(r["model"])),
    Column("task", ("task",), lambda r: str(r["task"])),
    Column("eval_task", ("eval_task",), lambda r: str(r["eval_task"])),
    Column("metric", ("metric", "filter"), lambda r: f"{r['metric']},{r['filter']}"),
    Column("scales fitted (log-log)", ("n_points",), _scales),
    Column(
        "seeds per N",
        ("n_seeds",),
        _seeds,
        optional=True,
        when=lambda f: f.get("n_seeds_max", f["n_seeds"]).max() > 1,
    ),
    interval_column("baseline (N=0)", "baseline"),
    interval_column("1/b", "inv_b"),
    interval_column("prefactor a", "prefactor"),
    number_column("R² (log-log)", "r2"),
    interval_column("1/b (binomial fit)", "binom_inv_b", optional=True),
    number_column("lack-of-fit p", "lof_p", optional=True),
    number_column("seed SD", "seed_sd", optional=True),
    number_column("item SD", "item_sd", optional=True),
    interval_column("E (error floor)", "sat_E"),
    interval_column("alpha", "sat_alpha"),
    Column("leave-largest-out error (power)", ("llo_power_err",), _llo),
    Column("notes", (), notes),
]


def _shown(fits: pd.DataFrame, columns: Sequence[Column]) -> list[Column]:
    def present(c: Column) -> bool:
        if c.optional and not (c.needs[0] in fits and fits[c.needs[0]].notna().any()):
            return False
        return c.when is None or bool(c.when(fits))

    return [c for c in columns if present(c)]


def fits_table(fits: pd.DataFrame, columns: Sequence[Column] = FIT_COLUMNS) -> pd.DataFrame:
    """The fitted parameters with their intervals, one row per curve (see FIT_COLUMNS)."""
    shown = _shown(fits, columns)
    rows = [{c.header: c.cell(r) for c in shown} for _, r in fits.iterrows()]
    return pd.DataFrame(rows, columns=[c.header for c in shown])


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


ERROR_COLUMNS = ["model", "eval_task", "n", "seed", "responses", "incorrect", "format", "arithmetic",
                 "reasoning", "other"]  # fmt: skip


def errors_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Wrong responses per category (they overlap; `incorrect` is the total). Without an LLM
    judge the reasoning column says "not judged" (nobody looked; it is not zero); with one,
    replies it could not read are counted beside it."""
    if counts.empty:
        return pd.DataFrame(columns=ERROR_COLUMNS)
    columns = [c for c in ERROR_COLUMNS if c in counts]  # `seed` is new: older frames lack it
    keys = [c for c in ("model", "eval_task", "n", "seed") if c in counts]
    scale = counts[counts["budget"].isna()].sort_values(keys)
    out = scale[columns].astype(object)
    judged = scale["judged"].fillna(False).astype(bool)
    out.loc[~judged, "reasoning"] = NOT_JUDGED
    unread = pd.to_numeric(scale.get("judge_unreadable", pd.Series(0, index=scale.index)),
                           errors="coerce").fillna(0)  # fmt: skip
    for i in out.index[judged & (unread > 0)]:  # replies the judge gave that could not be read
        out.loc[i, "reasoning"] = f"{out.loc[i, 'reasoning']} (+{int(unread[i])} unreadable)"
    return out.rename(columns={"incorrect": "incorrect (total)"}).reset_index(drop=True)
