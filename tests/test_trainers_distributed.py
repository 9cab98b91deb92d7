"""A real 2-process run (torchrun, gloo, CPU) saves every file exactly once, from rank 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from trainer_helpers import read_jsonl, sft_argv

from trainers.manifest import is_completed, read_manifest

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).parent / "fixtures" / "trainers" / "save_probe"  # a sitecustomize.py


def run_group(command: list[str], env: dict, cwd: Path, timeout: int = 300) -> tuple[int, str]:
    """Run `command` in its own process group, so a hang kills the launcher *and* its workers."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"torchrun did not finish in {timeout}s:\n{output[-4000:]}") from None
    return process.returncode, output


def test_two_ranks_train_one_checkpoint_saved_once_by_rank_zero(tiny_model_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    log = tmp_path / "saves.jsonl"
    argv = sft_argv(tiny_model_dir, tmp_path, "--scales", "0", "8", "--ddp_backend", "gloo")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SAH_SAVE_PROBE_LOG": str(log),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])),
    }
    # the script itself, run as a file, exactly as a user launches it
    script = REPO / "trainers" / "sft.py"
    returncode, output = run_group(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script), *argv], env, tmp_path
    )
    assert returncode == 0, output[-4000:]

    events = read_jsonl(log)
    started = sorted((e["rank"], e["path"]) for e in events if e["what"] == "started")
    assert started == [(0, "2"), (1, "2")]  # two ranks of one world really ran
    run_dir = tmp_path / "test" / "tiny" / "gsm8k" / "n8"
    # each rank tears its process group down itself: left to interpreter exit, Gloo can abort
    # the rank after all its files were written (SIGABRT; the run then counts as failed)
    at_exit = sorted((e["rank"], e["path"]) for e in events if e["what"] == "group_alive_at_exit")
    assert at_exit == [(0, "False"), (1, "False")]
    saves = Counter(
        (e["what"], e["rank"], Path(e["path"]).name)
        for e in events
        if e["what"] not in ("started", "group_alive_at_exit")
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
