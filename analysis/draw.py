"""Every figure and table of one analysis, from the pipeline's `Outputs` (analysis/pipeline.py
calls `draw_all` once). Which figure shows what, and its file name, is decided here; how it
looks is analysis/figures.py (+ sah.mplstyle); the readable names are analysis/labels.py.

Options read from the pipeline's `Options`: `out`, `formats`, `level`, and (when present)
`labels` (a YAML label file) and `style` (a .mplstyle file applied on top of the study's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import figures as fg
from analysis import tables as tb
from analysis.bootstrap import SEEDS, CurveFit
from analysis.labels import Labels, load_labels, model_order

if TYPE_CHECKING:
    from analysis.pipeline import Options, Outputs
    from analysis.results import RunData


def draw_all(out: Outputs, opt: Options) -> None:
    """Tables, figures and the Facts100 outputs into `opt.out` (recorded in `out`)."""
    labels = load_labels(opt.labels)
    style = opt.style
    write_tables(out, opt.out, labels)
    folder = opt.out / "figures"
    with fg.paper_style(style):
        for draw in (draw_scaling, draw_sizes, draw_errors, draw_budget):
            draw(out, folder, opt, labels)
    if out.run.table["eval_task"].str.startswith("sah_facts100").any():
        out.facts100 = facts100(out.run, opt.out, opt.level, labels, style)


# ------------------------------------------------------------------------------ helpers
def ylabel(rows: pd.DataFrame, labels: Labels) -> str:
    r = rows.iloc[0]
    return labels.metric(r["metric"], r["filter"])


def _multi(out: Outputs, column: str) -> bool:
    return out.run.table[column].nunique() > 1


def _stem(out: Outputs, prefix: str, experiment: object, *parts: object) -> str:
    """File stem naming the experiment only when the run directory holds several."""
    return fg.slug(prefix, experiment if _multi(out, "experiment") else None, *parts)


def _trainings(out: Outputs, eval_task: object) -> int:
    table = out.run.table
    return table[table["eval_task"] == eval_task]["task"].nunique()


def _panel_title(out: Outputs, task: object, eval_task: object, labels: Labels) -> str:
    """The eval task; its training task too when several were evaluated on it."""
    title = labels.task(eval_task)
    if _trainings(out, eval_task) > 1:
        title += f"\n(trained on {labels.training(task)})"
    return title


def _save(out: Outputs, fig, folder: Path, stem: str, opt: Options) -> None:
    out.figures[stem] = fg.save(fig, folder, stem, opt.formats)


def _groups(df: pd.DataFrame, keys: list[str]) -> Iterable[tuple[dict[str, Any], pd.DataFrame]]:
    if df.empty:
        return
    for values, rows in df.groupby(keys, sort=True):
        yield dict(zip(keys, values, strict=True)), rows


# ------------------------------------------------------------------------------ Fig. 1
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


def scaling_panels(out: Outputs, labels: Labels) -> dict[str, list[fg.ScalingPanel]]:
    """Fig. 1's panels per experiment: one per (training task, eval task), one curve per model
    (curves with only the base model are left out: nothing to draw on a log N axis)."""
    groups: dict[tuple, list[CurveFit]] = {}
    for cf in out.fits:
        if cf.fit_mask.any():
            k = cf.curve.key
            groups.setdefault((k["experiment"], k["task"], k["eval_task"]), []).append(cf)
    panels: dict[str, list[fg.ScalingPanel]] = {}
    pts = out.points_df

    def order(item: tuple[tuple, list[CurveFit]]) -> tuple:
        (experiment, task, eval_task), _ = item
        return (str(experiment), labels.task_order(eval_task), str(task))

    for (experiment, task, eval_task), fits in sorted(groups.items(), key=order):
        fits = sorted(fits, key=lambda cf: model_order(str(cf.curve.key["model"])))
        rows = pts[(pts["eval_task"] == eval_task) & (pts["task"] == task)]
        series = {cf.curve.label: labels.model(cf.curve.key["model"]) for cf in fits}
        refs = reference_lines(out.references_df, task, eval_task)
        panel = fg.ScalingPanel(_panel_title(out, task, eval_task, labels),
                                ylabel(rows, labels), fits, series, refs)  # fmt: skip
        panels.setdefault(str(experiment), []).append(panel)
    return panels


def draw_scaling(out: Outputs, folder: Path, opt: Options, labels: Labels) -> None:
    """Fig. 1 as one panel grid per experiment (`fig1_scaling`). `figures.scaling_figure`
    draws one panel on its own, with the models named in its legend (not drawn by default:
    it doubled the figure time)."""
    for experiment, panels in scaling_panels(out, labels).items():
        fig = fg.scaling_grid(panels, opt.level)
        _save(out, fig, folder, _stem(out, "fig1_scaling", experiment), opt)


# ------------------------------------------------------------------------------ Fig. 2
def draw_sizes(out: Outputs, folder: Path, opt: Options, labels: Labels) -> None:
    """Fig. 2, one file per family with >= 2 sizes: a panel per eval task, a curve per N."""
    pts = out.points_df
    if pts.empty or "size_b" not in pts:
        return
    pts = pts.dropna(subset=["family", "size_b"])
    for g, fam in _groups(pts, ["experiment", "family"]):
        panels = [
            fg.BandPanel(
                _panel_title(out, t["task"], t["eval_task"], labels), ylabel(rows, labels), rows
            )  # fmt: skip
            for t, rows in _groups(fam, ["task", "eval_task"])
            if rows["size_b"].nunique() >= 2
        ]
        panels.sort(key=lambda p: labels.task_order(p.points["eval_task"].iloc[0]))
        if panels:
            title = f"{labels.family(g['family'])}: score vs model size"
            fig = fg.size_grid(panels, title, opt.level)
            _save(out, fig, folder, _stem(out, "fig2_size", g["experiment"], g["family"]), opt)


# ------------------------------------------------------------------------------ Fig. 3
def draw_errors(out: Outputs, folder: Path, opt: Options, labels: Labels) -> None:
    """Fig. 3, one file per eval task: a panel per model (scale runs only)."""
    errs = out.errors_df
    scale = errs[errs["budget"].isna()] if not errs.empty else errs
    for g, rows in _groups(scale, ["experiment", "task", "eval_task"]):
        models = sorted(rows["model"].unique(), key=lambda m: model_order(str(m)))
        panels = [(labels.model(m), seed_mean(rows[rows["model"] == m])) for m in models]
        title = f"Error categories on {_panel_title(out, g['task'], g['eval_task'], labels)}"
        if rows.groupby(["model", "n"])["checkpoint"].nunique().max() > 1:
            title += " (mean over training seeds)"
        fig = fg.errors_grid(panels, title.replace("\n", " "), labels)
        task = g["task"] if _trainings(out, g["eval_task"]) > 1 else None
        _save(out, fig, folder, _stem(out, "fig3_errors", g["experiment"], task, g["eval_task"]),
              opt)  # fmt: skip


def seed_mean(counts: pd.DataFrame) -> pd.DataFrame:
    """One bar group per N: the category counts averaged over that N's training seeds."""
    numeric = ["responses", "correct", "incorrect", "format", "arithmetic", "reasoning", "other",
               "judge_unreadable"]  # fmt: skip
    numeric = [c for c in numeric if c in counts]
    agg = {c: "mean" for c in numeric} | {"judged": "all"}
    return counts.groupby("n", as_index=False).agg(agg)


# ------------------------------------------------------------------------------ budget
def draw_budget(out: Outputs, folder: Path, opt: Options, labels: Labels) -> None:
    """The budget split, one file per model (`fig_budget_<model>`): a panel per eval task, a
    curve per SFT fraction r."""
    for g, rows in _groups(out.budget_df, ["experiment", "model"]):
        panels = [
            fg.BandPanel(
                _panel_title(out, t["task"], t["eval_task"], labels), ylabel(r, labels), r
            )  # fmt: skip
            for t, r in _groups(rows, ["task", "eval_task"])
        ]
        panels.sort(key=lambda p: labels.task_order(p.points["eval_task"].iloc[0]))
        title = f"{labels.model(g['model'])}: score vs total budget B"
        fig = fg.budget_grid(panels, title, opt.level)
        _save(out, fig, folder, _stem(out, "fig_budget", g["experiment"], g["model"]), opt)


# ------------------------------------------------------------------------------ Facts100
def facts100(run: RunData, out_dir: Path, level: float, labels: Labels,
             style: Path | None) -> list[Path]:  # fmt: skip
    """Facts100 figure and tables (analysis/facts100.py), from the run already loaded."""
    from analysis.facts100 import facts100_outputs

    return list(facts100_outputs(run, out_dir, level=level, labels=labels, style=style))


# ------------------------------------------------------------------------------ tables
TableSpec = tuple[Callable[["Outputs"], pd.DataFrame], str, Callable[["Outputs"], str]]


def _scores_caption(out: Outputs) -> str:
    if not out.fits:
        return "Scores"
    over = "items and training seeds" if any(SEEDS in f.method for f in out.fits) else "items"
    return (f"Scores by number of fine-tuning examples N (primary metric; "
            f"{out.fits[0].level:.0%} bootstrap intervals over {over})")  # fmt: skip


TABLES: list[TableSpec] = [
    (lambda o: tb.scores_table(o.points_df, o.run.table), "scores", _scores_caption),
    (lambda o: tb.fits_table(o.fits_df), "fits",
     lambda o: "Power-law and saturating fits with intervals"),
    (lambda o: tb.inverse_table(o.inverse_df), "examples_needed",
     lambda o: "Examples needed to reach a target score"),
    (lambda o: tb.budget_table(o.budget_df), "budget",
     lambda o: "Scores by total budget B and SFT fraction r"),
    (lambda o: tb.errors_table(o.errors_df), "errors",
     lambda o: "Wrong responses by error category (categories overlap; a response can be in "
               "several)"),
]  # fmt: skip


def write_tables(out: Outputs, out_dir: Path, labels: Labels | None = None) -> None:
    folder = out_dir / "tables"
    for make, stem, caption in TABLES:
        df = make(out)
        if not df.empty:
            out.tables += tb.write_table(df, folder, stem, caption(out), labels)
