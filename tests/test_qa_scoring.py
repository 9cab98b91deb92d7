"""Multihop QA data conversion and SQuAD EM/F1; IFEval through lm-eval's own checker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lm_eval.config.task import TaskConfig
from lm_eval.models.utils import postprocess_generated_text

from sah_tasks import TASKS_DIR
from sah_tasks.multihop.utils import (
    doc_to_text,
    exact_match_score,
    extract_answer,
    f1_score,
    hotpotqa_f1,
    load,
    normalize_answer,
    process_results,
    score,
    squad_f1,
    to_multihop_row,
)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _generated(family: str, task_file: str, raw_generation: str) -> str:
    """What lm-eval hands the scorer: its `until` (with lm-eval's defaults applied to the task's
    generation_kwargs) cut out of a raw generation, as its HF and vLLM backends do."""
    cfg = yaml.load((Path(TASKS_DIR) / family / task_file).read_text(), _Loader)
    gen = TaskConfig(task=cfg["task"], generation_kwargs=cfg["generation_kwargs"]).generation_kwargs
    return postprocess_generated_text(raw_generation, gen["until"], None)


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


def test_f1_of_two_empty_normalised_answers_is_zero_as_in_squad():
    # SQuAD v1.1's f1_score: no common tokens -> 0, also when both normalise to nothing
    assert squad_f1("The", "a") == 0.0
    assert hotpotqa_f1("The", "a") == 0.0
    assert f1_score("an!", ["The."]) == 0.0


def test_hotpotqa_f1_gives_no_partial_credit_on_yes_no_answers():
    assert squad_f1("no way", "no") == pytest.approx(2 / 3)
    assert hotpotqa_f1("no way", "no") == 0.0  # gold is a label
    assert hotpotqa_f1("yes", "yes sir") == 0.0  # prediction is a label
    assert hotpotqa_f1("noanswer", "no answer") == 0.0
    assert hotpotqa_f1("Yes.", "yes") == 1.0
    assert hotpotqa_f1("Shirley Temple", "Shirley Temple Black") == pytest.approx(0.8)


def test_each_source_is_scored_with_its_own_f1(fixtures_dir, monkeypatch):
    """HotpotQA rows (hub or original JSON, even from a local file) get HotpotQA's F1; SubQA
    and plain rows get SQuAD's. The source is recorded per row by the loader."""
    for name, source in (("hotpotqa", "hotpotqa"), ("subqa", "subqa")):
        monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / f"multihop_{name}.jsonl"))
        assert set(load()["test"]["source"]) == {source}
    raw = {"_id": "x", "question": "Q?", "answer": "no", "context": [["T", ["Text."]]]}
    hotpot, plain = to_multihop_row(raw), to_multihop_row({**raw, "context": "T: Text."})
    assert (hotpot["source"], plain["source"]) == ("hotpotqa", "subqa")
    assert process_results(hotpot, ["no way"])["f1"] == 0.0
    assert process_results(plain, ["no way"])["f1"] == pytest.approx(2 / 3)


def test_multihop_answer_after_a_leading_blank_line_survives_the_stop_sequences():
    """The answer is the first non-empty line, so a blank line before it must not stop generation."""

    def scored(raw_generation: str) -> dict[str, float]:
        generated = _generated("multihop", "sah_multihop.yaml", raw_generation)
        return score(generated, ["Chief of Protocol"])

    assert scored("\n\nChief of Protocol\n\nQuestion: x") == {"exact_match": 1.0, "f1": 1.0}
    assert scored(" Chief of Protocol\n\nShe was also ...") == {"exact_match": 1.0, "f1": 1.0}
    assert scored("\nQuestion: next?") == {"exact_match": 0.0, "f1": 0.0}  # no answer given


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


def test_ifeval_response_with_a_question_line_is_not_cut():
    """A valid response may contain `\nQuestion:` (here a FAQ); no task stop may truncate it."""
    from sah_tasks.ifeval.utils import process_results

    end = "Is there anything else I can help with?"
    doc = {"key": 2, "prompt": f"Write a FAQ about Paris. End with '{end}'",
           "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": end}]}  # fmt: skip
    response = f"Paris FAQ\n\nQuestion: Is it big?\nAnswer: Yes.\n\n{end}"
    generated = _generated("ifeval", "sah_ifeval.yaml", response)
    assert generated == response
    assert process_results(doc, [generated])["prompt_level_strict_acc"] is True


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


def test_facts100_answer_after_a_leading_blank_line_survives_the_stop_sequences():
    cfg = yaml.load((Path(TASKS_DIR) / "facts100" / "_facts100_template_yaml").read_text(), _Loader)
    gen = TaskConfig(task="sah_facts100_direct", generation_kwargs=cfg["generation_kwargs"])
    generated = postprocess_generated_text(
        "\n\nMarch 2026\n\nQuestion: x", gen.generation_kwargs["until"], None
    )
    assert score(generated, ["March 2026"]) == {"exact_match": 1.0, "f1": 1.0}
