"""lm-eval's evaluation flags in `sah-eval sweep` (and so in `sah run`), with lm-eval's names,
types and help: the argparse actions are taken from lm-eval's own `run` parser, not re-declared.

    --num_fewshot --system_instruction --fewshot_as_multiturn --apply_chat_template
    --gen_kwargs --seed --metadata --use_cache --limit --batch_size --max_batch_size --device
    --confirm_run_unsafe_code --wandb_args --hf_hub_log_args

What decides a result (few-shot, system instruction, chat template, generation settings, seeds,
metadata, limit) is recorded in every unit's request (sah_tasks/ledger.py). The chat template
is the checkpoint's by default: a checkpoint trained with `prompt_format: chat` is evaluated with
the chat template (the one saved with it, or the file its manifest records), one trained plain
without; `--apply_chat_template` / `--no_apply_chat_template` override that for every unit.
"""

from __future__ import annotations

import argparse
from typing import Any

LM_EVAL_FLAGS = (
    "num_fewshot", "system_instruction", "fewshot_as_multiturn", "apply_chat_template",
    "gen_kwargs", "seed", "metadata", "use_cache", "limit", "batch_size", "max_batch_size",
    "device", "confirm_run_unsafe_code", "wandb_args", "hf_hub_log_args",
)  # fmt: skip
# Where the sweep's meaning or default differs from `lm_eval run`'s help text.
SWEEP_HELP = {
    "batch_size": "per-model batch size: 'auto' (the largest that fits, detected once per "
    "model shape and reused for all tasks of every checkpoint of that shape), 'auto:N' "
    "(re-detected N times per call), "
    "or an integer (default: auto; on a CPU a small integer such as 4 skips the detection)",
    "max_batch_size": "upper bound of --batch_size auto's detection (default: 64); on vLLM "
    "the most sequences per engine step (max_num_seqs)",
    "device": "device of the hf backend (e.g. cuda, cuda:0, cpu); default: lm-eval's (cuda "
    "when available)",
}
DEFAULT_SEEDS = [0, 1234, 1234, 1234]  # lm-eval's: python, numpy, torch, few-shot


def lm_eval_run_parser() -> argparse.ArgumentParser:
    from lm_eval._cli.run import Run

    subparsers = argparse.ArgumentParser(prog="lm_eval").add_subparsers()
    return Run(subparsers)._parser


def add_lm_eval_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lm-eval evaluation settings (as in `lm_eval run`)")
    for action in lm_eval_run_parser()._actions:
        if action.dest in LM_EVAL_FLAGS:
            action.help = SWEEP_HELP.get(action.dest, action.help)
            group._add_action(action)
    group.add_argument(
        "--no_apply_chat_template",
        action="store_true",
        help="never apply a chat template (default: as each checkpoint was trained)",
    )


def normalise_seed(seed: Any) -> list[int | None]:
    """lm-eval's four seeds (python, numpy, torch, few-shot) from an int or a list."""
    if seed is None:
        return list(DEFAULT_SEEDS)
    values = list(seed) if isinstance(seed, list | tuple) else [seed]
    if len(values) == 1:
        values *= 4
    elif len(values) == 3:  # as lm-eval's --seed: the few-shot seed keeps its default
        values.append(DEFAULT_SEEDS[3])
    elif len(values) != 4:  # a fifth seed would be dropped, two would be spread wrongly
        raise ValueError(
            f"seed {seed!r}: expected one seed for all four, or 3-4 of (python, numpy, torch, "
            "few-shot), as lm-eval's --seed"
        )
    out = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            try:
                v = int(str(v))
            except ValueError:
                raise ValueError(f"seed {seed!r}: {v!r} is not an integer or None") from None
        out.append(v)
    return out


def normalise_kwargs(value: Any, what: str) -> dict[str, Any] | None:
    """`key=value,...` strings (as the sweep used to take) or dicts, as lm-eval parses them."""
    if value is None or isinstance(value, dict):
        return value or None
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(str(value)) or None
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"--{what} {value!r}: expected key=value[,key=value] ({e})") from None


def prompt_format(manifest: dict[str, Any]) -> str | None:
    """How a checkpoint was trained to be prompted ('plain' / 'chat'), from its manifest."""
    config = manifest.get("config") or {}
    for part in ("scale", "budget"):
        value = (config.get(part) or {}).get("prompt_format")
        if value:
            return str(value)
    return None


def chat_setting(opts: Any, manifest: dict[str, Any]) -> bool | str:
    """The `apply_chat_template` of one checkpoint: the user's (True, a template name, or
    False), else as the checkpoint was trained (None)."""
    if opts.apply_chat_template is None:
        return prompt_format(manifest) == "chat"
    return opts.apply_chat_template
