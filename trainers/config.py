"""Config parsing in TRL's style: YAML `--config FILE` plus CLI overrides, into dataclasses.

`TrlParser` already merges the YAML into the dataclass defaults; this adds what a researcher
needs when a run is expensive: an unknown YAML key (a typo such as `lerning_rate`) is an error
naming the file, the key and the closest valid key — never silently ignored.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

_SLUG = re.compile(r"[^a-z0-9._-]+")


class ConfigError(ValueError):
    """A user-fixable problem with a config file or a command-line override."""


def parse_dataclasses(
    dataclass_types: Sequence[type], argv: Sequence[str] | None, prog: str | None = None
) -> tuple[Any, ...]:
    """Parse `argv` (default: `sys.argv[1:]`) into one instance per dataclass type."""
    from trl import TrlParser

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise ConfigError("--config needs a YAML file path")
        check_yaml_keys(Path(args[index + 1]), dataclass_types)
    parser = TrlParser(list(dataclass_types), prog=prog)
    # one line for a bad flag, not argparse's usage of every TRL option (hundreds of lines)
    parser.error = lambda message: parser.exit(  # type: ignore[method-assign]
        2, f"{parser.prog}: error: {message} (all options: --help)\n"
    )
    try:
        return tuple(parser.parse_args_and_config(args=args))
    except ValueError as e:
        if "not used by the HfArgumentParser" in str(e):
            raise ConfigError(f"unknown command-line argument(s): {e}") from None
        raise


def check_yaml_keys(path: Path, dataclass_types: Sequence[type]) -> dict[str, Any]:
    """Read the YAML config and fail on a key that no dataclass defines."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        from sah_tasks.common.text import not_utf8

        raise ConfigError(f"{path}: {not_utf8(e, whole_file=True)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(e)})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
    valid = {f.name for dc in dataclass_types for f in fields(dc) if f.init} | {"env"}
    problems = []
    for key in config:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key!r}{hint}")
    if problems:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(problems)}")
    return config


def _one_line(error: Exception) -> str:
    """A library's multi-line message (PyYAML's points at the line with a caret) on one line."""
    return " ".join(str(error).split())


def parse_mapping(value: dict | str | None, name: str) -> dict:
    """A dict option given in YAML (a mapping) or on the CLI (a JSON string)."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name}: expected a JSON object, got {value!r} ({e.msg})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name}: expected a JSON object, got {value!r}")
    return parsed


def slugify(name: str) -> str:
    """`meta-llama/Meta-Llama-3-8B` -> `meta-llama-3-8b` (last path part, lowercased)."""
    last = Path(str(name).rstrip("/")).name or str(name)
    slug = _SLUG.sub("-", last.lower()).strip("-")
    if not slug:
        raise ConfigError(f"cannot derive a model slug from {name!r}; set model_slug")
    return slug


def to_jsonable(value: Any) -> Any:
    """Config values as plain JSON (enums, paths and dtypes become strings)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(getattr(value, "value", value))


def unshadow_script_dir(script: str) -> None:
    """For `python trainers/sft.py`: drop `trainers/` from `sys.path`.

    Python puts a script's folder first on the path, where our modules (`data`, `config`,
    `common`...) could shadow top-level packages of the same name; the installed `trainers`
    package is what the scripts import.
    """
    here = Path(script).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
