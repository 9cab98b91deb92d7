"""A task whose data cannot be loaded: one clear line, and the other tasks still run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sah_tasks.common.data import TaskDataError
from sah_tasks.gsm8k import utils as gsm8k


def test_missing_hub_dataset_names_it_and_the_two_local_alternatives(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("SAH_GSM8K_DATA", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TaskDataError) as err:
        gsm8k.load()
    message = str(err.value)
    assert "\n" not in message
    for part in ("openai/gsm8k", gsm8k.SOURCE.revision, "SAH_GSM8K_DATA=", '"data_files"',
                 "OfflineModeIsEnabled"):  # fmt: skip
        assert part in message


def test_sah_eval_reports_a_task_without_data_and_runs_the_others(tiny_model_dir, tmp_path):
    from conftest import FIXTURES, lm_eval_args

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAH_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               SAH_MULTIHOP_DATA=str(FIXTURES / "multihop_hotpotqa.jsonl"))  # fmt: skip
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "sah-eval"), "--tasks", "sah_gsm8k,sah_multihop"]
    proc = subprocess.run([*cmd, *lm_eval_args(tiny_model_dir, out)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if ln.startswith("sah-eval: skipping")]
    assert len(skipped) == 1 and "sah_gsm8k" in skipped[0] and "SAH_GSM8K_DATA=" in skipped[0]
    assert "1 task(s) could not run: sah_gsm8k" in proc.stderr
    results = list(out.rglob("results_*.json"))
    assert len(results) == 1 and "sah_multihop" in results[0].read_text()
