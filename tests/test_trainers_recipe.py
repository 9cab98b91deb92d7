"""A completed unit is reused only with the same recipe; torn Trainer checkpoints are never resumed."""

from __future__ import annotations

import json

import pytest
from trainer_helpers import (
    GSM8K_TRAIN,
    dpo_argv,
    one_torch_thread,  # noqa: F401
    sft_argv,
)

from trainers import dpo, launch, sft
from trainers.common import fingerprint, prepare_run_dir
from trainers.config import ConfigError
from trainers.manifest import read_manifest


def _no_training(monkeypatch, module):
    monkeypatch.setattr(module, "build_trainer", lambda *a, **k: pytest.fail("retrained"))


def test_completed_scale_with_another_recipe_is_refused_and_overwrite_retrains(
    tiny_model_dir, tmp_path, monkeypatch
):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "8")
    (run_dir,) = sft.run_sft(sft.parse_args(argv))
    first = read_manifest(run_dir)

    with monkeypatch.context() as m:  # logging and location options are not the recipe
        _no_training(m, sft)
        assert sft.run_sft(sft.parse_args([*argv, "--logging_steps", "7", "--report_to", "none",
                                           "--keep_checkpoints", "true"])) == [run_dir]  # fmt: skip

    other_data = tmp_path / "other.jsonl"
    rows = GSM8K_TRAIN.read_text().splitlines()
    other_data.write_text("\n".join([rows[1], rows[0], *rows[2:]]).replace("How", "how", 1) + "\n")
    changes = {
        ("--learning_rate", "5e-3"): "config.training.learning_rate",
        ("--seed", "3"): "seed",
        ("--data_files", str(other_data)): "train_data.content_hash",
        ("--lora_r", "4", "--use_peft", "true"): "lora",
    }
    for flags, field in changes.items():
        with pytest.raises(ConfigError, match=rf"completed, but with a different recipe .*{field}"):
            sft.run_sft(sft.parse_args([*argv, *flags]))
        with pytest.raises(ConfigError, match="different recipe"):  # the launcher checks too
            launch.sft_units([*argv, *flags])
    assert read_manifest(run_dir) == first  # nothing was touched

    (new_dir,) = sft.run_sft(
        sft.parse_args([*argv, "--learning_rate", "5e-3", "--overwrite", "true"])
    )
    assert new_dir == run_dir
    assert read_manifest(run_dir)["config"]["training"]["learning_rate"] == 5e-3
    (kept,) = (tmp_path / "test" / ".superseded" / "tiny" / "gsm8k").glob("n8-*")
    assert read_manifest(kept) == first  # the replaced checkpoint is kept, not deleted


def test_logging_options_do_not_change_the_fingerprint_of_an_incomplete_unit(
    tiny_model_dir, tmp_path, monkeypatch
):
    import importlib.util

    from trainers.sft import plan_scale

    real = importlib.util.find_spec  # as if the [wandb] extra were installed
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "wandb" else real(name, *a))  # fmt: skip

    def manifest(*flags):
        run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "8", *flags))
        base = sft.describe_run_model(run)
        return plan_scale(run, sft.load_pool(run), base, 8).manifest.to_dict()

    plain = fingerprint(manifest())
    assert fingerprint(manifest("--report_to", "wandb", "--logging_steps", "1")) == plain
    assert fingerprint(manifest("--learning_rate", "1e-2")) != plain


def test_a_torn_trainer_checkpoint_is_set_aside_and_the_last_complete_one_resumed(tmp_path):
    run_dir = tmp_path / "n8"
    complete, torn = run_dir / "checkpoint-10", run_dir / "checkpoint-20"
    complete.mkdir(parents=True)
    (complete / "trainer_state.json").write_text("{}")
    torn.mkdir()
    (torn / "model.safetensors").write_text("half written")  # killed before trainer_state.json
    (run_dir / ".sah_fingerprint").write_text("fp")
    assert prepare_run_dir(run_dir, "fp", resume=True) == complete
    assert not torn.exists() and (run_dir / ".torn-checkpoint-20" / "model.safetensors").exists()


@pytest.mark.parametrize("flags", [["--num_train_epochs", "-1"], ["--num_train_epochs", "0"]])
def test_a_recipe_that_trains_nothing_is_refused(tiny_model_dir, tmp_path, flags):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "8", "--max_steps", "-1", *flags)
    with pytest.raises(ConfigError, match="trains nothing"):
        sft.parse_args(argv)
    with pytest.raises(ConfigError, match="trains nothing"):
        dpo.parse_args(dpo_argv(tiny_model_dir, tmp_path, None, "--max_steps", "-1", *flags))
    # a per-scale override that trains is fine; the effective options of each scale count
    override = json.dumps({"8": {"max_steps": 2}})
    assert sft.parse_args([*argv, "--scale_overrides", override]).scale.scales == [8]


def test_completed_budget_run_with_another_recipe_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    argv = dpo_argv(tiny_model_dir, tmp_path, None, "--budgets", "8", "--sft_fractions", "0")
    (run_dir,) = dpo.run_dpo(dpo.parse_args(argv))
    with monkeypatch.context() as m:
        _no_training(m, dpo)
        assert dpo.run_dpo(dpo.parse_args(argv)) == [run_dir]
    with pytest.raises(ConfigError, match=r"different recipe .*config.training.beta"):
        dpo.run_dpo(dpo.parse_args([*argv, "--beta", "0.5"]))
    # the launcher still launches the completed unit, whose own process checks the recipe
    (unit,) = launch.dpo_units([*argv, "--beta", "0.5"])
    assert unit[-2:] == ["--only_stage", "dpo"]
    with pytest.raises(ConfigError, match="different recipe"):
        dpo.run_dpo(dpo.parse_args(unit))


def test_one_trainer_per_scale(tiny_model_dir, tmp_path):
    import socket
    import subprocess
    import sys

    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "8")
    lock = tmp_path / "test" / "tiny" / "gsm8k" / ".n8.lock"
    lock.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {other.pid}")  # another trainer is on n8
        with pytest.raises(ConfigError, match=rf"being trained by another process .*{other.pid}"):
            sft.run_sft(sft.parse_args(argv))
        assert not (lock.parent / "n8" / "COMPLETED").exists()
    finally:
        other.kill()
        other.wait()
    (run_dir,) = sft.run_sft(sft.parse_args(argv))  # its lock is stale now: taken over
    assert (run_dir / "COMPLETED").exists() and not lock.exists()
