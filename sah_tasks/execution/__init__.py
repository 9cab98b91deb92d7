"""Sandboxed, parallel execution of untrusted (model-written) Python programs.

    from sah_tasks.execution import Program, run_programs, ExecutionLimits
    results = run_programs([Program(code=solution, tests=tests)], ExecutionLimits(timeout_s=10))
    results[0].passed, results[0].status, results[0].detail, results[0].mode

HumanEval-style tests are split where possible and the outputs compared outside the program's
process (`mode == "compare"`, compare.py); otherwise the tests run beside the program
(`"in-process"`). See docs/code-execution.md for the threat model, what each isolation mode
contains and why verdicts are exact.
"""

from sah_tasks.execution.config import (
    ExecutionLimits,
    ExecutionResult,
    IsolationReport,
    Program,
    SandboxOptions,
)
from sah_tasks.execution.pass_at_k import pass_at_k
from sah_tasks.execution.runner import default_workers, isolation_report, run_program, run_programs

__all__ = [
    "ExecutionLimits",
    "ExecutionResult",
    "IsolationReport",
    "Program",
    "SandboxOptions",
    "default_workers",
    "isolation_report",
    "pass_at_k",
    "run_program",
    "run_programs",
]
