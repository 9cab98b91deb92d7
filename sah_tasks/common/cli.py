"""One command-line style for every sah tool.

lm-eval's own flags are spelled with underscores (`--batch_size`), Python's habit is dashes
(`--n-boot`). A user who types the other spelling should not be told the flag does not exist,
so every sah parser accepts both: the help shows one canonical spelling, and the other is
rewritten to it before argparse sees it. Epilogs keep their line breaks (examples stay
copy-pasteable).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _key(flag: str) -> str:
    return flag.replace("-", "_")


class SahParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` that accepts `--a_b` and `--a-b` alike and keeps the layout of
    the description and epilog."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _canonical_flags(self) -> dict[str, str]:
        flags: dict[str, str] = {}
        for action in self._actions:
            for flag in action.option_strings:
                if flag.startswith("--"):
                    flags.setdefault(_key(flag), flag)
        return flags

    def normalise(self, args: Sequence[str]) -> list[str]:
        """`--n_boot=5` -> `--n-boot=5` when the parser knows `--n-boot` (and the reverse)."""
        flags = self._canonical_flags()
        out: list[str] = []
        rest = False
        for arg in args:
            if rest or arg == "--":
                rest = True
                out.append(arg)
                continue
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                canonical = flags.get(_key(name))
                if canonical is not None:
                    arg = canonical + eq + value
            out.append(arg)
        return out

    def parse_known_args(self, args=None, namespace=None):
        import sys

        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self.normalise(args), namespace)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's and epilog's own line breaks and shows defaults."""

    def _get_help_string(self, action):
        # Only show a default where there is one worth showing (0 is; `in (None, False)`
        # would hide it, since 0 == False).
        if action.default is None or action.default is False or action.help is None:
            return action.help
        return super()._get_help_string(action)
