"""`python -m sah_tasks path` prints the task folder, for `lm_eval --include_path`.

lm_eval --include_path "$(python -m sah_tasks path)" --tasks 'sah_*' ...
"""

from __future__ import annotations

from sah_tasks import TASKS_DIR
from sah_tasks.common.cli import SahParser


def main(argv: list[str] | None = None) -> int:
    parser = SahParser(
        prog="python -m sah_tasks",
        description="Locate the sah lm-eval task folder.",
        epilog="Example: lm_eval --include_path \"$(python -m sah_tasks path)\" --tasks 'sah_*' ...",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the folder to pass to lm_eval --include_path")
    parser.parse_args(argv)
    print(TASKS_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
