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
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

_SLUG = re.compile(r"[^a-z0-9._-]+")


class ConfigError(ValueError):
    """A user-fixable problem with a config file or a command-line override."""


# Options of TrainingArguments that sah sets per unit: a user's value would be overwritten.
RESERVED = {
    "output_dir": "each unit is written to <output_root>/<experiment>/<model>/<task>/n<N>; "
    "set output_root and experiment instead",
    "run_name": "each unit's run is named <experiment>/<model>/<task>/<unit> for the trackers",
    "resume_from_checkpoint": "an incomplete unit resumes from its own last checkpoint by itself "
    "(resume: true), and only with an unchanged recipe",
}
# The TRL options a researcher sets most; `--help` lists them, `--help_all` lists every one.
COMMON_TRL_OPTIONS = (
    "model_name_or_path", "model_revision", "dtype", "use_peft", "lora_r", "lora_alpha",
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_length", "seed", "bf16", "use_cpu",
    "gradient_checkpointing", "report_to", "logging_steps", "push_to_hub", "hub_model_id",
)  # fmt: skip


def parse_dataclasses(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None,
    prog: str | None = None,
    *,
    description: str | None = None,
    check_hardware: bool = True,
) -> tuple[Any, ...]:
    """Parse `argv` (default: `sys.argv[1:]`) into one instance per dataclass type.

    `check_hardware=False` is for planning on a machine that will not train (a login node):
    a `bf16: true` config parses there although no GPU is present.
    """
    from trl import TrlParser

    args = _split_equals(list(sys.argv[1:] if argv is None else argv))
    if {"-h", "--help"} & set(args):
        print(short_help(dataclass_types, prog, description))
        raise SystemExit(0)
    if {"--help_all", "--help-all"} & set(args):
        TrlParser(list(dataclass_types), prog=prog).print_help()
        raise SystemExit(0)
    check_reserved(args, "the command line")
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise ConfigError("--config needs a YAML file path")
        path = Path(args[index + 1])
        check_reserved(check_yaml_keys(path, dataclass_types), str(path))
    parser = TrlParser(list(dataclass_types), prog=prog)
    # one line for a bad flag, not argparse's usage of every TRL option (hundreds of lines)
    parser.error = lambda message: parser.exit(  # type: ignore[method-assign]
        2, f"{parser.prog}: error: {message} (options: --help)\n"
    )
    try:
        return tuple(parser.parse_args_and_config(args=args))
    except ValueError as e:
        if "not used by the HfArgumentParser" in str(e):
            raise ConfigError(f"unknown command-line argument(s): {e}") from None
        if "bf16" not in str(e):
            raise
        if check_hardware:
            raise ConfigError(
                "bf16: true needs a GPU with bf16 support, and none was found; on a CPU pass "
                "--bf16 false --use_cpu true"
            ) from None
    # planning only: parse as if on CPU, then restore the recipe's own use_cpu (false)
    parts = tuple(parser.parse_args_and_config(args=[*args, "--use_cpu", "true"]))
    for part in parts:
        if hasattr(part, "use_cpu"):
            part.use_cpu = False
    return parts


def _split_equals(args: list[str]) -> list[str]:
    """`--config=FILE` -> `--config FILE` (TRL looks for the bare flag and would ignore it)."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("--config="):
            out += ["--config", arg.split("=", 1)[1]]
        else:
            out.append(arg)
    return out


def check_reserved(given: Sequence[str] | dict, where: str) -> None:
    """A reserved option (RESERVED) given by the user is an error saying what sah does instead."""
    keys = (
        given if isinstance(given, dict) else [a.split("=")[0][2:] for a in given if a[:2] == "--"]
    )
    for key in keys:
        name = str(key).replace("-", "_")
        if name in RESERVED:
            raise ConfigError(f"{where}: {name} is set by sah: {RESERVED[name]}")


def short_help(dataclass_types: Sequence[type], prog: str | None, description: str | None) -> str:
    """`--help`: the config file, sah's own options and the common TRL ones (not all ~300)."""
    from sah_tasks.common.cli import SahParser

    parser = SahParser(
        prog=prog,
        description=description,
        usage=f"{prog} --config FILE.yaml [--option value ...]",
        epilog="Every other field of TRL's training config and ModelConfig is accepted too, in "
        "the YAML or as a flag:\n  --help_all lists all of them. Flags take --a_b or --a-b.",
        add_help=False,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file of options (CLI flags override it)"
    )
    parser.add_argument("-h", "--help", action="store_true", help="this message")
    ours, *theirs = dataclass_types
    _add_fields(parser.add_argument_group("sah options"), fields(ours))
    common = [f for dc in theirs for f in fields(dc) if f.name in COMMON_TRL_OPTIONS]
    _add_fields(parser.add_argument_group("common TRL options"), common)
    return parser.format_help()


def _add_fields(group, dataclass_fields) -> None:
    seen = set()
    for f in dataclass_fields:
        if not f.init or f.name in seen or f.name in RESERVED:
            continue
        seen.add(f.name)
        default = f.default if f.default_factory is MISSING else f.default_factory()
        help_text = re.sub(r"(?<!%)%(?!%)", "%%", f.metadata.get("help") or "")
        group.add_argument(f"--{f.name}", default=default, help=help_text or " ",
                           metavar="V")  # fmt: skip


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
