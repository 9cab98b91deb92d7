"""A real 2-process run (torchrun, gloo, CPU) saves every file exactly once, from rank 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from trainer_helpers import read_jsonl, sft_argv

from trainers.manifest import is_completed, read_manifest

HELPERS = Path(__file__).with_name("trainer_helpers.py")


def test_two_ranks_train_one_checkpoint_saved_once_by_rank_zero(tiny_model_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    log = tmp_path / "saves.jsonl"
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "--ddp_backend", "gloo")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(HELPERS), str(log), *argv],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]

    events = read_jsonl(log)
    started = sorted((e["rank"], e["path"]) for e in events if e["what"] == "started")
    assert started == [(0, "2"), (1, "2")]  # two ranks of one world really ran
    run_dir = tmp_path / "test" / "tiny" / "gsm8k" / "n8"
    saves = Counter(
        (e["what"], e["rank"], Path(e["path"]).name) for e in events if e["what"] != "started"
    )
    assert saves == {
        ("weights", 0, "n8"): 1,
        ("write_manifest", 0, "n0"): 1,
        ("mark_completed", 0, "n0"): 1,
        ("write_manifest", 0, "n8"): 1,
        ("mark_completed", 0, "n8"): 1,
    }
    assert is_completed(run_dir) and read_manifest(run_dir)["n"] == 8
    assert read_manifest(run_dir)["config"]["training"]["ddp_backend"] == "gloo"
