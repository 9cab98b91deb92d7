"""The sah_humaneval_plus* / sah_mbpp_plus* lm-eval tasks: registration, data loading, prompts,
scoring through the sandbox, pass@k, and one end-to-end `sah-eval` run with the tiny model."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import datasets
import pytest
from lm_eval.tasks import TaskManager

from sah_tasks import TASKS_DIR
from sah_tasks.code import utils
from sah_tasks.common.data import TaskDataError
from sah_tasks.execution import pass_at_k

FIXTURES = Path(__file__).parent / "fixtures" / "code"
HUMANEVAL = FIXTURES / "humaneval_plus_sample.jsonl"
MBPP = FIXTURES / "mbpp_plus_sample.jsonl"
BASE_TASKS = ["sah_humaneval_plus", "sah_humaneval_plus_instruct", "sah_mbpp_plus", "sah_mbpp_plus_instruct"]  # fmt: skip
K_TASKS = [f"{t}_k" for t in BASE_TASKS]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def local_data(monkeypatch):
    monkeypatch.setenv("SAH_HUMANEVAL_PLUS_DATA", str(HUMANEVAL))
    monkeypatch.setenv("SAH_MBPP_PLUS_DATA", str(MBPP))


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    return TaskManager(include_path=TASKS_DIR, include_defaults=False)


# --- registration -------------------------------------------------------------------------------


def test_tasks_register_unsafe_with_pass_at_k_metrics(manager, local_data):
    tasks = manager.load(BASE_TASKS + K_TASKS)["tasks"]
    assert set(tasks) == set(BASE_TASKS + K_TASKS)
    for name, task in tasks.items():
        assert task.config.unsafe_code is True, name
        metrics = {m["metric"] for m in task.config.metric_list}
        ks = (1, 5, 10) if name.endswith("_k") else (1,)
        assert metrics == {f"pass@{k}{s}" for k in ks for s in ("", "_plus")}, name
        assert task.config.repeats == (10 if name.endswith("_k") else 1)
        assert task.config.generation_kwargs["do_sample"] == name.endswith("_k")
        assert [f["name"] for f in task.config.filter_list] == ["none"]  # keys: pass@1,none
    assert set(manager.match_tasks(["sah_*"])) >= set(BASE_TASKS + K_TASKS)
    assert manager.task_index["sah_code"].tags == set(BASE_TASKS)  # the tags' members
    assert manager.task_index["sah_code_k"].tags == set(K_TASKS)


def test_lm_eval_refuses_the_tasks_without_confirmation(manager, local_data):
    from lm_eval.evaluator import evaluate

    tasks = manager.load(["sah_humaneval_plus"])
    with pytest.raises(ValueError, match="marked as unsafe"):  # before any model call
        evaluate(lm=object(), task_dict=tasks, confirm_run_unsafe_code=False)


# --- data ---------------------------------------------------------------------------------------


def test_local_files_load_through_the_env_vars(local_data):
    humaneval = utils.load_humaneval_plus()["test"]
    assert humaneval["task_id"] == [r["task_id"] for r in rows(HUMANEVAL)]
    assert {"prompt", "entry_point", "test", "base_test"} <= set(humaneval.column_names)
    mbpp = utils.load_mbpp_plus()["test"]
    assert len(mbpp) == 3 and mbpp[0]["test_list"][0].startswith("assert second_largest")


def test_local_rows_missing_a_field_are_named(monkeypatch, tmp_path):
    bad = tmp_path / "he.jsonl"
    row = rows(HUMANEVAL)[0]
    del row["base_test"]
    bad.write_text(json.dumps(rows(HUMANEVAL)[1]) + "\n" + json.dumps(row) + "\n")
    monkeypatch.setenv("SAH_HUMANEVAL_PLUS_DATA", str(bad))
    with pytest.raises(TaskDataError, match=r"he\.jsonl:2: missing field\(s\) \['base_test'\]"):
        utils.load_humaneval_plus()
    monkeypatch.setenv("SAH_MBPP_PLUS_DATA", str(tmp_path / "absent.jsonl"))
    with pytest.raises(TaskDataError, match=r"absent\.jsonl.*\$SAH_MBPP_PLUS_DATA"):
        utils.load_mbpp_plus()


def test_hub_loading_uses_pinned_revisions_and_joins_original_tests(monkeypatch):
    monkeypatch.delenv("SAH_HUMANEVAL_PLUS_DATA", raising=False)
    calls = []
    plus_rows = [{k: r[k] for k in ("task_id", "prompt", "entry_point", "test")} for r in rows(HUMANEVAL)]  # fmt: skip
    originals = [{"task_id": r["task_id"], "test": r["base_test"]} for r in rows(HUMANEVAL)]

    def fake_load_dataset(path, name=None, *, revision, split):
        calls.append((path, revision, split))
        return datasets.Dataset.from_list(plus_rows if "evalplus" in path else originals)

    monkeypatch.setattr(utils.datasets, "load_dataset", fake_load_dataset)
    loaded = utils.load_humaneval_plus()["test"]
    assert calls == [
        ("evalplus/humanevalplus", utils.HUMANEVAL_PLUS.revision, "test"),
        ("openai/openai_humaneval", utils.HUMANEVAL_BASE.revision, "test"),
    ]
    assert all(len(rev) == 40 for _, rev, _ in calls)  # full commit SHAs, not branch names
    assert loaded["base_test"] == [r["base_test"] for r in rows(HUMANEVAL)]
    originals.pop()
    with pytest.raises(TaskDataError, match="no original tests"):
        utils.load_humaneval_plus()


# --- prompts and code extraction ----------------------------------------------------------------


def test_prompts():
    he, mbpp = rows(HUMANEVAL)[0], rows(MBPP)[0]
    assert utils.humaneval_base_prompt(he) == he["prompt"]
    instruct = utils.humaneval_instruct_prompt(he)
    assert instruct.startswith("Question: Complete the following Python function.")
    assert instruct.endswith("```\nAnswer:") and he["prompt"].rstrip() in instruct
    assert utils.mbpp_base_prompt(mbpp) == f'"""\n{mbpp["prompt"]}\n{mbpp["test_list"][0]}\n"""\n'
    assert utils.mbpp_instruct_prompt(mbpp).startswith(f"Question: {mbpp['prompt']}\n")


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("Sure:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
        ("```\nx = 1\n```", "x = 1"),
        ("```py\nx = 1\n```\n```python\ny = 2\n```", "x = 1"),  # the first block
        ("```python\ndef f():\n    return 1", "def f():\n    return 1"),  # cut off: to the end
        ("def f():\n    return 1", "def f():\n    return 1"),  # no fence: everything
    ],
)
def test_extract_code(answer, code):
    assert utils.extract_code(answer) == code


# --- scoring through the sandbox ----------------------------------------------------------------

GCD_RIGHT = "    while b:\n        a, b = b, a % b\n    return a\n"
# Passes HumanEval's 4 original asserts but returns None for gcd(0, 5): fails the plus tests.
GCD_BASE_ONLY = (
    "    for d in range(min(a, b), 0, -1):\n        if a % d == 0 and b % d == 0:\n"
    "            return d\n"
)
GCD_WRONG = "    return 1\n"


def test_humaneval_scoring_base_and_plus():
    docs = rows(HUMANEVAL)
    gcd = docs[2]
    assert gcd["entry_point"] == "greatest_common_divisor"
    resps = [[docs[0]["canonical_solution"]], [GCD_RIGHT, GCD_BASE_ONLY, GCD_WRONG]]
    verdicts = utils.execute_humaneval(resps, [docs[0], gcd])
    assert [(v["base"], v["plus"]) for v in verdicts[0]] == [("passed", "passed")]
    assert [(v["base"], v["plus"]) for v in verdicts[1]] == [
        ("passed", "passed"),
        ("passed", "failed"),
        ("failed", "skipped"),  # plus tests only run where the base tests passed
    ]
    assert verdicts[1][2]["detail"].startswith("tests AssertionError")
    assert utils.process_results(gcd, [verdicts[1][1:2]]) == {"pass@1": 1.0, "pass@1_plus": 0.0}
    assert utils.process_results(docs[0], [verdicts[0]]) == {"pass@1": 1.0, "pass@1_plus": 1.0}


def test_instruct_answers_full_function_or_body():
    gcd = rows(HUMANEVAL)[2]
    full = f"Here it is:\n```python\ndef greatest_common_divisor(a: int, b: int) -> int:\n{GCD_RIGHT}```\n"
    body = f"```python\n{GCD_RIGHT}```"
    unfenced_wrong = "I think the answer is 42."
    verdicts = utils.execute_humaneval_instruct([[full, body, unfenced_wrong]], [gcd])[0]
    assert [v["plus"] for v in verdicts] == ["passed", "passed", "skipped"]
    assert verdicts[2]["base"] == "failed"


def test_mbpp_scoring_both_styles():
    docs = rows(MBPP)
    second = docs[0]
    base_only = (
        "def second_largest(nums):\n    return sorted(set(nums))[-2] if len(nums) > 1 else None\n"
    )
    base_style = utils.execute_mbpp([[d["code"]] for d in docs] + [[base_only]], docs + [second])
    assert [v[0]["plus"] for v in base_style] == ["passed"] * 3 + ["failed"]
    assert base_style[3][0]["base"] == "passed"
    fenced = [[f"```python\n{d['code']}```"] for d in docs]
    assert [v[0]["plus"] for v in utils.execute_mbpp_instruct(fenced, docs)] == ["passed"] * 3


def test_pass_at_k_metrics_from_repeats():
    verdicts = (
        [{"base": "passed", "plus": "passed"}] * 3
        + [{"base": "passed", "plus": "failed"}] * 2
        + [{"base": "failed", "plus": "skipped"}] * 5
    )
    metrics = utils.process_results_k({}, [verdicts])
    for k in (1, 5, 10):
        assert metrics[f"pass@{k}"] == pytest.approx(pass_at_k(10, 5, k))
        assert metrics[f"pass@{k}_plus"] == pytest.approx(pass_at_k(10, 3, k))
    assert metrics["pass@1"] == pytest.approx(0.5) and metrics["pass@10_plus"] == 1.0
    with pytest.raises(ValueError, match="at least k=5 samples"):
        utils.process_results_k({}, [verdicts[:3]])


def test_sandbox_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SAH_EXEC_TIMEOUT_S", "4.5")
    monkeypatch.setenv("SAH_EXEC_WORKERS", "3")
    monkeypatch.setenv("SAH_EXEC_MEMORY_MB", "1024")
    base, plus, workers = utils.sandbox_settings()
    assert (base.timeout_s, plus.timeout_s, workers, plus.memory_mb) == (4.5, 30.0, 3, 1024)
    monkeypatch.setenv("SAH_EXEC_WORKERS", "many")
    with pytest.raises(ValueError, match=r"\$SAH_EXEC_WORKERS must be a int > 0, got 'many'"):
        utils.sandbox_settings()


# --- end to end ---------------------------------------------------------------------------------


def test_sah_eval_end_to_end_with_the_tiny_model(sah_eval_all_tasks):
    """Code tasks inside the shared `sah-eval --tasks 'sah_*'` run (conftest.py), 2 items each."""
    out = sah_eval_all_tasks
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    for task in ("sah_humaneval_plus", "sah_mbpp_plus_instruct"):
        assert results[task]["sample_len"] == 2
        # A random-weight model writes no correct program, and the score says so.
        assert results[task]["pass@1,none"] == 0.0 and results[task]["pass@1_plus,none"] == 0.0
    samples = [json.loads(line) for f in out.rglob("samples_sah_humaneval_plus_[0-9]*.jsonl") for line in f.read_text().splitlines()]  # fmt: skip
    assert len(samples) == 2
    verdict = ast.literal_eval(samples[0]["filtered_resps"][0][0])  # lm-eval logs str(verdict)
    assert verdict["base"] != "passed" and verdict["plus"] == "skipped"
    assert verdict["program"] == samples[0]["doc"]["prompt"] + samples[0]["resps"][0][0]
