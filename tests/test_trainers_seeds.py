"""Several training seeds per scale: `--seeds` lays them out side by side, nested per seed."""

from __future__ import annotations

import pytest
from trainer_helpers import (
    dpo_argv,
    one_torch_thread,  # noqa: F401
    sft_argv,
    write_sft_yaml,
)

from trainers import dpo, sft
from trainers.common import hub_repo_id
from trainers.config import ConfigError
from trainers.manifest import read_manifest
from trainers.subsets import select_subset


def _spy(monkeypatch, module, key):
    calls = []
    build = module.build_trainer

    def spy(*a, **k):
        calls.append(key(*a))
        return build(*a, **k)

    monkeypatch.setattr(module, "build_trainer", spy)
    return calls


def test_seeds_lay_out_side_by_side_and_adding_a_seed_reuses_the_run(
    tiny_model_dir, tmp_path, monkeypatch
):
    root = tmp_path / "test" / "tiny" / "gsm8k"
    first = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "16"))
    sft.run_sft(first)  # a single-seed run (config seed 0), as before seeds existed

    trained = _spy(monkeypatch, sft, lambda run, args, subset, tok: (args.seed, len(subset)))
    run = sft.parse_args(
        sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "16", "--seeds", "0", "3")
    )
    dirs = sft.run_sft(run)
    assert [d.name for d in dirs] == ["n0", "n8", "n16", "n8_seed3", "n16_seed3"]
    assert trained == [(3, 8), (3, 16)]  # seed 0 was complete: only the new seed trains
    manifests = {d.name: read_manifest(d) for d in dirs}
    assert {k: m["seed"] for k, m in manifests.items()} == {
        "n0": 0, "n8": 0, "n16": 0, "n8_seed3": 3, "n16_seed3": 3,
    }  # fmt: skip
    assert manifests["n8_seed3"]["config"]["training"]["seed"] == 3
    # each seed draws its own nested subsets
    pool = sft.load_pool(run).examples
    for seed in (0, 3):
        small, large = (select_subset(pool, n, seed) for n in (8, 16))
        assert {e.id for e in small} <= {e.id for e in large}
    assert manifests["n8"]["subset_hash"] != manifests["n8_seed3"]["subset_hash"]
    # the seed list is not part of a unit's recipe: a later run with more seeds skips these
    monkeypatch.setattr(sft, "build_trainer", lambda *a, **k: pytest.fail("retrained"))
    again = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "16",
                                    "--seeds", "3", "0"))  # fmt: skip
    assert sorted(sft.run_sft(again)) == sorted(dirs)
    assert not (root / "n0_seed3").exists()  # the base model is seed-free


def test_seeds_without_the_config_seed_still_write_one_n0(tiny_model_dir, tmp_path, monkeypatch):
    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "4",
                                  "--seeds", "5", "6", "--max_steps", "1"))  # fmt: skip
    dirs = sft.run_sft(run)
    assert [d.name for d in dirs] == ["n0", "n4_seed5", "n4_seed6"]
    assert read_manifest(dirs[0])["seed"] == 0  # n0 records the config's seed


@pytest.mark.parametrize("seeds", [["--seeds", "1", "1"], ["--seeds", "-1"]])
def test_bad_seeds_are_named(tiny_model_dir, tmp_path, seeds):
    with pytest.raises(ConfigError, match="seeds"):
        sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "4", *seeds))


def test_budget_runs_per_seed_start_from_that_seeds_sft_stage(
    tiny_model_dir, tmp_path, monkeypatch
):
    starts = _spy(monkeypatch, dpo, lambda run, args, model_args, pairs, tok:
                  (args.seed, model_args.model_name_or_path))  # fmt: skip
    sft_yaml = write_sft_yaml(tmp_path / "sft.yaml", max_steps=1)
    argv = dpo_argv(tiny_model_dir, tmp_path, sft_yaml, "--budgets", "8", "--max_steps", "1")
    run = dpo.parse_args([*argv, "--sft_fractions", "0.5", "--seeds", "0", "2"])
    dirs = dpo.run_dpo(run)
    root = tmp_path / "test" / "tiny" / "gsm8k"
    assert [d.name for d in dirs] == ["B8_r0.5", "B8_r0.5_seed2"]
    assert starts == [(0, str(root / "n4")), (2, str(root / "n4_seed2"))]
    m = read_manifest(dirs[1])
    assert m["seed"] == 2 and m["config"]["split"]["sft_checkpoint"] == "../n4_seed2"
    assert read_manifest(root / "n4_seed2")["seed"] == 2


def test_hub_repo_ids_name_model_task_scale_and_seed():
    assert hub_repo_id(None, "llama-3-8b", "gsm8k", "n100", 42) == "llama-3-8b-gsm8k-n100-seed42"
    assert hub_repo_id("org", "m", "ifeval", "B100_r0.5_seed3", 3) == "org/m-ifeval-B100_r0.5-seed3"
    with pytest.raises(ConfigError, match="organisation"):
        hub_repo_id("org/one-repo", "m", "gsm8k", "n100", 0)


def test_push_to_hub_gives_every_scale_its_own_repo(tiny_model_dir, tmp_path):
    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "8", "16",
                                  "--push_to_hub", "true", "--hub_model_id", "lab"))  # fmt: skip
    ids = {sft.scale_training_args(run, n, sft.scale_dir(run, sft.describe_run_model(run), n))
           .hub_model_id for n in (8, 16)}  # fmt: skip
    assert ids == {"lab/tiny-gsm8k-n8-seed0", "lab/tiny-gsm8k-n16-seed0"}


def test_a_fixed_subset_seed_keeps_training_seeds_apart(tiny_model_dir, tmp_path):
    """With `subset_seed` fixed, seeds differ only in training: the manifest's `seed` (what the
    analysis tells seeds apart by) is the training seed; the subsets are the same."""
    run = sft.parse_args(sft_argv(tiny_model_dir, tmp_path, "--scales", "4", "--seeds", "0", "7",
                                  "--subset_seed", "3", "--max_steps", "1"))  # fmt: skip
    a, b = (read_manifest(d) for d in sft.run_sft(run))
    assert (a["seed"], b["seed"]) == (0, 7)
    assert a["subset_hash"] == b["subset_hash"] and a["config"]["subset"]["seed"] == 3
