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


def test_sah_eval_ls_lists_our_tasks_only_by_default():
    """`sah-eval ls tasks` used to print lm-eval's ~14.7k built-in names (14,718 lines)."""
    proc = subprocess.run(
        [str(BIN / "sah-eval"), "ls", "tasks"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in CORE_METRICS:
        assert f"|{task} " in proc.stdout, task
    assert "|hellaswag " not in proc.stdout and "|gsm8k " not in proc.stdout
    assert len(proc.stdout.splitlines()) < 100, len(proc.stdout.splitlines())
    assert "--all" in proc.stderr  # says how to see lm-eval's built-in tasks


def test_sah_eval_ls_all_keeps_lm_evals_tasks(monkeypatch):
    """`--all` is ours: it is removed before lm-eval parses, and the index keeps its built-ins."""
    from sah_tasks import cli

    seen: dict = {}
    monkeypatch.setattr(cli, "_INCLUDE_DEFAULTS", True)  # restored after the test

    def fake_cli_evaluate():
        seen["argv"] = list(sys.argv)
        seen["defaults"] = cli._INCLUDE_DEFAULTS

    monkeypatch.setattr("lm_eval.__main__.cli_evaluate", fake_cli_evaluate)
    cli.main(["ls", "tasks", "--all"])
    assert seen == {"argv": ["sah-eval", "ls", "tasks"], "defaults": True}
    cli.main(["ls", "tasks"])
    assert seen == {"argv": ["sah-eval", "ls", "tasks"], "defaults": False}
    assert cli._INCLUDE_DEFAULTS is True  # restored for later TaskManagers in this process
    cli.main(["run", "--tasks", "hellaswag", "--all"])  # only `ls` knows --all
    assert seen["argv"][-1] == "--all" and seen["defaults"] is True


@pytest.mark.parametrize(
    "argv, sah_only",
    [
        (["--tasks", "sah_gsm8k", "--model", "hf"], True),
        (["run", "--tasks", "sah_*"], True),
        (["run", "-t", "sah_core,sah_gsm8k_maj"], True),
        (["run", "--tasks=sah_ifeval"], True),
        (["run", "--tasks", "sah_gsm8k,hellaswag"], False),  # a built-in task: full index
        (["run", "--tasks", "gsm8k"], False),
        (["run", "--model", "hf"], False),
        (["ls", "tasks", "--tasks", "sah_x"], False),
    ],
)
def test_runs_of_sah_tasks_skip_lm_evals_builtin_index(argv, sah_only):
    """A run of sah tasks only need not index lm-eval's ~14.7k built-in names (seconds per
    process: benchmark in docs/tasks.md's note); a task YAML path keeps the full index."""
    from sah_tasks import cli

    assert cli.only_sah_tasks(argv) is sah_only


def test_task_given_as_a_file_keeps_the_full_index(tmp_path, monkeypatch):
    from sah_tasks import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sah_mine.yaml").write_text("task: sah_mine\n")
    assert cli.only_sah_tasks(["--tasks", "sah_mine.yaml"]) is False
