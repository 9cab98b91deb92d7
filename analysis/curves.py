"""Group the tidy results into curves: one model's score on one eval task/metric against N (or B).

A scale curve is `<experiment>/<model>/<task>/n<N>` for all N; a budget curve is one SFT fraction
r across budgets B. Each point keeps its per-item scores (when samples were logged) so the
bootstrap can resample evaluation items. Several seeds at one N are averaged item by item.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.metrics import MetricKey, primary_metric
from analysis.results import ItemScores, RunData

SCALE_KEY = ["experiment", "model", "task", "eval_task", "metric", "filter"]
BUDGET_KEY = [*SCALE_KEY, "sft_fraction"]


@dataclass
class Curve:
    """Points of one curve, sorted by x (N for scale curves, B for budget curves)."""

    key: dict[str, object]  # SCALE_KEY (+ sft_fraction) values, plus family and size_b
    x: np.ndarray
    value: np.ndarray
    stderr: np.ndarray
    n_items: np.ndarray
    items: list[ItemScores | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # checkpoint + results file per point

    def source(self, k: int) -> str:
        """Where point k came from (the seeds with a missing score first); "" if unknown."""
        return self.sources[k] if k < len(self.sources) else ""

    @property
    def x_name(self) -> str:
        return "B" if "sft_fraction" in self.key else "N"

    @property
    def label(self) -> str:
        k = self.key
        r = f" r={k['sft_fraction']:g}" if "sft_fraction" in k else ""
        return f"{k['model']} {k['task']}->{k['eval_task']} {k['metric']},{k['filter']}{r}"

    @property
    def has_items(self) -> bool:
        return all(it is not None for it in self.items)


def _combine_seeds(items: list[ItemScores | None]) -> ItemScores | None:
    """Average seeds item by item; None unless every seed logged the same items."""
    if any(it is None for it in items):
        return None
    first = items[0]
    if any(not np.array_equal(it.doc_ids, first.doc_ids) for it in items[1:]):
        return None
    return ItemScores(
        first.doc_ids,
        np.mean([it.num for it in items], axis=0),
        np.mean([it.den for it in items], axis=0),
    )


def _sources(at_x: pd.DataFrame) -> str:
    """The checkpoints and results files of one point; only those without a score if any."""
    missing = at_x[~np.isfinite(at_x["value"].astype(float))]
    shown = missing if len(missing) else at_x
    return "; ".join(f"checkpoint {r.checkpoint} ({r.results_file})" for r in shown.itertuples())


def _curve(run: RunData, rows: pd.DataFrame, x_col: str, key: dict[str, object]) -> Curve:
    xs, values, stderrs, counts, items, sources = [], [], [], [], [], []
    for x, at_x in rows.groupby(x_col, sort=True):
        per_seed = [
            run.items.get((r.checkpoint, r.eval_task, r.metric, r.filter))
            for r in at_x.itertuples()
        ]
        xs.append(float(x))
        # a seed without a score makes the point NaN (named in a warning), not silently dropped
        values.append(float(at_x["value"].astype(float).mean(skipna=False)))
        # the mean of k independent seeds has stderr sqrt(sum se^2)/k; NaN (lm-eval's "N/A")
        # when a seed has none, never 0 (that would be a zero-width interval)
        se2 = (at_x["stderr"].astype(float) ** 2).sum(skipna=False)
        stderrs.append(float(np.sqrt(se2)) / len(at_x))
        counts.append(float(at_x["n_items"].astype(float).min()))
        items.append(_combine_seeds(per_seed))
        sources.append(_sources(at_x))
    return Curve(key, np.array(xs), np.array(values), np.array(stderrs), np.array(counts), items,
                 sources)  # fmt: skip


def select_primary(
    table: pd.DataFrame,
    overrides: dict[str, MetricKey] | None,
    on_guess: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Rows of each eval task's primary metric (see analysis/metrics.py); `on_guess` gets a
    warning for each task whose metric had to be guessed."""
    keep = []
    for task, rows in table.groupby("eval_task", sort=True):
        available = sorted(
            {MetricKey(m, f) for m, f in zip(rows["metric"], rows["filter"], strict=True)}, key=str
        )
        key = primary_metric(str(task), available, overrides, on_guess)
        if key is not None:
            keep.append(rows[(rows["metric"] == key.metric) & (rows["filter"] == key.filter)])
    return pd.concat(keep) if keep else table.iloc[0:0]


def _build(run: RunData, rows: pd.DataFrame, group_key: list[str], x_col: str) -> list[Curve]:
    curves = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pandas groupby on nullable columns
        groups = rows.groupby(group_key, sort=True, dropna=False)
    for values, group in groups:
        key: dict[str, object] = dict(zip(group_key, values, strict=True))
        key["family"] = group["family"].iloc[0]
        key["size_b"] = group["size_b"].iloc[0]
        curves.append(_curve(run, group, x_col, key))
    return curves


def scale_curves(run: RunData, rows: pd.DataFrame) -> list[Curve]:
    """Curves over N from the `n<N>` checkpoints in `rows` (budget runs excluded)."""
    return _build(run, rows[rows["budget"].isna() & rows["n"].notna()], SCALE_KEY, "n")


def budget_curves(run: RunData, rows: pd.DataFrame) -> list[Curve]:
    """Curves over total budget B, one per SFT fraction r."""
    return _build(run, rows[rows["budget"].notna()], BUDGET_KEY, "budget")
