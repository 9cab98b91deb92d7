"""`sah run`: experiment YAML validation, the stage commands, and the CPU demo end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sah_tasks.demo import accuracy_table
from sah_tasks.experiment import ExperimentError, commands, load_experiment, main


def _write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_commands_for_each_stage(tmp_path):
    exp = load_experiment(
        _write(
            tmp_path,
            """
experiment: e1
output_root: /r
train:
  - {config: a.yaml, launcher: accelerate, accelerate_config: fsdp.yaml, args: [--scales, "0", "8"]}
  - {config: b.yaml, script: dpo}
eval: {tasks: [sah_gsm8k, sah_ifeval], backend: vllm, args: [--shard, 0/2]}
analysis: {args: [--n-boot, "200"]}
""",
        )
    )
    cmds = commands(exp, ("train", "eval", "analyse"))
    assert [stage for stage, _ in cmds] == ["train", "train", "eval", "analyse"]
    first = cmds[0][1]
    assert first[1:3] == ["-m", "accelerate.commands.launch"] and "fsdp.yaml" in first
    assert first[-4:] == ["a.yaml", "--scales", "0", "8"] and first[-6].endswith("trainers/sft.py")
    assert cmds[1][1][1].endswith("trainers/dpo.py")
    assert cmds[2][1][3:] == [
        "/r/e1",
        "--tasks",
        "sah_gsm8k,sah_ifeval",
        "--backend",
        "vllm",
        "--shard",
        "0/2",
    ]
    assert cmds[3][1][-3:] == ["/r/e1", "--n-boot", "200"]
    assert [s for s, _ in commands(exp, ("eval",))] == ["eval"]


@pytest.mark.parametrize(
    "text, message",
    [
        # (unknown keys, bad script/backend, invalid YAML: SAH_RUN_CASES in test_bad_inputs.py)
        ("train: []", "at least 'experiment'"),
        ("experiment: x\nanalysis: [--n-boot]", "analysis: expected"),
        # a nested list was passed on as the flag "['--n-boot', 10]"
        ("experiment: x\nanalysis: {args: [[--n-boot, 10]]}", r"analysis\.args: expected a list"),
    ],
)
def test_bad_experiment_yaml_is_named(tmp_path, text, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment(_write(tmp_path, text))


def test_cli_reports_errors_and_dry_runs(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = _write(tmp_path, "experiment: e\neval: {tasks: [sah_gsm8k]}\n")
    assert main(["run", str(path), "--stages", "eval,analyse", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "sah_tasks.sweep" in out and "-m analysis" in out and "trainers" not in out
    assert main(["run", str(path), "--stages", "deploy"]) == 2


@pytest.mark.timeout(900)
def test_demo_quick_shows_accuracy_rising_with_n(tmp_path):
    """The reduced CI form of `make demo`: N=512 must beat the base model on the synthetic test."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "sah_tasks.demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    table = accuracy_table(out / "demo")
    assert [n for n, *_ in table] == [0, 512]
    (_, base_strict, _), (_, tuned_strict, _) = table
    assert tuned_strict > base_strict, table
    assert "figure:" in proc.stdout and list((out / "demo" / "analysis").rglob("fig1_*.png"))


def test_per_unit_launcher_and_checkpoint_filtered_evals(tmp_path):
    exp = load_experiment(
        _write(
            tmp_path,
            """
experiment: e2
train: [{config: c.yaml, launcher: per_unit, accelerate_config: fsdp.yaml}]
eval:
  - {tasks: [sah_gsm8k], checkpoints: "*/gsm8k/*"}
  - {tasks: [sah_ifeval], checkpoints: "*/ifeval/*", backend: vllm}
""",
        )
    )
    (_, train), (_, ev1), (_, ev2) = commands(exp, ("train", "eval"))
    assert train[1:] == [
        "-m",
        "trainers.launch",
        "--accelerate_config",
        "fsdp.yaml",
        "sft",
        "--config",
        "c.yaml",
    ]
    assert ev1[-2:] == ["--checkpoints", "*/gsm8k/*"] and "sah_ifeval" in ev2


def test_shipped_experiment_configs_load_and_point_at_real_files():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    paths = sorted((root / "configs" / "paper" / "experiments").glob("*.yaml"))
    assert paths
    for path in paths:
        exp = load_experiment(path)
        for step in exp.train:
            assert (root / step.config).is_file(), (path, step.config)
            if step.accelerate_config:
                assert (root / step.accelerate_config).is_file(), (path, step.accelerate_config)
        assert exp.eval, path


# a stage that, like every sah CLI, stops on Ctrl-C with one line and exit status 130
STAGE = """
import os, sys, time
try:  # the pid is printed inside: the test signals only after reading it
    print(os.getpid(), flush=True)
    time.sleep(120)
except KeyboardInterrupt:
    sys.exit(130)
"""
RUN_STAGE = f"""
import os, sys
from trainers.processes import run_forwarding as run_stage
sys.exit(run_stage([sys.executable, "-c", {STAGE!r}], dict(os.environ)))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_sah_run_never_leaves_its_stage_running(sig):
    """A signal to `sah run` reaches the running stage (forwarded, or by the kernel when `sah run`
    is SIGKILLed), which is waited for; one line is printed, no traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", RUN_STAGE], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    child_pid = int(parent.stdout.readline())
    parent.send_signal(getattr(signal, sig))
    rc = parent.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail(f"the stage (pid {child_pid}) kept running after {sig} to sah run")
    err = parent.stderr.read()
    assert "Traceback" not in err
    if sig != "SIGKILL":
        assert rc == 128 + getattr(signal, sig) and err.count("\n") == 1 and sig in err


REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_help_points_to_a_schema_doc_that_documents_every_key(capsys):
    """`sah --help` used to send the reader to docs/reproduce.md, which has no schema, and the
    module docstring cited a config file that does not exist."""
    import dataclasses
    import re

    from sah_tasks import experiment
    from sah_tasks.experiment import EvalStep, Experiment, TrainStep

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    docs = set(re.findall(r"docs/[\w.-]+\.md", shown))
    assert docs == {experiment.SCHEMA_DOC}, shown
    schema = (REPO / experiment.SCHEMA_DOC).read_text(encoding="utf-8")
    keys = {"analysis.args"}
    keys |= {f.name for f in dataclasses.fields(Experiment) if f.name not in ("train", "eval")}
    keys |= {f"train[].{f.name}" for f in dataclasses.fields(TrainStep)}
    keys |= {f"eval[].{f.name}" for f in dataclasses.fields(EvalStep)}
    keys -= {"analysis_args"}
    undocumented = sorted(k for k in keys if f"| `{k}` |" not in schema)
    assert not undocumented, f"{experiment.SCHEMA_DOC} lacks rows for {undocumented}"
    # Every config file the help text and the docstring name exists.
    for text in (shown, experiment.__doc__):
        for path in re.findall(r"configs/[\w./-]+\.yaml", text):
            assert (REPO / path).is_file(), f"{path} (cited in sah's help/docstring) is missing"


def test_run_accepts_dashed_flags(tmp_path, capsys):
    path = _write(tmp_path, "experiment: x\nanalysis: {args: []}\n")
    assert main(["run", str(path), "--dry-run", "--stages", "analyse"]) == 0
    assert "[sah run] analyse:" in capsys.readouterr().out
