"""Comparison mode: the expected values of a test never enter the program's process.

HumanEval's tests are `def check(candidate):` with lines such as `assert candidate(3, 4) == 7`.
`split_tests` parses them: when every statement of `check` is such an assertion whose inputs and
expected values are constants, the sandbox only receives the inputs, calls the entry point with
each and ships the outputs back as plain data (`_harness._encode`); `decode_outputs` reads them
here (never raising on any bytes) and `Check.holds` compares them with strict types in this,
the trusted, process. A program can then neither read the expected values (frames, bytecode)
nor hand back an object whose `__eq__` always says yes. Tests that cannot be split (loops,
random inputs, helpers of the prompt) run in-process as before; results record which mode
scored them.
"""

from __future__ import annotations

import ast
import json
import marshal
import operator
import threading
from dataclasses import dataclass
from typing import Any

# CPython < 3.12.1 / 3.11.9 converts ASTs with an interpreter-wide recursion counter that threads
# corrupt ("SystemError: AST constructor recursion depth mismatch", cpython#106905): the runner's
# worker threads split tests concurrently, so every parse here goes through one lock.
_AST_LOCK = threading.Lock()


def parse_source(source: str) -> ast.Module:
    with _AST_LOCK:
        return ast.parse(source)


MAX_CONSTANT = 10**6  # size guard when folding constant expressions such as 'ab' * 3 or 3 * 19
_FOLD = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class NotSplittable(Exception):
    """This test statement is not `assert <candidate call> <op> <constant>`."""


class BadOutput(ValueError):
    """The program's outputs message is not valid plain data."""


@dataclass(frozen=True)
class Check:
    """One assertion about the output of one call."""

    kind: str  # "eq" (strict ==), "is" (None/True/False), "truthy", "falsy", "close", "evalplus"
    expected: Any = None
    tolerance: float = 0.0
    strict: bool = False  # `< tol` rather than `<= tol`
    wrap: str = ""  # "tuple"/"list"/"set"/"sorted": the test applied it to the output first

    def holds(self, output: Any) -> bool:
        if self.wrap:
            try:
                output = _WRAPS[self.wrap](output)
            except Exception:  # noqa: BLE001 - e.g. sorted() of mixed types, as in the assert
                return False
        if self.kind == "eq":
            return strict_equal(output, self.expected)
        if self.kind == "is":
            return output is self.expected
        if self.kind in ("truthy", "falsy"):
            return bool(output) == (self.kind == "truthy")
        if self.kind == "evalplus":
            return _evalplus_holds(output, self.expected, self.tolerance)
        if type(output) not in (int, float):  # "close": a number, not a bool
            return False
        difference = abs(output - self.expected)
        return difference < self.tolerance if self.strict else difference <= self.tolerance


_WRAPS = {"tuple": tuple, "list": list, "set": set, "sorted": sorted}


def _is_floats(x: Any) -> bool:
    """EvalPlus's `is_floats`: a float, or a list/tuple of floats."""
    if type(x) is float:
        return True
    return type(x) in (list, tuple) and bool(x) and all(type(i) is float for i in x)


def _numeric(x: Any) -> bool:
    """Numbers (not bools), or lists/tuples of them: what np.allclose may compare here."""
    if type(x) in (int, float):
        return True
    return type(x) in (list, tuple) and all(_numeric(i) for i in x)


def _evalplus_holds(output: Any, expected: Any, atol: float) -> bool:
    """EvalPlus's `assertion(out, exp, atol)` with strict types: exact equality, else (for
    floats, or a tolerance given) `np.allclose(out, exp, rtol=1e-07, atol=atol)` on numbers."""
    if atol == 0 and _is_floats(expected):
        atol = 1e-6
    if strict_equal(output, expected):
        return True
    if atol == 0 or not (_numeric(output) and _numeric(expected)):
        return False
    import numpy as np

    try:
        return bool(np.allclose(output, expected, rtol=1e-07, atol=atol))
    except (ValueError, TypeError):  # ragged or mismatched shapes: the assert would fail too
        return False


@dataclass(frozen=True)
class Split:
    """A test split into calls (sent to the sandbox) and checks (kept here)."""

    entry_point: str
    calls: tuple[bytes, ...]  # marshal of (args tuple, kwargs dict), plain data only
    checks: tuple[Check, ...]


def strict_equal(a: Any, b: Any) -> bool:
    """`a == b` for plain data, but a bool is not an int, a tuple is not a list. An int and a
    float still compare by value (`candidate(x) == 2.0` passes for 2, as in Python)."""
    numbers = (int, float)
    ta, tb = type(a), type(b)
    if ta in numbers and tb in numbers:
        return a == b
    if ta is not tb:
        return False
    if ta in (list, tuple):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta in (set, frozenset):  # `{True} == {1}` in Python: compare the elements' typed keys
        return {_typed_key(x) for x in a} == {_typed_key(y) for y in b}
    if ta is dict:
        keyed = {_typed_key(k): k for k in b}
        if {_typed_key(k) for k in a} != keyed.keys():
            return False
        return all(strict_equal(a[k], b[keyed[_typed_key(k)]]) for k in a)
    return a == b


def _typed_key(value: Any) -> Any:
    """A hashable stand-in for a set element or dict key that equals another exactly when
    `strict_equal` holds: an int and a float share a tag (1 and 1.0 are one key, as in Python),
    a bool does not."""
    kind = type(value)
    if kind in (int, float):
        return ("number", value)
    if kind is tuple:
        return ("tuple", tuple(_typed_key(x) for x in value))
    if kind is frozenset:
        return ("frozenset", frozenset(_typed_key(x) for x in value))
    return (kind.__name__, value)


# --- splitting -----------------------------------------------------------------------------------


def _constant(node: ast.AST) -> Any:
    """A literal, or a small constant expression of literals (`3 * 19`, `'ab' + 'cd'`, `-1`)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(node.op, ast.Pow) and not (
            type(left) in (int, float) and type(right) is int and abs(right) <= 64
        ):
            raise NotSplittable("power too large to fold")
        sequences = (str, list, tuple, bytes)
        if isinstance(node.op, ast.Mult) and (
            isinstance(left, sequences) or isinstance(right, sequences)
        ):
            seq, times = (left, right) if isinstance(left, sequences) else (right, left)
            if type(times) is not int or len(seq) * times > MAX_CONSTANT:
                raise NotSplittable("constant too large to fold")
        try:
            return _FOLD[type(node.op)](left, right)
        except Exception as e:  # noqa: BLE001 - 1/0 in a test: leave it to the in-process run
            raise NotSplittable(f"cannot fold: {e}") from None
    if isinstance(node, ast.Tuple | ast.List):
        values = [_constant(e) for e in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Set):
        return {_constant(e) for e in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_constant(k): _constant(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _constant(node.operand)
        if type(value) not in (int, float, complex):
            raise NotSplittable("sign of a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):  # EvalPlus: from math import inf
        return float(node.id)
    if (
        _is_call_of(node, "float", 1)
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).strip().lower()
        in ("inf", "-inf", "+inf", "nan", "infinity", "-infinity")
    ):
        return float(node.args[0].value)
    raise NotSplittable(f"not a constant: {ast.unparse(node)[:60]}")


def _call(node: ast.AST, candidate: str) -> tuple[bytes, str]:
    """`candidate(<constants>)`, possibly wrapped as `tuple(candidate(...))`: (call, wrap)."""
    wrap = ""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _WRAPS
        and len(node.args) == 1
        and not node.keywords
    ):
        wrap, node = node.func.id, node.args[0]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise NotSplittable("not a call")
    if node.func.id != candidate:
        raise NotSplittable(f"calls {node.func.id}, not {candidate}")
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        raise NotSplittable("starred arguments")
    args = tuple(_constant(a) for a in node.args)
    kwargs = {k.arg: _constant(k.value) for k in node.keywords}
    try:
        return marshal.dumps((args, kwargs), 4), wrap
    except ValueError:
        raise NotSplittable("arguments are not plain data") from None


def _assertion(test: ast.expr, candidate: str) -> tuple[bytes, Check]:
    """One `assert` expression as (call, check)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        call, wrap = _call(test.operand, candidate)
        return call, Check("falsy", wrap=wrap)
    if isinstance(test, ast.Call):
        call, wrap = _call(test, candidate)
        return call, Check("truthy", wrap=wrap)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        raise NotSplittable("not a single comparison")
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, ast.Eq | ast.Is):
        try:
            call, wrap = _call(left, candidate)
        except NotSplittable:  # `expected == candidate(...)`
            left, right = right, left
            call, wrap = _call(left, candidate)
        expected = _constant(right)
        if isinstance(op, ast.Is):
            if expected not in (None, True, False) or type(expected) not in (type(None), bool):
                raise NotSplittable("`is` with a non-singleton")
            return call, Check("is", expected, wrap=wrap)
        return call, Check("eq", expected, wrap=wrap)
    if isinstance(op, ast.Lt | ast.LtE):  # abs(candidate(...) - expected) < tolerance
        tolerance = _constant(right)
        if not (
            isinstance(left, ast.Call)
            and isinstance(left.func, ast.Name)
            and left.func.id == "abs"
            and len(left.args) == 1
            and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub)
            and type(tolerance) in (int, float)
        ):
            raise NotSplittable("not abs(candidate(...) - x) < tol")
        call, wrap = _call(left.args[0].left, candidate)
        expected = _constant(left.args[0].right)
        if wrap or type(expected) not in (int, float):
            raise NotSplittable("tolerance against a non-number")
        return call, Check("close", expected, float(tolerance), isinstance(op, ast.Lt))
    raise NotSplittable("unsupported comparison")


def _ignorable(statement: ast.stmt) -> bool:
    """Docstrings, `pass`, `assert True` and print calls: no check to make."""
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return True
    if isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Constant):
        return bool(statement.test.value)
    return False


EVALPLUS_HELPERS = ("assertion", "is_floats", "_is_floats")  # EvalPlus's comparison helpers


def split_tests(tests: str) -> Split | None:
    """The calls and checks of a test, or None if it cannot be split.

    Accepted shapes, besides imports, constant assignments (METADATA) and EvalPlus's helpers
    (`assertion`, `is_floats`), whose semantics `Check("evalplus")` implements:
      HumanEval   `def check(candidate):` of splittable statements, then `check(<entry point>)`
      MBPP        top-level `assert f(...) == ...` lines, all calling the same function
    where a splittable statement is an assertion of a constant-argument call against a constant,
    or EvalPlus's loop `for inp, exp in zip(inputs, results): assertion(candidate(*inp), exp, t)`
    over constant `inputs` and `results`."""
    try:
        module = parse_source(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    body = module.body
    helpers = [s for s in body if isinstance(s, ast.FunctionDef) and s.name in EVALPLUS_HELPERS]
    rest = [s for s in body if s not in helpers]
    if rest and _is_final_check_call(rest[-1]):
        functions = [s for s in rest[:-1] if isinstance(s, ast.FunctionDef)]
        others = [s for s in rest[:-1] if not isinstance(s, ast.FunctionDef)]
        if len(functions) != 1 or functions[0].name != "check":
            return None
        if not _plain_signature(functions[0]) or not all(_harmless_top_level(s) for s in others):
            return None
        candidate = functions[0].args.args[0].arg
        statements, entry_point = functions[0].body, rest[-1].value.args[0].id
    else:
        statements = [s for s in rest if not isinstance(s, ast.Import | ast.ImportFrom)]
        candidate = entry_point = _called_name(statements)
        if not entry_point:
            return None
    try:
        calls, checks = _split_statements(statements, candidate, bool(helpers))
    except (NotSplittable, RecursionError, MemoryError, ValueError, TypeError):
        return None
    if not calls:
        return None
    return Split(entry_point, tuple(calls), tuple(checks))


def _called_name(statements: list[ast.stmt]) -> str:
    """MBPP style: the function the first assertion calls ("" if none)."""
    for statement in statements:
        if isinstance(statement, ast.Assert):
            for node in ast.walk(statement.test):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id not in _WRAPS and node.func.id != "abs":
                        return node.func.id
        if isinstance(statement, ast.For):
            for node in ast.walk(statement):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id not in (*EVALPLUS_HELPERS, "zip", "enumerate"):
                        return node.func.id
    return ""


def _split_statements(statements, candidate: str, evalplus: bool):
    calls: list[bytes] = []
    checks: list[Check] = []
    constants: dict[str, Any] = {}  # `inputs = [...]`, `results = [...]`
    for statement in statements:
        if _ignorable(statement):
            continue
        if isinstance(statement, ast.Assert):
            call, one = _assertion(statement.test, candidate)
            calls.append(call)
            checks.append(one)
        elif (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            constants[statement.targets[0].id] = _constant(statement.value)
        elif isinstance(statement, ast.For) and evalplus:
            more_calls, more_checks = _evalplus_loop(statement, candidate, constants)
            calls += more_calls
            checks += more_checks
        else:
            raise NotSplittable(f"unsupported statement: {ast.unparse(statement)[:60]}")
    return calls, checks


def _evalplus_loop(loop: ast.For, candidate: str, constants: dict[str, Any]):
    """`for [i, ](inp, exp) in [enumerate(]zip(inputs, results)[)]:
    assertion(candidate(*inp), exp, <atol>)`"""
    target, iterator = loop.target, loop.iter
    if _is_call_of(iterator, "enumerate", 1):
        iterator = iterator.args[0]
        if not (isinstance(target, ast.Tuple) and len(target.elts) == 2):
            raise NotSplittable("enumerate target")
        target = target.elts[1]
    if not (
        _is_call_of(iterator, "zip", 2)
        and all(isinstance(a, ast.Name) and a.id in constants for a in iterator.args)
        and isinstance(target, ast.Tuple)
        and len(target.elts) == 2
        and all(isinstance(e, ast.Name) for e in target.elts)
        and len(loop.body) == 1
        and not loop.orelse
        and isinstance(loop.body[0], ast.Expr)
        and _is_call_of(loop.body[0].value, "assertion", 3)
    ):
        raise NotSplittable("not EvalPlus's loop")
    inp, exp = (e.id for e in target.elts)
    output, expected, atol = loop.body[0].value.args
    if not (
        isinstance(output, ast.Call)
        and isinstance(output.func, ast.Name)
        and output.func.id == candidate
        and len(output.args) == 1
        and isinstance(output.args[0], ast.Starred)
        and isinstance(output.args[0].value, ast.Name)
        and output.args[0].value.id == inp
        and not output.keywords
        and isinstance(expected, ast.Name)
        and expected.id == exp
    ):
        raise NotSplittable("not assertion(candidate(*inp), exp, atol)")
    tolerance = _constant(atol)
    inputs, results = (constants[a.id] for a in iterator.args)
    calls, checks = [], []
    for args, result in zip(inputs, results, strict=False):  # zip: as the loop itself
        if not isinstance(args, list | tuple):
            raise NotSplittable("an input is not a list of arguments")
        calls.append(marshal.dumps((tuple(args), {}), 4))
        checks.append(Check("evalplus", result, float(tolerance)))
    return calls, checks


def _is_call_of(node: ast.AST, name: str, n_args: int) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
        and len(node.args) == n_args
        and not node.keywords
    )


def entry_point_of(tests: str) -> str:
    """NAME of a final `check(NAME)` statement (HumanEval style), else ""."""
    try:
        body = parse_source(tests).body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return ""
    if body and _is_final_check_call(body[-1]):
        return body[-1].value.args[0].id
    return ""


def _is_final_check_call(statement: ast.stmt) -> bool:
    value = getattr(statement, "value", None)
    return (
        isinstance(statement, ast.Expr)
        and isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "check"
        and len(value.args) == 1
        and not value.keywords
        and isinstance(value.args[0], ast.Name)
    )


def _plain_signature(function: ast.FunctionDef) -> bool:
    a = function.args
    return (
        len(a.args) == 1
        and not (a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg or a.defaults)
        and not function.decorator_list
    )


def _harmless_top_level(statement: ast.stmt) -> bool:
    """Imports (the split run does not need them) and `NAME = <literal>` (METADATA)."""
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return True
    if isinstance(statement, ast.Assign) and all(
        isinstance(t, ast.Name) for t in statement.targets
    ):
        try:
            ast.literal_eval(statement.value)
            return True
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return _ignorable(statement)


# --- decoding the program's outputs ---------------------------------------------------------------


@dataclass(frozen=True)
class CallError:
    """A call that raised instead of returning (its text is only shown)."""

    text: str


def decode_outputs(text: str) -> list[Any]:
    """The `OUT` message of the harness as Python values; `BadOutput` for anything malformed."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError, MemoryError) as e:
        raise BadOutput(f"outputs are not valid JSON: {str(e)[:80]}") from None
    if not isinstance(raw, list):
        raise BadOutput("outputs are not a list")
    try:
        return [_decode(item, 0) for item in raw]
    except RecursionError:
        raise BadOutput("outputs nested too deeply") from None


def _hex_text(value: Any) -> str:
    if not isinstance(value, str):
        raise BadOutput("expected a hex string")
    try:
        return bytes.fromhex(value).decode("utf-8", "surrogatepass")
    except ValueError:
        raise BadOutput("bad hex string") from None


def _decode(item: Any, depth: int) -> Any:
    if depth > 100:
        raise BadOutput("outputs nested too deeply")
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise BadOutput("malformed value")
    tag, rest = item[0], item[1:]
    try:
        return _decode_tagged(tag, rest, depth)
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, BadOutput):
            raise
        raise BadOutput(f"malformed {tag!r} value") from None


def _decode_tagged(tag: str, rest: list, depth: int) -> Any:
    scalars = {"n": None, "T": True, "F": False}
    if tag in scalars and not rest:
        return scalars[tag]
    if tag == "x" and len(rest) == 1:
        return CallError(_hex_text(rest[0]))
    if tag == "i" and len(rest) == 1 and isinstance(rest[0], str):
        return int(rest[0], 16)
    if tag == "f" and len(rest) == 1 and isinstance(rest[0], str):
        return float.fromhex(rest[0])
    if tag == "c" and len(rest) == 2 and all(isinstance(r, str) for r in rest):
        return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
    if tag == "s" and len(rest) == 1:
        return _hex_text(rest[0])
    if tag == "b" and len(rest) == 1 and isinstance(rest[0], str):
        return bytes.fromhex(rest[0])
    containers = {"l": list, "t": tuple, "S": set, "Z": frozenset}
    if tag in containers and len(rest) == 1 and isinstance(rest[0], list):
        values = [_decode(v, depth + 1) for v in rest[0]]
        if tag in "SZ" and any(isinstance(v, list | set | dict) for v in values):
            raise BadOutput("unhashable set element")
        return containers[tag](values)
    if tag == "d" and len(rest) == 1 and isinstance(rest[0], list):
        pairs = []
        for pair in rest[0]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise BadOutput("malformed dict item")
            key = _decode(pair[0], depth + 1)
            if isinstance(key, list | set | dict):
                raise BadOutput("unhashable dict key")
            pairs.append((key, _decode(pair[1], depth + 1)))
        return dict(pairs)
    raise BadOutput(f"unknown value tag {tag!r}")


def judge(split: Split, outputs: list[Any]) -> str:
    """ "" if every check holds, else why not (the first failing check)."""
    for i, check in enumerate(split.checks):
        if i >= len(outputs):
            return f"tests: no output for call {i + 1} of {len(split.checks)}"
        output = outputs[i]
        if isinstance(output, CallError):
            return f"tests {output.text}"
        if not check.holds(output):
            return f"tests AssertionError: call {i + 1} returned {_short(output)}"
    if len(outputs) > len(split.checks):
        return "tests: more outputs than calls"
    return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def trusted_helpers(prompt: str, entry_point: str) -> str:
    """The benchmark's own top-level code of a prompt except the function to be written: e.g.
    HumanEval/32's `poly`, which its tests call. Run after the program (`Program.trusted_code`),
    so a program cannot redefine what the tests rely on. "" if the prompt does not parse."""
    try:
        module = parse_source(prompt)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return ""
    kept = [
        ast.get_source_segment(prompt, node, padded=True) or ""
        for node in module.body
        if not (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point
        )
    ]
    return "\n".join(kept) + ("\n" if kept else "")
