"""End to end: the real `sah-eval` and `lm_eval --include_path` CLIs on the tiny model, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fixture_env, lm_eval_args

from sah_tasks import TASKS_DIR

BIN = Path(sys.executable).parent

CORE_METRICS = {
    "sah_gsm8k": {"exact_match,strict-match", "exact_match,flexible-extract"},
    "sah_gsm8k_fewshot": {"exact_match,strict-match", "exact_match,flexible-extract"},
    "sah_ifeval": {
        "prompt_level_strict_acc,none",
        "inst_level_strict_acc,none",
        "prompt_level_loose_acc,none",
        "inst_level_loose_acc,none",
    },
    "sah_multihop": {"exact_match,none", "f1,none"},
}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _results(out: Path) -> dict:
    files = sorted(out.rglob("results_*.json"))
    assert len(files) == 1, f"expected one results file under {out}, found {files}"
    return json.loads(files[0].read_text())


def _metric_keys(config: dict) -> set[str]:
    filters = [f["name"] for f in config.get("filter_list") or []] or ["none"]
    return {f"{m['metric']},{f}" for m in config["metric_list"] for f in filters}


def _assert_every_task_scored(results: dict, expected_tasks: set[str]) -> None:
    assert expected_tasks <= set(results["results"]), sorted(results["results"])
    for task in expected_tasks:
        scores = results["results"][task]
        wanted = _metric_keys(results["configs"][task]) | CORE_METRICS.get(task, set())
        missing = wanted - set(scores)
        assert not missing, f"{task}: missing metrics {missing}; got {sorted(scores)}"
        for key in wanted:
            assert 0.0 <= float(scores[key]) <= 1.0, (task, key, scores[key])


def test_sah_eval_runs_every_sah_task(sah_eval_all_tasks):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=TASKS_DIR, include_defaults=False)
    every = {t for t in manager.match_tasks(["sah_*"]) if t in manager.all_subtasks}
    results = _results(sah_eval_all_tasks)
    assert set(results["results"]) == every, sorted(set(results["results"]) ^ every)
    _assert_every_task_scored(results, every)
    assert list(sah_eval_all_tasks.rglob("samples_sah_gsm8k_*.jsonl")), "no per-sample logs"


@pytest.mark.timeout(900)
def test_plain_lm_eval_with_include_path(tiny_model_dir, fixtures_dir, tmp_path):
    path = subprocess.run(
        [sys.executable, "-m", "sah_tasks", "path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert path == TASKS_DIR
    out = tmp_path / "out"
    cmd = [
        str(BIN / "lm_eval"),
        "--include_path", path,
        "--tasks", "sah_gsm8k,sah_ifeval,sah_multihop",
        *lm_eval_args(tiny_model_dir, out),
    ]  # fmt: skip
    _run(cmd, fixture_env(), tmp_path)
    _assert_every_task_scored(_results(out), {"sah_gsm8k", "sah_ifeval", "sah_multihop"})


def test_sah_eval_ls_lists_our_tasks():
    proc = subprocess.run(
        [str(BIN / "sah-eval"), "ls", "tasks"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in CORE_METRICS:
        assert f"|{task} " in proc.stdout, task
