"""The Facts100 event file: where it lives, how to read it, and its question rows.

One JSON object per line, one event per object (schema in docs/facts100.md). The shipped file sits
beside this module, so it is found from any working directory; `SAH_FACTS100_DATA=/path.jsonl`
points every Facts100 consumer (tasks, training sources) at another file in the same schema.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sah_tasks.common.data import TaskDataError, read_jsonl

ENV_VAR = "SAH_FACTS100_DATA"
SHIPPED_FILE = Path(__file__).parent / "data" / "facts100.jsonl"


class Facts100DataError(TaskDataError):
    """A user-fixable problem with a Facts100 file (missing, not JSONL, wrong shape)."""


def data_path(data_files: str | None = None) -> tuple[Path, str]:
    """The event file to use and what chose it: env var, then `data_files`, then the shipped file."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve(), f"${ENV_VAR}"
    if data_files:
        return Path(data_files).expanduser().resolve(), "--metadata data_files"
    return SHIPPED_FILE, "the shipped dataset"


def read_events(path: Path, origin: str = "") -> list[dict[str, Any]]:
    """Parse a Facts100 JSONL file into event dicts (their structure is checked by `validate`)."""
    try:
        return read_jsonl(path, origin or "the caller")
    except TaskDataError as e:
        raise Facts100DataError(str(e)) from None


def load_events(data_files: str | None = None) -> list[dict[str, Any]]:
    """The events of the file chosen by `data_path`, checked for what consumers rely on."""
    from sah_tasks.facts100.validate import loader_problems

    path, origin = data_path(data_files)
    events = read_events(path, origin)
    problems = loader_problems(events)
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise Facts100DataError(
            f"Facts100 file {path} ({origin}) is not usable:\n  {shown}{more}\n"
            f"(`python -m sah_tasks.facts100 validate {path}` gives the full report)"
        )
    return events


def question_rows(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Flatten (validated) events into one row per `kind` question ("direct" or "multihop").

    Every row keeps its event id and title so per-event analysis needs no second lookup; multihop
    rows keep `direct_id`, which links each one to the direct question checking its first hop.
    """
    rows = []
    for event in events:
        for q in event[kind]:
            row = {
                "id": q["id"],
                "event_id": event["id"],
                "event_title": event.get("title", ""),
                "kind": kind,
                "question": q["question"],
                "answer": q["answer"],
                "aliases": list(q.get("aliases", [])),
            }
            if kind == "multihop":
                row.update(bridge=q["bridge"], hops=list(q["hops"]), direct_id=q["direct_id"])
            rows.append(row)
    return rows
