"""HumanEval+ and MBPP+ (EvalPlus): data, prompts, sandboxed scoring and pass@k.

Two prompt styles per benchmark:
  base      the model continues code: the HumanEval function stub, or MBPP+'s docstring prompt
            (EvalPlus's own format); the program is prompt + completion.
  instruct  the shared `Question: ...\\nAnswer:` format; the model answers with a ```python block,
            whose code is extracted (first fenced block; an unclosed block runs to the end; no
            fence = the whole answer).

Scoring happens in a filter (named `none`, so metric keys read `pass@1_plus,none` like any other
task) that runs every sample of the task in one parallel sandbox batch (sah_tasks.execution):
first the base tests, then the plus tests for samples that passed the base tests. Metrics:
  pass@k       the base tests: HumanEval's original tests / MBPP's three original asserts
  pass@k_plus  base AND EvalPlus's extended tests (the EvalPlus `test` field)
with the unbiased estimator over the `repeats` samples of a document (pass@1 = fraction correct).

Sandbox settings come from the environment: SAH_EXEC_WORKERS (default: usable cores),
SAH_EXEC_TIMEOUT_S (base tests, default 10), SAH_EXEC_PLUS_TIMEOUT_S (default 30),
SAH_EXEC_MEMORY_MB (default 2048).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import datasets

from sah_tasks.common.data import DataSource, TaskDataError, load_source, local_file
from sah_tasks.execution import (
    ExecutionLimits,
    ExecutionResult,
    Program,
    default_workers,
    isolation_report,
    pass_at_k,
    run_programs,
)
from sah_tasks.execution.compare import trusted_helpers

logger = logging.getLogger(__name__)

HUMANEVAL_PLUS = DataSource(
    task="sah_humaneval_plus",
    env_var="SAH_HUMANEVAL_PLUS_DATA",
    hf_path="evalplus/humanevalplus",
    revision="d32357cf319e50e9c8d8dab5ea876c72b0fd321b",
    split="test",
    required_fields=("task_id", "prompt", "entry_point", "test", "base_test"),
)
# HumanEval+'s `test` merges base and plus inputs; the base tests are HumanEval's originals.
HUMANEVAL_BASE = DataSource(
    task="sah_humaneval_plus",
    env_var="SAH_HUMANEVAL_PLUS_DATA",
    hf_path="openai/openai_humaneval",
    revision="7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544",
    split="test",
)
MBPP_PLUS = DataSource(
    task="sah_mbpp_plus",
    env_var="SAH_MBPP_PLUS_DATA",
    hf_path="evalplus/mbppplus",
    revision="b2d74c91837c3f2a20c1299ae98133cbe7cfa077",
    split="test",
    required_fields=("task_id", "prompt", "test_list", "test"),
)
K_VALUES = (1, 5, 10)  # reported by the `_k` tasks (repeats: 10)
_FENCE = re.compile(r"```[ \t]*(?:[Pp]ython3?|py)?[ \t]*\n(.*?)(?:\n?```|\Z)", re.DOTALL)


# --- data ---------------------------------------------------------------------------------------


def load_humaneval_plus(**metadata: Any) -> datasets.DatasetDict:
    """EvalPlus HumanEval+ joined with HumanEval's original tests as `base_test`, or a local JSONL
    with the fields task_id, prompt, entry_point, test (EvalPlus) and base_test (original)."""
    if local_file(HUMANEVAL_PLUS, metadata.get("data_files")) is not None:
        return load_source(HUMANEVAL_PLUS, **metadata)
    plus = datasets.load_dataset(
        HUMANEVAL_PLUS.hf_path, revision=HUMANEVAL_PLUS.revision, split=HUMANEVAL_PLUS.split
    )
    base = datasets.load_dataset(
        HUMANEVAL_BASE.hf_path, revision=HUMANEVAL_BASE.revision, split=HUMANEVAL_BASE.split
    )
    base_tests = dict(zip(base["task_id"], base["test"], strict=True))
    missing = sorted(set(plus["task_id"]) - set(base_tests))
    if missing:
        raise TaskDataError(f"{HUMANEVAL_BASE.hf_path} has no original tests for {missing[:5]}")
    plus = plus.map(lambda row: {"base_test": base_tests[row["task_id"]]})
    return datasets.DatasetDict({"test": plus})


def load_mbpp_plus(**metadata: Any) -> datasets.DatasetDict:
    """EvalPlus MBPP+ (378 problems), or a local JSONL in its schema: task_id, prompt,
    test_list (the original asserts), test (EvalPlus's test code), optional test_imports."""
    return load_source(MBPP_PLUS, **metadata)


# --- prompts ------------------------------------------------------------------------------------


def qa_prompt(question: str) -> str:
    """The prompt format shared with the trainers (instruct style)."""
    return f"Question: {question}\nAnswer:"


def humaneval_question(doc: dict[str, Any]) -> str:
    return (
        "Complete the following Python function. Answer with the complete function in a "
        f"```python code block.\n\n```python\n{doc['prompt'].rstrip()}\n```"
    )


def mbpp_question(doc: dict[str, Any]) -> str:
    return (
        f"{doc['prompt'].strip()}\nYour code should pass this test:\n\n"
        f"```python\n{doc['test_list'][0]}\n```\n\n"
        "Answer with the Python code in a ```python code block."
    )


def humaneval_base_prompt(doc: dict[str, Any]) -> str:
    return doc["prompt"]


def mbpp_base_prompt(doc: dict[str, Any]) -> str:
    """EvalPlus's MBPP+ prompt: the task and one example assert as a module docstring."""
    return f'"""\n{doc["prompt"].strip()}\n{doc["test_list"][0]}\n"""\n'


def humaneval_instruct_prompt(doc: dict[str, Any]) -> str:
    return qa_prompt(humaneval_question(doc))


def mbpp_instruct_prompt(doc: dict[str, Any]) -> str:
    return qa_prompt(mbpp_question(doc))


def extract_code(answer: str) -> str:
    """The first ```python block (an unclosed one runs to the end); no fence: the whole answer."""
    match = _FENCE.search(answer)
    return match.group(1) if match else answer


# --- programs and tests -------------------------------------------------------------------------


class Benchmark(NamedTuple):
    """How a benchmark turns a document + model output into a program and its two test suites.
    (A NamedTuple: lm-eval loads this file outside sys.modules, where dataclasses fail.)"""

    name: str
    program: Callable[[dict[str, Any], str], str]
    base_tests: Callable[[dict[str, Any]], str]
    plus_tests: Callable[[dict[str, Any]], str]
    # Benchmark code the tests rely on (HumanEval's prompt helpers such as `poly`): run after the
    # program where the tests run in-process, so the model cannot redefine it.
    trusted: Callable[[dict[str, Any]], str] = lambda doc: ""


def _humaneval_check(test_code: str, doc: dict[str, Any]) -> str:
    return f"{test_code}\n\ncheck({doc['entry_point']})\n"


def _humaneval_helpers(doc: dict[str, Any]) -> str:
    return trusted_helpers(doc["prompt"], doc["entry_point"])


def _mbpp_base_tests(doc: dict[str, Any]) -> str:
    return "\n".join([*(doc.get("test_imports") or []), *doc["test_list"]]) + "\n"


# The stub from the prompt stays first: the model's code either continues its body or redefines
# the function, and helpers the tests call (e.g. HumanEval/32's `poly`) stay defined.
HUMANEVAL_BASE_STYLE = Benchmark(
    "humaneval_plus",
    program=lambda doc, out: doc["prompt"] + out,
    base_tests=lambda doc: _humaneval_check(doc["base_test"], doc),
    plus_tests=lambda doc: _humaneval_check(doc["test"], doc),
    trusted=_humaneval_helpers,
)
HUMANEVAL_INSTRUCT_STYLE = Benchmark(
    "humaneval_plus_instruct",
    program=lambda doc, out: doc["prompt"] + "\n" + extract_code(out),
    base_tests=HUMANEVAL_BASE_STYLE.base_tests,
    plus_tests=HUMANEVAL_BASE_STYLE.plus_tests,
    trusted=_humaneval_helpers,
)
MBPP_BASE_STYLE = Benchmark(
    "mbpp_plus",
    program=lambda doc, out: mbpp_base_prompt(doc) + out,
    base_tests=_mbpp_base_tests,
    plus_tests=lambda doc: doc["test"],
)
MBPP_INSTRUCT_STYLE = Benchmark(
    "mbpp_plus_instruct",
    program=lambda doc, out: extract_code(out),
    base_tests=_mbpp_base_tests,
    plus_tests=MBPP_BASE_STYLE.plus_tests,
)


# --- execution ----------------------------------------------------------------------------------


def _env_number(name: str, default: float, kind: type = float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"${name} must be a {kind.__name__} > 0, got {raw!r}")
    return value


def sandbox_settings() -> tuple[ExecutionLimits, ExecutionLimits, int]:
    """(base-test limits, plus-test limits, workers) from the SAH_EXEC_* environment."""
    memory = int(_env_number("SAH_EXEC_MEMORY_MB", 2048, int))
    base = ExecutionLimits(timeout_s=_env_number("SAH_EXEC_TIMEOUT_S", 10.0), memory_mb=memory)
    plus = ExecutionLimits(timeout_s=_env_number("SAH_EXEC_PLUS_TIMEOUT_S", 30.0), memory_mb=memory)
    workers = int(_env_number("SAH_EXEC_WORKERS", default_workers(), int))
    return base, plus, workers


def _verdict(program: str, base: ExecutionResult, plus: ExecutionResult | None) -> dict[str, Any]:
    failed = base if not base.passed else plus
    return {
        "base": base.status,
        "plus": plus.status if plus is not None else "skipped",
        "detail": failed.detail[:300] if failed is not None and not failed.passed else "",
        # how each suite was scored: "compare" (outputs compared outside the program's process)
        # or "in-process" (the tests ran beside the program: see docs/code-execution.md)
        "base_mode": base.mode,
        "plus_mode": plus.mode if plus is not None else "skipped",
        "program": program,
    }


def execute(
    benchmark: Benchmark, resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Run every sample of every document: base tests for all, plus tests where base passed.

    Returns, per document, one verdict dict per sample (what lm-eval logs as filtered_resps)."""
    base_limits, plus_limits, workers = sandbox_settings()
    flat = [(d, doc, benchmark.program(doc, out)) for d, (doc, outs) in enumerate(zip(docs, resps, strict=True)) for out in outs]  # fmt: skip
    logger.info(
        "%s: running %d programs in the sandbox (%d workers); isolation:\n%s",
        benchmark.name, len(flat), workers, isolation_report().summary(),
    )  # fmt: skip
    trusted = [benchmark.trusted(doc) for doc in docs]  # once per doc, not per sample
    base = run_programs(
        [
            Program(code, benchmark.base_tests(doc), trusted_code=trusted[d])
            for d, doc, code in flat
        ],
        base_limits,
        workers=workers,
        progress=f"{benchmark.name}: base tests",
    )
    todo = [i for i, result in enumerate(base) if result.passed]
    plus_results = run_programs(
        [
            Program(
                flat[i][2],
                benchmark.plus_tests(flat[i][1]),
                trusted_code=trusted[flat[i][0]],
            )
            for i in todo
        ],
        plus_limits,
        workers=workers,
        progress=f"{benchmark.name}: plus tests",
    )
    plus: dict[int, ExecutionResult] = dict(zip(todo, plus_results, strict=True))
    out: list[list[dict[str, Any]]] = [[] for _ in docs]
    for i, (d, _, code) in enumerate(flat):
        out[d].append(_verdict(code, base[i], plus.get(i)))
    return out


def execute_humaneval(resps, docs):
    return execute(HUMANEVAL_BASE_STYLE, resps, docs)


def execute_humaneval_instruct(resps, docs):
    return execute(HUMANEVAL_INSTRUCT_STYLE, resps, docs)


def execute_mbpp(resps, docs):
    return execute(MBPP_BASE_STYLE, resps, docs)


def execute_mbpp_instruct(resps, docs):
    return execute(MBPP_INSTRUCT_STYLE, resps, docs)


# --- metrics ------------------------------------------------------------------------------------


def pass_at_ks(verdicts: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, float]:
    """`pass@k` (base tests) and `pass@k_plus` (base + plus tests) for each k."""
    n = len(verdicts)
    c_base = sum(v["base"] == "passed" for v in verdicts)
    c_plus = sum(v["plus"] == "passed" for v in verdicts)
    metrics = {}
    for k in ks:
        metrics[f"pass@{k}"] = pass_at_k(n, c_base, k)
        metrics[f"pass@{k}_plus"] = pass_at_k(n, c_plus, k)
    return metrics


def process_results(doc: dict[str, Any], results: list[list[dict[str, Any]]]) -> dict[str, float]:
    """`results[0]`: the verdicts of this document's samples (see `execute`)."""
    return pass_at_ks(results[0], (1,))


def process_results_k(doc: dict[str, Any], results: list[list[dict[str, Any]]]) -> dict[str, float]:
    return pass_at_ks(results[0], K_VALUES)
