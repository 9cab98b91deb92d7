"""`sah-eval`: the `lm_eval` command with the sah task folder on the include path.

Every flag and subcommand of `lm_eval` (run / ls / validate, and the legacy no-subcommand form)
works unchanged; a user's own `--include_path` is kept and searched after ours, so a user task can
override a shipped one of the same name. Subcommands of our own (e.g. `sweep`) are dispatched here
before lm-eval parses anything.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

from sah_tasks import TASKS_DIR

# Our own subcommands: name -> "module:function" taking argv (the arguments after the name).
EXTRA_COMMANDS: dict[str, str] = {"sweep": "sah_tasks.sweep:main"}


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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        sys.exit(_resolve(EXTRA_COMMANDS[argv[0]])(argv[1:]) or 0)
    install_task_path()
    install_skip_unloadable()
    from lm_eval.__main__ import cli_evaluate

    global _SKIPPING
    sys.argv = ["sah-eval", *argv]
    _SKIPPING = True
    try:
        cli_evaluate()
    except KeyboardInterrupt:
        print("sah-eval: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        _SKIPPING = False
    if SKIPPED:
        names = ", ".join(task for task, _ in SKIPPED)
        print(
            f"sah-eval: {len(SKIPPED)} task(s) could not run: {names} (see above)", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
