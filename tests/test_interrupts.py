"""Ctrl-C anywhere: one line, exit status 130, no traceback, in every CLI."""

from __future__ import annotations

import pytest


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


CASES = {
    "sah-eval sweep": ("sah_tasks.sweep", "run_units", "sah_tasks.sweep:main",
                       lambda d: [str(d), "--tasks", "sah_gsm8k", "--device", "cpu"]),
    "trainers/sft.py": ("trainers.sft", "run_sft", "trainers.sft:main",
                        lambda d: ["--model_name_or_path", "m", "--use_cpu", "true"]),
    "trainers/dpo.py": ("trainers.dpo", "run_dpo", "trainers.dpo:main",
                        lambda d: ["--model_name_or_path", "m", "--use_cpu", "true"]),
    "python -m analysis": ("analysis.pipeline", "analyse", "analysis.cli:main",
                           lambda d: [str(d)]),
    "sah run": ("sah_tasks.experiment", "run_experiment", "sah_tasks.experiment:main",
                lambda d: ["run", str(d / "exp.yaml")]),
    "trainers.launch": ("trainers.launch", "commands", "trainers.launch:main",
                        lambda d: ["sft", "--model_name_or_path", "m"]),
    "sah-eval": ("lm_eval.__main__", "cli_evaluate", "sah_tasks.cli:main",
                 lambda d: ["--model", "hf", "--tasks", "sah_gsm8k"]),
    "facts100 validate": ("sah_tasks.facts100.__main__", "validate_file",
                          "sah_tasks.facts100.__main__:main", lambda d: ["validate", "x.jsonl"]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_ctrl_c_is_one_line_and_exit_130(name, run_dir_with_checkpoint, monkeypatch, capsys):
    import importlib

    module, target, entry, argv = CASES[name]
    monkeypatch.setattr(importlib.import_module(module), target, _interrupt)
    entry_module, func = entry.split(":")
    main = getattr(importlib.import_module(entry_module), func)
    try:
        code = main(argv(run_dir_with_checkpoint))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert len([line for line in err.splitlines() if "interrupted" in line]) == 1


@pytest.fixture
def run_dir_with_checkpoint(tmp_path, tiny_model_dir):
    import json

    ckpt = tmp_path / "runs" / "exp" / "tiny" / "gsm8k" / "n0"
    ckpt.mkdir(parents=True)
    manifest = {"n": 0, "model_path": str(tiny_model_dir), "base_model": str(tiny_model_dir),
                "lora": False, "stage": "base"}  # fmt: skip
    (ckpt / "sah_manifest.json").write_text(json.dumps(manifest))
    (ckpt / "COMPLETED").write_text("")
    (ckpt / "eval" / "sah_gsm8k").mkdir(parents=True)
    (ckpt / "eval" / "sah_gsm8k" / "results_2026.json").write_text(
        json.dumps({"results": {"sah_gsm8k": {"exact_match,strict-match": 0.5}}})
    )
    (tmp_path / "runs" / "exp" / "exp.yaml").write_text("experiment: exp\neval: []\n")
    return tmp_path / "runs" / "exp"
