"""`python -m sah_tasks.execution`: show the sandbox's isolation here, or run one file in it.

examples:
  python -m sah_tasks.execution --report
  python -m sah_tasks.execution solution.py --tests tests.py --timeout 10

HumanEval-style tests (`def check(candidate): assert candidate(...) == ...` and a final
`check(name)`) are scored by comparison outside the program's process where they can be split;
other tests run in-process after the program. The last line says which.

exit status: 0 if the program passed, 1 if not, 2 for usage errors.
See docs/code-execution.md for what each isolation mode contains.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sah_tasks.common.cli import SahParser
from sah_tasks.execution import ExecutionLimits, Program, SandboxOptions, isolation_report
from sah_tasks.execution.runner import run_program


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise SystemExit(f"cannot read the {what} file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SystemExit(
            f"cannot read the {what} file {path}: not {e.encoding} text (byte {e.start})"
        ) from None


def main(argv: list[str] | None = None) -> int:
    summary, _, epilog = __doc__.partition("\n\n")
    parser = SahParser(prog="python -m sah_tasks.execution", description=summary, epilog=epilog)
    parser.add_argument("program", nargs="?", help="Python file to run in the sandbox")
    parser.add_argument("--tests", help="Python file run after the program, in its namespace")
    parser.add_argument("--report", action="store_true", help="print the isolation achieved here")
    parser.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds")
    parser.add_argument("--memory-mb", type=int, default=2048, help="per program, all processes")
    parser.add_argument("--no-namespaces", action="store_true", help="no new namespaces")
    parser.add_argument("--keep-root", action="store_true", help="do not drop to a throwaway uid")
    parser.add_argument(
        "--in-process", action="store_true", help="always run the tests in-process (no splitting)"
    )
    args = parser.parse_args(argv)
    options = SandboxOptions(namespaces=not args.no_namespaces, drop_privileges=not args.keep_root)
    if args.report or not args.program:
        print("Isolation of sandboxed programs on this machine:")
        print(isolation_report(options).summary())
        if not args.program:
            return 0
    program = Program(
        _read(args.program, "program"),
        _read(args.tests, "tests") if args.tests else "",
        compare=not args.in_process,
    )
    try:
        limits = ExecutionLimits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    except ValueError as e:  # e.g. --timeout 0: a usage error, not a traceback
        parser.error(str(e))
    result = run_program(program, limits, options)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    print(
        f"{result.status}: {result.detail or 'ok'} ({result.duration_s:.2f}s, {result.mode})",
        file=sys.stderr,
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
