"""Multihop QA data conversion and SQuAD EM/F1; IFEval through lm-eval's own checker."""

from __future__ import annotations

import json

import pytest

from sah_tasks.multihop.utils import (
    doc_to_text,
    exact_match_score,
    extract_answer,
    f1_score,
    normalize_answer,
    score,
    to_multihop_row,
)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a pear") == "apple pear"


def test_exact_match_max_over_aliases():
    assert exact_match_score("New Delhi", ["Delhi", "New Delhi"]) == 1.0
    assert exact_match_score("Mumbai", ["Delhi", "New Delhi"]) == 0.0


def test_token_f1_partial_and_max_over_aliases():
    # "Shirley Temple" vs "Shirley Temple Black": P=1, R=2/3 -> F1=0.8
    assert f1_score("Shirley Temple", ["Shirley Temple Black"]) == pytest.approx(0.8)
    assert f1_score("Shirley Temple", ["Temple", "Shirley Temple"]) == pytest.approx(1.0)
    assert f1_score("", ["x"]) == 0.0


def test_score_uses_first_line_and_never_crashes_on_garbage():
    assert score(" Chief of Protocol\nQuestion: next", ["Chief of Protocol"]) == {
        "exact_match": 1.0,
        "f1": 1.0,
    }
    assert score("", ["yes"]) == {"exact_match": 0.0, "f1": 0.0}
    assert score(None, ["yes"]) == {"exact_match": 0.0, "f1": 0.0}
    assert score("\u0000\ufffd###", ["yes"]) == {"exact_match": 0.0, "f1": 0.0}
    assert extract_answer("\n\n  yes \n no") == "yes"


def test_hotpotqa_row_keeps_only_gold_paragraphs(fixtures_dir):
    row = to_multihop_row(_rows(fixtures_dir / "multihop_hotpotqa.jsonl")[1])
    assert row["answers"] == ["Chief of Protocol"]
    assert "Shirley Temple:" in row["context"] and "Kiss and Tell (1945 film):" in row["context"]
    assert "Meet Corliss Archer" not in row["context"]  # a distractor paragraph
    prompt = doc_to_text(row)
    assert prompt.endswith(f"Question: {row['question']}\nAnswer:")


def test_original_hotpotqa_json_format():
    raw = {
        "_id": "x1",
        "question": "Q?",
        "answer": "A",
        "supporting_facts": [["T2", 0]],
        "context": [["T1", ["Distractor."]], ["T2", ["Gold ", "sentence."]]],
    }
    row = to_multihop_row(raw)
    assert row["id"] == "x1" and row["context"] == "T2: Gold sentence."


def test_subqa_row_with_aliases_and_sub_questions(fixtures_dir):
    row = to_multihop_row(_rows(fixtures_dir / "multihop_subqa.jsonl")[1])
    assert row["answers"] == ["Delhi", "New Delhi"]
    assert len(row["sub_questions"]) == 2
    assert score("New Delhi", row["answers"])["exact_match"] == 1.0


def test_row_without_answer_is_rejected():
    with pytest.raises(ValueError, match="answer"):
        to_multihop_row({"question": "Q?"})


# ----------------------------------------------------------------------------- IFEval
IFEVAL_DOC = {
    "key": 1,
    "prompt": "Write about Paris. Do not use any commas. Answer with at least 3 sentences.",
    "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
    "kwargs": [{}, {"relation": "at least", "num_sentences": 3}],
}


def test_ifeval_compliant_response_passes():
    from sah_tasks.ifeval.utils import process_results

    out = process_results(IFEVAL_DOC, ["Paris is big. It has a river. People love it."])
    assert out["prompt_level_strict_acc"] is True
    assert out["inst_level_strict_acc"] == [True, True]


def test_ifeval_violating_response_fails_the_right_instruction():
    from sah_tasks.ifeval.utils import process_results

    out = process_results(IFEVAL_DOC, ["Paris, the capital, is big. It is old."])
    assert out["prompt_level_strict_acc"] is False
    assert out["inst_level_strict_acc"] == [False, False]  # a comma, and only 2 sentences
    out = process_results(IFEVAL_DOC, ["Paris is big. It is old. It is nice, really."])
    assert out["inst_level_strict_acc"] == [False, True]


def test_ifeval_empty_or_non_text_scores_zero():
    from sah_tasks.ifeval.utils import process_results

    for response in ["", None]:
        out = process_results(IFEVAL_DOC, [response])
        assert out["prompt_level_strict_acc"] is False
        assert out["prompt_level_loose_acc"] is False


def test_punkt_tab_is_available_offline(tmp_path, monkeypatch):
    import nltk

    from sah_tasks.ifeval import punkt

    lang_dir = punkt.write_punkt_tab(tmp_path)
    assert (lang_dir / "ortho_context.tab").stat().st_size > 10_000
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    tokenizer = nltk.tokenize.PunktTokenizer("english")
    assert tokenizer.tokenize("Dr. Smith arrived at 5 p.m. on Monday. It rained.") == [
        "Dr. Smith arrived at 5 p.m. on Monday.",
        "It rained.",
    ]
