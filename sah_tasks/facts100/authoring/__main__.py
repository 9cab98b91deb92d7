"""CLI of the Facts100 builder; see `sah_tasks.facts100.authoring` for what it does."""

from __future__ import annotations

import sys

from sah_tasks.common.cli import SahParser
from sah_tasks.facts100.authoring.compile import SOURCES_DIR, build_lines, write_atomic
from sah_tasks.facts100.dataset import SHIPPED_FILE
from sah_tasks.facts100.validate import EXPECTED_EVENTS, validate_events


def main(argv: list[str] | None = None) -> int:
    parser = SahParser(prog="python -m sah_tasks.facts100.authoring")
    parser.add_argument("--sources", default=str(SOURCES_DIR), help="folder of *.yml sources")
    parser.add_argument("--out", default=str(SHIPPED_FILE), help="JSONL file to write")
    parser.add_argument("--check", action="store_true", help="only check --out is up to date")
    parser.add_argument(
        "--count", type=int, default=EXPECTED_EVENTS, help="expected number of events (0 = any)"
    )
    args = parser.parse_args(argv)

    events, lines = build_lines(args.sources)
    problems = validate_events(list(enumerate(events, 1)), expected=args.count or None)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    text = "".join(lines)
    if args.check:
        with open(args.out, encoding="utf-8") as f:
            if f.read() != text:
                print(
                    f"{args.out} is out of date; run python -m sah_tasks.facts100.authoring",
                    file=sys.stderr,
                )
                return 1
        print(f"{args.out} is up to date ({len(events)} events)")
        return 0
    write_atomic(args.out, text)
    print(f"wrote {len(events)} events to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
