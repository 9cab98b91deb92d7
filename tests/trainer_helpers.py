"""Helpers for the trainer tests: CPU arguments and configs for runs on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "trainers"
GSM8K_TRAIN = FIXTURES / "gsm8k_train.jsonl"

# TRL's defaults assume a GPU; these make a tiny CPU run fast and deterministic.
CPU_OPTIONS = [
    "--use_cpu", "true",
    "--bf16", "false",
    "--gradient_checkpointing", "false",
    "--report_to", "none",
    "--save_strategy", "no",
    "--logging_steps", "50",
    "--disable_tqdm", "true",
    "--dataloader_num_workers", "0",
    "--dtype", "float32",
]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models train several times faster on one thread than fighting for shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# what every tiny run shares, whichever trainer runs it
TINY_RECIPE = {
    "per_device_train_batch_size": 4,
    "max_steps": 2,
    "learning_rate": 1e-3,
    "max_length": 128,
    "seed": 0,
}


def _common_argv(model_dir: Path, output_root: Path) -> list[str]:
    argv = ["--model_name_or_path", str(model_dir), "--model_slug", "tiny", "--experiment", "test"]
    argv += ["--task", "gsm8k", "--output_root", str(output_root)]
    for key, value in TINY_RECIPE.items():
        argv += [f"--{key}", str(value)]
    return argv + CPU_OPTIONS


def sft_argv(
    model_dir: Path, output_root: Path, *extra: str, data: Path = GSM8K_TRAIN
) -> list[str]:
    """Arguments of a tiny SFT run on the GSM8K fixture."""
    return [*_common_argv(model_dir, output_root), "--data_files", str(data), *extra]


def dpo_argv(model_dir: Path, output_root: Path, sft_config: Path | None, *extra: str) -> list[str]:
    """Arguments of a tiny budget run; `sft_config` is a YAML for the SFT stage."""
    stage = ["--sft_config", str(sft_config)] if sft_config else []
    data = ["--preference_data_files", str(GSM8K_TRAIN)]
    return [*_common_argv(model_dir, output_root), *data, *stage, *extra]


def write_sft_yaml(path: Path, **options) -> Path:
    """A YAML config for the SFT stage of budget runs (CPU options included)."""
    import yaml

    config = {
        **TINY_RECIPE,
        "data_files": str(GSM8K_TRAIN),
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        **options,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
