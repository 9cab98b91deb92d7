"""Multihop QA (`sah_multihop`): HotpotQA / SubQA rows -> one prompt format; EM and F1.

The scoring functions (`exact_match_score`, `f1_score`, `extract_answer`, `score`) are the public
QA scorer of the package: the Facts100 tasks import them, so every short-answer task is scored
alike. F1 is SQuAD v1.1's (`squad_f1`) unless a caller picks another: `sah_multihop` scores
HotpotQA rows with HotpotQA's official answer F1 (`hotpotqa_f1`) and SubQA / plain rows with SQuAD's.
"""

from __future__ import annotations

import collections
import functools
import re
import string
from collections.abc import Callable, Iterable, Sequence
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


def row_source(row: dict[str, Any]) -> str:
    """`"hotpotqa"` for a HotpotQA row (hub or original JSON), `"subqa"` for a SubQA / plain row.

    Told by the row's shape, not by where it was loaded from: only HotpotQA rows carry
    `supporting_facts` or paragraph-structured context, so a local copy of HotpotQA is HotpotQA.
    """
    structured = not isinstance(row.get("context", ""), str)
    return "hotpotqa" if structured or "supporting_facts" in row else "subqa"


def to_multihop_row(row: dict[str, Any]) -> dict[str, Any]:
    """Map a HotpotQA row (hub or original JSON) or a SubQA/plain row to the task schema.

    Output: id, question, context (gold paragraphs as text), answers (gold + aliases),
    sub_questions (SubQA's single-hop decompositions when present, else empty), source
    (`row_source`: which dataset's F1 scores the row).
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
        "source": row_source(row),
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


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:  # also when both are empty: SQuAD v1.1 and HotpotQA score that 0, not 1
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, gold: str) -> float:
    """SQuAD v1.1's answer F1 (evaluate-v1.1.py `f1_score`): token overlap of the normalised texts."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


# HotpotQA answers that are labels, not spans: partial overlap with them is meaningless.
_HOTPOTQA_LABELS = frozenset({"yes", "no", "noanswer"})


def hotpotqa_f1(prediction: str, gold: str) -> float:
    """HotpotQA's answer F1 (hotpot_evaluate_v1.py `f1_score`): SQuAD's, except that a prediction
    or gold that is `yes` / `no` / `noanswer` scores 0 unless the two are equal (`no way` vs `no`
    is wrong, not half right)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if pred != ref and (pred in _HOTPOTQA_LABELS or ref in _HOTPOTQA_LABELS):
        return 0.0
    return _token_f1(pred.split(), ref.split())


PairF1 = Callable[[str, str], float]
# The F1 each data source is published with; `to_multihop_row` records the source per row.
F1_BY_SOURCE: dict[str, PairF1] = {"hotpotqa": hotpotqa_f1, "subqa": squad_f1}


def exact_match_score(prediction: str, golds: Iterable[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: Iterable[str], pair_f1: PairF1 = squad_f1) -> float:
    return max((pair_f1(prediction, g) for g in golds), default=0.0)


def score(generation: Any, golds: Sequence[str], pair_f1: PairF1 = squad_f1) -> dict[str, float]:
    """EM and F1 (`pair_f1`, SQuAD's by default) of one generation, max over the gold aliases."""
    prediction = extract_answer(generation)
    if not prediction:
        return {"exact_match": 0.0, "f1": 0.0}
    f1 = f1_score(prediction, golds, pair_f1)
    return {"exact_match": exact_match_score(prediction, golds), "f1": f1}


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    # A doc without `source` (built by hand, or cached by an older version) is scored as SQuAD.
    pair_f1 = F1_BY_SOURCE[doc.get("source") or "subqa"]
    return score(results[0] if results else "", doc["answers"], pair_f1)
