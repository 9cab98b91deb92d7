"""The trainers' command line: a short --help, --config=FILE, reserved options, CPU planning."""

from __future__ import annotations

import pytest
import yaml
from trainer_helpers import sft_argv

from trainers import dpo, launch, sft
from trainers.config import ConfigError


@pytest.mark.parametrize("module", [sft, dpo])
def test_help_is_short_and_lists_config_and_our_options(module, capsys):
    with pytest.raises(SystemExit) as e:
        module.parse_args(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "--config FILE" in out and "--seeds" in out and "--learning_rate" in out
    assert "--help_all" in out and "--output_dir" not in out
    assert len(out.splitlines()) < 200  # TRL's full list is ~900 lines


def test_help_all_lists_every_trl_option(capsys):
    with pytest.raises(SystemExit):
        sft.parse_args(["--help_all"])
    assert "--lr_scheduler_type" in capsys.readouterr().out


def test_config_with_equals_is_loaded(tiny_model_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"warmup_steps": 3, "scales": [0, 8]}))
    run = sft.parse_args([f"--config={config}", *sft_argv(tiny_model_dir, tmp_path)])
    assert run.training.warmup_steps == 3 and run.scale.scales == [0, 8]


@pytest.mark.parametrize("option", ["output_dir", "run_name", "resume_from_checkpoint"])
def test_reserved_options_are_refused_not_overwritten(tiny_model_dir, tmp_path, option):
    with pytest.raises(ConfigError, match=f"{option} is set by sah"):
        sft.parse_args([*sft_argv(tiny_model_dir, tmp_path), f"--{option}", "x"])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({option: "x"}))
    with pytest.raises(ConfigError, match=rf"c\.yaml: {option} is set by sah"):
        sft.parse_args(["--config", str(config), *sft_argv(tiny_model_dir, tmp_path)])


def _bf16_argv(tiny_model_dir, tmp_path):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8")
    for flag, value in (("--bf16", "true"), ("--use_cpu", "false")):
        argv[argv.index(flag) + 1] = value
    return argv


def test_bf16_on_cpu_is_one_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="bf16: true needs a GPU.*--bf16 false --use_cpu true"):
        sft.parse_args(_bf16_argv(tiny_model_dir, tmp_path))


def test_launch_dry_run_plans_a_bf16_config_on_a_cpu_node(tiny_model_dir, tmp_path, capsys):
    assert launch.main(["--dry_run", "sft", *_bf16_argv(tiny_model_dir, tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 unit(s) to train" and lines[1].endswith("--scales 0 8")


def test_launch_gives_each_seed_its_own_units(tiny_model_dir, tmp_path):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "--seeds", "0", "4")
    commands = launch.commands(launch.parse(["--dry-run", "sft", *argv]))
    assert [c[-5:] for c in commands][0] == ["--seeds", "0", "--scales", "0", "8"]
    assert commands[1][-4:] == ["--seeds", "4", "--scales", "8"] and len(commands) == 2
