"""Issue 17: `--batch_size auto` is detected once per loaded model, not once per unit."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from run_helpers import write_checkpoint

from sah_tasks import sweep

TASKS = ["sah_gsm8k", "sah_multihop"]


@pytest.fixture
def two_checkpoints(tmp_path, tiny_model_dir, monkeypatch, fixtures_dir):
    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_hotpotqa.jsonl"))
    root = tmp_path / "runs" / "exp"
    for n in (8, 32):
        folder = root / "tiny" / "gsm8k" / f"n{n}"
        shutil.copytree(tiny_model_dir, folder)
        write_checkpoint(folder, n, ".")
    return root


@pytest.fixture(scope="module")
def task_manager():
    return sweep.task_manager_for(TASKS)  # sah's tasks only: no seconds on lm-eval's index


def _count_detections(monkeypatch) -> Counter:
    """Detections per loaded model, counted at lm-eval's own detection method."""
    from lm_eval.models.huggingface import HFLM

    counts: Counter = Counter()
    real = HFLM._detect_batch_size

    def counted(self, requests=None, pos=0):
        counts[id(self)] += 1
        return real(self, requests, pos)

    monkeypatch.setattr(HFLM, "_detect_batch_size", counted)
    return counts


@pytest.mark.parametrize("pooled", [False, True], ids=["per-unit", "pooled"])
def test_auto_batch_size_is_detected_once_per_model(
    two_checkpoints, task_manager, monkeypatch, pooled
):
    counts = _count_detections(monkeypatch)
    opts = sweep.SweepOptions(backend="hf", device="cpu", batch_size="auto", max_batch_size=2,
                              limit=1, gen_kwargs="max_gen_toks=4", model_args="dtype=float32,max_length=256",
                              pooled=pooled)  # fmt: skip
    units = sweep.plan(sweep.discover(two_checkpoints), TASKS)
    report = sweep.run_units(units, task_manager, opts)
    assert not report.failed, report.failed
    assert len(report.done) == 4 and report.model_loads == 2
    assert sorted(counts.values()) == [1, 1], counts


def test_max_batch_size_reaches_the_model(monkeypatch):
    """`--max_batch_size` bounds the detection (it used to be parsed and never passed on)."""
    seen = {}

    class FakeLM:
        @classmethod
        def create_from_arg_string(cls, args, extra):
            seen.update(extra)
            return cls()

    monkeypatch.setattr("lm_eval.api.registry.get_model", lambda backend: FakeLM)
    opts = sweep.SweepOptions(backend="hf", device="cpu", batch_size="auto", max_batch_size=3)
    sweep._load_lm("pretrained=x", opts)
    assert seen == {"batch_size": "auto", "max_batch_size": 3, "device": "cpu"}
