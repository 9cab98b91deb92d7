"""Which metric stands for a task in figures and fits, and how one item's score is counted.

Every task reports several metrics (and GSM8K two filters). Figures and fits use one "primary"
metric per evaluation task; the defaults below follow the study and can be overridden on the
command line with `--metric TASK=METRIC[,FILTER]`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class MetricError(ValueError):
    """A --metric option that is malformed or names a metric the task did not report."""


@dataclass(frozen=True)
class MetricKey:
    metric: str
    filter: str

    def __str__(self) -> str:
        return f"{self.metric},{self.filter}"


# Patterns are matched in order with fnmatch; the first match wins.
PRIMARY_METRICS: tuple[tuple[str, MetricKey], ...] = (
    # strict-match: the answer must be in the trained `#### <number>` format, as in the study
    ("sah_gsm8k_maj", MetricKey("maj@8", "strict-match")),  # self-consistency (k = 8)
    ("sah_gsm8k*", MetricKey("exact_match", "strict-match")),
    ("sah_ifeval*", MetricKey("prompt_level_strict_acc", "none")),
    ("sah_multihop*", MetricKey("exact_match", "none")),
    ("sah_humaneval_plus*", MetricKey("pass@1_plus", "none")),
    ("sah_mbpp_plus*", MetricKey("pass@1_plus", "none")),
    ("sah_facts100*", MetricKey("exact_match", "none")),
    # lm-eval's built-in tasks the study compares with (a later entry is a fallback when the
    # task did not report the earlier one)
    ("gsm8k*", MetricKey("exact_match", "strict-match")),  # not the lenient flexible-extract
    ("ifeval*", MetricKey("prompt_level_strict_acc", "none")),
    ("hellaswag*", MetricKey("acc_norm", "none")),
    ("hellaswag*", MetricKey("acc", "none")),
    ("arc_*", MetricKey("acc_norm", "none")),
    ("arc_*", MetricKey("acc", "none")),
)


def parse_metric_override(text: str) -> tuple[str, MetricKey]:
    """`sah_gsm8k=exact_match,flexible-extract` -> ("sah_gsm8k", MetricKey(...))."""
    task, sep, rest = text.partition("=")
    metric, _, filt = rest.partition(",")
    if not sep or not task.strip() or not metric.strip():
        raise MetricError(
            f"--metric {text!r}: expected TASK=METRIC[,FILTER], e.g. "
            "sah_gsm8k=exact_match,flexible-extract"
        )
    return task.strip(), MetricKey(metric.strip(), filt.strip() or "none")


def primary_metric(
    eval_task: str,
    available: list[MetricKey],
    overrides: dict[str, MetricKey] | None = None,
    on_guess: Callable[[str], None] | None = None,
) -> MetricKey | None:
    """The metric to plot and fit for `eval_task`, chosen among the ones it reported.

    Overrides win, then the defaults; a task with no known default uses its first reported
    metric (sorted), so a new task still gets a figure, and when it had a choice `on_guess`
    gets a warning naming that metric and the option that overrides it. None when it reported
    nothing.
    """
    for pattern, key in (overrides or {}).items():
        if fnmatch.fnmatchcase(eval_task, pattern):
            if key not in available:
                raise MetricError(
                    f"--metric {pattern}={key}: {eval_task} reported only "
                    f"{', '.join(map(str, available))}"
                )
            return key
    for pattern, key in PRIMARY_METRICS:
        if fnmatch.fnmatchcase(eval_task, pattern) and key in available:
            return key
    if not available:
        return None
    choices = sorted(available, key=str)
    if on_guess is not None and len(choices) > 1:
        on_guess(guess_warning(eval_task, choices))
    return choices[0]


def guess_warning(eval_task: str, choices: list[MetricKey]) -> str:
    """The warning for a primary metric that was guessed (the first of `choices`)."""
    return (
        f"{eval_task}: no default primary metric for this task, so figures and fits use "
        f"{choices[0]} (the first of {', '.join(map(str, choices))}); to choose, pass "
        f"--metric {eval_task}=METRIC,FILTER (e.g. --metric {eval_task}={choices[-1]})"
    )


def item_fraction(value: Any) -> tuple[float, float] | None:
    """One item's score as (numerator, denominator); None when it carries no score.

    Scalars (bool, 0/1, F1, pass@1) count as (value, 1). A list, as IFEval's instruction-level
    accuracy logs, counts each element, so aggregating sum(num)/sum(den) reproduces lm-eval's
    `agg_inst_level_acc` and resampling items resamples whole prompts, not single instructions.
    """
    kind = type(value)
    if kind is float:  # the common case first: this runs once per item and metric
        return None if value != value else (value, 1.0)
    if kind is bool or kind is int:
        return (float(value), 1.0)
    if isinstance(value, bool | int | float):
        v = float(value)
        return None if math.isnan(v) else (v, 1.0)
    if isinstance(value, list) and value and all(isinstance(x, bool | int | float) for x in value):
        return float(sum(value)), float(len(value))
    return None
