"""Load a task's evaluation data: the pinned hub dataset, or a local JSONL file instead.

Every task YAML names a loader with `custom_dataset: !function utils.load`, and the loader calls
`load_source(SOURCE, **metadata)`. lm-eval calls it with the task's metadata plus whatever the user
passed with `--metadata '{...}'`, so a local file can be given two ways:

  * an environment variable, e.g. `SAH_GSM8K_DATA=/data/gsm8k_test.jsonl` (per task), or
  * `--metadata '{"data_files": "/data/gsm8k_test.jsonl"}'` (applies to every selected task).

The environment variable wins, because it is specific to one task. Local files are JSONL in the
same schema as the hub rows, unless the task documents a converter (e.g. SubQA for multihop).
Relative paths are resolved against the current working directory and reported absolute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from sah_tasks.common.text import decode_line

EVAL_SPLIT = "test"


class TaskDataError(ValueError):
    """Raised for a user-fixable problem with a task's data (missing file, bad row)."""


@dataclass(frozen=True)
class DataSource:
    """Where a task's evaluation rows come from."""

    task: str  # lm-eval task name, used in messages
    env_var: str  # per-task override with a local JSONL file
    hf_path: str  # hub dataset id
    revision: str  # pinned commit on the hub, so a score never silently changes data
    split: str  # hub split that is evaluated
    hf_name: str | None = None  # hub config name
    required_fields: tuple[str, ...] = ()  # checked on local files, named in the error


def local_file(source: DataSource, data_files: str | None) -> tuple[Path, str] | None:
    """The local file to use and what set it, or None to use the hub."""
    if os.environ.get(source.env_var):
        return Path(os.environ[source.env_var]).expanduser().resolve(), f"${source.env_var}"
    if data_files:
        return Path(data_files).expanduser().resolve(), "--metadata data_files"
    return None


def read_jsonl(path: Path, origin: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Read a JSONL file, failing with the file, line and field on the first bad row."""
    if path.is_dir():
        raise TaskDataError(
            f"local data file {path} (set by {origin}) is a directory; expected a JSONL file"
        )
    if not path.is_file():
        raise TaskDataError(f"local data file {path} (set by {origin}) does not exist")
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = decode_line(raw, path, lineno, TaskDataError)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(
                    f"{path}:{lineno}: not valid JSON ({e.msg} column {e.colno})"
                ) from None
            if not isinstance(row, dict):
                raise TaskDataError(f"{path}:{lineno}: expected a JSON object per line")
            missing = [k for k in required if k not in row]
            if missing:
                raise TaskDataError(
                    f"{path}:{lineno}: missing field(s) {missing}; expected fields {list(required)}"
                )
            rows.append(row)
    if not rows:
        raise TaskDataError(f"local data file {path} (set by {origin}) has no rows")
    return rows


def load_source(
    source: DataSource,
    *,
    data_files: str | None = None,
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **_metadata: Any,
) -> datasets.DatasetDict:
    """Return `{"test": Dataset}` for `source`; `convert` maps a raw row to the task's schema."""
    local = local_file(source, data_files)
    if local is not None:
        path, origin = local
        rows = read_jsonl(path, origin, source.required_fields if convert is None else ())
        if convert is not None:
            rows = [_convert_row(convert, row, path, i) for i, row in enumerate(rows, 1)]
        return datasets.DatasetDict({EVAL_SPLIT: datasets.Dataset.from_list(rows)})
    ds = load_hub(source)
    if convert is not None:
        ds = ds.map(convert, remove_columns=ds.column_names)
    return datasets.DatasetDict({EVAL_SPLIT: ds})


def load_hub(source: DataSource) -> datasets.Dataset:
    """The pinned hub split; any failure (offline, no access, gated, gone) is one clear line
    that names the dataset and the two ways to use local data instead."""
    try:
        return datasets.load_dataset(
            source.hf_path, source.hf_name, revision=source.revision, split=source.split
        )
    except Exception as e:  # datasets raises many types here (ConnectionError, OSError, ...)
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        name = f"{source.hf_path}" + (f" ({source.hf_name})" if source.hf_name else "")
        raise TaskDataError(
            f"{source.task}: cannot load the hub dataset {name} at revision {source.revision}, "
            f"split {source.split} ({type(e).__name__}: {reason}). Without hub access point the "
            f"task at a local JSONL file: {source.env_var}=/path/to/test.jsonl, or "
            """--metadata '{"data_files": "/path/to/test.jsonl"}'"""
        ) from None


def _convert_row(convert, row: dict[str, Any], path: Path, lineno: int) -> dict[str, Any]:
    try:
        return convert(row)
    except (KeyError, TypeError, ValueError) as e:
        raise TaskDataError(f"{path}:{lineno}: cannot read row ({type(e).__name__}: {e})") from None
