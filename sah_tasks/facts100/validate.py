"""Check a Facts100-style event file: schema, uniqueness, and that every question is fair.

`validate_file(path)` returns one `Problem` per defect (empty list = valid); the CLI
(`python -m sah_tasks.facts100 validate FILE`) prints one line per problem and exits 1 if any.

Beyond the schema, the checks are the ones that keep the experiment honest:
  * made-up entity names are unique across events, so facts of two events cannot blur together;
  * every direct answer and every multihop bridge is stated in the article (the fact is learnable);
  * every multihop question links to a direct question whose answer is its bridge (the first hop
    is measured separately: that is what the judge-free error breakdown relies on);
  * no multihop answer appears in its event's training text (else it needs no world knowledge);
  * no evaluation question appears verbatim in any training text or training question;
  * dates are on or after 2026-01-01 (after the knowledge cutoff of current models).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

EXPECTED_EVENTS = 100
MIN_DATE = date(2026, 1, 1)
ARTICLE_WORDS = (100, 200)
PARAPHRASES = (3, 5)
PARAPHRASE_MIN_WORDS = 20
DIRECT_QUESTIONS = (1, 3)
MULTIHOP_QUESTIONS = (1, 3)
TRAIN_QA = (1, 5)

EVENT_KEYS = {
    "id": str,
    "date": str,
    "title": str,
    "entities": list,
    "article": str,
    "paraphrases": list,
    "direct": list,
    "multihop": list,
    "train_qa": list,
}
DIRECT_KEYS = {"id": str, "question": str, "answer": str, "aliases": list}
MULTIHOP_KEYS = {**DIRECT_KEYS, "bridge": str, "hops": list, "direct_id": str}
TRAIN_QA_KEYS = {"id": str, "question": str, "answer": str}
STRING_LISTS = {"entities", "paraphrases", "aliases", "hops"}

# Ordinary English words that may recur across events inside invented names ("... Prize",
# "... Institute"); every other part of an invented name must belong to one event only, so that
# "Lindqvist" in two events cannot blur two facts together.
GENERIC_NAME_WORDS = frozenset(
    """
    the of for and on in at a an alliance array award awards ballet cells centre center collection
    commons company consortium cup energy engineering expedition festival fellowship film
    foundation gallery group hall harbour house institut institute lab laboratory lines long
    materials medal minerals mobility museum ocean open orchestra power press prize probe project
    robotics scholarships station street survey theatre tower trail trophy trust university
    """.split()
)


_POSSESSIVE = re.compile(r"['\u2019]s\b")
_HYPHEN = re.compile(r"[-\u2010\u2011\u2013]")


@dataclass(frozen=True)
class Problem:
    where: str  # "line 7 (f007)" or "line 7 (f007) direct f007-d1"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class _Event:
    """One parsed event plus where it came from, for messages."""

    line: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"line {self.line} ({self.data.get('id', '?')})"

    def training_texts(self) -> list[str]:
        """Everything a training source may show the model about this event."""
        qa = [f"{t['question']} {t['answer']}" for t in self.data["train_qa"]]
        return [self.data["title"], self.data["article"], *self.data["paraphrases"], *qa]


from sah_tasks.common.text import not_utf8  # noqa: E402

# The task scorer's SQuAD normalisation: validation must agree with scoring.
from sah_tasks.multihop.utils import normalize_answer  # noqa: E402


@functools.lru_cache(maxsize=4096)
def _padded_forms(text: str) -> tuple[str, ...]:
    # Also the text with possessives dropped and hyphens split ("Magellan's", "74-metre").
    loose = _HYPHEN.sub(" ", _POSSESSIVE.sub("", text))
    return tuple(f" {normalize_answer(t)} " for t in (text, loose))


def contains(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words, after SQuAD normalisation.

    Normalising both sides makes `1,100` match `1100` and `the Danube` match `Danube`, while
    whole-word matching keeps `Mn` from matching inside `column`. Matching is deliberately
    literal otherwise (`74-metre` does not contain `74 metres`): phrase answers as the text does.
    """
    needle = normalize_answer(phrase)
    return bool(needle) and any(f" {needle} " in form for form in _padded_forms(text))


@functools.lru_cache(maxsize=4096)
def _name_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE)


def _mentions(text: str, name: str) -> bool:
    """Case-insensitive whole-word match of a name as written (keeps `&`, hyphens)."""
    return _name_pattern(name).search(text) is not None


def _answers(q: dict[str, Any]) -> list[str]:
    return [q["answer"], *q["aliases"]]


def _type_problems(obj: Any, keys: dict[str, type], where: str) -> list[Problem]:
    if not isinstance(obj, dict):
        return [Problem(where, f"expected a JSON object, got {type(obj).__name__}")]
    problems = []
    for key, typ in keys.items():
        if key not in obj:
            problems.append(Problem(where, f"missing field `{key}`"))
        elif not isinstance(obj[key], typ) or (typ is str and not obj[key].strip()):
            problems.append(Problem(where, f"field `{key}` must be a non-empty {typ.__name__}"))
        elif key in STRING_LISTS and not all(isinstance(x, str) and x.strip() for x in obj[key]):
            problems.append(Problem(where, f"field `{key}` must be a list of non-empty strings"))
    for key in sorted(set(obj) - set(keys)):
        problems.append(Problem(where, f"unknown field `{key}` (expected {sorted(keys)})"))
    return problems


def _count_problem(items: list, bounds: tuple[int, int], what: str, where: str) -> list[Problem]:
    lo, hi = bounds
    if lo <= len(items) <= hi:
        return []
    return [Problem(where, f"has {len(items)} {what}; expected {lo} to {hi}")]


def schema_problems(ev: _Event) -> list[Problem]:
    """Types and counts; content checks only run on events without schema problems."""
    problems = _type_problems(ev.data, EVENT_KEYS, ev.where)
    if problems:
        return problems
    d = ev.data
    problems += _count_problem(d["paraphrases"], PARAPHRASES, "paraphrases", ev.where)
    problems += _count_problem(d["direct"], DIRECT_QUESTIONS, "direct questions", ev.where)
    problems += _count_problem(d["multihop"], MULTIHOP_QUESTIONS, "multihop questions", ev.where)
    problems += _count_problem(d["train_qa"], TRAIN_QA, "train_qa items", ev.where)
    if not d["entities"]:
        problems.append(Problem(ev.where, "`entities` is empty; list the event's made-up names"))
    for kind, keys in (
        ("direct", DIRECT_KEYS),
        ("multihop", MULTIHOP_KEYS),
        ("train_qa", TRAIN_QA_KEYS),
    ):
        for i, q in enumerate(d[kind], 1):
            qid = q.get("id", f"#{i}") if isinstance(q, dict) else f"#{i}"
            problems += _type_problems(q, keys, f"{ev.where} {kind} {qid}")
    for q in d["multihop"]:
        if isinstance(q, dict) and isinstance(q.get("hops"), list) and len(q["hops"]) != 2:
            where = f"{ev.where} multihop {q.get('id', '?')}"
            problems.append(
                Problem(where, f"`hops` must list exactly 2 facts, got {len(q['hops'])}")
            )
    return problems


def _date_problems(ev: _Event) -> list[Problem]:
    try:
        when = date.fromisoformat(ev.data["date"])
    except ValueError:
        return [Problem(ev.where, f"date {ev.data['date']!r} is not YYYY-MM-DD")]
    if when < MIN_DATE:
        return [Problem(ev.where, f"date {when} is before {MIN_DATE}; events must be new")]
    return []


def _text_problems(ev: _Event) -> list[Problem]:
    d, problems = ev.data, []
    n_words = len(d["article"].split())
    lo, hi = ARTICLE_WORDS
    if not lo <= n_words <= hi:
        problems.append(Problem(ev.where, f"article has {n_words} words; expected {lo} to {hi}"))
    seen = {d["article"].strip()}
    for i, text in enumerate(d["paraphrases"], 1):
        if len(text.split()) < PARAPHRASE_MIN_WORDS:
            problems.append(
                Problem(
                    ev.where,
                    f"paraphrase {i} has {len(text.split())} words; "
                    f"expected at least {PARAPHRASE_MIN_WORDS}",
                )
            )
        if text.strip() in seen:
            problems.append(
                Problem(ev.where, f"paraphrase {i} repeats the article or another paraphrase")
            )
        seen.add(text.strip())
    for name in d["entities"]:
        if not _mentions(d["article"], name):
            problems.append(Problem(ev.where, f"entity {name!r} does not appear in the article"))
    return problems


def _question_problems(ev: _Event) -> list[Problem]:
    d, problems = ev.data, []
    article = d["article"]
    direct = {q["id"]: q for q in d["direct"]}
    for q in d["direct"]:
        if not any(contains(article, a) for a in _answers(q)):
            problems.append(
                Problem(
                    f"{ev.where} direct {q['id']}",
                    f"answer {q['answer']!r} (nor any alias) is not in the article",
                )
            )
    training = " \n ".join(ev.training_texts())
    for q in d["multihop"]:
        where = f"{ev.where} multihop {q['id']}"
        if not contains(article, q["bridge"]):
            problems.append(Problem(where, f"bridge {q['bridge']!r} is not in the article"))
        linked = direct.get(q["direct_id"])
        if linked is None:
            problems.append(
                Problem(
                    where,
                    f"direct_id {q['direct_id']!r} is not a direct "
                    f"question of this event ({sorted(direct)})",
                )
            )
        elif normalize_answer(q["bridge"]) not in {normalize_answer(a) for a in _answers(linked)}:
            problems.append(
                Problem(
                    where,
                    f"bridge {q['bridge']!r} is not the answer of its "
                    f"linked direct question {linked['id']}",
                )
            )
        leaked = [a for a in _answers(q) if contains(training, a)]
        if leaked:
            problems.append(
                Problem(
                    where,
                    f"answer {leaked[0]!r} appears in the event's "
                    "training text, so no world-knowledge hop is needed",
                )
            )
    grounding = " \n ".join([article, *d["paraphrases"]])
    for t in d["train_qa"]:
        if not contains(grounding, t["answer"]):
            problems.append(
                Problem(
                    f"{ev.where} train_qa {t['id']}",
                    f"answer {t['answer']!r} is not in the article or paraphrases",
                )
            )
    return problems


def _duplicate_id_problems(events: list[_Event]) -> list[Problem]:
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for ev in events:
        ids = [ev.data["id"]] + [
            q["id"] for k in ("direct", "multihop", "train_qa") for q in ev.data[k]
        ]
        for qid in ids:
            if qid in first_line:
                problems.append(
                    Problem(
                        ev.where,
                        f"id {qid!r} already used on line {first_line[qid]}; ids must be unique",
                    )
                )
            else:
                first_line[qid] = ev.line
    return problems


def _entity_problems(events: list[_Event]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[str, _Event] = {}
    for ev in events:
        for name in ev.data["entities"]:
            key = name.casefold()
            if key in owner and owner[key] is not ev:
                problems.append(
                    Problem(
                        ev.where,
                        f"entity {name!r} is also an entity of "
                        f"{owner[key].data['id']}; made-up names must "
                        "be unique across events",
                    )
                )
            owner.setdefault(key, ev)
    problems += _name_part_problems(events)
    for ev in events:
        text = " \n ".join(ev.training_texts())
        folded = text.casefold()  # a cheap substring test first; the regex only confirms
        declared = {n.casefold() for n in ev.data["entities"]}  # a duplicate is reported above
        for key, other in owner.items():
            if other is ev or key in declared or key not in folded:
                continue
            if _mentions(text, key):
                name = next(n for n in other.data["entities"] if n.casefold() == key)
                problems.append(
                    Problem(ev.where, f"mentions {name!r}, a made-up entity of {other.data['id']}")
                )
    return problems


def _name_parts(name: str) -> set[str]:
    parts = {p.strip("'.,").casefold() for p in re.split(r"[\s\-&/]+", name)}
    return {p for p in parts if len(p) >= 3 and not p.isdigit() and p not in GENERIC_NAME_WORDS}


def _name_part_problems(events: list[_Event]) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[str, tuple[_Event, str]] = {}
    for ev in events:
        for name in ev.data["entities"]:
            for part in sorted(_name_parts(name)):
                owner, owner_name = first.setdefault(part, (ev, name))
                if owner is not ev and owner_name.casefold() != name.casefold():
                    problems.append(
                        Problem(
                            ev.where,
                            f"entity {name!r} shares the name part "
                            f"{part!r} with {owner_name!r} of "
                            f"{owner.data['id']}; invented names must "
                            "not share parts across events",
                        )
                    )
    return problems


def _leak_problems(events: list[_Event]) -> list[Problem]:
    """Evaluation questions must never be shown to the model during training."""
    docs = [
        normalize_answer(t)
        for ev in events
        for t in [ev.data["title"], ev.data["article"], *ev.data["paraphrases"]]
    ]
    train_questions = {
        normalize_answer(t["question"]) for ev in events for t in ev.data["train_qa"]
    }
    problems = []
    for ev in events:
        for kind in ("direct", "multihop"):
            for q in ev.data[kind]:
                norm = normalize_answer(q["question"])
                if norm in train_questions:
                    problems.append(
                        Problem(
                            f"{ev.where} {kind} {q['id']}", "question is also a train_qa question"
                        )
                    )
                elif any(norm in doc for doc in docs):
                    problems.append(
                        Problem(
                            f"{ev.where} {kind} {q['id']}",
                            "question appears verbatim in a training document",
                        )
                    )
    return problems


def validate_events(
    raw: list[tuple[int, Any]], expected: int | None = EXPECTED_EVENTS
) -> list[Problem]:
    """Validate `(line number, parsed object)` pairs; see the module docstring for the checks."""
    problems: list[Problem] = []
    good: list[_Event] = []
    for line, data in raw:
        ev = _Event(line, data if isinstance(data, dict) else {})
        if not isinstance(data, dict):
            problems.append(Problem(ev.where, "expected one JSON object (an event)"))
            continue
        schema = schema_problems(ev)
        problems += schema
        if not schema:
            good.append(ev)
            problems += _date_problems(ev) + _text_problems(ev) + _question_problems(ev)
    if expected is not None and len(raw) != expected:
        problems.append(Problem("file", f"has {len(raw)} events; expected {expected}"))
    problems += _duplicate_id_problems(good)
    problems += _entity_problems(good)
    problems += _leak_problems(good)
    return problems


def loader_problems(events: list[dict[str, Any]]) -> list[Problem]:
    """What a task or training loader cannot work around: broken structure, duplicate or dangling
    ids, and evaluation questions leaked into training text. Style checks (lengths, counts)
    are left to the full validator, so a user's own Facts-N file with short articles still loads.
    """
    parsed = [_Event(i, e if isinstance(e, dict) else {}) for i, e in enumerate(events, 1)]
    problems = [p for ev in parsed for p in schema_problems(ev)]
    if problems:
        return problems
    problems = _duplicate_id_problems(parsed)
    for ev in parsed:
        direct = {q["id"] for q in ev.data["direct"]}
        problems += [
            Problem(
                f"{ev.where} multihop {q['id']}",
                f"direct_id {q['direct_id']!r} is not a direct question of this event",
            )
            for q in ev.data["multihop"]
            if q["direct_id"] not in direct
        ]
    return problems + _leak_problems(parsed)


def validate_file(path: str | Path, expected: int | None = EXPECTED_EVENTS) -> list[Problem]:
    """All problems of the event file at `path`; every unparseable line is its own problem."""
    path = Path(path)
    if path.is_dir():
        return [Problem(str(path), "is a directory; expected a JSONL file")]
    if not path.is_file():
        return [Problem(str(path), "file does not exist")]
    raw: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    with path.open("rb") as f:
        for lineno, data in enumerate(f, 1):
            try:  # every undecodable line is its own problem, like every unparseable one
                line = data.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                problems.append(Problem(f"line {lineno}", not_utf8(e)))
                continue
            if not line.strip():
                continue
            try:
                raw.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append(Problem(f"line {lineno}", f"not valid JSON ({e.msg})"))
    if not raw and not problems:
        return [Problem(str(path), "file has no events")]
    return problems + validate_events(raw, expected)
