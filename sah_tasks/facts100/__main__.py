"""`python -m sah_tasks.facts100 validate FILE [--count N]`: one line per problem, exit 1 if any."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sah_tasks.common.cli import SahParser
from sah_tasks.facts100.validate import EXPECTED_EVENTS, validate_file


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected an integer >= 0 (0 = any number of events)"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = SahParser(prog="python -m sah_tasks.facts100")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="check a Facts100-style JSONL event file")
    check.add_argument("file", help="JSONL file, one event per line")
    check.add_argument(
        "--count",
        type=_count,
        default=EXPECTED_EVENTS,
        help=f"expected number of events (default {EXPECTED_EVENTS}; 0 = any, for a Facts-N)",
    )
    args = parser.parse_args(argv)
    try:
        problems = validate_file(args.file, expected=args.count or None)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    for problem in problems:  # a problem of the whole file is said once, after its name
        said = problem.message if problem.where == str(Path(args.file)) else problem
        print(f"{args.file}: {said}")
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
