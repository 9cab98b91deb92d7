"""Realistic mistakes in every CLI: one clear line naming the file or field, a non-zero exit.

One table, one test. Each case builds a bad input in tmp_path (a missing, empty, malformed or
non-UTF-8 file, a wrong option value, a read-only or full output folder), runs the CLI in-process
as `main(argv)`, and asserts the exit code, that a single line of the output matches the case's
regex (which names the file or field), that nothing printed or logged is a traceback, and, where
something was written, that no file is left that a rerun would take as complete.

Disk full: as root, a small tmpfs is mounted (and, for "full", filled first); otherwise writes
under the folder fail with an injected OSError(ENOSPC). Read-only: as root, a tmpfs remounted
read-only (chmod does not stop root); otherwise chmod 0o555. Without mount rights the read-only
folder, too, is simulated with an injected OSError(EROFS).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from trainer_helpers import (  # noqa: F401  (one_torch_thread: an autouse fixture)
    GSM8K_TRAIN,
    dpo_argv,
    one_torch_thread,
    sft_argv,
    write_sft_yaml,
)

FIXTURES = Path(__file__).parent / "fixtures"
FACTS3 = FIXTURES / "facts100" / "facts3.jsonl"
LATIN1 = "caf\xe9 au lait".encode("latin-1")  # b"caf\xe9": not UTF-8
# what a write error says (as root a read-only mount; as another user a folder without write bit)
NOT_WRITABLE = r"(read-only file system|permission denied) \(not writable\)"
DISK_FULL = r"no space left on device \(the disk is full\)"


# ----------------------------------------------------------------------------- environment
@dataclass
class Env:
    """What a case's builder gets: its folder, the tiny model, and cleanup for mounts."""

    tmp: Path
    model: Path
    monkeypatch: pytest.MonkeyPatch
    stack: contextlib.ExitStack
    launched: list[list[str]] = field(default_factory=list)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def jsonl(self, name: str, rows: list) -> Path:
        return self.file(name, "".join(json.dumps(r) + "\n" for r in rows))


_MOUNT_OK: list[bool] = []


def _mount(folder: Path, options: str) -> bool:
    """Mount a tmpfs on `folder` (root only); False where this machine does not allow it."""
    if os.geteuid() != 0 or shutil.which("mount") is None or _MOUNT_OK == [False]:
        return False
    cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    ok = subprocess.run(cmd, capture_output=True).returncode == 0
    _MOUNT_OK[:] = [ok]
    return ok


def _umount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _under(path, folder: Path) -> bool:
    if isinstance(path, int):
        return False
    try:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder)
    except (TypeError, ValueError):
        return False


def _inject(env: Env, folder: Path, code: int) -> None:
    """Without mount rights: every write under `folder` fails with OSError(code)."""
    folder = Path(os.path.abspath(folder))
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace = os.replace

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if _under(file, folder) and any(c in mode for c in "wax+"):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if _under(path, folder) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if code == errno.EROFS and _under(path, folder):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if _under(dst, folder):
            fail(dst)
        return real_replace(src, dst, *args, **kwargs)

    for owner in (builtins, io):
        env.monkeypatch.setattr(owner, "open", fake_open)
    env.monkeypatch.setattr(os, "open", fake_os_open)
    env.monkeypatch.setattr(os, "mkdir", fake_mkdir)
    env.monkeypatch.setattr(os, "replace", fake_replace)


def _fill(folder: Path) -> None:
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
    try:
        for block in (b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)


def full_disk(env: Env, name: str = "full", size: str = "64k", fill: bool = True) -> Path:
    """A folder on a tiny disk: full already (`fill`), or with `size` of room."""
    folder = env.tmp / name
    folder.mkdir()
    if _mount(folder, f"size={size},mode=0755"):
        env.stack.callback(_umount, folder)
        if fill:
            _fill(folder)
    else:
        _inject(env, folder, errno.ENOSPC)
    return folder


def read_only(env: Env, name: str = "ro", prepare: Callable[[Path], None] | None = None) -> Path:
    """A folder that cannot be written (after `prepare` has put its contents there)."""
    folder = env.tmp / name
    folder.mkdir()
    if os.geteuid() != 0:
        if prepare:
            prepare(folder)
        for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
            env.stack.callback(d.chmod, 0o755)
    elif _mount(folder, "size=1m,mode=0755"):
        env.stack.callback(_umount, folder)
        if prepare:
            prepare(folder)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        if prepare:
            prepare(folder)
        _inject(env, folder, errno.EROFS)
    return folder


def no_temp_or_completed(root_name: str) -> Callable[[Env], None]:
    """After a failed write: nothing under `root_name` that a rerun would take as complete."""

    def check(env: Env) -> None:
        root = env.tmp / root_name
        assert not list(root.rglob("COMPLETED")), "a failed run left a COMPLETED marker"
        assert not list(root.rglob("report.md")), "a failed analysis left its report"
        temps = [p for p in root.rglob(".*.tmp-*")]
        assert not temps, f"temporary files left behind: {temps}"

    return check


# ----------------------------------------------------------------------------- the CLIs
_TASK_MANAGER: list = []


def _cached_task_manager(*args, **kwargs):
    """One lm-eval TaskManager for every sweep case (building one takes seconds)."""
    from sah_tasks.cli import install_task_path

    install_task_path()
    # the class itself, not `lm_eval.tasks.TaskManager`, which this function replaces
    from lm_eval.tasks.manager import TaskManager

    if args or any(v is not None for v in kwargs.values()):
        return TaskManager(*args, **kwargs)
    if not _TASK_MANAGER:
        _TASK_MANAGER.append(TaskManager())
    return _TASK_MANAGER[0]


def _run_sah(env: Env, argv: list[str]):
    from sah_tasks import experiment

    def launch(cmd, env_=None, who="sah run"):  # stages are never started by these cases
        env.launched.append(list(cmd))
        return 0

    env.monkeypatch.setattr(experiment, "run_forwarding", launch)
    return experiment.main(argv)


def _run_sweep(env: Env, argv: list[str]):
    import lm_eval.tasks

    from sah_tasks.cli import main

    _cached_task_manager()
    env.monkeypatch.setattr(lm_eval.tasks, "TaskManager", _cached_task_manager)
    env.monkeypatch.setenv("SAH_GSM8K_DATA", str(FIXTURES / "gsm8k_test.jsonl"))
    return main(["sweep", *argv])  # sah-eval sweep ...


def _run_sft(env: Env, argv: list[str]):
    from trainers import sft

    sft.main(argv)
    return 0


def _run_dpo(env: Env, argv: list[str]):
    from trainers import dpo

    dpo.main(argv)
    return 0


def _run_analysis(env: Env, argv: list[str]):
    from analysis.cli import main

    return main(argv)


def _run_analysis_module(env: Env, argv: list[str]):
    env.monkeypatch.setattr(sys, "argv", ["python -m analysis", *argv])
    sys.modules.pop("analysis.__main__", None)
    runpy.run_module("analysis", run_name="__main__")  # exits


def _run_facts100(env: Env, argv: list[str]):
    from sah_tasks.facts100.__main__ import main

    return main(argv)


RUNNERS = {
    "sah run": _run_sah,
    "sah-eval sweep": _run_sweep,
    "trainers/sft.py": _run_sft,
    "trainers/dpo.py": _run_dpo,
    "python -m analysis": _run_analysis,
    "python -m analysis (module)": _run_analysis_module,
    "facts100 validate": _run_facts100,
}
SHORT = {"sah run": "run", "sah-eval sweep": "sweep", "trainers/sft.py": "sft",
         "trainers/dpo.py": "dpo", "python -m analysis": "analysis",
         "python -m analysis (module)": "analysis", "facts100 validate": "facts100"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    id: str
    cli: str
    build: Callable[[Env], list[str]]  # makes the bad input, returns argv
    code: int  # expected (non-zero) exit status
    message: str  # regex one output line must match; names the file or field
    after: Callable[[Env], None] | None = None  # checks on what was left on disk


# ----------------------------------------------------------------------------- sah run
def _exp(text: str, *flags: str) -> Callable[[Env], list[str]]:
    """An experiment YAML; `{tmp}` is the case folder, where sft.yaml exists."""

    def build(env: Env) -> list[str]:
        env.file("sft.yaml", "scales: [0]\n")
        path = env.file("exp.yaml", text.replace("{tmp}", str(env.tmp)))
        return ["run", str(path), *flags]

    return build


def _exp_bytes(env: Env) -> list[str]:
    return ["run", str(env.file("exp.yaml", b"experiment: " + LATIN1 + b"\n"))]


def _exp_dir(env: Env) -> list[str]:
    (env.tmp / "paper").mkdir()
    return ["run", str(env.tmp / "paper")]


TRAIN = "train: [{config: {tmp}/sft.yaml}]\n"
RUN = "sah run"
SAH_RUN_CASES = [
    Case("config-missing", RUN, lambda env: ["run", str(env.tmp / "exp.yaml")], 2,
         r"experiment config .*exp\.yaml does not exist"),
    Case("config-is-a-folder", RUN, _exp_dir, 2, r"paper is a directory; expected a YAML file"),
    Case("not-yaml", RUN, _exp("experiment: [unclosed\n"), 2, r"exp\.yaml: not valid YAML"),
    Case("not-utf8", RUN, _exp_bytes, 2, r"exp\.yaml: not UTF-8 text"),
    Case("top-level-list", RUN, _exp("- experiment: e\n"), 2,
         r"exp\.yaml: expected a mapping with at least 'experiment'"),
    Case("unknown-key", RUN, _exp("experiment: e\ntrian: []\n"), 2,
         r"exp\.yaml: unknown key\(s\) \['trian'\]"),
    Case("experiment-not-a-name", RUN, _exp("experiment: [a, b]\n" + TRAIN), 2,
         r"exp\.yaml: experiment: expected a folder name"),
    Case("experiment-empty", RUN, _exp("experiment: ''\n" + TRAIN), 2,
         r"exp\.yaml: experiment: expected a folder name"),
    Case("train-not-a-list", RUN, _exp("experiment: e\ntrain: {config: {tmp}/sft.yaml}\n"), 2,
         r"exp\.yaml: train: expected a list of trainer steps"),
    Case("train-no-config", RUN, _exp("experiment: e\ntrain: [{script: sft}]\n"), 2,
         r"exp\.yaml: train\[0\]: .*'config'"),
    Case("train-script", RUN, _exp("experiment: e\ntrain: [{config: a.yaml, script: ppo}]\n"),
         2, r"exp\.yaml: train\[0\]\.script 'ppo': expected sft or dpo"),
    Case("train-launcher", RUN, _exp("experiment: e\ntrain: [{config: a.yaml, launcher: srun}]\n"),
         2, r"exp\.yaml: train\[0\]\.launcher 'srun': expected one of"),
    Case("train-args-string", RUN,
         _exp("experiment: e\ntrain: [{config: {tmp}/sft.yaml, args: --max_steps 5}]\n"), 2,
         r"exp\.yaml: train\[0\]\.args: expected a list.*got the string '--max_steps 5'"),
    Case("train-config-file-missing", RUN,
         _exp("experiment: e\ntrain: [{config: {tmp}/missing_sft.yaml}]\n"), 2,
         r"exp\.yaml: train\[0\]\.config: .*missing_sft\.yaml does not exist"),
    Case("accelerate-config-missing", RUN,
         _exp("experiment: e\ntrain: [{config: {tmp}/sft.yaml, launcher: accelerate, "
              "accelerate_config: {tmp}/fsdp.yaml}]\n"), 2,
         r"exp\.yaml: train\[0\]\.accelerate_config: .*fsdp\.yaml does not exist"),
    Case("accelerate-config-with-python-launcher", RUN,
         _exp("experiment: e\ntrain: [{config: {tmp}/sft.yaml, accelerate_config: {tmp}/sft.yaml}]"
              "\n"), 2,
         r"exp\.yaml: train\[0\]\.accelerate_config: .*launcher: accelerate or per_unit"),
    Case("eval-tasks-empty", RUN, _exp("experiment: e\neval: {tasks: []}\n"), 2,
         r"exp\.yaml: eval\[0\]\.tasks: empty"),
    Case("eval-tasks-string", RUN, _exp("experiment: e\neval: {tasks: sah_gsm8k}\n"), 2,
         r"exp\.yaml: eval\[0\]\.tasks: expected a list.*got the string 'sah_gsm8k'"),
    Case("eval-tasks-nested", RUN, _exp("experiment: e\neval: {tasks: [[sah_gsm8k]]}\n"), 2,
         r"exp\.yaml: eval\[0\]\.tasks: expected a list of task names"),
    Case("eval-no-tasks", RUN, _exp("experiment: e\neval: {backend: hf}\n"), 2,
         r"exp\.yaml: eval\[0\]: .*'tasks'"),
    Case("eval-backend", RUN, _exp("experiment: e\neval: {tasks: [sah_gsm8k], backend: vlm}\n"),
         2, r"exp\.yaml: eval\[0\]\.backend 'vlm': expected hf or vllm"),
    Case("eval-args-string", RUN,
         _exp("experiment: e\neval: {tasks: [sah_gsm8k], args: --limit 5}\n"), 2,
         r"exp\.yaml: eval\[0\]\.args: expected a list.*got the string '--limit 5'"),
    Case("eval-item-not-a-mapping", RUN, _exp("experiment: e\neval: [sah_gsm8k]\n"), 2,
         r"exp\.yaml: eval\[0\]: expected a mapping, got str"),
    Case("analysis-args-string", RUN, _exp("experiment: e\nanalysis: {args: --n-boot 10}\n"), 2,
         r"exp\.yaml: analysis\.args: expected a list.*got the string '--n-boot 10'"),
    Case("env-not-a-mapping", RUN, _exp("experiment: e\nenv: [SAH_GSM8K_DATA]\n" + TRAIN), 2,
         r"exp\.yaml: env: expected a mapping of VARIABLE: value"),
    Case("stages-unknown", RUN, _exp("experiment: e\n" + TRAIN, "--stages", "train,deploy"), 2,
         r"--stages: unknown stage\(s\) \['deploy'\]"),
    Case("stages-empty", RUN, _exp("experiment: e\n" + TRAIN, "--stages", ""), 2,
         r"--stages: give at least one of train,eval,analyse"),
]  # fmt: skip


# ----------------------------------------------------------------------------- sah-eval sweep
def _manifest(folder: Path, completed: bool = True, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": 1, "task": "gsm8k", "lora": False, **fields}
    (folder / "sah_manifest.json").write_text(json.dumps(manifest))
    if completed:
        (folder / "COMPLETED").write_text("")
    return folder


SWEEP_FLAGS = ["--tasks", "sah_gsm8k", "--device", "cpu", "--limit", "1", "--batch_size", "1",
               "--gen_kwargs", "max_gen_toks=4", "--model_args", "dtype=float32"]  # fmt: skip


def _run_dir(env: Env) -> Path:
    """runs/exp with n0 (a pointer at the tiny model) and n8 (a copy of its weights)."""
    root = env.tmp / "runs" / "exp"
    _manifest(root / "tiny/gsm8k/n0", n=0, stage="base", model_path=str(env.model),
              base_model=str(env.model))  # fmt: skip
    shutil.copytree(env.model, root / "tiny/gsm8k/n8")
    _manifest(root / "tiny/gsm8k/n8", n=8, stage="sft", model_path=".", base_model=str(env.model))
    return root


def _sweep_on(make: Callable[[Env, Path], object], *flags: str, only: str | None = "*/n8"):
    """A sweep of a run dir that `make(env, root)` broke, on the n8 checkpoint by default."""

    def build(env: Env) -> list[str]:
        root = _run_dir(env)
        make(env, root)
        where = ["--checkpoints", only] if only else []
        return [str(root), *SWEEP_FLAGS, *where, *flags]

    return build


def _sweep_flags(*flags: str) -> Callable[[Env], list[str]]:
    return _sweep_on(lambda env, root: None, *flags)


def _n8(root: Path) -> Path:
    return root / "tiny/gsm8k/n8"


def _rewrite_n8(**fields) -> Callable[[Env, Path], None]:
    def make(env: Env, root: Path) -> None:
        (_n8(root) / "sah_manifest.json").write_text(json.dumps({"schema_version": 1, **fields}))

    return make


def _delete_weights(env: Env, root: Path) -> None:
    for weights in _n8(root).glob("*.safetensors"):
        weights.unlink()


def _read_only_run(env: Env) -> list[str]:
    def prepare(folder: Path) -> None:
        _manifest(folder / "exp/tiny/gsm8k/n0", n=0, stage="base", model_path=str(env.model),
                  base_model=str(env.model))  # fmt: skip

    return [str(read_only(env, "ro", prepare) / "exp"), *SWEEP_FLAGS]


SWEEP = "sah-eval sweep"
N8 = r"FAILED tiny/gsm8k/n8 sah_gsm8k: "
SWEEP_CASES = [
    Case("run-dir-missing", SWEEP, lambda env: [str(env.tmp / "runs"), *SWEEP_FLAGS], 2,
         r"sah-eval sweep: error: run directory .*runs does not exist"),
    Case("run-dir-is-a-file", SWEEP, lambda env: [str(env.file("runs.txt", "x")), *SWEEP_FLAGS],
         2, r"run directory .*runs\.txt is a file; expected the folder runs/<experiment>"),
    Case("nothing-completed", SWEEP,
         _sweep_on(lambda env, root: [p.unlink() for p in root.rglob("COMPLETED")], only=None),
         2, r"no completed checkpoint \(folder with sah_manifest\.json \+ COMPLETED\) under"),
    Case("manifest-not-json", SWEEP,
         _sweep_on(lambda env, root: (_n8(root) / "sah_manifest.json").write_text("{oops")), 2,
         r"n8/sah_manifest\.json: not valid JSON"),
    Case("manifest-a-list", SWEEP,
         _sweep_on(lambda env, root: (_n8(root) / "sah_manifest.json").write_text("[]")), 2,
         r"n8/sah_manifest\.json: expected a JSON object"),
    Case("manifest-not-utf8", SWEEP,
         _sweep_on(lambda env, root: (_n8(root) / "sah_manifest.json").write_bytes(LATIN1)), 2,
         r"n8/sah_manifest\.json: not UTF-8 text"),
    Case("tasks-empty", SWEEP, _sweep_flags("--tasks", ""), 2,
         r"--tasks '[, ]*': give at least one task name or glob"),
    Case("tasks-only-commas", SWEEP, _sweep_flags("--tasks", ",,"), 2,
         r"--tasks '[, ]*': give at least one task name or glob"),
    Case("tasks-unknown", SWEEP, _sweep_flags("--tasks", "sah_gsm9k"), 2,
         r"--tasks: no task matches 'sah_gsm9k'"),
    Case("shard", SWEEP, _sweep_flags("--shard", "3/2"), 2, r"--shard '3/2': need 0 <= i < n"),
    Case("limit-negative", SWEEP, _sweep_flags("--limit", "-1"), 2,
         r"--limit: .*'-1'.*expected a number of items > 0"),
    Case("limit-zero", SWEEP, _sweep_flags("--limit", "0"), 2,
         r"--limit: .*'0'.*expected a number of items > 0"),
    Case("batch-size-word", SWEEP, _sweep_flags("--batch_size", "abc"), 2,
         r"--batch_size: .*'abc'.*expected a positive integer, 'auto' or 'auto:N'"),
    Case("batch-size-zero", SWEEP, _sweep_flags("--batch_size", "0"), 2,
         r"--batch_size: .*'0'.*expected a positive integer"),
    Case("gen-kwargs", SWEEP, _sweep_flags("--gen_kwargs", "max_gen_toks"), 2,
         r"--gen_kwargs\b.*expected `?key=value`?.*max_gen_toks"),
    Case("model-args", SWEEP, _sweep_flags("--model_args", "float32"), 2,
         r"--model_args 'float32': expected key=value"),
    Case("checkpoints-match-nothing", SWEEP, _sweep_flags("--checkpoints", "*/ifeval/*"), 2,
         r"no completed checkpoint matching '\*/ifeval/\*'"),
    Case("weights-deleted", SWEEP, _sweep_on(_delete_weights), 1,
         N8 + r".*n8 has no model weights \(\*\.safetensors"),
    Case("manifest-no-model-path", SWEEP, _sweep_on(_rewrite_n8(n=8, stage="sft", task="gsm8k")),
         1, N8 + r".*n8/sah_manifest\.json: no 'model_path' field"),
    Case("trained-manifest-only-base-model", SWEEP,
         _sweep_on(lambda env, root: _rewrite_n8(n=8, stage="sft", task="gsm8k", lora=False,
                                                 base_model=str(env.model))(env, root)),
         1, N8 + r".*n8/sah_manifest\.json: no 'model_path' field"),
    Case("model-path-moved", SWEEP,
         _sweep_on(_rewrite_n8(n=8, stage="sft", model_path="/nonexistent/weights")), 1,
         N8 + r".*model_path '/nonexistent/weights' does not exist"),
    Case("lora-adapter-missing", SWEEP,
         _sweep_on(lambda env, root: _rewrite_n8(n=8, stage="sft", lora=True,
                                                 model_path=str(env.model),
                                                 base_model=str(env.model))(env, root)),
         1, N8 + r".*n8/adapter is missing"),
    Case("read-only-run-dir", SWEEP, _read_only_run, 1,
         r"FAILED tiny/gsm8k/n0 sah_gsm8k: cannot write .*ro/exp/tiny/gsm8k/n0/eval: " + NOT_WRITABLE),
]  # fmt: skip


# ----------------------------------------------------------------------------- trainers/sft.py
def _sft(*extra: str, data: Callable[[Env], Path] | None = None):
    def build(env: Env) -> list[str]:
        files = {"data": data(env)} if data else {}
        return sft_argv(env.model, env.tmp / "runs", "--scales", "0", "8", *extra, **files)

    return build


def _sft_with(make: Callable[[Env], list[str]]):
    """SFT arguments with what `make(env)` adds (after the defaults, so they win)."""

    def build(env: Env) -> list[str]:
        return sft_argv(env.model, env.tmp / "runs", "--scales", "0", "8", *make(env))

    return build


def _bad_data(name: str, content: str | bytes) -> Callable[[Env], Path]:
    return lambda env: env.file(name, content)


def _dup_ids(env: Env) -> Path:
    row = json.loads(GSM8K_TRAIN.read_text().splitlines()[0])
    other = {**row, "question": row["question"] + " Twice?"}
    return env.jsonl("dup.jsonl", [{**row, "id": "x"}, {**other, "id": "x"}])


GOOD_ROWS = GSM8K_TRAIN.read_text(encoding="utf-8")
SFT = "trainers/sft.py"
SFT_CASES = [
    Case("config-missing", SFT, _sft_with(lambda env: ["--config", str(env.tmp / "nope.yaml")]),
         1, r"^error: config file .*nope\.yaml does not exist"),
    Case("config-flag-without-file", SFT, _sft_with(lambda env: ["--config"]), 1,
         r"^error: --config needs a YAML file path"),
    Case("config-typo", SFT,
         _sft_with(lambda env: ["--config", str(env.file("sft.yaml", "lerning_rate: 0.1\n"))]),
         1, r"sft\.yaml: unknown key\(s\) 'lerning_rate' \(did you mean 'learning_rate'\?\)"),
    Case("config-a-list", SFT,
         _sft_with(lambda env: ["--config", str(env.file("sft.yaml", "- scales: [0]\n"))]), 1,
         r"sft\.yaml: expected a mapping of option: value"),
    Case("config-not-utf8", SFT,
         _sft_with(lambda env: ["--config", str(env.file("sft.yaml", b"task: " + LATIN1))]), 1,
         r"^error: .*sft\.yaml: not UTF-8 text"),
    Case("data-missing", SFT, _sft(data=lambda env: env.tmp / "missing.jsonl"), 1,
         r"^error: local data file .*missing\.jsonl \(set by data_files\) does not exist"),
    Case("data-is-a-folder", SFT, _sft(data=lambda env: env.tmp), 1,
         r"^error: local data file .* \(set by data_files\) is a directory; expected a JSONL"),
    Case("data-empty", SFT, _sft(data=_bad_data("empty.jsonl", "\n\n")), 1,
         r"^error: local data file .*empty\.jsonl \(set by data_files\) has no rows"),
    Case("data-not-json", SFT, _sft(data=_bad_data("bad.jsonl", GOOD_ROWS[:300] + "\n")), 1,
         r"^error: .*bad\.jsonl:2: not valid JSON"),
    Case("data-not-utf8", SFT,
         _sft(data=_bad_data("latin1.jsonl", b'{"question": "ok", "answer": "1"}\n'
                             b'{"question": "' + LATIN1 + b'", "answer": "2"}\n')), 1,
         r"^error: .*latin1\.jsonl:2: not UTF-8 text \(byte 0xe9"),
    Case("data-csv", SFT, _sft(data=_bad_data("train.csv", "question,answer\n1+1,2\n")), 1,
         r"^error: .*train\.csv:1: not valid JSON"),
    Case("data-row-a-list", SFT, _sft(data=_bad_data("list.jsonl", '["q", "a"]\n')), 1,
         r"^error: .*list\.jsonl:1: expected a JSON object per line"),
    Case("data-wrong-fields", SFT, _sft(data=_bad_data("f.jsonl", '{"q": "1+1", "a": "2"}\n')),
         1, r"^error: .*f\.jsonl:1: missing field\(s\) \['question', 'answer'\]"),
    Case("data-empty-answer", SFT,
         _sft(data=_bad_data("e.jsonl", '{"prompt": "Q: 1+1", "completion": ""}\n')), 1,
         r"^error: .*e\.jsonl:1: field 'completion' must be a non-empty string"),
    Case("data-duplicate-ids", SFT, _sft(data=_dup_ids), 1,
         r"^error: .*dup\.jsonl:2: id 'x' is used by two different examples"),
    Case("batch-size-zero", SFT, _sft("--per_device_train_batch_size", "0"), 1,
         r"^error: per_device_train_batch_size 0: expected an integer >= 1"),
    Case("grad-accumulation-zero", SFT, _sft("--gradient_accumulation_steps", "0"), 1,
         r"^error: gradient_accumulation_steps 0: expected an integer >= 1"),
    Case("scales-negative", SFT, _sft("--scales", "-5"), 1,
         r"^error: scales: data scales must be >= 0"),
    Case("scale-larger-than-pool", SFT, _sft("--scales", "100000"), 1,
         r"^error: scale N=100000 is larger than the gsm8k training pool .* 48 examples"),
    Case("task-unknown", SFT, _sft("--task", "gsm9k"), 1,
         r"^error: unknown training task 'gsm9k'; known tasks:"),
    Case("model-missing", SFT, _sft_with(lambda env: ["--model_name_or_path",
                                                      str(env.tmp / "no_such_model")]), 1,
         r"^error: model_name_or_path .*no_such_model: not a local folder"),
    Case("epochs-zero", SFT, _sft("--num_train_epochs", "0", "--max_steps", "-1"), 1,
         r"^error: num_train_epochs 0 with max_steps -1: this trains nothing"),
    Case("scale-overrides-not-json", SFT, _sft("--scale_overrides", "{8: 1}"), 1,
         r"^error: scale_overrides: expected a JSON object"),
    Case("prompt-format", SFT, _sft("--prompt_format", "alpaca"), 2,
         r"error: argument --prompt_format(/--prompt-format)?: invalid choice: 'alpaca'"),
    Case("learning-rate-word", SFT, _sft("--learning_rate", "fast"), 2,
         r"error: argument --learning_rate(/--learning-rate)?: invalid float value: 'fast'"),
    Case("output-root-read-only", SFT,
         _sft_with(lambda env: ["--output_root", str(read_only(env) / "runs")]), 1,
         r"^error: output_root .*ro/runs: cannot write .*: " + NOT_WRITABLE,
         no_temp_or_completed("ro")),
    Case("output-root-full", SFT,
         _sft_with(lambda env: ["--output_root", str(full_disk(env) / "runs"), "--scales", "0"]),
         1, r"^error: .*cannot write .*full/runs.*: " + DISK_FULL,
         no_temp_or_completed("full")),
    Case("disk-fills-while-saving", SFT,
         _sft_with(lambda env: ["--output_root", str(full_disk(env, size="160k", fill=False)),
                                "--scales", "8", "--max_steps", "1"]), 1,
         r"^error: .*cannot write .*full.*: " + DISK_FULL,
         no_temp_or_completed("full")),
]  # fmt: skip


# ----------------------------------------------------------------------------- trainers/dpo.py
def _dpo_with(make: Callable[[Env], list[str]], sft_config: bool = False):
    def build(env: Env) -> list[str]:
        config = write_sft_yaml(env.tmp / "sft_stage.yaml") if sft_config else None
        return dpo_argv(env.model, env.tmp / "runs", config, "--budgets", "8", *make(env))

    return build


def _pref(name: str, content: str | bytes):
    return _dpo_with(lambda env: ["--preference_data_files", str(env.file(name, content))])


DPO = "trainers/dpo.py"
DPO_CASES = [
    Case("preference-data-missing", DPO,
         _dpo_with(lambda env: ["--preference_data_files", str(env.tmp / "pairs.jsonl")]), 1,
         r"^error: local data file .*pairs\.jsonl \(set by data_files\) does not exist"),
    Case("preference-data-empty", DPO, _pref("pairs.jsonl", ""), 1,
         r"^error: local data file .*pairs\.jsonl .* has no rows"),
    Case("preference-data-not-utf8", DPO, _pref("pairs.jsonl", b'{"prompt": "' + LATIN1 + b'"}'),
         1, r"^error: .*pairs\.jsonl:1: not UTF-8 text"),
    Case("preference-data-truncated", DPO, _pref("pairs.jsonl", '{"prompt": "Q", "chosen": "A'),
         1, r"^error: .*pairs\.jsonl:1: not valid JSON"),
    Case("preference-row-no-rejected", DPO,
         _pref("pairs.jsonl", '{"prompt": "Q: 1+1", "chosen": " 2"}\n'), 1,
         r"^error: .*pairs\.jsonl:1: missing field\(s\) \['rejected'\]"),
    Case("budgets-zero", DPO, _dpo_with(lambda env: ["--budgets", "0"]), 1,
         r"^error: budgets: give positive budgets, got \[0\]"),
    Case("fraction-above-one", DPO, _dpo_with(lambda env: ["--sft_fractions", "1.5"]), 1,
         r"^error: sft_fractions: each must be in \[0, 1\], got \[1\.5\]"),
    Case("fraction-without-sft-config", DPO, _dpo_with(lambda env: ["--sft_fractions", "0.5"]),
         1, r"^error: sft_config is required when an SFT fraction is > 0"),
    Case("sft-config-missing", DPO,
         _dpo_with(lambda env: ["--sft_fractions", "0.5", "--sft_config",
                                str(env.tmp / "missing_sft.yaml")]), 1,
         r"^error: config file .*missing_sft\.yaml does not exist"),
    Case("sft-overrides-typo", DPO,
         _dpo_with(lambda env: ["--sft_fractions", "0.5", "--sft_overrides",
                                '{"lerning_rate": 0.1}'], sft_config=True), 1,
         r"^error: sft_overrides: unknown SFT option 'lerning_rate'"),
    Case("batch-size-zero", DPO, _dpo_with(lambda env: ["--per_device_train_batch_size", "0"]),
         1, r"^error: per_device_train_batch_size 0: expected an integer >= 1"),
    Case("budget-larger-than-pool", DPO, _dpo_with(lambda env: ["--budgets", "5000"]), 1,
         r"^error: scale N=5000 is larger than the gsm8k preference pool .* 48 examples"),
    Case("task-without-preference-data", DPO,
         lambda env: [a for a in dpo_argv(env.model, env.tmp / "runs", None, "--task", "coding")
                      if a != str(GSM8K_TRAIN) and a != "--preference_data_files"], 1,
         r"^error: task 'coding' has no built-in preference data"),
    Case("only-stage", DPO, _dpo_with(lambda env: ["--only_stage", "rl"]), 2,
         r"error: argument --only_stage(/--only-stage)?: invalid choice: 'rl'"),
    Case("output-root-read-only", DPO,
         _dpo_with(lambda env: ["--output_root", str(read_only(env) / "runs")]), 1,
         r"^error: output_root .*ro/runs: cannot write .*: " + NOT_WRITABLE,
         no_temp_or_completed("ro")),
]  # fmt: skip


# ----------------------------------------------------------------------------- python -m analysis
def _synthetic(env: Env) -> Path:
    from analysis.synthetic import make_synthetic_run

    return make_synthetic_run(env.tmp / "runs", models=("llama-3-8b",), scales=(0, 100, 1000),
                              n_items=20)  # fmt: skip


def _analysis_on(make: Callable[[Env, Path], list[str]] | None = None, *flags: str):
    def build(env: Env) -> list[str]:
        run = _synthetic(env)
        extra = make(env, run) if make else []
        return [str(run), "--n-boot", "10", "--quiet", *flags, *extra]

    return build


def _results_file(run: Path) -> Path:
    return sorted(run.rglob("results_*.json"))[0]


def _break_results(content: bytes, every: bool = False):
    def make(env: Env, run: Path) -> list[str]:
        for path in sorted(run.rglob("results_*.json"))[: None if every else 1]:
            path.write_bytes(content)
        return [] if every else ["--strict"]

    return make


def _bad_n(env: Env, run: Path) -> list[str]:
    path = sorted(run.rglob("sah_manifest.json"))[0]
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "n": "a hundred"}))
    return ["--strict"]


ANALYSIS = "python -m analysis"
ANALYSIS_CASES = [
    Case("run-dir-missing", ANALYSIS, lambda env: [str(env.tmp / "runs")], 2,
         r"^error: run directory .*runs does not exist"),
    Case("run-dir-missing-as-module", "python -m analysis (module)",
         lambda env: [str(env.tmp / "runs")], 2, r"^error: run directory .*runs does not exist"),
    Case("run-dir-empty", ANALYSIS, lambda env: [str(env.tmp)], 2,
         r"^error: .*: no lm-eval results found"),
    Case("formats-unknown", ANALYSIS, _analysis_on(None, "--formats", "png,xyz"), 2,
         r"^error: --formats: unknown figure format\(s\) \['xyz'\]; expected some of"),
    Case("formats-empty", ANALYSIS, _analysis_on(None, "--formats", ""), 2,
         r"^error: --formats '': give at least one figure format"),
    Case("n-boot-too-small", ANALYSIS, _analysis_on(None, "--n-boot", "5"), 2,
         r"^error: --n-boot 5: use at least 10 resamples"),
    Case("ci-out-of-range", ANALYSIS, lambda env: [str(env.tmp), "--ci", "95"], 2,
         r"error: argument --ci: --ci must be in \(0, 1\)"),
    Case("metric-malformed", ANALYSIS, _analysis_on(None, "--metric", "sah_gsm8k"), 2,
         r"^error: --metric 'sah_gsm8k': expected TASK=METRIC"),
    Case("targets-out-of-range", ANALYSIS, lambda env: [str(env.tmp), "--targets", "50,75"], 2,
         r"error: argument --targets: targets must lie strictly between 0 and 1"),
    Case("judge-url-alone", ANALYSIS, _analysis_on(None, "--judge-url", "http://x:8000/v1"), 2,
         r"^error: --judge-url and --judge-model go together"),
    Case("results-malformed-strict", ANALYSIS, _analysis_on(_break_results(b"{oops")), 2,
         r"^error: .*results_.*\.json: not a readable lm-eval results file"),
    Case("results-not-utf8-strict", ANALYSIS, _analysis_on(_break_results(LATIN1)), 2,
         r"^error: .*results_.*\.json: not a readable lm-eval results file"),
    Case("results-all-unreadable", ANALYSIS, _analysis_on(_break_results(b"{}", every=True)), 2,
         r"^error: .*: no readable results: 3 results files skipped"),
    Case("manifest-field-strict", ANALYSIS, _analysis_on(_bad_n), 2,
         r"^error: .*sah_manifest\.json: field 'n' should be int or null, got 'a hundred'"),
    Case("out-is-a-file", ANALYSIS,
         _analysis_on(lambda env, run: ["--out", str(env.file("out.txt", "x"))]), 2,
         r"^error: --out .*out\.txt is a file; expected a folder"),
    Case("out-read-only", ANALYSIS, _analysis_on(lambda env, run: ["--out", str(read_only(env))]),
         2, r"^error: cannot write .*ro.*: " + NOT_WRITABLE,
         no_temp_or_completed("ro")),
    Case("out-disk-full", ANALYSIS,
         _analysis_on(lambda env, run: ["--out", str(full_disk(env, fill=False))]), 2,
         r"^error: cannot write .*full.*: " + DISK_FULL,
         no_temp_or_completed("full")),
]  # fmt: skip


# ----------------------------------------------------------------------------- facts100 validate
def _facts(make: Callable[[Env], Path], *flags: str) -> Callable[[Env], list[str]]:
    return lambda env: ["validate", str(make(env)), *flags]


def _events() -> list[dict]:
    return [json.loads(line) for line in FACTS3.read_text(encoding="utf-8").splitlines()]


def _edited(name: str, edit: Callable[[list[dict]], list]) -> Callable[[Env], Path]:
    return lambda env: env.jsonl(name, edit(_events()))


def _without_article(events: list[dict]) -> list[dict]:
    del events[0]["article"]
    return events


def _old_date(events: list[dict]) -> list[dict]:
    events[1]["date"] = "2023-05-01"
    return events


FACTS = "facts100 validate"
FACTS_CASES = [
    Case("file-missing", FACTS, _facts(lambda env: env.tmp / "nope.jsonl"), 1,
         r"nope\.jsonl: file does not exist"),
    Case("file-is-a-folder", FACTS, _facts(lambda env: env.tmp), 1,
         r": is a directory; expected a JSONL file"),
    Case("not-utf8", FACTS,
         _facts(lambda env: env.file("latin1.jsonl", FACTS3.read_bytes() + LATIN1 + b"\n"),
                "--count", "0"), 1,
         r"latin1\.jsonl: line 4: not UTF-8 text \(byte 0xe9"),
    Case("empty", FACTS, _facts(lambda env: env.file("empty.jsonl", "\n")), 1,
         r"empty\.jsonl: .*file has no events"),
    Case("line-not-json", FACTS,
         _facts(lambda env: env.file("bad.jsonl", FACTS3.read_text() + "{not json\n"),
                "--count", "0"), 1,
         r"bad\.jsonl: line 4: not valid JSON"),
    Case("line-an-array", FACTS, _facts(lambda env: env.file("arr.jsonl", "[1, 2]\n"), "--count",
                                        "0"), 1,
         r"arr\.jsonl: line 1 \(\?\): expected one JSON object"),
    Case("field-missing", FACTS, _facts(_edited("x.jsonl", _without_article), "--count", "3"), 1,
         r"x\.jsonl: line 1 \(f001\): missing field `article`"),
    Case("event-count", FACTS, _facts(lambda env: FACTS3), 1,
         r"facts3\.jsonl: file: has 3 events; expected 100"),
    Case("date-too-early", FACTS, _facts(_edited("x.jsonl", _old_date), "--count", "3"), 1,
         r"x\.jsonl: line 2 \(f002\): date 2023-05-01 is before 2026-01-01"),
    Case("duplicate-event", FACTS,
         _facts(_edited("x.jsonl", lambda ev: [ev[0], ev[0]]), "--count", "2"), 1,
         r"x\.jsonl: line 2 \(f001\): id 'f001' already used on line 1"),
    Case("count-negative", FACTS, _facts(lambda env: FACTS3, "--count", "-1"), 2,
         r"error: argument --count: .*'-1'.*expected an integer >= 0"),
    Case("count-word", FACTS, _facts(lambda env: FACTS3, "--count", "all"), 2,
         r"error: argument --count: .*'all'"),
    Case("no-command", FACTS, lambda env: [], 2, r"error: the following arguments are required"),
]  # fmt: skip


CASES = SAH_RUN_CASES + SWEEP_CASES + SFT_CASES + DPO_CASES + ANALYSIS_CASES + FACTS_CASES


def test_the_table_covers_every_cli_with_at_least_60_cases():
    assert len(CASES) >= 60
    assert len({(c.cli, c.id) for c in CASES}) == len(CASES)
    assert {c.cli.split(" (")[0] for c in CASES} == {c.split(" (")[0] for c in RUNNERS}


def _run(case: Case, env: Env) -> tuple[int, str, list[str]]:
    """The exit status, the SystemExit message (when it is one) and the argv of the case."""
    argv = case.build(env)
    try:
        status = RUNNERS[case.cli](env, argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            return 1, e.code, argv
        return (0 if e.code is None else e.code), "", argv
    return (0 if status is None else status), "", argv


_NOISE = re.compile(r"^\s*$|\d+%\||\[\d+:\d\d(:\d\d)?[<,]")  # blank lines, progress bars


def significant(text: str) -> list[str]:
    """The lines of `text` that say something: no progress bars, and of an argparse error only
    its `prog: error: ...` line (the usage block before it is argparse's standard preamble)."""
    lines, usage = [], False
    for line in text.splitlines():
        usage = usage or line.startswith("usage:")
        if usage:
            if ": error: " in line:
                usage = False
                lines.append(line)
        elif not _NOISE.search(line):
            lines.append(line)
    return lines


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{SHORT[c.cli]}-{c.id}")
def test_bad_input_is_one_clear_line_and_a_failing_exit(case, tmp_path, tiny_model_dir,
                                                         monkeypatch, capsys, caplog):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:
        env = Env(tmp_path / "case", tiny_model_dir, monkeypatch, stack)
        env.tmp.mkdir()
        code, exit_message, argv = _run(case, env)
        captured = capsys.readouterr()
        if case.after is not None:
            case.after(env)
        monkeypatch.undo()  # before the folders are unmounted
    shown = "\n".join([exit_message, captured.err, captured.out])
    report = (
        f"exit {code}\n--- message/stderr/stdout:\n{shown[-4000:]}\n--- log:\n{caplog.text[-3000:]}"
    )
    assert "Traceback" not in shown and "Traceback" not in caplog.text, report
    assert code == case.code, report
    assert not env.launched, f"a stage was started: {env.launched}"
    if case.cli == FACTS and code == 1:  # the validator: one line per problem, then a count
        problems = significant(captured.out)
        assert all(line.startswith(f"{argv[1]}: ") for line in problems), report
        assert significant(captured.err) == [f"{argv[1]}: {len(problems)} problem(s)"], report
        lines = [line for line in problems if re.search(case.message, line)]
    else:  # everything else: the error is the one line said
        lines = significant(captured.err) + significant(exit_message)
        assert len(lines) == 1, f"expected one line of error, got {len(lines)}:\n{report}"
    assert lines and re.search(case.message, lines[0]), f"no {case.message!r} in:\n{report}"
