"""What survives a trained scale for tracking: the loss history, and a summary in the manifest."""

from __future__ import annotations

import json

import pytest
from trainer_helpers import (
    one_torch_thread,  # noqa: F401
    sft_argv,
)

from trainers import sft
from trainers.common import fingerprint
from trainers.config import ConfigError
from trainers.manifest import read_manifest


def test_loss_history_and_summary_are_kept_per_scale(tiny_model_dir, tmp_path):
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "--logging_steps", "1")
    n0, n8 = sft.run_sft(sft.parse_args(argv))
    state = json.loads((n8 / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 2  # max_steps 2, a log every step
    summary = read_manifest(n8)["training"]
    assert summary["global_step"] == 2 and summary["final_loss"] == losses[-1]
    assert summary["runtime_s"] > 0 and summary["history"] == "trainer_state.json"
    assert read_manifest(n0)["training"] is None  # N=0 trains nothing
    # the summary is a record, not part of the recipe
    m = read_manifest(n8)
    assert fingerprint(m) == fingerprint({**m, "training": None})


@pytest.mark.parametrize("tracker", ["wandb", "tensorboard"])
def test_missing_tracker_names_the_extra(tiny_model_dir, tmp_path, tracker, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == tracker else real(name, *a))  # fmt: skip
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "8")
    argv[argv.index("--report_to") + 1] = tracker
    with pytest.raises(ConfigError, match=rf"pip install -e '\.\[{tracker}\]'"):
        sft.parse_args(argv)
