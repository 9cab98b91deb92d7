"""Issue 16 on the real vLLM engine (vLLM's CPU build): the pooled sweep (all tasks of a
checkpoint in one lm-eval call, every adapter of a base in one generate call) writes the same
results, unit by unit, as today's per-unit, adapter-by-adapter mode. One engine start: both
modes run on the same engine (the one engine the sweep starts for a base and its adapters;
tests/test_sweep_vllm.py covers the sweep's engine loading and shutdown)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import vllm as _vllm  # noqa: F401  (installed by `make setup`: these tests never skip)
from run_helpers import write_checkpoint
from test_sweep_pooled import _files
from test_sweep_vllm import VLLM_ARGS, _random_adapter

from sah_tasks import mixed, sweep

TASKS = ["sah_gsm8k", "sah_multihop"]


@pytest.fixture(scope="module")
def lora_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The base (n0), a merged LoRA scale (n16) and an unmerged one (n32): one engine."""
    root = tmp_path_factory.mktemp("mixed") / "runs" / "exp"
    scales = root / "tiny" / "gsm8k"
    base = str(tiny_model_dir)
    write_checkpoint(scales / "n0", 0, base)
    _random_adapter(tiny_model_dir, scales / "n16", seed=2, rank=8, merged_into=scales / "n16")
    write_checkpoint(scales / "n16", 16, ".", base_model=base, lora=True)
    _random_adapter(tiny_model_dir, scales / "n32", seed=3, rank=16, merged_into=None)
    write_checkpoint(scales / "n32", 32, base, base_model=base, lora=True)
    return root


@pytest.fixture(scope="module")
def task_manager():
    return sweep.task_manager_for(TASKS)


def _evaluate_all(lm, run_dir: Path, task_manager, opts) -> sweep.SweepReport:
    """The sweep's own evaluation of every unit of `run_dir` on the already started engine."""
    from tqdm.auto import tqdm

    report = sweep.SweepReport()
    units = sweep.plan(sweep.discover(run_dir), TASKS)
    todo, requests = sweep.triage(units, sweep.ledger.Ledger(task_manager), opts, report)
    (group,) = sweep.engine_groups(todo, opts, report)
    with sweep.pooled_overheads(opts):
        sweep._run_members(lm, group, task_manager, opts, report, tqdm(disable=True), requests)
    return report


@pytest.fixture(scope="module")
def both_modes(lora_run_dir, task_manager, tmp_path_factory, fixtures_dir):
    """Both modes on one engine (one start): per-unit first, its eval/ folders set aside into a
    copy of the run directory, then pooled."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    mp.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_hotpotqa.jsonl"))
    engines: list[mixed.MixedEngine] = []
    real = mixed.MixedEngine.generate_recorded
    mp.setattr(
        mixed.MixedEngine, "generate_recorded", lambda self: engines.append(self) or real(self)
    )
    common = dict(backend="vllm", model_args=VLLM_ARGS, batch_size="8", limit=3,
                  gen_kwargs="max_gen_toks=12", device="cpu")  # fmt: skip
    per_unit_opts = sweep.SweepOptions(**common, pooled=False)
    pooled_opts = sweep.SweepOptions(**common)
    per_unit_dir = tmp_path_factory.mktemp("per_unit") / "exp"
    try:
        units = sweep.plan(sweep.discover(lora_run_dir), TASKS)
        (group,) = sweep.engine_groups(units, pooled_opts, sweep.SweepReport())
        lm = sweep._load_lm(sweep.engine_model_args(group, pooled_opts), pooled_opts)
        try:
            per_unit = _evaluate_all(lm, lora_run_dir, task_manager, per_unit_opts)
            shutil.copytree(lora_run_dir, per_unit_dir)
            for evals in sorted(lora_run_dir.rglob("eval")):
                shutil.rmtree(evals)
            pooled = _evaluate_all(lm, lora_run_dir, task_manager, pooled_opts)
        finally:
            sweep._close(lm)
            del lm
    finally:
        mp.undo()
    runs = {"per_unit": (per_unit_dir, per_unit), "pooled": (lora_run_dir, pooled)}
    return runs, engines


def test_mixed_adapters_write_what_adapter_by_adapter_writes(both_modes):
    runs, engines = both_modes
    (per_unit_dir, per_unit), (pooled_dir, pooled) = runs["per_unit"], runs["pooled"]
    assert not per_unit.failed and not pooled.failed, (per_unit.failed, pooled.failed)
    assert sorted(per_unit.done) == sorted(pooled.done) and len(pooled.done) == 6
    expected, got = _files(per_unit_dir, written_in=pooled_dir), _files(pooled_dir)
    assert sorted(expected) == sorted(got)
    for key in expected:
        assert got[key]["samples"] == expected[key]["samples"], key
        assert got[key]["results"] == expected[key]["results"], key


def test_one_generate_call_answers_every_adapter(both_modes):
    _, engines = both_modes
    (engine,) = engines  # the pooled run only; the per-unit run switches adapter by adapter
    assert engine.generated_late == 0  # every prompt came from the one mixed call
    assert engine.replayed == 3 * 2 * 3  # 3 checkpoints x 2 tasks x 3 documents
    assert not engine.pending
