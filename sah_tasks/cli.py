"""`sah-eval`: the `lm_eval` command with the sah task folder on the include path.

Every flag and subcommand of `lm_eval` (run / ls / validate, and the legacy no-subcommand form)
works unchanged; a user's own `--include_path` is kept and searched after ours, so a user task can
override a shipped one of the same name. Subcommands of our own (e.g. `sweep`) are dispatched here
before lm-eval parses anything. `sah-eval ls` lists sah's tasks only; `sah-eval ls tasks --all`
lists lm-eval's built-in ones too (about 14,700 names).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from sah_tasks import TASKS_DIR

# Our own subcommands: name -> "module:function" taking argv (the arguments after the name).
EXTRA_COMMANDS: dict[str, str] = {"sweep": "sah_tasks.sweep:main"}
# `sah-eval ls` lists sah's tasks (and a user's --include_path) only: lm-eval's ~14.7k built-in
# names drown them (and indexing them costs seconds). This flag of ours brings them back.
LS_ALL_FLAG = "--all"
_INCLUDE_DEFAULTS = True  # False for `sah-eval ls` without --all, and runs of sah_* tasks only


def _with_sah_tasks(include_path):
    """Prepend TASKS_DIR to whatever include_path lm-eval was given (None, a path, or a list)."""
    if include_path is None:
        paths = []
    elif isinstance(include_path, list | tuple):
        paths = list(include_path)
    else:
        # lm-eval documents "dir1:dir2" in `ls --help`; split it so both folders are searched.
        paths = [p for p in str(include_path).split(":") if p]
    if TASKS_DIR not in [str(p) for p in paths]:
        paths.insert(0, TASKS_DIR)
    return paths


def install_task_path() -> None:
    """Make every TaskManager built in this process see our tasks (idempotent).

    lm-eval builds its TaskManager in several places (run, ls, validate, simple_evaluate); wrapping
    the constructor covers all of them without copying any of lm-eval's CLI code.
    """
    from lm_eval.tasks import manager

    init = manager.TaskManager.__init__
    if getattr(init, "_sah_wrapped", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, include_path=None, **kwargs):
        if not _INCLUDE_DEFAULTS:
            kwargs["include_defaults"] = False
        init(self, *args, include_path=_with_sah_tasks(include_path), **kwargs)

    __init__._sah_wrapped = True  # type: ignore[attr-defined]
    manager.TaskManager.__init__ = __init__  # type: ignore[method-assign]


SKIPPED: list[tuple[str, str]] = []  # (task, why) of tasks sah-eval could not build
_SKIPPING = False  # True only while sah-eval's own evaluation runs


def install_skip_unloadable() -> None:
    """`sah-eval`: a task whose data cannot be loaded (offline, no hub access, a bad local file)
    is reported in one line and skipped, and the other tasks of the run go on; a tag is loaded
    member by member, so one missing dataset does not take its siblings down."""
    from lm_eval.tasks import manager
    from lm_eval.tasks._index import Kind

    from sah_tasks.common.data import TaskDataError

    load = manager.TaskManager._load_spec
    if getattr(load, "_sah_wrapped", False):
        return

    @functools.wraps(load)
    def _load_spec(self, spec):
        entry = self._entry(spec) if isinstance(spec, str) else None
        if entry is not None and entry.kind == Kind.TAG:
            built = [_load_spec(self, name) for name in sorted(entry.tags)]
            return [t for b in built for t in (b if isinstance(b, list) else [b])]
        try:
            return load(self, spec)
        except TaskDataError as e:
            if not _SKIPPING:  # only inside sah-eval's own run (not the sweep, not lm_eval API)
                raise
            SKIPPED.append((str(spec), str(e)))
            print(f"sah-eval: skipping {spec}: {e}", file=sys.stderr, flush=True)
            return []

    _load_spec._sah_wrapped = True  # type: ignore[attr-defined]
    manager.TaskManager._load_spec = _load_spec  # type: ignore[method-assign]


def _resolve(target: str) -> Callable[[list[str]], int | None]:
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _ls_scope(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without our --all flag, whether lm-eval's built-in tasks are listed too)."""
    if not argv or argv[0] != "ls":
        return argv, True
    if LS_ALL_FLAG in argv:
        return [a for a in argv if a != LS_ALL_FLAG], True
    return argv, False


def _requested_tasks(argv: list[str]) -> list[str]:
    """The comma-separated names of `--tasks` / `-t` (the last one given, as argparse does)."""
    value = None
    for i, arg in enumerate(argv):
        if arg in ("--tasks", "-t") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--tasks="):
            value = arg.split("=", 1)[1]
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def only_sah_tasks(argv: list[str]) -> bool:
    """A run (or validate) whose every task name or glob starts with `sah_`: lm-eval's built-in
    tasks cannot match, so their index (~14.7k names, seconds per process) need not be built.
    A task given as a YAML file or folder keeps the full index."""
    if argv and argv[0] in ("ls",):
        return False
    tasks = _requested_tasks(argv)
    return bool(tasks) and all(t.startswith("sah_") and not Path(t).exists() for t in tasks)


def main(argv: list[str] | None = None) -> None:
    global _INCLUDE_DEFAULTS, _SKIPPING
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        sys.exit(_resolve(EXTRA_COMMANDS[argv[0]])(argv[1:]) or 0)
    argv, with_defaults = _ls_scope(argv)
    if argv[:1] == ["ls"] and not with_defaults and not {"-h", "--help"} & set(argv):
        print(
            f"sah-eval ls: sah's tasks only (and --include_path); add {LS_ALL_FLAG} for "
            "lm-eval's built-in tasks too",
            file=sys.stderr,
        )
    install_task_path()
    install_skip_unloadable()
    from lm_eval.__main__ import cli_evaluate

    SKIPPED.clear()  # main() may run more than once in a process (tests, notebooks)
    sys.argv = ["sah-eval", *argv]
    # Both switches hold only while this command runs, so an in-process caller's later
    # TaskManagers see lm-eval's defaults again.
    _INCLUDE_DEFAULTS = with_defaults and not only_sah_tasks(argv)
    _SKIPPING = True
    try:
        cli_evaluate()
    except KeyboardInterrupt:
        print("sah-eval: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        _SKIPPING, _INCLUDE_DEFAULTS = False, True
    if SKIPPED:
        names = ", ".join(task for task, _ in SKIPPED)
        print(
            f"sah-eval: {len(SKIPPED)} task(s) could not run: {names} (see above)", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
