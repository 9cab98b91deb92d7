"""Shared fixtures: offline hub settings and a tiny model built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the hub: the real loading code is exercised on local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tiny models on 2 shared cores train and generate faster on one thread (no oversubscription);
# subprocesses (lm-eval CLIs, trainers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from trainers.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


# Every task reads a local fixture through its documented environment variable.
FIXTURE_ENV = {
    "SAH_GSM8K_DATA": "gsm8k_test.jsonl",
    "SAH_IFEVAL_DATA": "ifeval_sample.jsonl",
    "SAH_MULTIHOP_DATA": "multihop_hotpotqa.jsonl",
    "SAH_HUMANEVAL_PLUS_DATA": "code/humaneval_plus_sample.jsonl",
    "SAH_MBPP_PLUS_DATA": "code/mbpp_plus_sample.jsonl",
}


def fixture_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update({k: str(FIXTURES / v) for k, v in FIXTURE_ENV.items()})
    return env


def lm_eval_args(model: Path, out: Path) -> list[str]:
    """CLI flags shared by the end-to-end runs: tiny model on CPU, 2 items, short generations."""
    return [
        "--model", "hf",
        "--model_args", f"pretrained={model},dtype=float32",
        "--device", "cpu",
        "--limit", "2",
        "--gen_kwargs", "max_gen_toks=24",
        "--confirm_run_unsafe_code",
        "--log_samples",
        "--output_path", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def sah_eval_all_tasks(tiny_model_dir, tmp_path_factory) -> Path:
    """One real `sah-eval --tasks 'sah_*'` run on the tiny model, shared by the end-to-end tests
    of every task family (it is the slowest thing the suite does, so it is done once)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("sah_eval_all") / "out"
    cmd = [str(Path(sys.executable).parent / "sah-eval"), "--tasks", "sah_*"]
    cmd += lm_eval_args(tiny_model_dir, out)
    proc = subprocess.run(cmd, env=fixture_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"sah-eval failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out
