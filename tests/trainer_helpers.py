"""Helpers for the trainer tests: CPU configs for the tiny model, and a 2-rank driver.

Run as a script under `torchrun`, this module trains the SFT config given on its command line
while recording every save (weights, manifest, COMPLETED) with the rank that made it, so a test
can check that a multi-process run saves exactly once, from rank 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "trainers"
GSM8K_TRAIN = FIXTURES / "gsm8k_train.jsonl"

# TRL's defaults assume a GPU; these make a tiny CPU run fast and deterministic.
CPU_OPTIONS = [
    "--use_cpu", "true",
    "--bf16", "false",
    "--activation_checkpointing", "false",
    "--report_to", "none",
    "--save_strategy", "no",
    "--logging_steps", "50",
    "--disable_tqdm", "true",
    "--dataloader_num_workers", "0",
    "--dtype", "float32",
]  # fmt: skip


def sft_argv(
    model_dir: Path, output_root: Path, *extra: str, data: Path = GSM8K_TRAIN
) -> list[str]:
    """Arguments of a tiny SFT run on the GSM8K fixture."""
    return [
        "--model_name_or_path", str(model_dir),
        "--model_slug", "tiny",
        "--experiment", "test",
        "--task", "gsm8k",
        "--data_files", str(data),
        "--output_root", str(output_root),
        "--per_device_train_batch_size", "4",
        "--max_steps", "2",
        "--learning_rate", "1e-3",
        "--max_length", "128",
        "--seed", "0",
        *CPU_OPTIONS,
        *extra,
    ]  # fmt: skip


def dpo_argv(model_dir: Path, output_root: Path, sft_config: Path | None, *extra: str) -> list[str]:
    """Arguments of a tiny budget run; `sft_config` is a YAML for the SFT stage."""
    stage = ["--sft_config", str(sft_config)] if sft_config else []
    return [
        "--model_name_or_path", str(model_dir),
        "--model_slug", "tiny",
        "--experiment", "test",
        "--task", "gsm8k",
        "--preference_data_files", str(GSM8K_TRAIN),
        *stage,
        "--output_root", str(output_root),
        "--per_device_train_batch_size", "4",
        "--max_steps", "2",
        "--learning_rate", "1e-3",
        "--max_length", "128",
        "--seed", "0",
        *CPU_OPTIONS,
        *extra,
    ]  # fmt: skip


def write_sft_yaml(path: Path, **options) -> Path:
    """A YAML config for the SFT stage of budget runs (CPU options included)."""
    import yaml

    config = {
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "max_length": 128,
        "seed": 0,
        "data_files": str(GSM8K_TRAIN),
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        **options,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _record_saves(log_path: Path) -> None:
    """Patch every writer the trainers use so each call appends `{rank, what, path}` to a log."""
    from transformers import PreTrainedModel

    import trainers.common
    import trainers.manifest

    rank = int(os.environ.get("RANK", "0"))

    def log(what: str, path) -> None:
        with log_path.open("a", encoding="utf-8") as f:  # one short line per write: atomic append
            f.write(json.dumps({"rank": rank, "what": what, "path": str(path)}) + "\n")

    save_pretrained = PreTrainedModel.save_pretrained

    def logged_save_pretrained(self, save_directory, *args, **kwargs):
        log("weights", save_directory)
        return save_pretrained(self, save_directory, *args, **kwargs)

    PreTrainedModel.save_pretrained = logged_save_pretrained
    for module in (trainers.manifest, trainers.common):
        for name in ("write_manifest", "mark_completed"):
            if hasattr(module, name):
                original = getattr(module, name)
                setattr(module, name, _logged(original, name, log))
    log("started", os.environ.get("WORLD_SIZE", "1"))


def _logged(function, name, log):
    def wrapper(run_dir, *args, **kwargs):
        log(name, run_dir)
        return function(run_dir, *args, **kwargs)

    return wrapper


if __name__ == "__main__":
    # torchrun --nproc_per_node 2 tests/trainer_helpers.py LOG_FILE <trainers/sft.py arguments>
    _record_saves(Path(sys.argv[1]))
    from trainers.sft import main

    main(sys.argv[2:])
