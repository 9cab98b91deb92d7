"""SFT on the tiny model: label masking, checkpoints per scale, resume, LoRA merge, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from trainer_helpers import (
    one_torch_thread,  # noqa: F401
    sft_argv,
)

from trainers import sft
from trainers.common import load_tokenizer
from trainers.manifest import read_manifest
from trainers.subsets import SubsetError

MANIFEST_KEYS = {
    "schema_version", "experiment", "model_slug", "base_model", "base_revision", "family",
    "size_b", "task", "n", "seed", "stage", "budget", "sft_fraction", "model_path", "lora",
    "train_data", "subset_hash", "config", "training", "versions", "git_sha", "created",
}  # fmt: skip


def trained_tokens(batch, row: int) -> list[int]:
    ids, labels = batch["input_ids"][row], batch["labels"][row]
    return [int(t) for t, label in zip(ids, labels, strict=True) if label != -100]


@pytest.mark.parametrize("prompt_format", ["plain", "chat"])
def test_prompt_is_masked_and_completion_plus_eos_is_trained(
    tiny_model_dir, tmp_path, prompt_format
):
    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--prompt_format", prompt_format))
    tokenizer = load_tokenizer(run.model)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    examples = sft.load_pool(run).examples[:4]
    args = sft.scale_training_args(run, 4, tmp_path / "n4")
    trainer = sft.build_trainer(run, args, examples, tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    by_prompt = {ex.prompt.strip(): ex for ex in examples}
    for row in range(batch["input_ids"].shape[0]):
        text = tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True)
        example = next(ex for p, ex in by_prompt.items() if p in text)
        trained = trained_tokens(batch, row)
        if prompt_format == "plain":
            assert trained[-1] == tokenizer.eos_token_id  # the model learns to stop
            assert tokenizer.decode(trained[:-1]) == example.completion  # and no prompt token
        else:  # the template's end of turn (here: EOS + newline) is trained too
            decoded = tokenizer.decode(trained)
            assert decoded.startswith(example.completion.strip() + tokenizer.eos_token)
            assert "Question:" not in decoded
        # padding is neither attended to nor trained
        mask = batch["attention_mask"][row]
        assert all(batch["labels"][row][mask == 0] == -100)
        assert all(batch["input_ids"][row][mask == 0] == tokenizer.pad_token_id)


def test_scales_write_checkpoints_and_manifests_and_reruns_skip(
    tiny_model_dir, tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM

    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "32"))
    dirs = sft.run_sft(run)
    assert [d.name for d in dirs] == ["n0", "n8", "n32"]
    assert dirs[0].parent == tmp_path / "test" / "tiny" / "gsm8k"
    manifests = [read_manifest(d) for d in dirs]
    for d, m in zip(dirs, manifests, strict=True):
        assert set(m) == MANIFEST_KEYS
        assert (d / "COMPLETED").is_file()
        assert m["task"] == "gsm8k" and m["seed"] == 0 and m["lora"] is False
        assert (
            m["train_data"]["source"].startswith("local:") and len(m["git_sha"] or "x" * 40) == 40
        )
        assert m["versions"]["trl"] and m["versions"]["torch"]
    n0, n8, n32 = manifests
    assert n0["stage"] == "base" and n0["n"] == 0 and n0["model_path"] == str(tiny_model_dir)
    assert not (dirs[0] / "model.safetensors").exists()  # N=0 points at the base model
    assert (n8["stage"], n8["n"], n32["n"]) == ("sft", 8, 32)
    assert n8["subset_hash"] != n32["subset_hash"]
    assert n32["config"]["training"]["max_steps"] == 2 and n32["config"]["subset"]["n"] == 32
    assert n8["model_path"] == n32["model_path"] == "."  # itself, relative: the run dir can move
    model = AutoModelForCausalLM.from_pretrained(dirs[2])
    assert model.config.pad_token_id != model.config.eos_token_id

    built = []
    monkeypatch.setattr(
        sft, "build_trainer", lambda *a, **k: built.append(a) or pytest.fail("retrained")
    )
    assert sft.run_sft(run) == dirs  # completed scales are skipped

    # a killed run: no COMPLETED, a stale partial file; the rerun redoes exactly that scale
    (dirs[2] / "COMPLETED").unlink()
    (dirs[2] / "stale.partial").write_text("x")
    monkeypatch.undo()
    calls = []
    build = sft.build_trainer
    monkeypatch.setattr(
        sft, "build_trainer", lambda *a, **k: calls.append(a[1].output_dir) or build(*a, **k)
    )
    sft.run_sft(run)
    assert calls == [str(dirs[2])]
    assert (dirs[2] / "COMPLETED").is_file() and not (dirs[2] / "stale.partial").exists()


def test_lora_keeps_the_adapter_and_a_merged_copy(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    argv = sft_argv(
        tiny_model_dir, tmp_path, "--scales", "8", "--use_peft", "true", "--lora_r", "4"
    )
    (run_dir,) = sft.run_sft(sft.parse_args([*argv, "--learning_rate", "5e-2"]))
    manifest = read_manifest(run_dir)
    assert manifest["lora"] is True and manifest["model_path"] == "."  # itself, merged
    adapter_config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4
    merged = AutoModelForCausalLM.from_pretrained(run_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir / "adapter"
    )
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        merged_logits, adapter_logits = merged(ids).logits, with_adapter(ids).logits
        base_logits = base(ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)
    assert not torch.allclose(
        merged_logits, base_logits, atol=1e-4
    )  # the adapter changed something


def test_same_seed_gives_identical_weights(tiny_model_dir, tmp_path):
    def weights(root, *extra):
        (run_dir,) = sft.run_sft(
            sft.parse_args(sft_argv(tiny_model_dir, root, "--scales", "8", *extra))
        )
        return load_file(run_dir / "model.safetensors")

    first, second = weights(tmp_path / "a"), weights(tmp_path / "b")
    other_seed = weights(tmp_path / "c", "--seed", "1")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)


def test_scale_larger_than_the_pool_fails_before_training(tiny_model_dir, tmp_path):
    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "100"))
    with pytest.raises(
        SubsetError, match=r"N=100 is larger than the gsm8k training pool .* 48 examples"
    ):
        sft.run_sft(run)
    assert not (tmp_path / "test").exists()  # nothing was written


def test_incomplete_scale_resumes_only_with_an_unchanged_recipe(
    tiny_model_dir, tmp_path, monkeypatch
):
    from trl import SFTTrainer

    keep = (
        "--scales",
        "8",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--keep_checkpoints",
        "true",
    )
    (run_dir,) = sft.run_sft(sft.parse_args(sft_argv(tiny_model_dir, tmp_path, *keep)))
    assert (run_dir / "checkpoint-2").is_dir()
    resumed_from = []
    train = SFTTrainer.train
    monkeypatch.setattr(
        SFTTrainer,
        "train",
        lambda self, resume_from_checkpoint=None: (
            resumed_from.append(resume_from_checkpoint)
            or train(self, resume_from_checkpoint=resume_from_checkpoint)
        ),
    )
    (run_dir / "COMPLETED").unlink()  # as if killed after the last checkpoint
    sft.run_sft(sft.parse_args(sft_argv(tiny_model_dir, tmp_path, *keep)))
    assert resumed_from == [str(run_dir / "checkpoint-2")] and (run_dir / "COMPLETED").is_file()

    (run_dir / "COMPLETED").unlink()  # a different recipe must not continue the old run
    sft.run_sft(
        sft.parse_args(sft_argv(tiny_model_dir, tmp_path, *keep, "--learning_rate", "5e-4"))
    )
    assert resumed_from[-1] is None
    assert read_manifest(run_dir)["config"]["training"]["learning_rate"] == 5e-4


def test_lora_merge_loads_an_ordinary_model_under_zero3(tiny_model_dir, tmp_path):
    """Under ZeRO-3 the Trainer registers its DeepSpeed config with transformers, after which
    every `from_pretrained` partitions weights (and refuses a device_map): the merge on rank 0
    must load outside it, and leave the registration as it found it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.integrations import deepspeed as hf_deepspeed

    from trainers.common import load_tokenizer, merge_adapter

    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "8", "--use_peft", "true",
                    "--lora_r", "4", "--merge_lora", "false", "--learning_rate", "5e-2")  # fmt: skip
    run = sft.parse_args(argv)
    (run_dir,) = sft.run_sft(run)
    assert not (run_dir / "model.safetensors").exists()

    class Zero3Config:  # what HfTrainerDeepSpeedConfig answers under ZeRO-3 (no deepspeed here)
        config = {"zero_optimization": {"stage": 3}}

        def is_zero3(self):
            return True

    registered = Zero3Config()
    hf_deepspeed.set_hf_deepspeed_config(registered)
    try:
        assert hf_deepspeed.is_deepspeed_zero3_enabled()
        merge_adapter(run.model, run.training, load_tokenizer(run.model), run_dir)
        assert hf_deepspeed.is_deepspeed_zero3_enabled()  # restored for the rest of the run
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    merged = AutoModelForCausalLM.from_pretrained(run_dir)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run_dir / "adapter"
    )
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)
