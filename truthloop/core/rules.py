"""Fallback rules: written in CEL in the spec, compiled once, tried in order on the request path
while a model is degraded.

A `FallbackRule` is a rule as the spec gives it; `RuleSet` is the rules compiled. `celrules`
compiles them (`compile_rules`) and checks them (`check_rules`): it loads cel-python and lark,
several MiB a process with no rules need not pay for, so it is imported only where there are
rules to compile (`NO_RULES` stands for none).

`RuleSet.evaluate` answers with the first rule whose `when` is true (or absent) and whose
`prediction` has a JSON value. A `when` that is an error (missing field, wrong type) or any
value but `true` does not match; a matching rule whose `prediction` is an error, or not JSON
(bytes, a timestamp, an infinite double, a map with non-string keys), is passed over too, and the
next rule is tried. None when no rule gave a value.

Errors: `RuleCompileError` (a ValueError) names the rule index, the field and the column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FallbackRule:
    """A CEL rule: when `when` holds (always, if None), the prediction is the CEL `prediction`."""

    prediction: str
    when: str | None = None


class RuleCompileError(ValueError):
    """A rule expression that cannot be used: `rules[2].when: column 14: undeclared ...`."""

    def __init__(
        self, index: int, field: str, column: int | None, message: str, line: int | None = None
    ) -> None:
        self.index = index
        self.field = field
        self.column = column
        self.line = line
        self.message = message
        where = f"rules[{index}].{field}: "
        if column is not None:
            where += (
                f"line {line}, column {column}: " if line and line > 1 else f"column {column}: "
            )
        super().__init__(where + message)


class EvaluationError(Exception):
    """An expression with no JSON value for this input (a CEL error, or a non-JSON value)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The fallback's answer: a JSON value, and which rule gave it."""

    value: Any
    rule_index: int


class Expression(Protocol):
    """One compiled expression (`celrules.Compiled`)."""

    @property
    def uses_cel_runner(self) -> bool:
        """Whether it runs on cel-python's interpreter rather than a closure."""
        ...

    def holds(self, request: Any, headers: Headers) -> bool:
        """True exactly when the expression evaluates to `true`."""
        ...

    def evaluate(self, request: Any, headers: Headers) -> Any:
        """The expression's value as plain JSON-able Python; raises EvaluationError."""
        ...


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    when: Expression | None
    prediction: Expression
    answer: Decision | None = None
    """The Decision itself when the prediction is a scalar literal, built once."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Compiled fallback rules, tried in order."""

    rules: tuple[CompiledRule, ...]

    @property
    def uses_cel_runner(self) -> tuple[bool, ...]:
        """Per rule: True when its `when` or `prediction` runs on cel-python, not a closure."""
        return tuple(
            r.prediction.uses_cel_runner or (r.when is not None and r.when.uses_cel_runner)
            for r in self.rules
        )

    def evaluate(self, request: Any, headers: Headers) -> Decision | None:
        """The first rule that matches and has a value, or None; never raises for any input."""
        for rule in self.rules:
            if rule.when is not None and not rule.when.holds(request, headers):
                continue
            if rule.answer is not None:
                return rule.answer
            try:
                return Decision(rule.prediction.evaluate(request, headers), rule.index)
            except EvaluationError:
                continue
        return None


NO_RULES = RuleSet(())
"""The rules of a spec that has none: they never answer."""
