"""Issue 17: `--batch_size auto` is detected once per model shape, not once per unit (nor once
per checkpoint when the checkpoints share an architecture)."""

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
    # two full fine-tunes of one base: one shape, so one detection for both (it was one each)
    assert sorted(counts.values()) == [1], counts


def test_a_shared_detection_hands_its_answer_to_the_next_model_of_that_shape(tiny_model_dir):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    calls = []

    def fake_lm(answer):
        def detect(requests=None, pos=0):
            calls.append(answer)
            return answer

        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        return SimpleNamespace(_model=model, batch_size="auto", device="cpu", max_length=256,
                               max_batch_size=64, _detect_batch_size=detect)  # fmt: skip

    shared: dict = {}
    first, second = fake_lm(7), fake_lm(3)
    sweep.detect_batch_size_once(first, shared)
    sweep.detect_batch_size_once(second, shared)
    assert first._detect_batch_size() == 7 and first._detect_batch_size() == 7
    assert second._detect_batch_size() == 7 and calls == [7]  # the second never detected
    alone = fake_lm(5)
    sweep.detect_batch_size_once(alone)  # no shared answers: its own detection
    assert alone._detect_batch_size() == 5 and calls == [7, 5]


def test_a_checkpoint_of_another_shape_is_detected_again(two_checkpoints, task_manager,
                                                           monkeypatch, tmp_path):  # fmt: skip
    from trainers.tiny_model import build_tiny_model

    other = two_checkpoints / "tiny" / "gsm8k" / "n64"
    build_tiny_model(other, hidden=32, layers=1)
    write_checkpoint(other, 64, ".")
    counts = _count_detections(monkeypatch)
    opts = sweep.SweepOptions(backend="hf", device="cpu", batch_size="auto", max_batch_size=2,
                              limit=1, gen_kwargs="max_gen_toks=4", model_args="dtype=float32,max_length=256")  # fmt: skip
    report = sweep.run_units(
        sweep.plan(sweep.discover(two_checkpoints), TASKS[:1]), task_manager, opts
    )
    assert not report.failed and report.model_loads == 3
    assert sorted(counts.values()) == [1, 1], counts  # the two shapes, once each


def test_the_shape_key_ignores_names_and_sees_architecture(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    from trainers.tiny_model import build_tiny_model

    def key(path, **lm):
        model = AutoModelForCausalLM.from_pretrained(path)
        defaults = {"device": "cpu", "max_length": 256, "max_batch_size": 64, "backend": "causal"}
        return sweep.model_shape_key(SimpleNamespace(_model=model, **{**defaults, **lm}))

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert key(tiny_model_dir) == key(copy)  # another folder, same shape
    assert key(tiny_model_dir) != key(tiny_model_dir, max_length=512)
    assert key(tiny_model_dir) != key(tiny_model_dir, max_batch_size=8)
    assert key(tiny_model_dir) != key(build_tiny_model(tmp_path / "wider", hidden=96))
    assert sweep.model_shape_key(SimpleNamespace()) is None


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
