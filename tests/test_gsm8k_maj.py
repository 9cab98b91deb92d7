"""sah_gsm8k_maj: the vote (ties, abstaining samples), per-sample extraction identical to sah_gsm8k,
the task's registration and settings, and one real lm-eval run on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import fixture_env, lm_eval_args
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from sah_tasks import TASKS_DIR
from sah_tasks.gsm8k import maj
from sah_tasks.gsm8k.maj import majority_vote, process_results

TASK = "sah_gsm8k_maj"
TASK_YAML = Path(TASKS_DIR) / "gsm8k" / f"{TASK}.yaml"
DOC = {"question": "q", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _own_yaml() -> dict:
    return yaml.load(TASK_YAML.read_text(), _Loader)


# --- the vote -------------------------------------------------------------------------------


def test_majority_wins():
    assert majority_vote(["7", "8", "7", "9", "7"]) == "7"


def test_answers_are_grouped_as_numbers():
    # three spellings of 1000 outvote two 999s; the text returned is the first 1000 sample's
    assert majority_vote(["999", "1,000", "$1000", "999", "1000.00"]) == "1,000"


@pytest.mark.parametrize(
    ("answers", "winner"),
    [
        (["5", "7", "7", "5"], "5"),  # 2-2: 5 appears first
        (["7", "5", "5", "7"], "7"),  # 2-2: 7 appears first
        (["3", "4", "5"], "3"),  # all singletons: the first sample
        (["[invalid]", "9", "8", "8", "9"], "9"),  # abstentions do not move the tie-break
        (["2", "2.0", "6", "6"], "2"),  # the tie is between values, not spellings
    ],
)
def test_ties_go_to_the_earliest_sample(answers, winner):
    assert majority_vote(answers) == winner


def test_samples_without_a_number_abstain():
    assert majority_vote(["[invalid]", "[invalid]", "[invalid]", "3"]) == "3"
    assert majority_vote([None, "abc", "12", ""]) == "12"
    assert majority_vote(["[invalid]"] * 4) is None
    assert majority_vote([]) is None


def test_process_results_reports_the_vote_and_the_mean_of_the_samples():
    got = process_results(DOC, [["7", "8", "7", "[invalid]"]])
    assert got == {"maj@4": 1.0, "pass@1": 0.5}
    # one right sample out of three distinct answers: the tie goes to the (wrong) first one
    assert process_results(DOC, [["8", "7", "9"]]) == {"maj@3": 0.0, "pass@1": pytest.approx(1 / 3)}
    # a right minority loses the vote but counts for pass@1
    assert process_results(DOC, [["8", "8", "7", "$7.00"]]) == {"maj@4": 0.0, "pass@1": 0.5}
    # abstaining samples are wrong for pass@1 but do not outvote the right answer
    assert process_results(DOC, [["[invalid]", "[invalid]", "7"]]) == {
        "maj@3": 1.0,
        "pass@1": pytest.approx(1 / 3),
    }
    assert process_results(DOC, [["[invalid]"] * 2]) == {"maj@2": 0.0, "pass@1": 0.0}


# --- extraction: exactly sah_gsm8k's filters, sample by sample ------------------------------

RESPONSES = [
    "She has 3 + 4 = 7 apples.\n#### 7\nThen 99 more",
    "The answer is 1,000 dollars",
    "#### $1,000.",
    "####-12",
    "no number at all",
    "",
    "first 5 then 6.5",
]


@pytest.fixture(scope="module")
def sah_gsm8k_task():
    env = fixture_env()
    mp = pytest.MonkeyPatch()
    mp.setenv("SAH_GSM8K_DATA", env["SAH_GSM8K_DATA"])
    try:
        manager = TaskManager(include_path=TASKS_DIR, include_defaults=False)
        yield manager.load(["sah_gsm8k"])["tasks"]["sah_gsm8k"]
    finally:
        mp.undo()


@pytest.mark.parametrize(
    ("pipeline", "extract"),
    [("strict-match", maj.strict_match), ("flexible-extract", maj.flexible_extract)],
)
def test_each_sample_is_extracted_as_sah_gsm8k_extracts_it(sah_gsm8k_task, pipeline, extract):
    reference = {f.name: f for f in sah_gsm8k_task._filters}[pipeline]
    expected = []
    for response in RESPONSES:  # sah_gsm8k: one response per document
        inst = Instance("generate_until", DOC, ("", {}), 0, resps=[response])
        reference.apply([inst])
        expected.append(inst.filtered_resps[pipeline])
    assert extract([RESPONSES, RESPONSES[:2]], [DOC, DOC]) == [expected, expected[:2]]


def test_a_pipeline_missing_from_the_template_is_a_clear_error():
    with pytest.raises(ValueError, match=r"_gsm8k_template_yaml.*no filter pipeline named 'nope'"):
        maj.extract_answers("nope", [["#### 1"]], [DOC])


# --- the task -------------------------------------------------------------------------------


def test_task_settings():
    cfg = _own_yaml()
    k = cfg["repeats"]
    assert k > 1
    assert [m["metric"] for m in cfg["metric_list"]] == [f"maj@{k}", "pass@1"]
    assert set(process_results(DOC, [["7"] * k])) == {f"maj@{k}", "pass@1"}
    gen = cfg["generation_kwargs"]
    assert gen["do_sample"] is True and gen["temperature"] > 0 and 0 < gen["top_p"] <= 1
    assert [f["name"] for f in cfg["filter_list"]] == ["strict-match", "flexible-extract"]


def test_registered_globbed_and_kept_out_of_the_greedy_tags():
    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False)
    assert TASK in manager.all_subtasks
    assert TASK in manager.match_tasks(["sah_*"])  # by its name, whatever its tags
    assert not [g for g in manager.all_groups if g.startswith("sah_")]
    # a tag's index entry lists its tasks (reading it loads no data)
    assert manager.task_index[TASK].tags == {"sah_math_maj"}
    assert manager.task_index["sah_math_maj"].tags == {TASK}
    for greedy_tag in ("sah_core", "sah_math"):
        assert TASK not in manager.task_index[greedy_tag].tags, greedy_tag


# --- end to end -----------------------------------------------------------------------------

SMALL_K = 3


@pytest.mark.timeout(300)
def test_sah_eval_reports_maj_and_pass_at_1(tiny_model_dir, tmp_path):
    # The real task (k=8) and a k=3 copy of it (same YAML, included by path) in one run.
    include = tmp_path / "tasks"
    include.mkdir()
    small = f"maj_smoke_k{SMALL_K}"
    (include / f"{small}.yaml").write_text(
        yaml.safe_dump(
            {
                "include": str(TASK_YAML),
                "task": small,
                "tag": [],
                "repeats": SMALL_K,
                "metric_list": [
                    {"metric": m, "aggregation": "mean", "higher_is_better": True}
                    for m in (f"maj@{SMALL_K}", "pass@1")
                ],
            }
        )
    )
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "sah-eval"), "--include_path", str(include)]
    cmd += ["--tasks", f"{TASK},{small}", *lm_eval_args(tiny_model_dir, out)]
    proc = subprocess.run(
        cmd, env=fixture_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"sah-eval failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    files = sorted(out.rglob("results_*.json"))
    assert len(files) == 1, files
    results = json.loads(files[0].read_text())
    for task, k in ((TASK, _own_yaml()["repeats"]), (small, SMALL_K)):
        scores = results["results"][task]
        for filt in ("strict-match", "flexible-extract"):
            for metric in (f"maj@{k}", "pass@1"):
                assert 0.0 <= scores[f"{metric},{filt}"] <= 1.0, (task, metric, filt)
                assert f"{metric}_stderr,{filt}" in scores
        assert results["configs"][task]["repeats"] == k

        [samples_file] = out.rglob(f"samples_{task}_*.jsonl")
        rows = [json.loads(line) for line in samples_file.read_text().splitlines()]
        assert len(rows) == 2 * 2  # --limit 2 documents x 2 filters
        for row in rows:
            assert len(row["resps"][0]) == k and len(row["filtered_resps"][0]) == k
            again = process_results(row["doc"], row["filtered_resps"])
            assert {m: row[m] for m in again} == again
