"""What an evaluation unit's results on disk are worth: verified, from the requested settings.

A (checkpoint, task) unit counts as done only when its results file parses, names the task,
has as many logged samples as it says it scored, *and* was produced by the same request: the
same task code and config, the same data, limit, generation settings, chat-template setting and
seed, and the same served model (weights, revision, adapter). That request is fingerprinted
before the unit runs and stored beside the results (`"sah": {"request", "fingerprint"}`).

    todo     no results yet                         -> evaluated
    torn     results unreadable or incomplete       -> set aside, evaluated again
    stale    results of a different request         -> reported; `--overwrite` sets them aside
                                                       (eval/<task>/superseded/<stamp>/) and
                                                       evaluates again
    done     verified, same request                 -> skipped

One writer per unit: `trainers.manifest.unit_lock` (the trainers' lock too) holds
`eval/.lock-<task>` (host and pid inside) while a unit runs; a second sweep skips a unit whose lock is held by a live process, and takes over a lock
left by a dead one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Files of a task folder whose content decides what a task computes.
TASK_FILE_SUFFIXES = (".yaml", "_yaml", ".yml", ".py")
DATA_ENV = re.compile(r"\bSAH_[A-Z0-9_]+_DATA\b")
SUPERSEDED = "superseded"


class Ledger:
    """Fingerprints of evaluation requests, with per-sweep caches of file hashes."""

    def __init__(self, task_manager: Any = None):
        self.task_manager = task_manager
        self._hashes: dict[Path, str] = {}
        self._tasks: dict[str, dict[str, Any]] = {}

    def _file_hash(self, path: Path) -> str:
        if path not in self._hashes:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._hashes[path] = digest.hexdigest()
        return self._hashes[path]

    def task_identity(self, task: str) -> dict[str, Any]:
        """The task's code and config (every YAML/Python file of its folder) and its local data
        (the `SAH_*_DATA` files its code reads, when set)."""
        if task not in self._tasks:
            folder = self._task_folder(task)
            identity: dict[str, Any] = {"source": None, "data": {}}
            if folder is not None:
                files = sorted(p for p in folder.iterdir() if p.name.endswith(TASK_FILE_SUFFIXES))
                identity["source"] = hashlib.sha256(
                    "".join(f"{p.name}:{self._file_hash(p)};" for p in files).encode()
                ).hexdigest()
                names = set()
                for p in files:
                    if p.suffix == ".py":
                        names |= set(DATA_ENV.findall(p.read_text(encoding="utf-8")))
                for name in sorted(names):
                    if os.environ.get(name):
                        identity["data"][name] = self._data_hash(os.environ[name])
            self._tasks[task] = identity
        return self._tasks[task]

    def _task_folder(self, task: str) -> Path | None:
        index = getattr(self.task_manager, "task_index", None) or {}
        entry = index.get(task)
        yaml_path = getattr(entry, "yaml_path", None)
        return Path(yaml_path).parent if yaml_path else None

    def _data_hash(self, value: str) -> str:
        path = Path(value).expanduser().resolve()
        return self._file_hash(path) if path.is_file() else f"missing:{path}"

    def request(self, task: str, served: dict[str, Any], settings: dict[str, Any]) -> dict:
        """Everything that determines a unit's result, as a JSON-able mapping. A local data file
        given with `--metadata data_files` counts by its content, like a `SAH_*_DATA` one."""
        identity = self.task_identity(task)
        data_files = (settings.get("metadata") or {}).get("data_files")
        if isinstance(data_files, str):
            identity = {**identity, "data": {**identity["data"],
                                             "data_files": self._data_hash(data_files)}}  # fmt: skip
        return {"task": task, **identity, "served": served, **settings}


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- verification
def newest_results(out_dir: Path) -> Path | None:
    files = sorted(out_dir.glob("results_*.json")) if out_dir.is_dir() else []
    return files[-1] if files else None  # lm-eval's date_id sorts by time


def check_results(results_path: Path, task: str) -> dict[str, Any]:
    """The parsed results file, if it is complete for `task`; ValueError naming what is wrong."""
    try:
        data = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{results_path}: unreadable results ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"{results_path}: no 'results' mapping")
    if task not in data["results"]:
        raise ValueError(f"{results_path}: no results for task {task!r}")
    counts = data.get("n-samples")
    counts = counts.get(task) if isinstance(counts, dict) else None
    expected = counts.get("effective") if isinstance(counts, dict) else None
    samples = sorted(results_path.parent.glob(f"samples_{task}_*.jsonl"))
    if not isinstance(expected, int) or isinstance(expected, bool) or not samples:
        raise ValueError(f"{results_path}: no sample count or no samples_{task}_*.jsonl beside it")
    per_filter = _docs_per_filter(samples[-1])
    if not per_filter or any(n != expected for n in per_filter.values()):
        raise ValueError(
            f"{samples[-1]}: samples logged per filter {per_filter or 0}, the results say "
            f"{expected} documents"
        )
    return data


def _docs_per_filter(path: Path) -> dict[str, int]:
    """Distinct documents logged under each filter (lm-eval writes one line per doc and filter)."""
    docs: dict[str, set] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    docs.setdefault(str(row.get("filter")), set()).add(row.get("doc_id"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: unreadable samples ({e})") from None
    return {k: len(v) for k, v in docs.items()}


def status(out_dir: Path, task: str, request: dict[str, Any]) -> tuple[str, str]:
    """('todo' | 'torn' | 'stale' | 'done', why) of a unit's output folder for `request`."""
    path = newest_results(out_dir)
    if path is None:
        return "todo", "no results"
    try:
        data = check_results(path, task)
    except ValueError as e:
        return "torn", str(e)
    sah = data.get("sah")
    sah = sah if isinstance(sah, dict) else {}
    if sah.get("fingerprint") == fingerprint(request):
        return "done", str(path)
    old = sah.get("request")
    if not isinstance(old, dict):
        return "stale", f"{path}: results without a request fingerprint (plain lm_eval, older sah)"
    fields = sorted(k for k in set(old) | set(request) if old.get(k) != request.get(k))
    return "stale", f"{path}: results of a different request (differs in: {', '.join(fields)})"


def set_aside(out_dir: Path) -> Path | None:
    """Move a unit's previous files into `superseded/<stamp>/` (never deleted)."""
    files = [p for p in out_dir.iterdir() if p.is_file()] if out_dir.is_dir() else []
    if not files:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = out_dir / SUPERSEDED / stamp
    target.mkdir(parents=True)
    for f in files:
        f.replace(target / f.name)
    return target
