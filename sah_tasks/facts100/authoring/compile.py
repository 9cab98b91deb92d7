"""Turn the hand-written YAML sources into Facts100 JSONL rows (numbering + linking only)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

SOURCES_DIR = Path(__file__).parent / "events"


class SourceError(ValueError):
    """A malformed source event (named by file and position)."""


def _text(value: Any, where: str) -> str:
    # YAML turns `2031` into an int and `yes` into a bool; answers must stay the written text.
    if isinstance(value, bool) or value is None:
        raise SourceError(f"{where}: expected text, got {value!r}; quote it in the YAML")
    return " ".join(str(value).split())


def _question(src: dict[str, Any], qid: str, where: str, kind: str) -> dict[str, Any]:
    q = {"id": qid, "question": _text(src["q"], where), "answer": _text(src["a"], where)}
    if kind != "train_qa":
        q["aliases"] = [_text(a, where) for a in src.get("aliases") or []]
    return q


def compile_event(src: dict[str, Any], event_id: str, where: str) -> dict[str, Any]:
    try:
        direct = [
            _question(q, f"{event_id}-d{i}", where, "direct")
            for i, q in enumerate(src["direct"], 1)
        ]
        multihop = []
        for i, q in enumerate(src["multihop"], 1):
            m = _question(q, f"{event_id}-m{i}", where, "multihop")
            m["bridge"] = _text(q["bridge"], where)
            m["hops"] = [_text(h, where) for h in q["hops"]]
            m["direct_id"] = f"{event_id}-d{int(q['direct'])}"
            multihop.append(m)
        return {
            "id": event_id,
            "date": _text(src["date"], where),
            "title": _text(src["title"], where),
            "entities": [_text(e, where) for e in src["entities"]],
            "article": _text(src["article"], where),
            "paraphrases": [_text(p, where) for p in src["paraphrases"]],
            "direct": direct,
            "multihop": multihop,
            "train_qa": [
                _question(q, f"{event_id}-t{i}", where, "train_qa")
                for i, q in enumerate(src["train_qa"], 1)
            ],
        }
    except KeyError as e:
        raise SourceError(f"{where}: missing key {e}") from None


def build_lines(sources: str | Path = SOURCES_DIR) -> tuple[list[dict[str, Any]], list[str]]:
    """All events from `sources/*.yml` in file order, and their JSONL lines."""
    files = sorted(Path(sources).glob("*.yml"))
    if not files:
        raise SourceError(f"no *.yml event sources in {sources}")
    events = []
    for path in files:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        for i, src in enumerate(items, 1):
            event_id = f"f{len(events) + 1:03d}"
            events.append(compile_event(src, event_id, f"{path.name} event {i} ({event_id})"))
    lines = [json.dumps(e, ensure_ascii=False) + "\n" for e in events]
    return events, lines


def write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
