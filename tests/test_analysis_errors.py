"""Error taxonomy on hand-written GSM8K outputs; the LLM judge against a local stub server."""

from __future__ import annotations

import pytest
from analysis_helpers import GSM8K_CASES, StubJudge, write_gsm8k_checkpoint

from analysis.errors import arithmetic_errors, categorise, error_counts, grade_samples
from analysis.judge import Judge, JudgeCase, JudgeConfig, JudgeError, endpoint, parse_verdict
from analysis.results import load_run


@pytest.mark.parametrize("name", list(GSM8K_CASES))
def test_deterministic_categories_of_hand_written_outputs(name):
    text, expected = GSM8K_CASES[name]
    assert categorise(text) == expected


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("So 12*7 = 82 eggs.", ["12*7 = 82"]),
        ("<<48/2=24>>24 clips and <<48+24=73>>73", ["48+24 = 73"]),
        ("3 x 4 = 13", ["3 x 4 = 13"]),
        ("$1,200 / 3 = $400 each", []),
        ("10/3 = 3.33 hours", []),  # rounded to the digits shown
        ("10/3 = 3.4 hours", ["10/3 = 3.4"]),
        ("x = 5, and 20% of 50 = 0.2 * 50 = 10", []),  # restatement, then a correct computation
        ("2 + 3 = 5 + 1 = 6", []),  # running chain
        ("(so 3+4 = 8)", ["3+4 = 8"]),
        ("In 2019 - 2015 = 4 years", []),
        ("-3 + 5 = 2 and 2^3 = 9", ["2^3 = 9"]),
        ("7/0 = 3", []),  # not checkable, not an error
    ],
)
def test_arithmetic_checker(text, wrong):
    assert arithmetic_errors(text) == wrong


def test_grading_uses_lm_eval_strict_filter_and_correctness(tmp_path):
    names = list(GSM8K_CASES)
    ckpt = write_gsm8k_checkpoint(tmp_path, 100, names)
    path = next(ckpt.rglob("samples_*.jsonl"))
    graded = {names[g.doc_id]: g for g in grade_samples(path)}
    assert graded["correct"].correct and not graded["correct"].categories
    for name in names[1:]:
        assert not graded[name].correct
        assert graded[name].categories == GSM8K_CASES[name][1]
    assert graded["reasoning"].question.startswith("A box holds")
    assert "#### 89" in graded["reasoning"].reference


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"reasoning_error": true, "explanation": "added"}', True),
        ('```json\n{"reasoning_error": false}\n```', False),
        ('Here you go: {"reasoning_error": "yes"} hope that helps', True),
        ("reasoning_error: no", False),
        ("Yes, the set-up is wrong.", True),
        ("I cannot tell.", None),
    ],
)
def test_judge_reply_parsing(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_endpoint_forms():
    assert endpoint("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert endpoint("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_judge_wire_format_retry_and_cache(tmp_path):
    cases = [JudgeCase("q1", "ref", "12+7 = 19"), JudgeCase("q2", "ref", "12*7 = 84")]
    with StubJudge(fail_first=1) as stub:
        config = JudgeConfig(url=stub.url, model="judge-7b", cache_dir=tmp_path / "cache",
                             api_key="sk-test", workers=2)  # fmt: skip
        judge = Judge(config)
        assert judge.verdicts(cases) == [True, False]
        assert judge.calls == 3 and len(stub.requests) == 3  # one 503, retried
        body = stub.requests[-1]
        assert stub.paths == ["/v1/chat/completions"] * 3
        assert body["model"] == "judge-7b" and body["temperature"] == 0.0
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert "Student's solution" in body["messages"][1]["content"]
        assert stub.headers[-1]["Authorization"] == "Bearer sk-test"
        rerun = Judge(config)
        assert rerun.verdicts(cases) == [True, False]
        assert rerun.calls == 0 and len(stub.requests) == 3  # everything came from the cache
        next((tmp_path / "cache").rglob("*.json")).write_text("{truncated")
        healed = Judge(config)
        assert healed.verdicts(cases) == [True, False] and healed.calls == 1  # re-asked, once
        other_model = Judge(
            JudgeConfig(url=stub.url, model="judge-70b", cache_dir=tmp_path / "cache")
        )
        other_model.verdicts(cases[:1])
        assert other_model.calls == 1  # the cache is keyed by the judge model too


def test_judge_unreachable_is_a_clear_error(tmp_path):
    with StubJudge() as stub:
        url = stub.url
    judge = Judge(JudgeConfig(url=url, model="m", cache_dir=tmp_path, retries=0))
    with pytest.raises(JudgeError, match="unreachable"):
        judge.verdicts([JudgeCase("q", "r", "a")])


def test_error_counts_per_checkpoint_with_and_without_judge(tmp_path):
    write_gsm8k_checkpoint(
        tmp_path, 0, ["no_final_answer", "no_final_answer", "arithmetic", "correct"]
    )
    write_gsm8k_checkpoint(
        tmp_path, 100, ["reasoning", "arithmetic_and_format", "correct", "correct"]
    )
    run = load_run(tmp_path / "exp", progress=False)
    plain = error_counts(run).set_index("n")
    assert plain.loc[
        0, ["responses", "correct", "format", "arithmetic", "reasoning", "other"]
    ].tolist() == [4, 1, 2, 1, 0, 0]
    assert plain.loc[100, ["format", "arithmetic", "reasoning", "other"]].tolist() == [1, 1, 0, 1]
    with StubJudge() as stub:
        judge = Judge(JudgeConfig(url=stub.url, model="m", cache_dir=tmp_path / "cache"))
        judged = error_counts(run, judge).set_index("n")
        # only the wrong responses are judged, and n0's two identical ones only once
        assert len(stub.requests) == 4
    assert judged.loc[100, ["format", "arithmetic", "reasoning", "other"]].tolist() == [1, 1, 1, 0]
    assert judged["judged"].all()
