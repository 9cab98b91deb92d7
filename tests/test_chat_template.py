"""A chat template for a base model: given to the trainer, saved with the checkpoint, used by
the evaluation — the prompts the model is scored on are the ones it was trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from trainer_helpers import (
    one_torch_thread,  # noqa: F401
    sft_argv,
)

from sah_tasks import sweep
from trainers import sft
from trainers.common import user_turn
from trainers.config import ConfigError
from trainers.manifest import read_manifest

TEMPLATE = (
    "{% for m in messages %}{{ '[' + m['role'] + ']: ' + m['content'] + eos_token + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '[assistant]:' }}{% endif %}"
)


@pytest.fixture
def base_without_template(tiny_model_dir, tmp_path) -> Path:
    """The tiny model as a base model typically is: no chat template (e.g. Llama-3-8B)."""
    from transformers import AutoTokenizer

    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = None
    tok.save_pretrained(base)
    assert AutoTokenizer.from_pretrained(base).chat_template is None
    return base


def test_chat_template_path_trains_and_evaluates_with_the_same_prompts(
    base_without_template, tmp_path, fixtures_dir, monkeypatch
):
    from transformers import AutoTokenizer

    argv = sft_argv(base_without_template, tmp_path / "runs", "--scales", "8",
                    "--prompt_format", "chat")  # fmt: skip
    with pytest.raises(ConfigError, match="needs a tokenizer with a chat template"):
        sft.run_sft(sft.parse_args(argv))
    template = tmp_path / "template.jinja"
    template.write_text(TEMPLATE)
    (run_dir,) = sft.run_sft(sft.parse_args([*argv, "--chat_template_path", str(template)]))

    tok = AutoTokenizer.from_pretrained(run_dir)
    assert tok.chat_template == TEMPLATE  # saved with the checkpoint
    recorded = read_manifest(run_dir)["config"]["chat_template"]
    assert recorded["path"] == str(template) and len(recorded["sha256"]) == 64
    template.write_text(TEMPLATE.replace("]: ", "]> "))  # another template is another recipe
    with pytest.raises(ConfigError, match=r"different recipe .*chat_template.sha256"):
        sft.run_sft(sft.parse_args([*argv, "--chat_template_path", str(template)]))

    # evaluated with the checkpoint's template, by default (it was trained with
    # prompt_format: chat; no --apply_chat_template): lm-eval's prompt is the training prompt
    monkeypatch.setenv("SAH_GSM8K_DATA", str(fixtures_dir / "gsm8k_test.jsonl"))
    from sah_tasks.cli import install_task_path

    install_task_path()
    from lm_eval.tasks import TaskManager

    units = sweep.plan(sweep.discover(tmp_path / "runs" / "test", "*/n8"), ["sah_gsm8k"])
    opts = sweep.SweepOptions(backend="hf", device="cpu", batch_size="2", limit=2,
                              gen_kwargs="max_gen_toks=4", model_args="dtype=float32")  # fmt: skip
    report = sweep.run_units(units, TaskManager(), opts)  # the template file was edited
    assert report.model_loads == 0 and "changed since training" in report.failed[0][2]
    template.write_text(TEMPLATE)
    report = sweep.run_units(units, TaskManager(), opts)
    assert report.done == [units[0].key], report
    samples = next(units[0].out_dir.glob("samples_*.jsonl")).read_text().splitlines()
    for line in samples:
        row = json.loads(line)
        prompt = row["arguments"]["gen_args_0"]["arg_0"]
        plain = f"Question: {row['doc']['question']}\nAnswer:"  # sah_gsm8k's doc_to_text
        trained = tok.apply_chat_template(user_turn(plain), tokenize=False,
                                          add_generation_prompt=True)  # fmt: skip
        assert prompt == trained and prompt.startswith("[user]: Question:")
