"""`python -m trainers.launch`: one `accelerate launch` per unit still to train."""

from __future__ import annotations

from trainer_helpers import dpo_argv, sft_argv, write_sft_yaml

from trainers import launch, sft
from trainers.manifest import mark_completed, write_manifest


def test_sft_launches_one_process_per_pending_scale(tiny_model_dir, tmp_path, capsys):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "16", "32")
    run = sft.parse_args(argv)  # n16 completed with this recipe (its manifest as sft.py writes it)
    plan = sft.plan_scale(run, sft.load_pool(run), sft.describe_run_model(run), 16)
    plan.run_dir.mkdir(parents=True)
    write_manifest(plan.run_dir, plan.manifest)
    mark_completed(plan.run_dir)
    code = launch.main(
        ["--accelerate_config", "configs/accelerate/ddp.yaml", "--dry_run", "sft", *argv]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0] == "2 unit(s) to train"
    assert all(
        "accelerate.commands.launch --config_file configs/accelerate/ddp.yaml" in line
        for line in lines[1:]
    )
    assert lines[1].endswith("--scales 0 8") and lines[2].endswith("--scales 32")
    assert "trainers/sft.py" in lines[1]


def test_dpo_launches_sft_stages_before_budget_runs(tiny_model_dir, tmp_path):
    sft_yaml = write_sft_yaml(tmp_path / "sft.yaml")
    argv = dpo_argv(
        tiny_model_dir, tmp_path, sft_yaml, "--budgets", "8", "16", "--sft_fractions", "0", "0.5"
    )
    args = launch.parse(["dpo", *argv])
    tails = [command[-6:] for command in launch.commands(args)]
    assert tails == [
        ["--budgets", "8", "--sft_fractions", "0.5", "--only_stage", "sft"],
        ["--budgets", "16", "--sft_fractions", "0.5", "--only_stage", "sft"],
        ["--budgets", "8", "--sft_fractions", "0.0", "--only_stage", "dpo"],
        ["--budgets", "8", "--sft_fractions", "0.5", "--only_stage", "dpo"],
        ["--budgets", "16", "--sft_fractions", "0.0", "--only_stage", "dpo"],
        ["--budgets", "16", "--sft_fractions", "0.5", "--only_stage", "dpo"],
    ]
