"""Issue 16: all tasks of a checkpoint in one lm-eval call (the default), results split into the
same per-task files, through the same ledger, as one call per unit (`pooled=False`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_helpers import write_checkpoint

from sah_tasks import ledger, pooled, sweep
from trainers.manifest import unit_lock

TASKS = ["sah_gsm8k", "sah_multihop"]
# What differs between any two runs of the same evaluation: when it ran, lm-eval's random
# name for a model passed as an object, and where the run directory is.
VOLATILE = ("date", "start_time", "end_time", "total_evaluation_time_seconds", "model_name",
            "model_name_sanitized")  # fmt: skip


def opts(**kw) -> sweep.SweepOptions:
    return sweep.SweepOptions(backend="hf", device="cpu", batch_size="4", limit=3,
                              gen_kwargs="max_gen_toks=8", model_args="dtype=float32", **kw)  # fmt: skip


@pytest.fixture
def fixture_env(monkeypatch, fixtures_dir):
    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_hotpotqa.jsonl"))


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir, fixture_env) -> Path:
    """n0 (the base model itself) and n8 (a copy of its weights), as the trainers lay them out."""
    root = tmp_path / "runs" / "exp"
    scales = root / "tiny" / "gsm8k"
    write_checkpoint(scales / "n0", 0, str(tiny_model_dir))
    shutil.copytree(tiny_model_dir, scales / "n8")
    write_checkpoint(scales / "n8", 8, ".")
    return root


@pytest.fixture(scope="module")
def task_manager():
    return sweep.task_manager_for(TASKS)  # sah's tasks only: no seconds on lm-eval's index


def _count_calls(monkeypatch) -> list[list[str]]:
    """The tasks of every lm-eval call the sweep makes."""
    calls: list[list[str]] = []
    real = sweep.run_lm_eval

    def counted(lm, units, *args, **kwargs):
        calls.append([u.task for u in units])
        return real(lm, units, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_lm_eval", counted)
    return calls


def _files(run_dir: Path, written_in: Path | None = None) -> dict[tuple[str, str], dict]:
    """(checkpoint, task) -> its results (volatile fields dropped, paths relative) and samples;
    `written_in`: where the sweep wrote them, when they were copied to `run_dir` since."""
    out = {}
    for results in sorted(run_dir.rglob("eval/*/results_*.json")):
        unit_dir = results.parent
        text = results.read_text().replace(str((written_in or run_dir).resolve()), "<run>")
        data = {k: v for k, v in json.loads(text).items() if k not in VOLATILE}
        (samples,) = unit_dir.glob("samples_*.jsonl")
        rel = unit_dir.parent.parent.relative_to(run_dir).as_posix()
        out[(rel, unit_dir.name)] = {"results": data, "samples": samples.read_text()}
    return out


def _sweep(run_dir: Path, task_manager, **kw) -> sweep.SweepReport:
    units = sweep.plan(sweep.discover(run_dir), TASKS)
    return sweep.run_units(units, task_manager, opts(**kw))


def test_pooled_results_equal_per_unit_results_unit_by_unit(
    run_dir, task_manager, tmp_path, monkeypatch
):
    per_unit_dir = tmp_path / "per_unit" / "exp"
    shutil.copytree(run_dir, per_unit_dir)
    calls = _count_calls(monkeypatch)
    per_unit = _sweep(per_unit_dir, task_manager, pooled=False)
    assert sorted(map(sorted, calls)) == [["sah_gsm8k"]] * 2 + [["sah_multihop"]] * 2
    calls.clear()
    pooled_report = _sweep(run_dir, task_manager)
    assert calls == [TASKS, TASKS]  # one lm-eval call per checkpoint, with both tasks
    assert sorted(per_unit.done) == sorted(pooled_report.done) and len(per_unit.done) == 4
    expected, got = _files(per_unit_dir), _files(run_dir)
    assert sorted(expected) == sorted(got) and len(got) == 4
    for key in expected:  # the same lm-eval files, entry by entry, sample by sample
        assert got[key]["results"] == expected[key]["results"], key
        assert got[key]["samples"] == expected[key]["samples"], key
        assert list(got[key]["results"]["results"]) == [key[1]]  # only its own task


def test_pooled_results_are_verified_claims_of_the_same_request(run_dir, task_manager):
    assert len(_sweep(run_dir, task_manager).done) == 4
    book = ledger.Ledger(task_manager)
    for unit in sweep.plan(sweep.discover(run_dir), TASKS):
        request = sweep.unit_request(unit, book, opts(pooled=False))
        assert ledger.status(unit.out_dir, unit.task, request)[0] == "done", unit.key
    again = _sweep(run_dir, task_manager, pooled=False)  # per-unit mode sees them done
    assert len(again.skipped) == 4 and not again.done and again.model_loads == 0
    assert not list(run_dir.rglob(".partial-*")) and not list(run_dir.rglob(".lock-*"))


def test_a_unit_locked_by_another_sweep_is_left_out_of_the_pooled_call(
    run_dir, task_manager, monkeypatch
):
    calls = _count_calls(monkeypatch)
    busy = sweep.plan(sweep.discover(run_dir, "*/n8"), ["sah_multihop"])[0]
    with unit_lock(busy.lock_path):
        report = _sweep(run_dir, task_manager)
    assert report.busy and [b[:2] for b in report.busy] == [busy.key]
    assert len(report.done) == 3
    assert sorted(calls) == [["sah_gsm8k"], TASKS]  # n8 pooled without the busy task
    assert not list(busy.out_dir.glob("results_*.json"))


def test_a_failed_pooled_call_falls_back_to_one_call_per_unit(run_dir, task_manager, monkeypatch):
    """One task breaking the pooled call must not fail the checkpoint's other tasks."""
    real = sweep.run_lm_eval

    def multihop_breaks(lm, units, *args, **kwargs):
        if any(u.task == "sah_multihop" for u in units):
            raise RuntimeError("multihop scoring broke")
        return real(lm, units, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_lm_eval", multihop_breaks)
    report = _sweep(run_dir, task_manager)
    assert sorted(report.done) == [("tiny/gsm8k/n0", "sah_gsm8k"), ("tiny/gsm8k/n8", "sah_gsm8k")]
    assert sorted(f[:2] for f in report.failed) == [
        ("tiny/gsm8k/n0", "sah_multihop"),
        ("tiny/gsm8k/n8", "sah_multihop"),
    ]
    assert all("multihop scoring broke" in f[2] for f in report.failed)
    assert not list(run_dir.rglob(".lock-*"))


def test_split_results_keeps_only_the_tasks_own_entries():
    results = {
        "results": {"a": {"acc,none": 1.0}, "b": {"acc,none": 0.0}},
        "configs": {"a": {"task": "a"}, "b": {"task": "b"}},
        "n-samples": {"a": {"effective": 2}, "b": {"effective": 3}},
        "group_subtasks": {"a": [], "b": []},
        "config": {"model": "m", "limit": 3},
        "samples": {"a": [], "b": []},
    }
    split = pooled.split_results(results, "b")
    assert split == {
        "results": {"b": {"acc,none": 0.0}},
        "configs": {"b": {"task": "b"}},
        "n-samples": {"b": {"effective": 3}},
        "group_subtasks": {"b": []},
        "config": {"model": "m", "limit": 3},
    }
    split["config"]["limit"] = 1  # a copy: one unit's file never edits another's
    assert results["config"]["limit"] == 3
