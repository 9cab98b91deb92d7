"""Config parsing: YAML + CLI overrides in TRL's style, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainers import dpo, sft
from trainers.config import ConfigError, slugify

REPO = Path(__file__).resolve().parents[1]


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


CPU = {"use_cpu": True, "bf16": False, "gradient_checkpointing": False}


def test_yaml_sets_options_and_cli_overrides_them(tmp_path):
    config = write_yaml(
        tmp_path / "c.yaml",
        {"model_name_or_path": "m", "task": "multihop", "scales": [100, 0, 10], "max_steps": 5,
         "lora_r": 8, "use_peft": True, **CPU},
    )  # fmt: skip
    run = sft.parse_args(["--config", str(config), "--max_steps", "2"])
    assert run.scale.task == "multihop"
    assert run.scale.scales == [0, 10, 100]  # sorted: the base model first
    assert run.training.max_steps == 2  # the CLI wins
    assert run.model.lora_r == 8 and run.model.use_peft is True


def test_unknown_yaml_key_names_the_file_and_the_closest_key(tmp_path):
    config = write_yaml(tmp_path / "typo.yaml", {"model_name_or_path": "m", "lerning_rate": 0.1})
    with pytest.raises(ConfigError) as err:
        sft.parse_args(["--config", str(config)])
    message = str(err.value)
    assert str(config) in message and "'lerning_rate'" in message and "'learning_rate'" in message


def test_other_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        sft.parse_args(["--config", str(tmp_path / "missing.yaml")])
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        sft.parse_args(["--config", str(listing)])
    with pytest.raises(ConfigError, match=">= 0"):
        sft.parse_args(["--model_name_or_path", "m", "--scales", "10", "-5", *cpu_flags()])
    with pytest.raises(ConfigError, match="unknown command-line"):
        sft.parse_args(["--model_name_or_path", "m", "--no_such_flag", "1", *cpu_flags()])
    with pytest.raises(ConfigError, match=r"sft_fractions.*\[0, 1\]"):
        dpo.parse_args(["--model_name_or_path", "m", "--sft_fractions", "1.5", *cpu_flags()])


def cpu_flags() -> list[str]:
    return ["--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false"]


def test_scale_overrides_from_yaml_and_cli(tmp_path):
    config = write_yaml(
        tmp_path / "o.yaml",
        {"model_name_or_path": "m", "scales": [0, 8, 32], "num_train_epochs": 3,
         "scale_overrides": {8: {"num_train_epochs": 10}}, **CPU},
    )  # fmt: skip
    run = sft.parse_args(["--config", str(config)])
    assert run.scale.scale_overrides == {8: {"num_train_epochs": 10}}
    assert sft.scale_training_args(run, 8, tmp_path / "n8").num_train_epochs == 10
    assert sft.scale_training_args(run, 32, tmp_path / "n32").num_train_epochs == 3
    cli = sft.parse_args(["--config", str(config), "--scale_overrides", '{"32": {"max_steps": 7}}'])
    assert cli.scale.scale_overrides == {32: {"max_steps": 7}}
    with pytest.raises(ConfigError, match=r"scale_overrides\[8\]: unknown training option"):
        sft.parse_args(["--config", str(config), "--scale_overrides", '{"8": {"epochs": 2}}'])
    with pytest.raises(ConfigError, match="JSON object"):
        sft.parse_args(["--config", str(config), "--scale_overrides", "[1, 2]"])


def test_slugs():
    assert slugify("meta-llama/Meta-Llama-3-8B") == "meta-llama-3-8b"
    assert slugify("/models/Qwen2.5 7B/") == "qwen2.5-7b"


def test_main_reports_user_errors_as_one_line(tmp_path, capsys):
    config = write_yaml(tmp_path / "typo.yaml", {"model_name_or_path": "m", "scaless": [0]})
    with pytest.raises(SystemExit) as exit_info:
        sft.main(["--config", str(config)])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "'scaless'" in message and "'scales'" in message


SHIPPED = sorted(
    p
    for folder in ("demo", "paper")
    for p in (REPO / "configs" / folder).glob("*.yaml")
    if p.name != "facts100_experiment.yaml"  # the Facts100 experiment config has its own test
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_parse(path):
    config = yaml.safe_load(path.read_text())
    trainer = dpo if "budgets" in config else sft
    run = trainer.parse_args(["--config", str(path), "--use_cpu", "true"])  # no GPU here
    assert run.model.model_name_or_path
    if trainer is dpo and config.get("sft_config"):
        stage = sft.parse_args(["--config", str(REPO / config["sft_config"]), "--use_cpu", "true"])
        assert (
            stage.scale.task == run.budget.task and stage.scale.experiment == run.budget.experiment
        )


EXPERIMENTS = sorted((REPO / "configs").rglob("experiments/*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_shipped_experiments_load_with_every_step(path):
    """Each `sah run` experiment parses, and so does every trainer config, accelerate config and
    sweep command it names, against the libraries installed here (the GPU range's floor)."""
    from accelerate.commands.config.config_args import ClusterConfig

    from sah_tasks import experiment, sweep

    exp = experiment.load_experiment(path)
    assert exp.train or exp.eval
    for step in exp.train:
        trainer = dpo if step.script == "dpo" else sft
        run = trainer.parse_args(["--config", str(REPO / step.config), *step.args, *cpu_flags()])
        assert run.model.model_name_or_path
        if step.accelerate_config:
            ClusterConfig.from_yaml_file(str(REPO / step.accelerate_config))
    for step in exp.eval:
        args = sweep.build_parser().parse_args(
            ["runs/x", "--tasks", ",".join(step.tasks), "--backend", step.backend, *step.args]
        )
        sweep.options_from_args(args)


@pytest.mark.parametrize("path", sorted((REPO / "configs/accelerate").glob("*.yaml")), ids=str)
def test_shipped_accelerate_configs_load(path):
    """accelerate rejects unknown keys: a config that parses here launches."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type is not None
