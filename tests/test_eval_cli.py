"""End to end: the real `sah-eval` and `lm_eval --include_path` CLIs on the tiny model, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sah_tasks import TASKS_DIR

BIN = Path(sys.executable).parent

# Each task reads a local fixture through its documented environment variable.
FIXTURE_ENV = {
    "SAH_GSM8K_DATA": "gsm8k_test.jsonl",
    "SAH_IFEVAL_DATA": "ifeval_sample.jsonl",
    "SAH_MULTIHOP_DATA": "multihop_hotpotqa.jsonl",
    "SAH_HUMANEVAL_PLUS_DATA": "code/humaneval_plus_sample.jsonl",
    "SAH_MBPP_PLUS_DATA": "code/mbpp_plus_sample.jsonl",
}
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


def _env(fixtures_dir: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update({k: str(fixtures_dir / v) for k, v in FIXTURE_ENV.items()})
    return env


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


def _common_args(model: Path, out: Path) -> list[str]:
    return [
        "--model", "hf",
        "--model_args", f"pretrained={model},dtype=float32",
        "--device", "cpu",
        "--limit", "2",
        "--gen_kwargs", "max_gen_toks=24",
        "--confirm_run_unsafe_code",
        "--log_samples",
        "--output_path", str(out),
    ]  # fmt: skip


@pytest.mark.timeout(900)
def test_sah_eval_runs_every_sah_task(tiny_model_dir, fixtures_dir, tmp_path):
    from lm_eval.tasks import TaskManager

    every = set(TaskManager(include_path=TASKS_DIR, include_defaults=False).match_tasks(["sah_*"]))
    every = {t for t in every if t.startswith("sah_") and not t.endswith(("_core", "_math"))}
    out = tmp_path / "out"
    cmd = [str(BIN / "sah-eval"), "--tasks", "sah_*", *_common_args(tiny_model_dir, out)]
    _run(cmd, _env(fixtures_dir), tmp_path)
    results = _results(out)
    tasks = set(results["results"])
    assert set(CORE_METRICS) <= tasks
    _assert_every_task_scored(results, {t for t in tasks if t in every})
    assert list(out.rglob("samples_sah_gsm8k_*.jsonl")), "per-sample logs were not written"


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
        *_common_args(tiny_model_dir, out),
    ]  # fmt: skip
    _run(cmd, _env(fixtures_dir), tmp_path)
    _assert_every_task_scored(_results(out), {"sah_gsm8k", "sah_ifeval", "sah_multihop"})


def test_sah_eval_ls_lists_our_tasks():
    proc = subprocess.run(
        [str(BIN / "sah-eval"), "ls", "tasks"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in CORE_METRICS:
        assert f"|{task} " in proc.stdout, task
