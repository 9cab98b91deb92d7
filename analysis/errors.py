"""Error taxonomy for GSM8K-style outputs: why each wrong response is wrong.

Deterministic checks first, then (optionally) an LLM judge; a response can be in several
categories, as in the study:

* format      no final answer in the trained `#### <number>` form (lm-eval's strict filter found
              nothing: `[invalid]`);
* arithmetic  an equation in the working that does not hold, e.g. `12*7 = 82` or `<<12*7=82>>`;
* reasoning   the judge says the plan/set-up is wrong (only with --judge-url; without a judge
              the count is 0 with `judged` False, and tables and figures say "not judged");
* other       wrong, and none of the above was found (without a judge, reasoning errors land here).

`incorrect` is the total of wrong responses; the categories overlap, so they can add up to more.

Only responses that the strict-match filter scored wrong are categorised; correct ones are
counted as correct.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.judge import Judge, JudgeCase
from analysis.results import RunData, sample_lines

CATEGORIES = ("format", "arithmetic", "reasoning", "other")
# the sah_gsm8k strict filter: a number after `####`
FINAL_ANSWER = re.compile(r"####\s*(-?\$?\s?\d[\d,]*(?:\.\d+)?)")
_NUM = r"\$?\d+(?:,\d{3})*(?:\.\d+)?"
_OPERAND = rf"(?:\(\s*)*-?{_NUM}(?:\s*\))*"
_EXPR = rf"{_OPERAND}(?:\s*[-+*/x×÷^]\s*{_OPERAND})*"
_CHAIN = re.compile(rf"(?<![\w.]){_EXPR}(?:\s*=\s*{_EXPR})+")
_SINGLE_NUMBER = re.compile(rf"^\s*-?{_NUM}\s*$")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow}  # fmt: skip


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large to check")
        return _OPS[type(node.op)](left, right)
    raise ValueError("not plain arithmetic")


def evaluate_expression(text: str) -> float | None:
    """Value of `12 x 7`, `$1,200 / 3`, `(2+3)*4`...; None when it is not plain arithmetic."""
    expr = re.sub(r"(?<=\d),(?=\d{3})", "", text.replace("$", ""))
    expr = expr.replace("×", "*").replace("x", "*").replace("÷", "/").replace("^", "**")
    try:
        value = _evaluate(ast.parse(expr.strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return value if math.isfinite(value) else None


def _has_operator(part: str) -> bool:
    return re.search(r"\d\s*[-+*/x×÷^]\s*[-($\d]", part) is not None


def _tolerance(number: str) -> float:
    """Half a unit of the last digit shown: `3.33` may stand for 10/3, `84` may not be 84.6."""
    decimals = len(number.split(".")[1]) if "." in number else 0
    return 0.5 * 10.0**-decimals + 1e-9


def _balance(part: str) -> str:
    """Drop brackets that belong to the prose around an equation: `(so 3+4 = 7)`."""
    while part.count("(") > part.count(")"):
        part = part.replace("(", "", 1)
    while part.count(")") > part.count("("):
        i = part.rindex(")")
        part = part[:i] + part[i + 1 :]
    return part


def arithmetic_errors(text: str) -> list[str]:
    """Equations `expression = number` in `text` that do not hold.

    Only a part with an operator followed by a plain number is checked, so `x = 5`,
    `50 = 0.2 * 50 = 10` (a restatement, then a computation) and running chains
    `2 + 3 = 5 + 1 = 6` are read the way people write them.
    """
    wrong = []
    for chain in _CHAIN.finditer(text):
        parts = [_balance(p) for p in chain.group(0).split("=")]
        for left, right in zip(parts, parts[1:], strict=False):
            if not _has_operator(left) or not _SINGLE_NUMBER.match(right):
                continue
            lhs, rhs = evaluate_expression(left), evaluate_expression(right)
            number = right.strip().lstrip("-$").replace(",", "")
            if lhs is not None and rhs is not None and abs(lhs - rhs) > _tolerance(number):
                wrong.append(f"{left.strip()} = {right.strip()}")
    return wrong


def has_final_answer(response: str) -> bool:
    return FINAL_ANSWER.search(response) is not None


def categorise(response: str, strict_answer: str | None = None) -> set[str]:
    """Deterministic categories of a response already known to be wrong.

    `strict_answer` is what lm-eval's strict filter extracted (`[invalid]` when nothing), used
    when available so the check is exactly the one that scored the response.
    """
    found = set()
    no_answer = (
        strict_answer == "[invalid]"
        if strict_answer is not None
        else not has_final_answer(response)
    )
    if no_answer:
        found.add("format")
    if arithmetic_errors(response):
        found.add("arithmetic")
    return found


@dataclass
class Graded:
    """One response of one checkpoint."""

    doc_id: int
    question: str
    reference: str
    response: str
    correct: bool
    categories: set[str] = field(default_factory=set)


def _response_text(resps: Any) -> str:
    # lm-eval logs resps as [[text]] for generate_until (one list per request, one per repeat)
    while isinstance(resps, list) and resps:
        resps = resps[0]
    return resps if isinstance(resps, str) else ""


def grade_samples(path: Path, filter_name: str = "strict-match") -> list[Graded]:
    """Correctness and deterministic categories for each document of a samples file."""
    graded: dict[int, Graded] = {}
    for row in sample_lines(path):
        doc_id, filt = row["doc_id"], row["filter"]
        if filt != filter_name and doc_id in graded:
            continue  # another filter's line; the strict one decides (any filter if absent)
        doc = row.get("doc") or {}
        text = _response_text(row.get("resps"))
        strict = (row.get("filtered_resps") or [None])[0] if filt == filter_name else None
        g = Graded(doc_id, str(doc.get("question", "")), str(doc.get("answer", row.get("target", ""))),
                   text, correct=bool(row.get("exact_match", 0.0)))  # fmt: skip
        if not g.correct:
            g.categories = categorise(text, strict if isinstance(strict, str) else None)
        graded[doc_id] = g
    return [graded[k] for k in sorted(graded)]


def apply_judge(graded: list[Graded], judge: Judge, desc: str) -> int:
    """Add `reasoning` where the judge says so; returns how many replies were unreadable."""
    wrong = [g for g in graded if not g.correct]
    verdicts = judge.verdicts([JudgeCase(g.question, g.reference, g.response) for g in wrong], desc)
    for g, verdict in zip(wrong, verdicts, strict=True):
        if verdict:
            g.categories.add("reasoning")
    return sum(v is None for v in verdicts)


def error_counts(
    run: RunData,
    judge: Judge | None = None,
    tasks: str = "*gsm8k*",
    filter_name: str = "strict-match",
) -> pd.DataFrame:
    """Counts per category per checkpoint for every eval task matching `tasks` with samples."""
    rows = []
    for (ckpt_id, eval_task), path in sorted(run.samples_files.items()):
        if not fnmatch.fnmatchcase(eval_task, tasks):
            continue
        ckpt = run.checkpoints[ckpt_id]
        graded = grade_samples(path, filter_name)
        unread = apply_judge(graded, judge, f"judging {ckpt_id}") if judge else 0
        row: dict[str, Any] = {
            "experiment": ckpt.experiment, "model": ckpt.model, "task": ckpt.task,
            "eval_task": eval_task, "n": ckpt.n, "budget": ckpt.budget,
            "sft_fraction": ckpt.sft_fraction, "seed": ckpt.seed, "checkpoint": ckpt_id,
            "responses": len(graded),
            "correct": sum(g.correct for g in graded),
        }  # fmt: skip
        row["incorrect"] = row["responses"] - row["correct"]
        wrong = [g for g in graded if not g.correct]
        for cat in CATEGORIES[:-1]:
            row[cat] = sum(cat in g.categories for g in wrong)
        row["other"] = sum(not g.categories for g in wrong)
        row["judged"] = judge is not None
        row["judge_unreadable"] = unread
        rows.append(row)
    columns = ["experiment", "model", "task", "eval_task", "n", "budget", "sft_fraction", "seed",
               "checkpoint", "responses", "correct", "incorrect", *CATEGORIES, "judged",
               "judge_unreadable"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
