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


def _resolve(target: str) -> Callable[[list[str]], int | None]:
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        sys.exit(_resolve(EXTRA_COMMANDS[argv[0]])(argv[1:]) or 0)
    install_task_path()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["sah-eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
