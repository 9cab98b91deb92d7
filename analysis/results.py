"""Read every lm-eval result under a run directory into one tidy table (+ per-item scores).

lm-eval 0.4.13 writes, for `--output_path <ckpt>/eval/<eval_task> --log_samples`:

    <ckpt>/eval/<eval_task>/<model_name_sanitized>/results_<date_id>.json
    <ckpt>/eval/<eval_task>/<model_name_sanitized>/samples_<task>_<date_id>.jsonl

`results_*.json` holds {"results": {task: {"alias", "<metric>,<filter>", "<metric>_stderr,<filter>",
...}}, "n-samples": {task: {"original", "effective"}}, "config": {..., "limit"}, ...}; each samples
line holds one document under one filter: doc_id, doc, target, resps, filtered_resps, filter,
metrics (the metric names) and each metric's value. Any depth below `eval/<eval_task>/` is
accepted. When a folder holds several runs of a task, the newest complete one wins; a partial one
(`--limit`: n-samples effective < original) is used only when no complete run reports the task.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.layout import MANIFEST, Checkpoint, RunLayoutError, read_checkpoint
from analysis.metrics import item_fraction

log = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"  # our own output folder inside a run directory, never read as input
_RESULTS_NAME = re.compile(r"^results_(?P<date_id>.+)\.json$")

COLUMNS = [
    "experiment", "model", "family", "size_b", "task", "n", "budget", "sft_fraction", "seed",
    "stage", "checkpoint", "eval_task", "metric", "filter", "value", "stderr", "n_items",
    "n_items_total", "partial", "has_samples", "results_file", "eval_settings",
]  # fmt: skip


class ResultsError(ValueError):
    """A run directory that cannot be analysed (missing, empty, or a malformed file in --strict)."""


class DuplicateCheckpointError(ResultsError):
    """Two checkpoint folders claim the same (model, task, N or B/r, seed): not two seeds."""


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
    skipped: Counter[str] = field(default_factory=Counter)  # results files skipped, by reason
    prefetched: dict[Path, Future] = field(default_factory=dict)  # samples read in parallel

    def warn(self, message: str) -> None:
        if self.strict:
            raise ResultsError(message)
        log.warning(message)
        assert self.data is not None
        self.data.warnings.append(message)

    def skip(self, message: str, reason: str, files: int = 1) -> None:
        """Warn about results files that give no rows, counted for the 'nothing readable' error."""
        self.warn(message)
        self.skipped[reason] += files


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


def _is_partial(data: dict[str, Any], task: str, metrics: dict[str, Any]) -> bool:
    """An lm-eval `--limit` run: fewer items evaluated (effective) than the task has (original)."""
    effective, original = _item_counts(data, task, metrics)
    return effective is not None and original is not None and effective < original


def _item_counts(data: dict[str, Any], task: str, metrics: dict[str, Any]) -> tuple[Any, Any]:
    n_samples = data.get("n-samples")
    counts = n_samples.get(task) if isinstance(n_samples, dict) else None
    counts = counts if isinstance(counts, dict) else {}
    effective = counts.get("effective", metrics.get("sample_len"))
    return effective, counts.get("original", effective)


def _has_scores(metrics: dict[str, Any]) -> bool:
    return any(
        sep and not metric.endswith("_stderr")
        for metric, sep, _ in (key.partition(",") for key in metrics)
    )


def eval_settings(data: dict[str, Any], task: str) -> str:
    """The prompt settings lm-eval records in a results file, in words: few-shot count, chat
    template, system instruction (e.g. `5-shot, chat (multiturn), system "Be brief."`)."""
    shots = (data.get("n-shot") or {}).get(task)
    parts = [f"{shots}-shot" if shots is not None else "?-shot"]
    if data.get("chat_template"):
        multiturn = data.get("fewshot_as_multiturn") and shots
        parts.append("chat (multiturn)" if multiturn else "chat")
    system = data.get("system_instruction")
    if system:
        shown = system if len(system) <= 40 else system[:37] + "..."
        parts.append(f'system "{shown}"')
    return ", ".join(parts)


def _task_rows(
    ckpt: Checkpoint, task: str, metrics: dict[str, Any], data: dict[str, Any], path: Path
) -> list[dict[str, Any]]:
    effective, original = _item_counts(data, task, metrics)
    base = {
        "experiment": ckpt.experiment, "model": ckpt.model, "family": ckpt.family,
        "size_b": ckpt.size_b, "task": ckpt.task, "n": ckpt.n, "budget": ckpt.budget,
        "sft_fraction": ckpt.sft_fraction, "seed": ckpt.seed, "stage": ckpt.stage,
        "checkpoint": ckpt.checkpoint, "eval_task": task,
        "n_items": effective, "n_items_total": original,
        "partial": _is_partial(data, task, metrics),
        "has_samples": False, "results_file": str(path),
        "eval_settings": eval_settings(data, task),
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
        scores = _scores(reader, samples_path)
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


@dataclass(frozen=True)
class _Candidate:
    """One results file's entry for one task."""

    partial: bool
    task: str
    path: Path
    data: dict[str, Any]
    metrics: dict[str, Any]


def _file_candidates(reader: _Reader, path: Path, data: dict[str, Any]) -> list[_Candidate]:
    groups = set(data.get("groups", {}))  # group rows are aggregates of their subtasks
    tasks = {t: m for t, m in data["results"].items() if t not in groups and isinstance(m, dict)}
    usable = {t: m for t, m in tasks.items() if _has_scores(m)}
    if not usable:
        reader.skip(f"{path}: no task with '<metric>,<filter>' scores in 'results' "
                    f"(tasks: {', '.join(map(repr, tasks)) or 'none'}); skipped", "without task scores")  # fmt: skip
        return []
    for task in sorted(set(tasks) - set(usable)):
        reader.warn(f"{path}: task {task!r} has no '<metric>,<filter>' entries")
    return [_Candidate(_is_partial(data, t, m), t, path, data, m) for t, m in usable.items()]


def _candidates_by_task(reader: _Reader, files: list[Path]) -> dict[str, list[_Candidate]]:
    """Per task, every file reporting it: complete before partial, newest first within each."""
    by_task: dict[str, list[_Candidate]] = defaultdict(list)
    for path in _newest_first(files):
        try:
            data = _read_json(path)
        except ResultsError as e:
            reader.skip(str(e), "unreadable")
            continue
        for cand in _file_candidates(reader, path, data):
            by_task[cand.task].append(cand)
    for cands in by_task.values():
        cands.sort(key=lambda c: c.partial)  # stable: newest first within complete / partial
    return by_task


def _read_checkpoint_results(reader: _Reader, ckpt: Checkpoint, files: list[Path]) -> None:
    for task, cands in sorted(_candidates_by_task(reader, files).items()):
        best = cands[0]
        ignored = [c.path.name for c in cands[1:] if c.partial]
        if ignored and not best.partial:
            log.info("%s: %s: complete %s preferred over partial %s", ckpt.checkpoint,
                     task, best.path.name, ", ".join(ignored))  # fmt: skip
        rows = _task_rows(ckpt, task, best.metrics, best.data, best.path)
        _attach_samples(reader, ckpt, task, best.path, rows)
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


_UNKNOWN_IDENTITY = "in checkpoint folders of unknown identity"


def _read_all(reader: _Reader, by_ckpt: dict[Path, list[Path]], progress: bool) -> None:
    assert reader.data is not None
    for ckpt_dir, files in tqdm(
        sorted(by_ckpt.items()), desc="reading results", disable=not progress
    ):
        try:
            ckpt, notes = read_checkpoint(ckpt_dir, reader.run_dir)
        except RunLayoutError as e:
            reader.skip(f"{e}; its results are skipped", _UNKNOWN_IDENTITY, files=len(files))
            continue
        for note in notes:
            reader.warn(note)
        reader.data.checkpoints[ckpt.checkpoint] = ckpt
        _read_checkpoint_results(reader, ckpt, files)


IDENTITY = ("experiment", "model", "task", "n", "budget", "sft_fraction", "seed")


def _nothing_readable(reader: _Reader) -> str:
    total = sum(reader.skipped.values())
    why = ", ".join(f"{k} {reason}" for reason, k in sorted(reader.skipped.items()))
    return (
        f"{reader.run_dir}: no readable results: {total} results file{'s' * (total != 1)} "
        f"skipped ({why}), see warnings above"
    )


def _refuse_duplicate_identities(
    run_dir: Path, checkpoints: dict[str, Checkpoint], used: set[str]
) -> None:
    """Folders with one identity would be averaged as if they were seeds: refuse, naming them."""
    by_identity: dict[tuple, list[str]] = defaultdict(list)
    for name in sorted(used):
        ckpt = checkpoints[name]
        if ckpt.is_reference:  # one folder per reference model, by construction
            continue
        by_identity[tuple(getattr(ckpt, f) for f in IDENTITY)].append(name)
    clashes = [(key, names) for key, names in by_identity.items() if len(names) > 1]
    if not clashes:
        return
    key, names = clashes[0]
    identity = ", ".join(f"{f}={v}" for f, v in zip(IDENTITY, key, strict=True) if v is not None)
    more = f" ({len(clashes) - 1} more identities are shared too)" if len(clashes) > 1 else ""
    raise DuplicateCheckpointError(
        f"{run_dir}: checkpoint folders {', '.join(names)} have the same identity ({identity}), "
        f"so their scores would be averaged as if they were different seeds{more}; give each "
        f"its own 'seed' in {MANIFEST}, or move the copies into a superseded/ folder"
    )


_PARALLEL_FROM = 48  # sample files: below this a process pool costs more than it saves


def _sample_files(by_ckpt: dict[Path, list[Path]]) -> list[Path]:
    """The samples_*.jsonl files beside the discovered results files (same date id)."""
    out = []
    for files in by_ckpt.values():
        for path in files:
            m = _RESULTS_NAME.match(path.name)
            if m:
                out += sorted(path.parent.glob(f"samples_*_{m['date_id']}.jsonl"))
    return out


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops the pool (one line, no traces)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _scores(reader: _Reader, path: Path) -> dict[tuple[str, str], ItemScores]:
    """A samples file's scores: from its worker when prefetched, else read here."""
    pending = reader.prefetched.pop(path, None)
    if pending is not None:
        try:
            return pending.result()
        except BrokenProcessPool:
            pass  # a worker died (e.g. out of memory): read the file in this process
    return read_samples(path)


def _prefetch(reader: _Reader, by_ckpt: dict[Path, list[Path]]) -> ProcessPoolExecutor | None:
    """Parse the samples files in worker processes: JSON decoding is most of the reading time
    and holds the GIL. Results are taken (and errors raised) where the file is used."""
    files = _sample_files(by_ckpt)
    workers = min(os.cpu_count() or 1, 8, len(files))
    if len(files) < _PARALLEL_FROM or workers < 2:
        return None
    pool = ProcessPoolExecutor(workers, initializer=_ignore_sigint)
    reader.prefetched = {f: pool.submit(read_samples, f) for f in files}
    return pool


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
    pool = _prefetch(reader, by_ckpt)
    try:
        _read_all(reader, by_ckpt, progress)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if not reader.rows:
        raise ResultsError(_nothing_readable(reader))
    _refuse_duplicate_identities(
        run_dir, reader.data.checkpoints, {r["checkpoint"] for r in reader.rows}
    )
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
