"""Fallback rules: compile errors that point at the fault, and the first matching rule answering."""

from __future__ import annotations

from typing import Any

import pytest

from truthloop.core import celrules
from truthloop.core.celrules import compile_rules
from truthloop.core.rules import Decision, FallbackRule, RuleCompileError

CHURN = [
    FallbackRule(when="request.features.tenure < 6", prediction="1"),
    FallbackRule(
        when='request.features.plan == "month-to-month" && request.features.charges > 80.0',
        prediction="1",
    ),
    FallbackRule(when='request.features.country in ["DE", "FR"]', prediction='"eu-default"'),
    FallbackRule(when='headers["x-segment"] == "vip"', prediction="{'label': 0, 'score': 0.1}"),
    FallbackRule(prediction="0"),
]


@pytest.mark.parametrize("closures", [True, False], ids=["closures", "cel-python"])
@pytest.mark.parametrize(
    ("features", "headers", "expected"),
    [
        ({"tenure": 3}, {}, Decision(1, 0)),
        ({"tenure": 12, "plan": "month-to-month", "charges": 95.5}, {}, Decision(1, 1)),
        ({"tenure": 12, "plan": "month-to-month", "charges": 60.0}, {}, Decision(0, 4)),
        ({"tenure": 12, "country": "FR"}, {}, Decision("eu-default", 2)),
        ({"tenure": 12}, {"x-segment": "vip"}, Decision({"label": 0, "score": 0.1}, 3)),
        # A `when` on a missing field, or on a value of the wrong type, does not match.
        ({}, {}, Decision(0, 4)),
        ({"tenure": "3"}, {}, Decision(0, 4)),
        # cel-python compares a double with an int, but not an int with a double.
        ({"tenure": 3.5}, {}, Decision(1, 0)),
        ({"tenure": 12, "plan": "month-to-month", "charges": 95}, {}, Decision(0, 4)),
    ],
)
def test_the_first_matching_rule_answers(
    closures: bool, features: dict[str, Any], headers: dict[str, str], expected: Decision
) -> None:
    ruleset = compile_rules(CHURN, closures=closures)
    assert ruleset.evaluate({"features": features}, headers) == expected


def test_a_request_that_is_not_an_object_falls_through() -> None:
    ruleset = compile_rules(CHURN)
    for request in ([1, 2], "text", None, 7):
        assert ruleset.evaluate(request, {}) == Decision(0, 4)


def test_a_prediction_that_fails_passes_to_the_next_rule() -> None:
    ruleset = compile_rules(
        [
            FallbackRule(when="true", prediction="request.score * 2.0"),
            FallbackRule(when="true", prediction="request.score / 0.0"),  # +inf: not JSON
            FallbackRule(prediction="request.fallback"),
        ]
    )
    assert ruleset.evaluate({"score": 0.25, "fallback": "x"}, {}) == Decision(0.5, 0)
    assert ruleset.evaluate({"score": "high", "fallback": "x"}, {}) == Decision("x", 2)
    assert ruleset.evaluate({"score": 0.0}, {}) == Decision(0.0, 0)
    assert ruleset.evaluate({}, {}) is None


def test_rows_of_a_batch_can_be_arrays() -> None:
    ruleset = compile_rules(
        [FallbackRule(when="request[0] > 0.5", prediction="1"), FallbackRule(prediction="0")]
    )
    assert [ruleset.evaluate(row, {}).value for row in ([0.7, 1.0], [0.1], [], [1])] == [1, 0, 0, 0]


def test_predictions_are_plain_json() -> None:
    ruleset = compile_rules(
        [
            FallbackRule(
                prediction='{"label": request.label + "!", "p": [request.p, request.p * 2.0], '
                '"n": null, "ok": size(request.label) > 1}'
            )
        ]
    )
    decision = ruleset.evaluate({"label": "churn", "p": 0.25}, {})
    assert decision == Decision({"label": "churn!", "p": [0.25, 0.5], "n": None, "ok": True}, 0)
    assert [type(v) for v in decision.value.values()] == [str, list, type(None), bool]
    assert type(decision.value["p"][1]) is float


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("request.items.exists(i, i.sku == 'x')", True),
        ("request.items.map(i, i.qty).size()", 2),
        ("int(request.ratio * 10.0)", 3),
        ("string(request.items.size()) + ' items'", "2 items"),
        ("request.name.matches('^a.*e$')", True),
        ("1u + 2u", 3),
        ("type(request.ratio) == double", True),
    ],
)
def test_expressions_outside_the_subset_run_on_cel_python(source: str, expected: Any) -> None:
    ruleset = compile_rules([FallbackRule(prediction=source)])
    assert ruleset.uses_cel_runner == (True,)
    request = {
        "items": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 3}],
        "ratio": 0.3,
        "name": "alice",
    }
    assert ruleset.evaluate(request, {}) == Decision(expected, 0)


def test_which_path_each_rule_takes_is_visible() -> None:
    ruleset = compile_rules(
        [
            FallbackRule(when="request.x > 1", prediction="1"),
            FallbackRule(when="request.xs.all(x, x > 1)", prediction="2"),
            FallbackRule(when="true", prediction="timestamp('2024-01-01T00:00:00Z').getFullYear()"),
            FallbackRule(prediction="0"),
        ]
    )
    assert ruleset.uses_cel_runner == (False, True, True, False)
    assert compile_rules(CHURN, closures=False).uses_cel_runner == (True,) * 5
    assert ruleset.evaluate({"xs": [2, 3]}, {}) == Decision(2, 1)
    assert ruleset.evaluate({"xs": []}, {}) == Decision(2, 1)
    assert ruleset.evaluate({"xs": [0]}, {}) == Decision(2024, 2)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            FallbackRule(when="request.features.tenure < 6 && reqest.x", prediction="1"),
            "rules[1].when: column 32: undeclared reference 'reqest'",
        ),
        (
            FallbackRule(when="request.x <", prediction="1"),
            "rules[1].when: column 11: syntax error: unexpected end of expression",
        ),
        (
            FallbackRule(when="request.x # 1", prediction="1"),
            "rules[1].when: column 11: syntax error: unexpected character '#'",
        ),
        (
            FallbackRule(when="request.x > 1", prediction='1 + "1"'),
            "rules[1].prediction: column 3: found no matching overload for '_+_' applied to "
            "(int, string)",
        ),
        (
            FallbackRule(when="request.tenure < 6.0 && 1 < 1.5", prediction="1"),
            "rules[1].when: column 27: found no matching overload for '_<_' applied to "
            "(int, double)",
        ),
        (
            FallbackRule(when="size(request.x)", prediction="1"),
            "rules[1].when: column 1: expected a bool condition, got int",
        ),
        (
            FallbackRule(when="request.x.startsWith(1)", prediction="1"),
            "rules[1].when: column 1: found no matching overload for 'startsWith' applied to "
            "(dyn, int)",
        ),
        (
            FallbackRule(when="has(request)", prediction="1"),
            "rules[1].when: column 1: has() takes a field selection: has(request.field)",
        ),
        (
            FallbackRule(when="request.s.size(1) > 0", prediction="1"),
            "rules[1].when: column 1: size() takes 0 arguments, got 1",
        ),
        (
            FallbackRule(prediction="lower(request.name)"),
            "rules[1].prediction: column 1: undeclared reference to function 'lower'",
        ),
        (
            FallbackRule(prediction='headers["x-a"] + 1'),
            "rules[1].prediction: column 16: found no matching overload for '_+_' applied to "
            "(string, int)",
        ),
        (
            FallbackRule(prediction='{"a": 1, "a": 2}'),
            "rules[1].prediction: column 10: duplicate map key 'a'",
        ),
        (
            FallbackRule(prediction="9223372036854775808"),
            "rules[1].prediction: column 1: invalid int literal 9223372036854775808: overflow",
        ),
        (
            FallbackRule(prediction="true ? 1 : 'one'"),
            "rules[1].prediction: column 1: the branches of ?: have different types, int and "
            "string",
        ),
        (
            FallbackRule(prediction="request.items.all(x, x)[0]"),
            "rules[1].prediction: column 1: found no matching overload for '_[_]' applied to "
            "(bool, int)",
        ),
        (
            FallbackRule(prediction="Message{a: 1}"),
            "rules[1].prediction: column 1: member object is not supported in rules",
        ),
        (
            FallbackRule(when="request.x > 1 &&\n  request.y < reqest.z", prediction="1"),
            "rules[1].when: line 2, column 15: undeclared reference 'reqest'",
        ),
    ],
)
def test_compile_errors_name_the_rule_the_field_and_the_column(
    rule: FallbackRule, message: str
) -> None:
    with pytest.raises(RuleCompileError) as caught:
        compile_rules([FallbackRule(prediction="0"), rule])
    assert str(caught.value) == message
    assert caught.value.index == 1
    assert caught.value.field == message.split(":")[0].split(".")[1]
    assert isinstance(caught.value, ValueError)


def test_the_error_attributes() -> None:
    with pytest.raises(RuleCompileError) as caught:
        compile_rules([FallbackRule(when="request.tenure < 6 && reqest", prediction="1")])
    error = caught.value
    assert (error.index, error.field, error.column, error.line) == (0, "when", 23, 1)
    assert error.message == "undeclared reference 'reqest'"


def test_check_rules_lists_every_error() -> None:
    errors = celrules.check_rules(
        [
            FallbackRule(when="x", prediction="y"),
            FallbackRule(when="request.ok", prediction="1"),
            FallbackRule(prediction="1 +"),
        ]
    )
    assert [str(e) for e in errors] == [
        "rules[0].when: column 1: undeclared reference 'x'",
        "rules[0].prediction: column 1: undeclared reference 'y'",
        "rules[2].prediction: column 3: syntax error: unexpected end of expression",
    ]
    assert celrules.check_rules(CHURN) == ()


def test_macro_variables_are_declared_only_inside_the_macro() -> None:
    compile_rules([FallbackRule(prediction="request.xs.filter(x, x > 1).size()")])
    with pytest.raises(RuleCompileError, match="undeclared reference 'x'"):
        compile_rules([FallbackRule(prediction="request.xs.filter(x, x > 1).size() + x")])


def test_a_rule_set_can_give_no_answer() -> None:
    ruleset = compile_rules([FallbackRule(when="request.x == 1", prediction="1")])
    assert ruleset.evaluate({"x": 2}, {}) is None
    assert compile_rules([]).evaluate({}, {}) is None


def test_odd_input_never_raises() -> None:
    deep: Any = 0
    for _ in range(5000):
        deep = [deep]
    ruleset = compile_rules(
        [
            FallbackRule(when="size(request.a) > 0", prediction="request"),
            FallbackRule(when="request.a.exists(x, x == 1)", prediction="request.a + request.a"),
            FallbackRule(prediction="0"),
        ]
    )
    for request in ({"a": deep}, {"a": (1, 2)}, {"a": {1, 2}}, {"a": object()}, {"a": 2**80}):
        assert ruleset.evaluate(request, {}) == Decision(0, 2), request
    assert ruleset.evaluate({"a": [1]}, [("x", "y")]) == Decision({"a": [1]}, 0)  # type: ignore[arg-type]


def test_expressions_that_nest_too_deeply_are_refused() -> None:
    with pytest.raises(RuleCompileError, match=r"rules\[0\].prediction: the expression nests too"):
        compile_rules([FallbackRule(prediction="(" * 400 + "1" + ")" * 400)])
