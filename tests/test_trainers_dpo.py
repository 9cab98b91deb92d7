"""DPO on the tiny model: the preference margin rises; budget runs split B into r*B SFT + DPO."""

from __future__ import annotations

import pytest
from trainer_helpers import (
    dpo_argv,
    one_torch_thread,  # noqa: F401
    write_sft_yaml,
)

from trainers import dpo, sft
from trainers.config import ConfigError
from trainers.data import load_preference_pool
from trainers.manifest import is_completed, read_manifest
from trainers.subsets import SubsetError, select_subset


def test_dpo_raises_the_chosen_minus_rejected_log_prob_margin(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft_yaml = write_sft_yaml(tmp_path / "sft.yaml")
    argv = dpo_argv(tiny_model_dir, tmp_path, sft_yaml, "--budgets", "16", "--sft_fractions", "0")
    run = dpo.parse_args([*argv, "--max_steps", "12", "--learning_rate", "5e-3", "--beta", "0.5"])
    (run_dir,) = dpo.run_dpo(run)
    manifest = read_manifest(run_dir)
    assert (manifest["stage"], manifest["budget"], manifest["sft_fraction"]) == ("dpo", 16, 0.0)
    assert run_dir.name == "B16_r0" and is_completed(run_dir)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pool = load_preference_pool("gsm8k", run.budget.preference_data_files)
    pairs = dpo.preference_subset(run, pool, dpo.BudgetSplit.of(16, 0.0), dpo.SFTStage())
    assert len(pairs) == 16
    before = dpo.preference_margin(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, pairs
    )
    after = dpo.preference_margin(AutoModelForCausalLM.from_pretrained(run_dir), tokenizer, pairs)
    assert after > before + 0.5, (before, after)


def test_budget_split_trains_r_times_b_sft_then_the_rest_dpo(tiny_model_dir, tmp_path, monkeypatch):
    sft_sizes, dpo_pairs = [], []
    build_sft, build_dpo = sft.build_trainer, dpo.build_trainer

    def spy_sft(run, args, subset, tokenizer):
        sft_sizes.append(len(subset))
        return build_sft(run, args, subset, tokenizer)

    def spy_dpo(run, args, model_args, pairs, tokenizer):
        dpo_pairs.append((model_args.model_name_or_path, list(pairs)))
        return build_dpo(run, args, model_args, pairs, tokenizer)

    monkeypatch.setattr(sft, "build_trainer", spy_sft)
    monkeypatch.setattr(dpo, "build_trainer", spy_dpo)
    sft_yaml = write_sft_yaml(tmp_path / "sft.yaml", max_steps=1)
    argv = dpo_argv(tiny_model_dir, tmp_path, sft_yaml, "--budgets", "20", "--max_steps", "1")
    run = dpo.parse_args([*argv, "--sft_fractions", "0.25", "1.0"])
    r25, r100 = dpo.run_dpo(run)

    root = tmp_path / "test" / "tiny" / "gsm8k"
    assert (r25.name, r100.name) == ("B20_r0.25", "B20_r1")
    # r = 0.25: SFT on 5 examples (the ordinary scale n5), then DPO on 15 pairs from it
    assert sft_sizes == [5, 20]
    assert read_manifest(root / "n5")["n"] == 5
    start, pairs = dpo_pairs[0]
    assert start == str(root / "n5") and len(pairs) == 15
    stage_run = dpo.sft_stage_run(run, dpo.describe_run_model(run))
    sft_subset = select_subset(sft.load_pool(stage_run).examples, 5, stage_run.seed)
    assert not {ex.prompt for ex in sft_subset} & {p.prompt for p in pairs}  # 20 distinct prompts
    m25 = read_manifest(r25)
    assert (m25["stage"], m25["n"], m25["budget"], m25["sft_fraction"]) == ("sft+dpo", 20, 20, 0.25)
    assert (m25["config"]["split"]["n_sft"], m25["config"]["split"]["n_dpo"]) == (5, 15)
    assert m25["base_model"] == "../n5"  # the lineage: B20_r0.25 <- n5 <- base (relative: the
    assert m25["config"]["split"]["sft_checkpoint"] == "../n5"  # run dir can move)
    assert read_manifest(root / "n5")["base_model"] == str(tiny_model_dir)
    # r = 1: SFT only; the budget folder points at n20
    assert len(dpo_pairs) == 1
    m100 = read_manifest(r100)
    assert m100["stage"] == "sft" and m100["model_path"] == "../n20"
    # everything is complete: a rerun trains nothing
    monkeypatch.setattr(sft, "build_trainer", lambda *a: pytest.fail("retrained SFT"))
    monkeypatch.setattr(dpo, "build_trainer", lambda *a: pytest.fail("retrained DPO"))
    assert dpo.run_dpo(run) == [r25, r100]


def test_budget_errors(tiny_model_dir, tmp_path):
    argv = dpo_argv(tiny_model_dir, tmp_path, None)
    with pytest.raises(ConfigError, match="sft_config is required"):
        dpo.run_dpo(dpo.parse_args([*argv, "--budgets", "10", "--sft_fractions", "0.5"]))
    with pytest.raises(SubsetError, match=r"N=49 is larger than the gsm8k preference pool"):
        dpo.run_dpo(dpo.parse_args([*argv, "--budgets", "49", "--sft_fractions", "0"]))
    # B=40, r=0.5: 20 SFT examples leave 28 prompts for 20 pairs; B=60 does not fit, and the
    # check fails before the (fitting) SFT stage n20 of the grid is trained
    sft_yaml = write_sft_yaml(tmp_path / "sft.yaml")
    grid = [*argv, "--sft_config", str(sft_yaml), "--budgets", "40", "60", "--sft_fractions", "0.5"]
    with pytest.raises(SubsetError, match=r"N=30 is larger .* without the 30 prompts of the SFT"):
        dpo.run_dpo(dpo.parse_args(grid))
    assert not (tmp_path / "test").exists()
    with pytest.raises(ConfigError, match="budgets"):
        dpo.parse_args([*argv, "--budgets", "0"])
