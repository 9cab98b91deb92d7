"""`sah run EXPERIMENT.yaml`: train every scale -> sweep-evaluate -> analyse, each stage resumable.

The three stages are the same commands a user would type, run one after another over the same
run directory, so a stage that was interrupted (or already done) is simply run again: trainers
skip completed scales, the sweep skips finished (checkpoint, task) units, and the analysis is
recomputed from the files on disk.

    sah run configs/paper/experiments/llama3-8b.yaml                       # everything
    sah run configs/paper/experiments/llama3-8b.yaml --stages eval,analyse
    sah run configs/paper/experiments/llama3-8b.yaml --dry_run             # print the commands only

The experiment YAML's schema (every key, its default, and the command each stage runs) is
docs/experiment.md; `SCHEMA_DOC` names it, and a test checks that it documents every field of
the dataclasses below. `tasks` and every `args` are YAML lists: a string there
(`tasks: sah_gsm8k`, `args: --limit 5`) is an error naming the field, never split into
characters. Before any stage starts, the trainer configs and accelerate configs of the selected
stages must exist.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sah_tasks.common.cli import SahParser
from sah_tasks.common.text import not_utf8
from trainers.processes import FORWARDED, run_forwarding

STAGES = ("train", "eval", "analyse")
TRAINER_SCRIPTS = {"sft": "trainers/sft.py", "dpo": "trainers/dpo.py"}
# python: one process for all scales; accelerate: `accelerate launch` of the same; per_unit:
# `python -m trainers.launch`, one accelerate process per scale (what FSDP/DeepSpeed need).
LAUNCHERS = ("python", "accelerate", "per_unit")
SCHEMA_DOC = "docs/experiment.md"  # the experiment YAML's schema, in the repository
EXAMPLE = "configs/paper/experiments/llama3-8b.yaml"


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


BACKENDS = ("hf", "vllm")


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExperimentError(
            f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
        )
    missing = [
        name
        for name, f in cls.__dataclass_fields__.items()
        if name not in raw and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ExperimentError(f"{where}: missing key(s) {missing}")
    return cls(**raw)


def _string_list(value: Any, where: str, what: str, example: str) -> list[str]:
    """A YAML list of strings. A string is refused, not split into characters or words
    (`args: --limit 5` or `tasks: sah_gsm8k`): it names the field and shows the list form."""
    if isinstance(value, str):
        raise ExperimentError(
            f"{where}: expected a list of {what}, e.g. {example}; got the string {value!r}"
        )
    if not isinstance(value, list) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        raise ExperimentError(f"{where}: expected a list of {what}, e.g. {example}; got {value!r}")
    return [str(v) for v in value]


def _read_yaml(path: Path) -> Any:
    if path.is_dir():
        raise ExperimentError(f"experiment config {path} is a directory; expected a YAML file")
    if not path.is_file():
        raise ExperimentError(f"experiment config {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ExperimentError(f"{path}: {not_utf8(e, whole_file=True)}") from None
    except yaml.YAMLError as e:  # PyYAML's message spans lines (a caret under the column)
        raise ExperimentError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None


def _check_train(step: TrainStep, where: str) -> None:
    if not isinstance(step.config, str) or not step.config:
        raise ExperimentError(f"{where}.config: expected the path of a trainer YAML")
    if step.script not in TRAINER_SCRIPTS:
        raise ExperimentError(f"{where}.script {step.script!r}: expected sft or dpo")
    if step.launcher not in LAUNCHERS:
        raise ExperimentError(
            f"{where}.launcher {step.launcher!r}: expected one of {list(LAUNCHERS)}"
        )
    if step.accelerate_config is not None and step.launcher == "python":
        raise ExperimentError(
            f"{where}.accelerate_config: only used with launcher: accelerate or per_unit "
            "(launcher: python runs one plain process and would ignore it)"
        )
    step.args = _string_list(step.args, f"{where}.args", "trainer flags", "[--max_steps, '5']")


def _check_eval(step: EvalStep, where: str) -> None:
    step.tasks = _string_list(step.tasks, f"{where}.tasks", "task names", "[sah_gsm8k]")
    if not step.tasks or not all(t.strip() for t in step.tasks):
        raise ExperimentError(f"{where}.tasks: empty; name the tasks to evaluate, e.g. [sah_gsm8k]")
    if step.backend not in BACKENDS:
        raise ExperimentError(f"{where}.backend {step.backend!r}: expected hf or vllm")
    if step.checkpoints is not None and not isinstance(step.checkpoints, str):
        raise ExperimentError(f"{where}.checkpoints: expected a glob, e.g. '*/gsm8k/*'")
    step.args = _string_list(step.args, f"{where}.args", "sweep flags", "[--limit, '5']")


def load_experiment(path: Path) -> Experiment:
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict) or "experiment" not in raw:
        raise ExperimentError(f"{path}: expected a mapping with at least 'experiment'")
    raw = dict(raw)
    steps = raw.pop("train", None) or []
    if not isinstance(steps, list):
        raise ExperimentError(
            f"{path}: train: expected a list of trainer steps, e.g. [{{config: sft.yaml}}]"
        )
    train = [_build(TrainStep, t, f"{path}: train[{i}]") for i, t in enumerate(steps)]
    for i, step in enumerate(train):
        _check_train(step, f"{path}: train[{i}]")
    ev = raw.pop("eval", None) or []
    analysis = raw.pop("analysis", None) or {}
    exp = _build(Experiment, raw, str(path))
    name = exp.experiment
    if not isinstance(name, str) or not name.strip() or "/" in name or name in (".", ".."):
        raise ExperimentError(
            f"{path}: experiment: expected a folder name (the run directory "
            f"<output_root>/<experiment>), got {name!r}"
        )
    if not isinstance(exp.output_root, str) or not exp.output_root:
        raise ExperimentError(f"{path}: output_root: expected a folder, got {exp.output_root!r}")
    if not isinstance(exp.env, dict):
        raise ExperimentError(
            f"{path}: env: expected a mapping of VARIABLE: value, got {exp.env!r}"
        )
    exp.train = train
    evals = ev if isinstance(ev, list) else [ev]
    exp.eval = [_build(EvalStep, e, f"{path}: eval[{i}]") for i, e in enumerate(evals)]
    for i, step in enumerate(exp.eval):
        _check_eval(step, f"{path}: eval[{i}]")
    if not isinstance(analysis, dict) or set(analysis) - {"args"}:
        raise ExperimentError(f"{path}: analysis: expected {{args: [flags of python -m analysis]}}")
    exp.analysis_args = _string_list(
        analysis.get("args", []), f"{path}: analysis.args", "analysis flags", "[--n-boot, '1000']"
    )
    return exp


def check_files(exp: Experiment, stages: tuple[str, ...], where: Path) -> None:
    """Before anything runs: every trainer config and accelerate config the selected stages
    use exists (relative paths are relative to the working directory, as for the stages)."""
    if "train" not in stages:
        return
    for i, step in enumerate(exp.train):
        files = [("config", step.config), ("accelerate_config", step.accelerate_config)]
        for key, value in files:
            if value is not None and not Path(value).expanduser().is_file():
                raise ExperimentError(
                    f"{where}: train[{i}].{key}: {Path(value).expanduser().resolve()} does not "
                    "exist (relative paths are relative to the working directory)"
                )


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


def build_parser() -> SahParser:
    parser = SahParser(
        prog="sah",
        description="Run a whole post-training scaling experiment: train -> evaluate -> analyse.",
        epilog=(
            f"The experiment YAML (every key, its default, what each stage runs): {SCHEMA_DOC}\n"
            f"Example: sah run {EXAMPLE} --dry_run"
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run (or resume) an experiment from its YAML",
        description="Run (or resume) an experiment: each stage skips finished work.",
        epilog=f"Schema of the experiment YAML: {SCHEMA_DOC}",
    )
    run.add_argument("config", type=Path, help=f"experiment YAML (schema: {SCHEMA_DOC})")
    run.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES)
    )
    run.add_argument(
        "--dry_run", action="store_true", help="print the commands without running them"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    bad = [s for s in stages if s not in STAGES]
    try:
        if bad:
            raise ExperimentError(f"--stages: unknown stage(s) {bad}; expected {list(STAGES)}")
        if not stages:
            raise ExperimentError(f"--stages: give at least one of {','.join(STAGES)}")
        exp = load_experiment(args.config)
        check_files(exp, stages, args.config)
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
