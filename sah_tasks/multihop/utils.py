"""Multihop QA (`sah_multihop`): HotpotQA / SubQA rows -> one prompt format; SQuAD EM and F1.

The scoring functions (`exact_match_score`, `f1_score`, `extract_answer`) are the public QA scorer
of the package: the Facts100 tasks import them, so every short-answer task is scored alike.
"""

from __future__ import annotations

import collections
import functools
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from sah_tasks.common.data import DataSource, load_source

SOURCE = DataSource(
    task="sah_multihop",
    env_var="SAH_MULTIHOP_DATA",
    hf_path="hotpotqa/hotpot_qa",
    hf_name="distractor",
    revision="1908d6afbbead072334abe2965f91bd2709910ab",
    split="validation",  # the distractor dev set; HotpotQA's test answers are hidden
)


# ----------------------------------------------------------------------------- data formats
def _paragraphs_hf(context: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return list(zip(context["title"], context["sentences"], strict=True))


def _gold_titles(supporting_facts: Any) -> list[str]:
    """Titles of the supporting paragraphs, in order of first mention (HF dict or raw list form)."""
    if isinstance(supporting_facts, dict):
        titles = supporting_facts["title"]
    else:
        titles = [fact[0] for fact in supporting_facts]
    return list(dict.fromkeys(titles))


def _context_text(row: dict[str, Any]) -> str:
    """The gold supporting paragraphs as `Title: text` blocks (all paragraphs if none marked)."""
    context = row.get("context", "")
    if isinstance(context, str):
        return context.strip()
    paragraphs = (
        _paragraphs_hf(context) if isinstance(context, dict) else [tuple(p) for p in context]
    )
    gold = _gold_titles(row["supporting_facts"]) if row.get("supporting_facts") else []
    by_title = dict(paragraphs)
    chosen = [(t, by_title[t]) for t in gold if t in by_title] or paragraphs
    return "\n\n".join(f"{title}: {''.join(sentences).strip()}" for title, sentences in chosen)


def _answers(row: dict[str, Any]) -> list[str]:
    answers: list[str] = []
    for key in ("answer", "answers", "aliases"):
        value = row.get(key)
        if isinstance(value, str):
            answers.append(value)
        elif isinstance(value, list):
            answers.extend(str(v) for v in value)
    answers = [a for a in dict.fromkeys(a.strip() for a in answers) if a]
    if not answers:
        raise ValueError("row has no 'answer' / 'answers' / 'aliases'")
    return answers


def to_multihop_row(row: dict[str, Any]) -> dict[str, Any]:
    """Map a HotpotQA row (hub or original JSON) or a SubQA/plain row to the task schema.

    Output: id, question, context (gold paragraphs as text), answers (gold + aliases),
    sub_questions (SubQA's single-hop decompositions when present, else empty).
    """
    sub = [
        {"question": str(q.get("question", "")), "answer": str(q.get("answer", ""))}
        for q in row.get("sub_questions") or []
    ]
    return {
        "id": str(row.get("id", row.get("_id", ""))),
        "question": str(row["question"]).strip(),
        "context": _context_text(row),
        "answers": _answers(row),
        "sub_questions": sub,
    }


def load(**metadata: Any):
    return load_source(SOURCE, convert=to_multihop_row, **metadata)


def doc_to_text(doc: dict[str, Any]) -> str:
    """Context paragraphs, then the shared `Question: ...\nAnswer:` frame."""
    if doc.get("context"):
        return f"{doc['context']}\n\nQuestion: {doc['question']}\nAnswer:"
    return f"Question: {doc['question']}\nAnswer:"


# ----------------------------------------------------------------------------- scoring
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@functools.lru_cache(maxsize=4096)
def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, articles and extra whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def extract_answer(generation: Any) -> str:
    """The first non-empty line of a generation; anything that is not text is the empty answer."""
    if not isinstance(generation, str):
        return ""
    for line in generation.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, golds: Iterable[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: Iterable[str]) -> float:
    return max((_f1(prediction, g) for g in golds), default=0.0)


def score(generation: Any, golds: Sequence[str]) -> dict[str, float]:
    """EM and F1 of one generation against all gold aliases (max over aliases)."""
    prediction = extract_answer(generation)
    if not prediction:
        return {"exact_match": 0.0, "f1": 0.0}
    return {"exact_match": exact_match_score(prediction, golds), "f1": f1_score(prediction, golds)}


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    return score(results[0] if results else "", doc["answers"])
