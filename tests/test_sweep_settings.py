"""lm-eval's evaluation flags in the sweep: recorded in each unit's results and in the analysis;
the chat template follows each checkpoint's training; data is checked before models load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from run_helpers import write_checkpoint

from sah_tasks import eval_settings, sweep


def _checkpoint(folder: Path, n: int, model_path: str, prompt_format: str = "plain") -> Path:
    return write_checkpoint(
        folder, n, model_path, config={"scale": {"prompt_format": prompt_format}}
    )


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "runs" / "exp"
    _checkpoint(root / "tiny/gsm8k/n0", 0, str(tiny_model_dir))
    shutil.copytree(tiny_model_dir, root / "tiny/gsm8k/n8")
    _checkpoint(root / "tiny/gsm8k/n8", 8, ".")
    return root


def test_lm_eval_settings_reach_the_results_and_the_analysis(run_dir, fixtures_dir, monkeypatch):
    from analysis.cli import main as analyse

    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    argv = [str(run_dir), "--tasks", "sah_gsm8k_fewshot", "--device", "cpu", "--batch_size", "2",
            "--limit", "2", "--gen_kwargs", "max_gen_toks=4", "--model_args", "dtype=float32",
            "--num_fewshot", "2", "--system_instruction", "Be brief.", "--apply_chat_template"]  # fmt: skip
    assert sweep.main(argv) == 0
    for n in (0, 8):
        out = run_dir / f"tiny/gsm8k/n{n}/eval/sah_gsm8k_fewshot"
        data = json.loads(next(out.glob("results_*.json")).read_text())
        assert data["n-shot"]["sah_gsm8k_fewshot"] == 2  # lm-eval's own record
        assert data["system_instruction"] == "Be brief." and data["chat_template"]
        request = data["sah"]["request"]
        assert (request["num_fewshot"], request["system_instruction"]) == (2, "Be brief.")
        assert request["apply_chat_template"] is True
        prompt = json.loads(next(out.glob("samples_*.jsonl")).read_text().splitlines()[0])
        text = prompt["arguments"]["gen_args_0"]["arg_0"]
        assert text.startswith("<|system|>\nBe brief.") and text.count("<|user|>") == 3
    # another few-shot count is another request: reported, not silently reused
    assert sweep.main([*argv[:-5], "--num_fewshot", "1", *argv[-3:]]) == 1

    assert analyse([str(run_dir), "--n-boot", "50", "--formats", "png"]) == 0
    table = (run_dir / "analysis" / "results.csv").read_text()
    assert '2-shot, chat (multiturn), system ""Be brief.""' in table  # csv-quoted
    report = (run_dir / "analysis" / "report.md").read_text()
    assert '2-shot, chat (multiturn), system "Be brief."' in report.split("## Scores")[1]


def test_chat_template_follows_each_checkpoints_training_unless_overridden():
    chat, plain = ({"config": {"scale": {"prompt_format": f}}} for f in ("chat", "plain"))
    budget = {"config": {"budget": {"prompt_format": "chat"}}}
    default = SimpleNamespace(apply_chat_template=None)
    assert eval_settings.chat_setting(default, chat) is True
    assert eval_settings.chat_setting(default, budget) is True
    assert eval_settings.chat_setting(default, plain) is False
    assert eval_settings.chat_setting(default, {}) is False  # a hand-written manifest
    assert eval_settings.chat_setting(SimpleNamespace(apply_chat_template=True), plain) is True
    assert eval_settings.chat_setting(SimpleNamespace(apply_chat_template=False), chat) is False
    args = sweep.build_parser().parse_args(["r", "--tasks", "t", "--no_apply_chat_template"])
    assert sweep.options_from_args(args).apply_chat_template is False
    args = sweep.build_parser().parse_args(["r", "--tasks", "t"])
    assert sweep.options_from_args(args).apply_chat_template is None


def test_sweep_checks_task_data_before_loading_any_model(run_dir, monkeypatch, fixtures_dir):
    from sah_tasks.cli import install_task_path

    install_task_path()
    from lm_eval.tasks import TaskManager

    monkeypatch.delenv("SAH_GSM8K_DATA", raising=False)  # offline: the hub copy is unreachable
    monkeypatch.setenv("SAH_MULTIHOP_DATA", str(fixtures_dir / "multihop_hotpotqa.jsonl"))
    loads, evaluated = [], []
    monkeypatch.setattr(sweep, "_load_lm", lambda args, o: loads.append(args) or SimpleNamespace())
    monkeypatch.setattr(sweep, "evaluate_unit",
                        lambda lm, u, tm, o, r=None: evaluated.append(u.key) or True)  # fmt: skip
    opts = sweep.SweepOptions(backend="hf", device="cpu")
    units = sweep.plan(sweep.discover(run_dir), ["sah_gsm8k"])
    report = sweep.run_units(units, TaskManager(), opts)
    assert loads == [] and len(report.failed) == 2  # no model was loaded for nothing
    assert all("SAH_GSM8K_DATA=" in why for *_, why in report.failed)
    units = sweep.plan(sweep.discover(run_dir), ["sah_gsm8k", "sah_multihop"])
    report = sweep.run_units(units, TaskManager(), opts)
    assert sorted(t for _, t in evaluated) == ["sah_multihop"] * 2 and len(loads) == 2


def test_seeds_are_spread_as_lm_eval_spreads_them_or_refused():
    """One seed is all four and three keep the few-shot default (lm-eval's --seed); two or five
    used to crash each unit (unpacking) or drop the fifth silently."""
    assert sweep.SweepOptions(seed=7).seed == [7, 7, 7, 7]
    assert sweep.SweepOptions(seed=[1, None, "3"]).seed == [1, None, 3, 1234]
    assert sweep.SweepOptions(seed=[1, 2, 3, 4]).seed == [1, 2, 3, 4]
    for bad in ([1, 2], [1, 2, 3, 4, 5], ["x"], [True, 1, 1, 1]):
        with pytest.raises(ValueError, match="seed"):
            sweep.SweepOptions(seed=bad)
