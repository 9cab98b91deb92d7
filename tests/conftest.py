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
