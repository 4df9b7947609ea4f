"""The translated closures give cel-python's results: same value, same type, or both an error.

Expressions are generated from a grammar over the translated subset (field access, indexing,
comparisons, arithmetic, logic, `in`, `has`, `size`, the string methods, the ternary, literals,
list and map literals) and evaluated on generated requests: nested objects of ints (with int64's
edges), doubles, strings, bools, nulls and lists, with fields that are often missing. The
reference is the same rule compiled with `closures=False`, i.e. run by cel-python's interpreter.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from truthloop.core import celclosure, celrules, rules
from truthloop.core.rules import FallbackRule

KEYS = ("a", "b", "c")

ints = st.one_of(
    st.integers(min_value=-9, max_value=9),
    st.sampled_from([2**63 - 1, -(2**63), 2**62, 3037000500]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
doubles = st.one_of(
    st.sampled_from([0.0, -0.0, 1.5, -2.5, 2.0, 1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(
    ints, doubles, st.sampled_from(["", "a", "ab", "b", "ba", "A"]), st.booleans(), st.none()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
requests = st.fixed_dictionaries({}, optional={k: values for k in KEYS})
headers = st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.sampled_from(["", "a", "1"]))

LITERALS = [
    "0", "1", "2", "-1", "6", "9223372036854775807", "-9223372036854775808", "0x10",
    "0.0", "1.5", "-2.5", "2.0", "1e3",
    '""', '"a"', '"ab"', "'b'",
    "true", "false", "null",
]  # fmt: skip
OPERANDS = [
    "request", "request.a", "request.b", "request.a.b", "request.a.a.c", 'request["c"]',
    "request.a[0]", "request.b[1]", "request.c[-1]", 'headers["x-a"]', "headers", "request.a.c.b",
]  # fmt: skip
BINARY = ["<", "<=", ">", ">=", "==", "!=", "in", "+", "-", "*", "/", "%", "&&", "||"]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda o, ab: f"({ab[0]} {o} {ab[1]})", st.sampled_from(BINARY), pair),
        st.builds(lambda o, a: f"{o}({a})", st.sampled_from(["!", "-", "size", "dyn"]), inner),
        st.builds(lambda c, a, b: f"({c} ? {a} : {b})", inner, inner, inner),
        st.builds(lambda a, k: f"has(({a}).{k})", inner, st.sampled_from(KEYS)),
        st.builds(lambda a, k: f"({a}).{k}", inner, st.sampled_from(KEYS)),
        st.builds(lambda ab: f"({ab[0]})[{ab[1]}]", pair),
        st.builds(lambda a: f"({a}).size()", inner),
        st.builds(
            lambda m, ab: f"({ab[0]}).{m}({ab[1]})",
            st.sampled_from(["startsWith", "endsWith", "contains"]),
            pair,
        ),
        st.builds(lambda ab: f"[{ab[0]}, {ab[1]}]", pair),
        st.builds(lambda ab: f'{{"k": {ab[0]}, "j": {ab[1]}}}', pair),
        st.just("[]"),
    )


expressions = st.recursive(st.sampled_from(LITERALS + OPERANDS * 3), _extend, max_leaves=6)

# Numbers get a grammar of their own: random expressions over everything mostly end in type
# errors, and arithmetic needs many well-typed draws to meet its edges (signs, zero, overflow).
numbers = st.one_of(ints, ints, doubles, st.booleans())
number_requests = st.fixed_dictionaries({k: numbers for k in "xyz"})
NUMERIC = ["request.x", "request.y", "request.z", "0", "1", "-1", "2", "-7", "7", "3"]
NUMERIC += ["9223372036854775807", "-9223372036854775808", "0.0", "-0.0", "1.5", "-2.5", "2.0"]
ARITHMETIC = ["+", "-", "*", "/", "%"]
RELATIONS = ["<", "<=", ">", ">=", "==", "!=", "in"]


def _numeric(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda o, ab: f"({ab[0]} {o} {ab[1]})", st.sampled_from(ARITHMETIC), pair),
        st.builds(lambda o, ab: f"({ab[0]} {o} {ab[1]})", st.sampled_from(ARITHMETIC), pair),
        st.builds(lambda a: f"-({a})", inner),
        st.builds(
            lambda o, ab, c, d: f"(({ab[0]} {o} {ab[1]}) ? {c} : {d})",
            st.sampled_from(RELATIONS[:-1]),
            pair,
            inner,
            inner,
        ),
        st.builds(lambda a, ab: f"({a} in [{ab[0]}, {ab[1]}])", inner, pair),
    )


numeric_expressions = st.recursive(st.sampled_from(NUMERIC), _numeric, max_leaves=5)


def _typed(value: Any) -> Any:
    """`value` with every scalar's exact type kept: 1, 1.0 and true differ, as do 0.0 and -0.0."""
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, dict):
        return ("map", {k: _typed(v) for k, v in value.items()})
    return (type(value).__name__, repr(value))


def _outcome(expression: rules.Expression, request: Any, headers: dict[str, str]) -> Any:
    try:
        value = expression.evaluate(request, headers)
    except rules.EvaluationError:
        return "error"
    return _typed(value)


def _compiled(source: str, closures: bool) -> rules.Expression:
    return (
        celrules.compile_rules([FallbackRule(prediction=source)], closures=closures)
        .rules[0]
        .prediction
    )


def _assert_same(source: str, inputs: list[tuple[dict[str, Any], dict[str, str]]]) -> None:
    try:
        fast = _compiled(source, closures=True)
    except rules.RuleCompileError:
        event("refused by the checker")
        assume(False)
    assert not fast.uses_cel_runner, source
    reference = _compiled(source, closures=False)
    for request, names in inputs:
        try:
            fast.closure(request, names)  # type: ignore[misc]
        except celclosure.Defer:
            event("deferred to cel-python")
        expected = _outcome(reference, request, names)
        event("error" if expected == "error" else "value")
        assert _outcome(fast, request, names) == expected, (source, request, names)
        assert fast.holds(request, names) == reference.holds(request, names), (source, request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions, inputs=st.lists(st.tuples(requests, headers), min_size=4, max_size=4))
def test_any_expression_of_the_subset(
    source: str, inputs: list[tuple[dict[str, Any], dict[str, str]]]
) -> None:
    _assert_same(source, inputs)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=numeric_expressions, inputs=st.lists(number_requests, min_size=4, max_size=4))
def test_arithmetic_and_comparisons(source: str, inputs: list[dict[str, Any]]) -> None:
    _assert_same(source, [(request, {}) for request in inputs])


def test_quirks_of_cel_python_are_kept() -> None:
    """Hand-picked cases where cel-python departs from the CEL spec, or from Python."""
    request = {"i": 7, "d": 1.5, "s": "ab", "t": True, "l": [1, "x"], "m": {"k": 1}, "n": None}
    cases = {
        "request.d < 2": True,  # double < int compares...
        "request.i < 1.5": "error",  # ...but int < double does not
        "request.d + request.d == 3": True,  # a double sum is a plain float, equal to an int
        "request.d == 1": "error",  # while a double from the request is not
        "request.t + 1": 2,  # bool arithmetic is Python's
        "1 + request.t": 2,
        "-7 / 2": -3,  # int division truncates toward zero
        "-7 % 3": -1,
        "request.d / 0.0": "error",  # +inf has no JSON value...
        "-request.d / 0.0 > 1e308": True,  # ...but it is +inf, whatever the dividend's sign
        "request.i / 0": "error",
        "9223372036854775807 + request.i": "error",  # int64 overflow
        "request.s[0]": "a",
        "request.s[0].contains('a')": "error",  # a character is a plain str too
        "(request.s + request.s).contains('a')": "error",  # plain str has no contains()
        "request.s.contains('a')": True,
        '"x" in request.l': True,  # a comparison error before the match is forgiven
        '"y" in request.l': "error",  # ...but not when nothing matches
        "request.zz || true": True,
        "false || request.i": 7,
        "request.i && true": 7,
        "has(request.n)": True,
        "has(request.m.zz)": False,
        "size(request.n)": 0,
        "request.l[-1]": "x",
        "request.n.x": "error",
        '{"a": request.zz}': "error",
    }
    for source, expected in cases.items():
        for closures in (True, False):
            expression = _compiled(source, closures)
            assert _outcome(expression, request, {}) == (
                expected if expected == "error" else _typed(expected)
            ), (source, closures)
