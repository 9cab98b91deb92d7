"""Group the tidy results into curves: one model's score on one eval task/metric against N (or B).

A scale curve is `<experiment>/<model>/<task>/n<N>` for all N; a budget curve is one SFT fraction
r across budgets B. Each point keeps its per-item scores (when samples were logged) so the
bootstrap can resample evaluation items. Several training seeds at one N (`n<N>`, `n<N>_seed<S>`)
are averaged item by item for the point's score, and each seed's own score is kept so that the
bootstrap can add seed-to-seed noise (analysis/seeds.py).
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
    seed_values: list[np.ndarray] = field(default_factory=list)  # each seed's score, per point
    seed_items: list[list[ItemScores | None]] = field(default_factory=list)  # each seed's items

    def seeds_at(self, k: int) -> np.ndarray:
        """The scores of the training seeds of point k (one value when seeds are unknown)."""
        if k < len(self.seed_values):
            return self.seed_values[k]
        return self.value[k : k + 1]

    @property
    def n_seeds(self) -> np.ndarray:
        """Training seeds per point."""
        return np.array([len(self.seeds_at(k)) for k in range(len(self.x))])

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


@dataclass(frozen=True)
class _Row:
    """The columns of one results-table row that a curve point needs."""

    checkpoint: str
    results_file: str
    key: tuple[str, str, str, str]  # (checkpoint, eval_task, metric, filter): run.items key
    value: float
    stderr: float
    n_items: float


def _rows(rows: pd.DataFrame, x_col: str) -> dict[float, list[_Row]]:
    """Rows by x, read column-wise (pandas' per-row access costs more than the fits)."""
    cols = {c: rows[c].tolist() for c in ("checkpoint", "results_file", "eval_task", "metric",
                                          "filter", x_col)}  # fmt: skip
    nums = {c: rows[c].astype(float).to_numpy() for c in ("value", "stderr", "n_items")}
    by_x: dict[float, list[_Row]] = {}
    for i, x in enumerate(cols[x_col]):
        ckpt = cols["checkpoint"][i]
        key = (ckpt, cols["eval_task"][i], cols["metric"][i], cols["filter"][i])
        by_x.setdefault(float(x), []).append(_Row(ckpt, cols["results_file"][i], key,
                                                  nums["value"][i], nums["stderr"][i],
                                                  nums["n_items"][i]))  # fmt: skip
    return dict(sorted(by_x.items()))


def _sources(at_x: list[_Row]) -> str:
    """The checkpoints and results files of one point; only those without a score if any."""
    missing = [r for r in at_x if not np.isfinite(r.value)]
    shown = missing or at_x
    return "; ".join(f"checkpoint {r.checkpoint} ({r.results_file})" for r in shown)


def _curve(run: RunData, rows: pd.DataFrame, x_col: str, key: dict[str, object]) -> Curve:
    xs, values, stderrs, counts, items, sources, seeds, seed_items = ([] for _ in range(8))
    for x, at_x in _rows(rows, x_col).items():
        per_seed = [run.items.get(r.key) for r in at_x]
        seed_values = np.array([r.value for r in at_x])
        xs.append(x)
        # a seed without a score makes the point NaN (named in a warning), not silently dropped
        values.append(float(seed_values.mean()))
        # the mean of k independent seeds has stderr sqrt(sum se^2)/k; NaN (lm-eval's "N/A")
        # when a seed has none, never 0 (that would be a zero-width interval)
        se2 = float(sum(r.stderr**2 for r in at_x))
        stderrs.append(np.sqrt(se2) / len(at_x))
        n_items = [r.n_items for r in at_x if np.isfinite(r.n_items)]
        counts.append(float(min(n_items)) if n_items else np.nan)
        items.append(_combine_seeds(per_seed))
        sources.append(_sources(at_x))
        seeds.append(seed_values)
        seed_items.append(per_seed)
    return Curve(key, np.array(xs), np.array(values), np.array(stderrs), np.array(counts), items,
                 sources, seeds, seed_items)  # fmt: skip


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
