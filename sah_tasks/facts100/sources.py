"""Facts100 training sources, called by the trainers' registry (`trainers/data.py`).

  * `facts100_documents`: every article (with its headline) and every paraphrase as a plain
    `text` record, trained with loss on all tokens, like continued pre-training. Varied phrasings
    of one fact are what make it retrievable from a question later.
  * `facts100_qa`: the events' `train_qa` pairs in the shared prompt format. They ask about other
    details of the same events than the evaluation questions do, and never repeat an evaluation
    question (`load_events` refuses a file where one does).

Both read the file chosen by `SAH_FACTS100_DATA` (default: the shipped dataset).
"""

from __future__ import annotations

from typing import Any

from sah_tasks.facts100.dataset import load_events

# The frame of every task's prompt; the trainers and the lm-eval tasks use the same one.
PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


def event_documents(event: dict[str, Any]) -> list[dict[str, str]]:
    """The article (headline first) and each paraphrase of one event, with stable ids."""
    docs = [{"id": f"{event['id']}-article", "text": f"{event['title']}\n\n{event['article']}"}]
    docs += [{"id": f"{event['id']}-p{i}", "text": text}
             for i, text in enumerate(event["paraphrases"], 1)]  # fmt: skip
    return docs


def document_records(data_files: str | None = None) -> list[dict[str, str]]:
    """`{"id", "text"}` for every article and paraphrase (400 records for the shipped file)."""
    return [doc for event in load_events(data_files) for doc in event_documents(event)]


def qa_records(data_files: str | None = None) -> list[dict[str, str]]:
    """`{"id", "prompt", "completion"}` for every train_qa pair, completion with a leading space."""
    return [
        {
            "id": qa["id"],
            "prompt": PROMPT_TEMPLATE.format(question=qa["question"]),
            "completion": f" {qa['answer']}",
        }
        for event in load_events(data_files)
        for qa in event["train_qa"]
    ]
