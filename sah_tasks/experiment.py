"""`sah run EXPERIMENT.yaml`: train every scale -> sweep-evaluate -> analyse, each stage resumable.

The three stages are the same commands a user would type, run one after another over the same
run directory, so a stage that was interrupted (or already done) is simply run again: trainers
skip completed scales, the sweep skips finished (checkpoint, task) units, and the analysis is
recomputed from the files on disk.

    sah run configs/paper/llama3-8b-gsm8k.yaml                 # everything
    sah run configs/paper/llama3-8b-gsm8k.yaml --stages eval,analyse
    sah run configs/paper/llama3-8b-gsm8k.yaml --dry_run       # print the commands only

Experiment YAML:

    experiment: llama3-8b-gsm8k          # run directory: <output_root>/<experiment>
    output_root: runs
    env: {SAH_GSM8K_DATA: data/test.jsonl}   # optional, set for every stage
    train:                               # one entry per trainer invocation (all its scales)
      - script: sft                      # sft | dpo
        config: configs/paper/llama3-8b-gsm8k-sft.yaml
        launcher: per_unit               # python | accelerate | per_unit (FSDP/DeepSpeed)
        accelerate_config: configs/accelerate/single_gpu.yaml
        args: []                         # extra CLI overrides for the trainer
    eval:                                # a mapping, or a list of them
      - tasks: [sah_gsm8k, sah_gsm8k_fewshot]
        checkpoints: "*/gsm8k/*"         # optional glob on checkpoint paths
        backend: vllm                    # vllm | hf
        args: [--gpu_memory_utilization, "0.9"]   # any `sah-eval sweep` flags
    analysis:
      args: []                           # any `python -m analysis` flags
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainers.launch import FORWARDED, run_forwarding

STAGES = ("train", "eval", "analyse")
TRAINER_SCRIPTS = {"sft": "trainers/sft.py", "dpo": "trainers/dpo.py"}
# python: one process for all scales; accelerate: `accelerate launch` of the same; per_unit:
# `python -m trainers.launch`, one accelerate process per scale (what FSDP/DeepSpeed need).
LAUNCHERS = ("python", "accelerate", "per_unit")


class ExperimentError(ValueError):
    """A user-fixable problem with the experiment YAML."""


@dataclass
class TrainStep:
    config: str
    script: str = "sft"
    launcher: str = "python"
    accelerate_config: str | None = None
    args: list[str] = field(default_factory=list)


@dataclass
class EvalStep:
    tasks: list[str]
    backend: str = "hf"
    checkpoints: str | None = None  # glob on checkpoint paths, e.g. "*/gsm8k/*"
    args: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    experiment: str
    output_root: str = "runs"
    env: dict[str, str] = field(default_factory=dict)
    train: list[TrainStep] = field(default_factory=list)
    eval: list[EvalStep] = field(default_factory=list)
    analysis_args: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / self.experiment


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExperimentError(
            f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
        )
    try:
        return cls(**raw)
    except TypeError as e:
        raise ExperimentError(f"{where}: {e}") from None


def load_experiment(path: Path) -> Experiment:
    if not path.is_file():
        raise ExperimentError(f"experiment config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ExperimentError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict) or "experiment" not in raw:
        raise ExperimentError(f"{path}: expected a mapping with at least 'experiment'")
    raw = dict(raw)
    train = [
        _build(TrainStep, t, f"{path}: train[{i}]")
        for i, t in enumerate(raw.pop("train", []) or [])
    ]
    for i, step in enumerate(train):
        if step.script not in TRAINER_SCRIPTS:
            raise ExperimentError(f"{path}: train[{i}].script {step.script!r}: expected sft or dpo")
        if step.launcher not in LAUNCHERS:
            raise ExperimentError(f"{path}: train[{i}].launcher: expected one of {list(LAUNCHERS)}")
    ev = raw.pop("eval", None) or []
    analysis = raw.pop("analysis", None) or {}
    exp = _build(Experiment, raw, str(path))
    exp.train = train
    evals = ev if isinstance(ev, list) else [ev]
    exp.eval = [_build(EvalStep, e, f"{path}: eval[{i}]") for i, e in enumerate(evals)]
    if (
        not isinstance(analysis, dict)
        or set(analysis) - {"args"}
        or not isinstance(analysis.get("args", []), list)
    ):
        raise ExperimentError(f"{path}: analysis: expected {{args: [flags of python -m analysis]}}")
    exp.analysis_args = [str(a) for a in analysis.get("args", [])]
    return exp


def _repo_file(rel: str) -> str:
    """Trainer scripts are addressed relative to the source tree that holds this package."""
    return str(Path(__file__).resolve().parent.parent / rel)


def commands(exp: Experiment, stages: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """The shell commands of each selected stage, in order."""
    py = sys.executable
    cmds: list[tuple[str, list[str]]] = []
    if "train" in stages:
        for step in exp.train:
            script = _repo_file(TRAINER_SCRIPTS[step.script])
            if step.launcher == "per_unit":
                launch = [py, "-m", "trainers.launch"]
                if step.accelerate_config:
                    launch += ["--accelerate_config", step.accelerate_config]
                cmds.append(("train", [*launch, step.script, "--config", step.config, *step.args]))
                continue
            if step.launcher == "accelerate":
                launch = [py, "-m", "accelerate.commands.launch"]
                if step.accelerate_config:
                    launch += ["--config_file", step.accelerate_config]
            else:
                launch = [py]
            cmds.append(("train", [*launch, script, "--config", step.config, *step.args]))
    for ev in exp.eval if "eval" in stages else []:
        only = ["--checkpoints", ev.checkpoints] if ev.checkpoints else []
        cmds.append(("eval", [py, "-m", "sah_tasks.sweep", str(exp.run_dir), "--tasks",
                              ",".join(ev.tasks), "--backend", ev.backend, *only, *ev.args]))  # fmt: skip
    if "analyse" in stages:
        cmds.append(("analyse", [py, "-m", "analysis", str(exp.run_dir), *exp.analysis_args]))
    return cmds


def run_experiment(exp: Experiment, stages: tuple[str, ...] = STAGES, dry_run: bool = False) -> int:
    env = dict(os.environ, **{k: str(v) for k, v in exp.env.items()})
    for stage, cmd in commands(exp, stages):
        print(f"[sah run] {stage}: {shlex.join(cmd)}", flush=True)
        if dry_run:
            continue
        rc = run_forwarding(cmd, env)
        if rc > 128 and rc - 128 in [int(s) for s in FORWARDED]:
            return rc
        if rc != 0:
            print(f"[sah run] stage {stage!r} failed (exit {rc}); fix it and rerun: "
                  "finished work is kept and skipped", file=sys.stderr)  # fmt: skip
            return rc
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sah",
        description="Run a whole post-training scaling experiment: train -> evaluate -> analyse.",
        epilog="The experiment YAML is described in docs/reproduce.md (example: configs/paper/).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) an experiment from its YAML")
    run.add_argument("config", type=Path, help="experiment YAML (see docs/reproduce.md)")
    run.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES)
    )
    run.add_argument(
        "--dry_run", action="store_true", help="print the commands without running them"
    )
    args = parser.parse_args(argv)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    bad = [s for s in stages if s not in STAGES]
    try:
        if bad:
            raise ExperimentError(f"--stages: unknown stage(s) {bad}; expected {list(STAGES)}")
        exp = load_experiment(args.config)
    except ExperimentError as e:
        print(f"sah: error: {e}", file=sys.stderr)
        return 2
    try:
        return run_experiment(exp, stages, args.dry_run)
    except KeyboardInterrupt:
        print("[sah run] interrupted; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
