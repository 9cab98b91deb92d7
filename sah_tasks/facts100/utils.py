"""lm-eval glue for `sah_facts100_direct` and `sah_facts100_multihop`.

Closed-book generation on the shared `Question: ...\nAnswer:` prompt; EM and F1 (SQuAD
normalisation, max over the answer and its aliases) come from the multihop task's scorer, so
every short-answer task in the package is scored alike. Data: the shipped event file, or
`SAH_FACTS100_DATA=/path.jsonl`, or `--metadata '{"data_files": "/path.jsonl"}'`.
"""

from __future__ import annotations

from typing import Any

import datasets

from sah_tasks.common.data import EVAL_SPLIT
from sah_tasks.facts100.dataset import load_events, question_rows
from sah_tasks.multihop.utils import score


def _load(kind: str, data_files: str | None) -> datasets.DatasetDict:
    # a bad file raises Facts100DataError, a TaskDataError like every task's data problems
    rows = question_rows(load_events(data_files), kind)
    return datasets.DatasetDict({EVAL_SPLIT: datasets.Dataset.from_list(rows)})


def load_direct(data_files: str | None = None, **_metadata: Any) -> datasets.DatasetDict:
    """One row per direct question (answer stated in the article)."""
    return _load("direct", data_files)


def load_multihop(data_files: str | None = None, **_metadata: Any) -> datasets.DatasetDict:
    """One row per multihop question; `direct_id` links it to the direct question of hop one."""
    return _load("multihop", data_files)


def doc_to_text(doc: dict[str, Any]) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    return score(results[0] if results else "", [doc["answer"], *doc["aliases"]])
