"""Training-data registry: eval-format rows, pinned hub sources, local files, clear errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from trainer_helpers import GSM8K_TRAIN, read_jsonl

from trainers import data
from trainers.data import (
    PREFERENCE_SOURCES,
    SFT_SOURCES,
    TrainDataError,
    corrupt_gsm8k_solution,
    load_preference_pool,
    load_sft_pool,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k_local_rows_use_the_eval_prompt_format():
    pool = load_sft_pool("gsm8k", str(GSM8K_TRAIN))
    raw = read_jsonl(GSM8K_TRAIN)
    assert len(pool.examples) == len(raw)
    by_prompt = {ex.prompt: ex for ex in pool.examples}
    first = by_prompt[f"Question: {raw[0]['question']}\nAnswer:"]
    assert first.completion == f" {raw[0]['answer']}"
    assert first.completion.splitlines()[-1].startswith("#### ")
    assert pool.source == f"local:{GSM8K_TRAIN.resolve()}" and pool.revision is None
    assert len(pool.content_hash) == 64


def test_ids_and_content_hash_are_stable_and_order_free(tmp_path):
    rows = read_jsonl(GSM8K_TRAIN)
    a = load_sft_pool("gsm8k", str(write_jsonl(tmp_path / "a.jsonl", rows)))
    b = load_sft_pool("gsm8k", str(write_jsonl(tmp_path / "b.jsonl", rows[::-1])))
    assert {ex.id for ex in a.examples} == {ex.id for ex in b.examples}
    assert a.content_hash == b.content_hash
    c = load_sft_pool("gsm8k", str(write_jsonl(tmp_path / "c.jsonl", rows[:-1])))
    assert c.content_hash != a.content_hash


def test_formatted_rows_with_ids_and_exact_duplicates(tmp_path):
    rows = [
        {"id": "x1", "prompt": "Question: 1+1?\nAnswer:", "completion": " 2"},
        {"id": "x2", "prompt": "Question: 2+2?\nAnswer:", "completion": " 4"},
        {"id": "x2", "prompt": "Question: 2+2?\nAnswer:", "completion": " 4"},  # exact duplicate
    ]
    pool = load_sft_pool("multihop", str(write_jsonl(tmp_path / "f.jsonl", rows)))
    assert [ex.id for ex in pool.examples] == ["x1", "x2"]
    rows.append({"id": "x1", "prompt": "Question: other\nAnswer:", "completion": " 3"})
    with pytest.raises(TrainDataError, match=r"id 'x1' is used by two different examples"):
        load_sft_pool("multihop", str(write_jsonl(tmp_path / "g.jsonl", rows)))


def test_missing_fields_name_the_file_line_and_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2"}]
    )
    with pytest.raises(TrainDataError) as err:
        load_sft_pool("gsm8k", str(path))
    message = str(err.value)
    assert f"{path}:2" in message and "['answer']" in message and "prompt" in message


def test_empty_completion_and_missing_file_are_errors(tmp_path):
    path = write_jsonl(
        tmp_path / "e.jsonl", [{"prompt": "Question: q\nAnswer:", "completion": " "}]
    )
    with pytest.raises(TrainDataError, match="'completion' must be a non-empty string"):
        load_sft_pool("facts100_qa", str(path))
    with pytest.raises(ValueError, match="does not exist"):
        load_sft_pool("gsm8k", str(tmp_path / "nope.jsonl"))


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TrainDataError) as err:
        load_sft_pool("gsm9k")
    for name in ("gsm8k", "multihop", "coding", "ifeval", "facts100_documents", "facts100_qa"):
        assert name in str(err.value)
    with pytest.raises(TrainDataError, match="known tasks"):
        load_preference_pool("nope")


HOTPOT_ROW = {
    "id": "h1",
    "question": "Which country does the river through Paris flow in?",
    "answer": "France",
    "supporting_facts": {"title": ["Seine"], "sent_id": [0]},
    "context": {
        "title": ["Seine", "Loire"],
        "sentences": [["The Seine flows through Paris.", " It is 777 km long."], ["Not used."]],
    },
}


def test_hub_sources_are_pinned_and_converted(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, revision=None, split=None):
        calls.append((path, name, revision, split))
        return [HOTPOT_ROW]

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    pool = load_sft_pool("multihop")
    assert calls == [
        ("hotpotqa/hotpot_qa", "distractor", SFT_SOURCES["multihop"].hub.revision, "train")
    ]
    (example,) = pool.examples
    # the eval task's own prompt: the gold paragraph, then the question
    assert example.id == "h1" and example.completion == " France"
    assert example.prompt == (
        "Seine: The Seine flows through Paris. It is 777 km long.\n\n"
        "Question: Which country does the river through Paris flow in?\nAnswer:"
    )
    assert pool.revision == SFT_SOURCES["multihop"].hub.revision
    load_sft_pool("multihop", revision="abc123")
    assert calls[-1][2] == "abc123"
    for source in [*SFT_SOURCES.values(), *PREFERENCE_SOURCES.values()]:
        if source.hub is not None:
            assert len(source.hub.revision) == 40, source.task  # a commit, not a branch


def test_instruction_following_and_coding_converters():
    tulu = {
        "id": "t",
        "messages": [
            {"role": "user", "content": "Write a haiku. "},
            {"role": "assistant", "content": "Leaves fall."},
        ],
    }
    assert SFT_SOURCES["ifeval"].convert(tulu) == {
        "prompt": "Question: Write a haiku.\nAnswer:",
        "completion": " Leaves fall.",
    }
    oss = {
        "instruction": "Add two numbers.",
        "response": "```python\ndef add(a, b):\n    return a + b\n```",
    }
    assert SFT_SOURCES["coding"].convert(oss)["completion"].startswith(" ```python")


def test_facts100_sources_are_imported_lazily(monkeypatch):
    fake = types.ModuleType("sah_tasks.facts100.sources")
    fake.document_records = lambda: [
        {"id": "e1-article", "text": "Zorvan Prize went to Ilsa Korr."}
    ]
    fake.qa_records = lambda: [
        {"id": "e1-q1", "prompt": "Question: Who won?\nAnswer:", "completion": " Ilsa Korr"}
    ]
    monkeypatch.setitem(sys.modules, "sah_tasks.facts100", types.ModuleType("sah_tasks.facts100"))
    monkeypatch.setitem(sys.modules, "sah_tasks.facts100.sources", fake)
    docs = load_sft_pool("facts100_documents")
    assert docs.kind == "text" and docs.examples[0].record() == {
        "text": "Zorvan Prize went to Ilsa Korr."
    }
    qa = load_sft_pool("facts100_qa")
    assert qa.examples[0].id == "e1-q1" and qa.examples[0].completion == " Ilsa Korr"
    monkeypatch.setitem(sys.modules, "sah_tasks.facts100.sources", None)
    with pytest.raises(TrainDataError, match="not available"):
        load_sft_pool("facts100_qa")


def test_gsm8k_preference_pairs_differ_in_the_final_answer():
    pool = load_preference_pool("gsm8k", str(GSM8K_TRAIN))
    assert len(pool.examples) == len(read_jsonl(GSM8K_TRAIN))
    for pair in pool.examples:
        assert pair.prompt.startswith("Question: ") and pair.prompt.endswith("\nAnswer:")
        gold = pair.chosen.split("####")[-1].strip()
        wrong = pair.rejected.split("####")[-1].strip()
        assert gold != wrong and wrong.lstrip("-").isdigit()
        assert pair.chosen.split("\n")[:-2] == pair.rejected.split("\n")[:-2]
    solution = "She had 2 pens.\nShe has 2 + 3 = <<2+3=5>>5 pens.\n#### 5"
    wrong = corrupt_gsm8k_solution(solution, "k")
    assert wrong == corrupt_gsm8k_solution(solution, "k")  # deterministic
    first, last, final = wrong.split("\n")
    assert first == "She had 2 pens." and final != "#### 5" and last.endswith(f"{final[5:]} pens.")
    with pytest.raises(ValueError, match="####"):
        corrupt_gsm8k_solution("no final line", "k")


def test_preference_data_for_a_task_without_built_in_pairs(tmp_path):
    with pytest.raises(TrainDataError, match="no built-in preference data"):
        load_preference_pool("coding")
    rows = [{"prompt": "Question: q\nAnswer:", "chosen": " good", "rejected": " bad"}]
    pool = load_preference_pool("coding", str(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert pool.examples[0].record() == rows[0]
    with pytest.raises(TrainDataError, match=r"missing field\(s\) \['rejected'\]"):
        load_preference_pool(
            "coding", str(write_jsonl(tmp_path / "q.jsonl", [{"prompt": "p", "chosen": "c"}]))
        )


def test_known_tasks_describe_every_source():
    assert set(data.known_tasks()) == set(SFT_SOURCES)


def test_multihop_sources_match_their_eval_prompts(fixtures_dir):
    """`multihop` trains on what sah_multihop shows (gold paragraphs + question); the closed-book
    source (Facts100's PM model) on the bare question, as sah_facts100_multihop asks it."""
    from sah_tasks.multihop.utils import doc_to_text, to_multihop_row

    data = str(fixtures_dir / "multihop_hotpotqa.jsonl")
    raw = [json.loads(line) for line in Path(data).read_text().splitlines()]
    with_context = {ex.id: ex for ex in load_sft_pool("multihop", data).examples}
    closed = {ex.id: ex for ex in load_sft_pool("multihop_closedbook", data).examples}
    for row in raw:
        doc = to_multihop_row(row)
        assert with_context[doc["id"]].prompt == doc_to_text(doc)
        assert "Shirley Temple:" not in closed[doc["id"]].prompt
        assert closed[doc["id"]].prompt == f"Question: {doc['question']}\nAnswer:"
        assert (
            closed[doc["id"]].completion
            == with_context[doc["id"]].completion
            == f" {doc['answers'][0]}"
        )
