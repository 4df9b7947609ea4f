"""The fallback rules compiled with cel-python: checked, translated to closures where they can be.

`compile_rules` parses each rule's `when` and `prediction` with cel-python, checks them against
the rules' declarations (`request`: the JSON body, or the row for batch specs, type `dyn`;
`headers`: `map(string, string)` with lower-cased names) and translates the common subset into
Python closures (`celclosure`), about a microsecond an evaluation against cel-python's hundreds.
Everything else (macros such as `exists`, conversions, `matches`, timestamps) runs on cel-python's
interpreter, which is also the reference the closures are held to. Its `Evaluator` is called as
its `InterpretedRunner` calls it, without an `Environment`, whose constructor resets the process's
recursion limit. The interpreter rather than cel-python's `CompiledRunner`: that one shares
module globals between evaluations and logs every CEL error (a missing field, routine for a
`when`) at ERROR level.

Importing this module loads cel-python and lark: only a process with rules to compile does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import Activation, Evaluator

from truthloop.core import celast, celcheck, celclosure
from truthloop.core.rules import (
    CompiledRule,
    Decision,
    EvaluationError,
    FallbackRule,
    Headers,
    RuleCompileError,
    RuleSet,
)

DECLARATIONS = {"request": celcheck.DYN, "headers": celcheck.STRING_MAP}


@dataclass(frozen=True, slots=True, eq=False)
class Compiled:
    """One compiled CEL expression (a `rules.Expression`); `closure` is None when it runs on
    cel-python."""

    source: str
    root: celast.Node = field(repr=False)
    closure: celclosure.Closure | None = field(repr=False)
    tree: celast.Tree = field(repr=False)
    """cel-python's parse tree, which its interpreter evaluates."""
    activation: Activation = field(repr=False)
    """The declarations, without values; each evaluation works on a clone."""

    @property
    def uses_cel_runner(self) -> bool:
        return self.closure is None

    def holds(self, request: Any, headers: Headers) -> bool:
        """True exactly when the expression evaluates to `true`."""
        closure = self.closure
        if closure is not None:
            try:
                return closure(request, headers) is True
            except celclosure.Defer:
                pass
        try:
            value = self._run(request, headers)
        except EvaluationError:
            return False
        return type(value) is celtypes.BoolType and bool(value)

    def evaluate(self, request: Any, headers: Headers) -> Any:
        """The expression's value as plain JSON-able Python; raises EvaluationError."""
        closure = self.closure
        if closure is None:
            return to_json(self._run(request, headers))
        try:
            value = closure(request, headers)
        except celclosure.Defer:
            return to_json(self._run(request, headers))
        if value is celclosure.ERROR:
            raise EvaluationError(self.source)
        return to_json(value)

    def _run(self, request: Any, headers: Headers) -> Any:
        """cel-python's value (raw celtypes), the input converted as cel-python's adapter does."""
        try:
            activation = {
                "request": json_to_cel(request),
                "headers": celtypes.MapType(
                    {celtypes.StringType(k): celtypes.StringType(v) for k, v in headers.items()}
                ),
            }
            return Evaluator(ast=self.tree, activation=self.activation).evaluate(activation)
        except Exception as e:  # cel-python raises CELEvalError, and Python errors of its own
            raise EvaluationError(self.source) from e


def compile_rules(rules: Sequence[FallbackRule], *, closures: bool = True) -> RuleSet:
    """Compile `rules`; raises the first RuleCompileError (see `check_rules` for all of them).

    `closures=False` runs every expression on cel-python (benchmarks and equivalence tests).
    """
    activation = _activation()
    compiled = []
    for index, rule in enumerate(rules):
        when = None
        if rule.when is not None:
            when = _compile(activation, rule.when, index, "when", closures)
        prediction = _compile(activation, rule.prediction, index, "prediction", closures)
        answer = None
        if closures and isinstance(prediction.root, celast.Literal):
            value = prediction.root.value
            if type(value) in _JSON_SCALARS or (type(value) is float and math.isfinite(value)):
                answer = Decision(value, index)
        compiled.append(CompiledRule(index, when, prediction, answer))
    return RuleSet(tuple(compiled))


def check_rules(rules: Sequence[FallbackRule]) -> tuple[RuleCompileError, ...]:
    """Every compile error in `rules`, at most one per field, in rule order."""
    activation = _activation()
    errors = []
    for index, rule in enumerate(rules):
        fields = [("when", rule.when), ("prediction", rule.prediction)]
        for name, source in fields:
            if source is None:
                continue
            try:
                _compile(activation, source, index, name, closures=False)
            except RuleCompileError as e:
                errors.append(e)
    return tuple(errors)


def _activation() -> Activation:
    """What `celpy.Environment` would give its runners: the declared names, and protobuf's types."""
    names = {"request": celtypes.MapType, "headers": celtypes.MapType}
    return Activation(annotations={**celpy.googleapis, **names})


def _compile(
    activation: Activation, source: str, index: int, name: str, closures: bool
) -> Compiled:
    if not isinstance(source, str):
        raise RuleCompileError(index, name, None, f"expected a CEL string, got {source!r}")
    try:
        parsed = celast.parse(source)
        kind = celcheck.check(parsed.root, DECLARATIONS)
        closure = _translated(parsed.root) if closures else None
    except (celast.SyntaxProblem, celcheck.TypeProblem) as e:
        raise RuleCompileError(index, name, e.column, e.message, e.line) from e
    except RecursionError as e:
        raise RuleCompileError(index, name, None, "the expression nests too deeply") from e
    if name == "when" and kind not in (celcheck.BOOL, celcheck.DYN):
        root = parsed.root
        message = f"expected a bool condition, got {kind}"
        raise RuleCompileError(index, name, root.column, message, root.line)
    return Compiled(source, parsed.root, closure, parsed.tree, activation)


def _translated(root: celast.Node) -> celclosure.Closure | None:
    """`root` as a closure, or None where only cel-python can run it."""
    try:
        return celclosure.translate(root)
    except celclosure.Unsupported:
        return None


_JSON_SCALARS = frozenset({bool, int, str, type(None)})


def to_json(value: Any) -> Any:
    """A closure's or cel-python's value as plain JSON-able Python; EvaluationError if it has none.

    Both kinds of value subclass Python's own (cel-python's BoolType is an int), so one walk
    serves both.
    """
    if type(value) in _JSON_SCALARS:
        return value
    try:
        return _to_json(value)
    except RecursionError as e:
        raise EvaluationError("the value nests too deeply") from e


def _to_json(value: Any) -> Any:
    if type(value) in _JSON_SCALARS:
        return value
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise EvaluationError(f"{value} is not a JSON number")
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EvaluationError(f"map key {key!r} is not a string")
            result[str(key)] = _to_json(item)
        return result
    raise EvaluationError(f"a {type(value).__name__} is not a JSON value")
