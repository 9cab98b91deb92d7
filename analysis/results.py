"""Read every lm-eval result under a run directory into one tidy table (+ per-item scores).

lm-eval 0.4.13 writes, for `--output_path <ckpt>/eval/<eval_task> --log_samples`:

    <ckpt>/eval/<eval_task>/<model_name_sanitized>/results_<date_id>.json
    <ckpt>/eval/<eval_task>/<model_name_sanitized>/samples_<task>_<date_id>.jsonl

`results_*.json` holds {"results": {task: {"alias", "<metric>,<filter>", "<metric>_stderr,<filter>",
...}}, "n-samples": {task: {"original", "effective"}}, "config": {..., "limit"}, ...}; each samples
line holds one document under one filter: doc_id, doc, target, resps, filtered_resps, filter,
metrics (the metric names) and each metric's value. Any depth below `eval/<eval_task>/` is
accepted; when a folder holds several runs, the newest file wins for each task.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.layout import Checkpoint, RunLayoutError, read_checkpoint
from analysis.metrics import item_fraction

log = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"  # our own output folder inside a run directory, never read as input
_RESULTS_NAME = re.compile(r"^results_(?P<date_id>.+)\.json$")

COLUMNS = [
    "experiment", "model", "family", "size_b", "task", "n", "budget", "sft_fraction", "seed",
    "stage", "checkpoint", "eval_task", "metric", "filter", "value", "stderr", "n_items",
    "n_items_total", "partial", "has_samples", "results_file",
]  # fmt: skip


class ResultsError(ValueError):
    """A run directory that cannot be analysed (missing, empty, or a malformed file in --strict)."""


@dataclass
class ItemScores:
    """Per-item scores of one (checkpoint, eval task, metric, filter), ordered by doc_id."""

    doc_ids: np.ndarray
    num: np.ndarray
    den: np.ndarray

    @property
    def value(self) -> float:
        return float(self.num.sum() / self.den.sum())


ItemKey = tuple[str, str, str, str]  # (checkpoint, eval_task, metric, filter)


@dataclass
class RunData:
    """Everything read from a run directory."""

    run_dir: Path
    table: pd.DataFrame
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    items: dict[ItemKey, ItemScores] = field(default_factory=dict)
    samples_files: dict[tuple[str, str], Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Reader:
    run_dir: Path
    strict: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    data: RunData | None = None

    def warn(self, message: str) -> None:
        if self.strict:
            raise ResultsError(message)
        log.warning(message)
        assert self.data is not None
        self.data.warnings.append(message)


def _locate(path: Path, run_dir: Path) -> tuple[Path, str] | None:
    """(checkpoint dir, eval task folder name) for a results file, or None if not under eval/."""
    parts = path.relative_to(run_dir).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "eval" and i + 2 < len(parts):
            return run_dir.joinpath(*parts[:i]), parts[i + 1]
    return None


def _newest_first(files: list[Path]) -> list[Path]:
    # lm-eval's date_id is an ISO timestamp, so the name sorts by time; mtime breaks ties
    def key(p: Path) -> tuple[str, float]:
        m = _RESULTS_NAME.match(p.name)
        return (m["date_id"] if m else "", p.stat().st_mtime)

    return sorted(files, key=key, reverse=True)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # lm-eval writes "N/A" when it computed no stderr


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not a readable lm-eval results file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ResultsError(
            f"{path}: expected a JSON object with a 'results' mapping (lm-eval results_*.json)"
        )
    return data


def sample_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of an lm-eval samples_*.jsonl file, each checked for doc_id, filter, metrics."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["doc_id"], row["filter"] = int(row["doc_id"]), str(row["filter"])
                if not isinstance(row["metrics"], list):
                    raise TypeError("'metrics' is not a list")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ResultsError(
                    f"{path}:{lineno}: not an lm-eval sample line (need doc_id, filter, metrics; "
                    f"{type(e).__name__}: {e})"
                ) from None
            yield row


def read_samples(path: Path) -> dict[tuple[str, str], ItemScores]:
    """Per-item scores from a samples_*.jsonl file, keyed by (metric, filter)."""
    acc: dict[tuple[str, str], dict[int, tuple[float, float]]] = defaultdict(dict)
    for row in sample_lines(path):
        for name in row["metrics"]:
            frac = item_fraction(row.get(name))
            if frac is not None:
                acc[(name, row["filter"])].setdefault(row["doc_id"], frac)
    out = {}
    for key, by_doc in acc.items():
        ids = np.array(sorted(by_doc), dtype=np.int64)
        pairs = np.array([by_doc[i] for i in ids.tolist()], dtype=float).reshape(-1, 2)
        out[key] = ItemScores(ids, pairs[:, 0], pairs[:, 1])
    return out


def _task_rows(
    ckpt: Checkpoint, task: str, metrics: dict[str, Any], data: dict[str, Any], path: Path
) -> list[dict[str, Any]]:
    counts = data.get("n-samples", {}).get(task, {})
    effective = counts.get("effective", metrics.get("sample_len"))
    original = counts.get("original", effective)
    base = {
        "experiment": ckpt.experiment, "model": ckpt.model, "family": ckpt.family,
        "size_b": ckpt.size_b, "task": ckpt.task, "n": ckpt.n, "budget": ckpt.budget,
        "sft_fraction": ckpt.sft_fraction, "seed": ckpt.seed, "stage": ckpt.stage,
        "checkpoint": ckpt.checkpoint, "eval_task": task,
        "n_items": effective, "n_items_total": original,
        "partial": effective is not None and original is not None and effective < original,
        "has_samples": False, "results_file": str(path),
    }  # fmt: skip
    rows = []
    for key, value in metrics.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr"):
            continue
        stderr = _as_float(metrics.get(f"{metric}_stderr,{filt}"))
        rows.append({**base, "metric": metric, "filter": filt, "value": _as_float(value),
                     "stderr": stderr})  # fmt: skip
    return rows


def _attach_samples(
    reader: _Reader, ckpt: Checkpoint, task: str, results_path: Path, rows: list[dict[str, Any]]
) -> None:
    date_id = _RESULTS_NAME.match(results_path.name)
    samples_path = results_path.with_name(
        f"samples_{task}_{date_id['date_id'] if date_id else ''}.jsonl"
    )
    if not samples_path.is_file():
        return
    try:
        scores = read_samples(samples_path)
    except (OSError, UnicodeDecodeError, ResultsError) as e:
        reader.warn(
            f"{samples_path}: per-item scores unusable ({e}); intervals fall back to stderr"
        )
        return
    assert reader.data is not None
    reader.data.samples_files[(ckpt.checkpoint, task)] = samples_path
    for row in rows:
        item = scores.get((row["metric"], row["filter"]))
        if item is None:
            continue
        reader.data.items[(ckpt.checkpoint, task, row["metric"], row["filter"])] = item
        row["has_samples"] = True
        if row["n_items"] is not None and len(item.doc_ids) != row["n_items"]:
            reader.warn(f"{samples_path}: {len(item.doc_ids)} items for {row['metric']},"
                        f"{row['filter']} but the results file reports {row['n_items']}")  # fmt: skip
        if not math.isnan(row["value"]) and abs(item.value - row["value"]) > 1e-6:
            reader.warn(
                f"{samples_path}: {row['metric']},{row['filter']} recomputed from items is "
                f"{item.value:.6f} but the results file says {row['value']:.6f} (the metric's "
                "aggregation is not a mean of items; its intervals are approximate)"
            )


def _read_checkpoint_results(reader: _Reader, ckpt: Checkpoint, files: list[Path]) -> None:
    seen: set[str] = set()
    for path in _newest_first(files):
        try:
            data = _read_json(path)
        except ResultsError as e:
            reader.warn(str(e))
            continue
        groups = set(data.get("groups", {}))
        for task, metrics in data["results"].items():
            if task in seen or task in groups or not isinstance(metrics, dict):
                continue  # a newer file already gave this task; group rows are aggregates
            seen.add(task)
            rows = _task_rows(ckpt, task, metrics, data, path)
            if not rows:
                reader.warn(f"{path}: task {task!r} has no '<metric>,<filter>' entries")
                continue
            _attach_samples(reader, ckpt, task, path, rows)
            reader.rows.extend(rows)


def _not_finalised(rel: Path) -> bool:
    """The sweep's staging (`.partial-<task>/`), locks and dot-folders, and results it set aside
    (`superseded/`): never results of the checkpoint as it stands."""
    return any(part.startswith(".") or part == "superseded" for part in rel.parts[:-1])


def _discover(reader: _Reader) -> dict[Path, list[Path]]:
    by_ckpt: dict[Path, list[Path]] = defaultdict(list)
    own_output = reader.run_dir / ANALYSIS_DIR
    for path in sorted(reader.run_dir.rglob("results_*.json")):
        if own_output in path.parents or _not_finalised(path.relative_to(reader.run_dir)):
            continue
        located = _locate(path, reader.run_dir)
        if located is None:
            reader.warn(f"{path}: not under <checkpoint>/eval/<eval_task>/; skipped")
            continue
        by_ckpt[located[0]].append(path)
    return by_ckpt


def load_run(run_dir: Path | str, strict: bool = False, progress: bool = True) -> RunData:
    """Read all results under `run_dir`. Problems become warnings (errors with `strict`)."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {run_dir} does not exist or is not a folder")
    reader = _Reader(run_dir, strict)
    reader.data = RunData(run_dir=run_dir, table=pd.DataFrame(columns=COLUMNS))
    by_ckpt = _discover(reader)
    if not by_ckpt:
        raise ResultsError(
            f"{run_dir}: no lm-eval results found (expected <checkpoint>/eval/<eval_task>/"
            "**/results_*.json)"
        )
    for ckpt_dir, files in tqdm(
        sorted(by_ckpt.items()), desc="reading results", disable=not progress
    ):
        try:
            ckpt, notes = read_checkpoint(ckpt_dir, run_dir)
        except RunLayoutError as e:
            reader.warn(f"{e}; its results are skipped")
            continue
        for note in notes:
            reader.warn(note)
        reader.data.checkpoints[ckpt.checkpoint] = ckpt
        _read_checkpoint_results(reader, ckpt, files)
    table = pd.DataFrame(reader.rows, columns=COLUMNS)
    for col in ("n", "budget", "seed", "n_items", "n_items_total"):
        table[col] = table[col].astype("Int64")
    for col in ("size_b", "sft_fraction", "value", "stderr"):
        table[col] = table[col].astype(float)
    reader.data.table = table.sort_values(
        [
            "experiment",
            "model",
            "task",
            "eval_task",
            "metric",
            "filter",
            "budget",
            "sft_fraction",
            "n",
        ],
        na_position="first",
    ).reset_index(drop=True)
    for row in (
        reader.data.table[reader.data.table["partial"]]
        .drop_duplicates(["checkpoint", "eval_task"])
        .itertuples()
    ):
        reader.warn(
            f"{row.results_file}: partial run of {row.eval_task} ({row.n_items} of "
            f"{row.n_items_total} items, e.g. --limit)"
        )
    return reader.data
