"""GSM8K self-consistency (`sah_gsm8k_maj`): k sampled solutions per problem, a majority vote.

The answer is extracted from every sample by the very filters `sah_gsm8k` uses: the steps of the
`strict-match` and `flexible-extract` pipelines are read from `_gsm8k_template_yaml` (with
lm-eval's own YAML loader), minus their final `take_first`, and applied to each of the k samples.
So a change to those regexes there changes this task too; nothing is copied.

`process_results` then sees the k extracted answers of one problem and reports

* `maj@k`  - 1 if the voted answer equals the gold answer (as numbers, `utils.numbers_equal`);
* `pass@1` - the fraction of the k samples whose own answer is right (the mean exact match of a
  single sample at this temperature).

The vote (`majority_vote`) groups answers by numeric value (`1,000`, `$1000` and `1000.00` are one
vote), ignores samples with no number (they abstain; a problem where every sample abstains is
wrong), and breaks ties by the earliest sample: among the values with the most votes, the one
whose first sample comes first wins, and that sample's text is the answer returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from sah_tasks.gsm8k.utils import gold_answer, numbers_equal, parse_number

TEMPLATE = Path(__file__).with_name("_gsm8k_template_yaml")

# The reducing step the template ends each pipeline with; dropped here so every sample is kept.
_REDUCER = "take_first"


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The answer most samples agree on, compared as numbers; ties go to the earliest sample.

    Samples whose answer is not a number (`None`, the filters' `[invalid]`) abstain. Returns the
    text of the first sample of the winning value, or None when no sample has a number.
    """
    counts: dict[Decimal, int] = {}
    first: dict[Decimal, int] = {}
    for i, answer in enumerate(answers):
        value = parse_number(answer)
        if value is None:
            continue
        counts[value] = counts.get(value, 0) + 1
        first.setdefault(value, i)
    if not counts:
        return None
    winner = min(counts, key=lambda v: (-counts[v], first[v]))
    return answers[first[winner]]


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """`results[0]` is the list of the k extracted answers (one per sample) of one problem."""
    answers = results[0] if results else []
    if isinstance(answers, str):  # a pipeline that already reduced to one answer
        answers = [answers]
    answers = list(answers)
    gold = gold_answer(doc["answer"])
    k = len(answers)
    voted = majority_vote(answers)
    right = [numbers_equal(a, gold) for a in answers]
    return {
        f"maj@{k}": float(voted is not None and numbers_equal(voted, gold)),
        "pass@1": sum(right) / k if k else 0.0,
    }


@cache
def _per_sample_steps(pipeline: str) -> tuple[Callable[[], Any], ...]:
    """The template's `pipeline` filter steps without its final `take_first`, ready to build."""
    from lm_eval.api.registry import get_filter
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval reads tasks with

    cfg = load_yaml(TEMPLATE)
    pipelines = {entry["name"]: entry["filter"] for entry in cfg.get("filter_list") or []}
    if pipeline not in pipelines:
        raise ValueError(
            f"{TEMPLATE}: no filter pipeline named {pipeline!r} in filter_list "
            f"(found {sorted(pipelines)}); sah_gsm8k_maj extracts answers with it"
        )
    steps = list(pipelines[pipeline])
    if not steps or steps[-1].get("function") != _REDUCER:
        raise ValueError(
            f"{TEMPLATE}: filter pipeline {pipeline!r} should end with `{_REDUCER}` (the step "
            f"sah_gsm8k_maj drops to keep all k samples); its steps are {steps}"
        )
    built = []
    for step in steps[:-1]:
        kwargs = {key: value for key, value in step.items() if key != "function"}
        filter_cls = get_filter(step["function"])
        built.append(lambda cls=filter_cls, kw=kwargs: cls(**kw))
    return tuple(built)


def extract_answers(pipeline: str, resps: Iterable[Sequence[str]], docs: Sequence[dict]):
    """Apply the template's `pipeline` extraction to each of the k responses of every doc."""
    resps = [list(r) for r in resps]
    counts = [len(r) for r in resps]
    for make in _per_sample_steps(pipeline):
        resps = [list(r) for r in make().apply(resps, docs)]
    if [len(r) for r in resps] != counts:
        raise ValueError(
            f"{TEMPLATE}: filter pipeline {pipeline!r} does not keep one answer per sample "
            "(a step other than the final take_first reduces the responses)"
        )
    return resps


def strict_match(resps: Iterable[Sequence[str]], docs: Sequence[dict]):
    """`strict-match` of sah_gsm8k (the number after `####`), for every sample."""
    return extract_answers("strict-match", resps, docs)


def flexible_extract(resps: Iterable[Sequence[str]], docs: Sequence[dict]):
    """`flexible-extract` of sah_gsm8k (the last number in the response), for every sample."""
    return extract_answers("flexible-extract", resps, docs)
