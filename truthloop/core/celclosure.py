"""The common subset of CEL translated once into nested Python closures, with cel-python's results.

A closure is `f(request, headers) -> value`, built from the syntax tree by `translate`. It returns
`ERROR` where cel-python's result is an error (a value, not an exception: a `when` on a missing
field is routine, and raising costs microseconds), and raises `Defer` where it meets a value it
does not model, which sends that one evaluation to cel-python. `translate` raises `Unsupported` for
expressions outside the subset (macros, conversions, `matches`, uint/bytes literals, map keys that
are not string literals), which then always run on cel-python.

Semantics are cel-python 0.5.0's, including where they differ from the CEL spec, because the same
rule must give the same answer on either path. Values are plain Python: `bool`, `int`, `float`,
`str`, `None`, `list` and `dict` stand for cel-python's BoolType, IntType, DoubleType,
StringType, null, ListType and MapType. Some cel-python operations return Python's base types
instead, which behave differently afterwards (`1.5 + 1.5 == 3` is true but `3.0 == 3` an error;
`("a" + "b").contains("a")` is an error), so those results are kept marked: `PlainFloat`,
`PlainStr`, `PlainInt`, `PlainList`.

Each operation has a fast path for the operand types rules meet (int with int, double with
double, string with string...), written to match cel-python's result exactly: int64 overflow is an
error, `/` and `%` on ints truncate toward zero, `x / 0.0` is +inf, `1 < 1.5` is an error while
`1.5 < 2` is true. Any other combination converts the operands to cel-python's types and calls
the very function cel-python's evaluator calls, so rare cases match by construction. `&&` and
`||` are commutative over errors like cel-python's (`error || true` is true), and `has(a.b)` is
true exactly when `a.b` evaluates.

One difference is deliberate: cel-python converts the whole request first and fails on an integer
outside int64 anywhere in it; a closure only fails when it computes with such an integer.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, Final

from celpy import celtypes
from celpy.evaluation import (
    CELEvalError,
    bool_eq,
    bool_ge,
    bool_gt,
    bool_le,
    bool_lt,
    bool_ne,
    function_contains,
    function_endsWith,
    function_size,
    function_startsWith,
    operator_in,
)

from truthloop.core.celast import (
    Binary,
    Call,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    Logical,
    MapLit,
    Node,
    Select,
    Unary,
)

Closure = Callable[[Any, Any], Any]

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_INF: Final = math.inf


class _Error:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ERROR"


ERROR: Final = _Error()
"""A closure's result where cel-python's is an error. Fast paths pass it on without a check:
it is of no type they handle, so it reaches `_celpy`, which returns it."""


class Defer(Exception):
    """The evaluation met a value closures do not model; cel-python must evaluate this input."""


class Unsupported(Exception):
    """The expression is outside the translated subset; it runs on cel-python."""


class PlainInt(int):
    """cel-python's plain `int` result (e.g. of `true + 1`), unlike its IntType."""

    __slots__ = ()


class PlainFloat(float):
    """cel-python's plain `float` result of double `+ - *`, unlike its DoubleType."""

    __slots__ = ()


class PlainStr(str):
    """cel-python's plain `str` result of string `+` and indexing, unlike its StringType."""

    __slots__ = ()


class PlainList(list[Any]):
    """cel-python's plain `list` result of list `+`, unlike its ListType."""

    __slots__ = ()


def translate(node: Node) -> Closure:
    """The closure for `node`; raises Unsupported for anything outside the subset."""
    builder = _BUILDERS.get(type(node))
    if builder is None:
        raise Unsupported(type(node).__name__)
    return builder(node)


# --- the bridge to cel-python's own operations --------------------------------------------------


def _to_cel(value: Any) -> Any:
    """The cel-python value a closure value stands for (ValueError beyond int64)."""
    kind = type(value)
    if kind is bool:
        return celtypes.BoolType(value)
    if kind is int:
        return celtypes.IntType(value)
    if kind is float:
        return celtypes.DoubleType(value)
    if kind is str:
        return celtypes.StringType(value)
    if value is None:
        return None
    if kind is list:
        return celtypes.ListType([_to_cel(v) for v in value])
    if kind is dict:
        return celtypes.MapType({_to_cel(k): _to_cel(v) for k, v in value.items()})
    if kind is PlainInt:
        return int(value)
    if kind is PlainFloat:
        return float(value)
    if kind is PlainStr:
        return str(value)
    if kind is PlainList:
        return [_to_cel(v) for v in value]
    raise TypeError(f"not a closure value: {kind.__name__}")


def _from_cel(value: Any) -> Any:
    """The closure value for a cel-python value; ERROR for an error, Defer if not modelled."""
    kind = type(value)
    if kind is celtypes.BoolType:
        return bool(value)
    if kind is celtypes.IntType:
        return int(value)
    if kind is celtypes.DoubleType:
        return float(value)
    if kind is celtypes.StringType:
        return str(value)
    if value is None:
        return None
    if kind is celtypes.ListType:
        return [_from_cel(v) for v in value]
    if kind is celtypes.MapType and all(type(k) is celtypes.StringType for k in value):
        return {str(k): _from_cel(v) for k, v in value.items()}
    if kind is int:
        return PlainInt(value)
    if kind is float:
        return PlainFloat(value)
    if kind is str:
        return PlainStr(value)
    if kind is list:
        return PlainList(_from_cel(v) for v in value)
    if isinstance(value, CELEvalError):
        return ERROR
    raise Defer


def _celpy(function: Callable[..., Any], *args: Any) -> Any:
    """`function` (one cel-python's evaluator calls) applied as cel-python applies it."""
    if ERROR in args:
        return ERROR
    try:
        result = function(*(_to_cel(a) for a in args))
    except Exception:  # its evaluator turns every exception here into an error value
        return ERROR
    try:
        return _from_cel(result)
    except RecursionError:
        raise Defer from None


# --- leaves ---------------------------------------------------------------------------------------


def _literal(node: Literal) -> Closure:
    if node.kind in ("uint", "bytes"):
        raise Unsupported(node.kind)
    value = node.value

    def constant(request: Any, headers: Any) -> Any:
        return value

    return constant


def _request(request: Any, headers: Any) -> Any:
    return request


def _headers(request: Any, headers: Any) -> Any:
    return headers


def _ident(node: Ident) -> Closure:
    if node.name == "request":
        return _request
    if node.name == "headers":
        return _headers
    raise Unsupported(node.name)


# --- field selection and indexing ---------------------------------------------------------------
#
# cel-python selects `a.f` from maps only, and indexes with Python's own `[]`: it fails exactly
# when native subscripting raises KeyError, IndexError or TypeError (a list indexed by a string,
# a number indexed at all...). Negative list indices count from the end, as there.


def _select(node: Select) -> Closure:
    fields: list[str] = []
    base: Node = node
    while isinstance(base, Select):
        fields.append(base.field)
        base = base.operand
    fields.reverse()
    if isinstance(base, Ident) and base.name == "request" and len(fields) <= 2:
        return _request_path(*fields)
    operand = translate(base)
    path = tuple(fields)

    def select(request: Any, headers: Any) -> Any:
        value = operand(request, headers)
        for field in path:
            if type(value) is not dict:
                return ERROR
            value = value.get(field, ERROR)
        return value

    return select


def _request_path(*fields: str) -> Closure:
    """`request.a` and `request.a.b` unrolled: the most common rule operands."""
    if len(fields) == 1:
        (a,) = fields

        def select1(request: Any, headers: Any) -> Any:
            return request.get(a, ERROR) if type(request) is dict else ERROR

        return select1
    a, b = fields

    def select2(request: Any, headers: Any) -> Any:
        if type(request) is dict:
            value = request.get(a, ERROR)
            if type(value) is dict:
                return value.get(b, ERROR)
        return ERROR

    return select2


def _index(node: Index) -> Closure:
    operand = translate(node.operand)
    key_of = translate(node.index)

    def index(request: Any, headers: Any) -> Any:
        container = operand(request, headers)
        key = key_of(request, headers)
        kind = type(container)
        try:
            if kind is dict:
                return container.get(key, ERROR)
            value = container[key]
        except (KeyError, IndexError, TypeError):
            return ERROR
        return PlainStr(value) if kind is str or kind is PlainStr else value

    return index


# --- operators ------------------------------------------------------------------------------------

_NONE = type(None)
_ORDERED = frozenset({int, float, str, bool})
_EQUATABLE: frozenset[type] = frozenset({int, float, str, bool, _NONE})

# op: (native operation, cel-python's function, operand types where the native one agrees)
_RELATIONS: dict[str, tuple[Callable[[Any, Any], bool], Callable[..., Any], frozenset[type]]] = {
    "<": (operator.lt, bool_lt, _ORDERED),
    "<=": (operator.le, bool_le, _ORDERED),
    ">": (operator.gt, bool_gt, _ORDERED),
    ">=": (operator.ge, bool_ge, _ORDERED),
    "==": (operator.eq, bool_eq, _EQUATABLE),
    "!=": (operator.ne, bool_ne, _EQUATABLE),
}


def _relation(node: Binary) -> Closure:
    native, celpy_function, fast = _RELATIONS[node.op]
    left = translate(node.left)
    if isinstance(node.right, Literal) and type(node.right.value) in fast:
        constant = node.right.value
        constant_type = type(constant)

        def compare_constant(request: Any, headers: Any) -> Any:
            a = left(request, headers)
            if type(a) is constant_type:
                return native(a, constant)
            return _celpy(celpy_function, a, constant)

        return compare_constant
    right = translate(node.right)

    def compare(request: Any, headers: Any) -> Any:
        a = left(request, headers)
        b = right(request, headers)
        kind = type(a)
        if kind is type(b) and kind in fast:
            return native(a, b)
        return _celpy(celpy_function, a, b)

    return compare


def _checked(value: int) -> Any:
    """cel-python's IntType arithmetic: a result outside int64 is an overflow error."""
    return value if _INT_MIN <= value <= _INT_MAX else ERROR


def _add(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _checked(a + b)
        if kind is float:
            return PlainFloat(a + b)
        if kind is str:
            return PlainStr(a + b)
    return _celpy(operator.add, a, b)


def _subtract(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _checked(a - b)
        if kind is float:
            return PlainFloat(a - b)
    return _celpy(operator.sub, a, b)


def _multiply(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            return _checked(a * b)
        if kind is float:
            return PlainFloat(a * b)
    return _celpy(operator.mul, a, b)


def _divide(a: Any, b: Any) -> Any:
    kind = type(a)
    if kind is type(b):
        if kind is int:
            if b == 0:
                return ERROR
            quotient = abs(a) // abs(b)
            return _checked(-quotient if (a < 0) != (b < 0) else quotient)
        if kind is float:
            return _INF if b == 0.0 else a / b
    return _celpy(operator.truediv, a, b)


def _modulo(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if b == 0:
            return ERROR
        remainder = abs(a) % abs(b)
        return -remainder if a < 0 else remainder
    return _celpy(operator.mod, a, b)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _subtract,
    "*": _multiply,
    "/": _divide,
    "%": _modulo,
}


def _arithmetic(node: Binary) -> Closure:
    operation = _ARITHMETIC[node.op]
    left = translate(node.left)
    right = translate(node.right)

    def arithmetic(request: Any, headers: Any) -> Any:
        return operation(left(request, headers), right(request, headers))

    return arithmetic


def _membership(node: Binary) -> Closure:
    """`x in container`: cel-python compares `element == x` for each element (or map key)."""
    left = translate(node.left)
    right = node.right
    if (
        isinstance(right, ListLit)
        and right.items
        and all(isinstance(i, Literal) and type(i.value) in _ORDERED for i in right.items)
    ):
        kinds = {type(i.value) for i in right.items if isinstance(i, Literal)}
        if len(kinds) == 1:
            (kind,) = kinds
            members = frozenset(i.value for i in right.items if isinstance(i, Literal))
            container = [i.value for i in right.items if isinstance(i, Literal)]

            def in_constant(request: Any, headers: Any) -> Any:
                item = left(request, headers)
                if type(item) is kind:
                    return item in members
                return _celpy(operator_in, item, container)

            return in_constant
    container_of = translate(right)

    def membership(request: Any, headers: Any) -> Any:
        item = left(request, headers)
        container = container_of(request, headers)
        kind = type(item)
        if kind in _ORDERED:
            if type(container) is dict and kind is str:
                return item in container
            if type(container) is list:
                for element in container:
                    if type(element) is not kind:
                        break
                    if element == item:
                        return True
                else:
                    return False
        return _celpy(operator_in, item, container)

    return membership


def _binary(node: Binary) -> Closure:
    if node.op in _RELATIONS:
        return _relation(node)
    if node.op == "in":
        return _membership(node)
    return _arithmetic(node)


def _unary(node: Unary) -> Closure:
    operand = translate(node.operand)
    if node.op == "!":

        def negate(request: Any, headers: Any) -> Any:
            value = operand(request, headers)
            if value is True:
                return False
            if value is False:
                return True
            return ERROR

        return negate

    def minus(request: Any, headers: Any) -> Any:
        value = operand(request, headers)
        kind = type(value)
        if kind is int:
            return _checked(-value)
        if kind is float:
            return -value
        return _celpy(operator.neg, value)

    return minus


def _logical(node: Logical) -> Closure:
    """cel-python evaluates both sides; a bool decides if it can, else the other side is the value.

    `false && x` is false and `true || x` true whatever x is (an error, even a non-bool); `true &&
    x` and `false || x` are x; with neither side a bool the result is an error.
    """
    left = translate(node.left)
    right = translate(node.right)
    decisive = node.op == "||"  # the value that decides alone: true for ||, false for &&

    def logical(request: Any, headers: Any) -> Any:
        a = left(request, headers)
        if a is decisive:
            return decisive
        b = right(request, headers)
        if a is True or a is False or b is decisive:
            return b
        if b is True or b is False:
            return a
        return ERROR

    return logical


def _conditional(node: Conditional) -> Closure:
    condition = translate(node.condition)
    then = translate(node.then)
    otherwise = translate(node.otherwise)

    def conditional(request: Any, headers: Any) -> Any:
        value = condition(request, headers)
        if value is True:
            return then(request, headers)
        if value is False:
            return otherwise(request, headers)
        return ERROR

    return conditional


# --- literals with parts, and functions -----------------------------------------------------------


def _list(node: ListLit) -> Closure:
    items = tuple(translate(i) for i in node.items)

    def build(request: Any, headers: Any) -> Any:
        values = []
        for item in items:
            value = item(request, headers)
            if value is ERROR:
                return ERROR
            values.append(value)
        return values

    return build


def _map(node: MapLit) -> Closure:
    """cel-python keeps an erroring value inside the map; closures leave that case to it."""
    entries = []
    for key, value in node.entries:
        if not (isinstance(key, Literal) and key.kind == "string"):
            raise Unsupported("map key")
        entries.append((key.value, translate(value)))

    def build(request: Any, headers: Any) -> Any:
        result = {key: value(request, headers) for key, value in entries}
        if any(v is ERROR for v in result.values()):
            raise Defer
        return result

    return build


_SIZED = frozenset({str, list, dict, PlainStr, PlainList})

_STRING_METHODS: dict[str, tuple[Callable[[str, str], bool], Callable[..., Any]]] = {
    "startsWith": (str.startswith, function_startsWith),
    "endsWith": (str.endswith, function_endsWith),
    "contains": (str.__contains__, function_contains),
}


def _call(node: Call) -> Closure:
    name = node.function
    if node.target is None and name == "has":
        return _has(node.args[0])
    if node.target is None and name == "dyn":
        return translate(node.args[0])
    if name == "size":
        return _size(translate(node.target if node.target is not None else node.args[0]))
    if node.target is not None and name in _STRING_METHODS:
        native, celpy_function = _STRING_METHODS[name]
        target = translate(node.target)
        argument = translate(node.args[0])

        def method(request: Any, headers: Any) -> Any:
            text = target(request, headers)
            part = argument(request, headers)
            if type(text) is str and type(part) is str:
                return native(text, part)
            return _celpy(celpy_function, text, part)

        return method
    raise Unsupported(name)


def _has(selection: Node) -> Closure:
    select = translate(selection)

    def has(request: Any, headers: Any) -> Any:
        return select(request, headers) is not ERROR

    return has


def _size(operand: Closure) -> Closure:
    def size(request: Any, headers: Any) -> Any:
        value = operand(request, headers)
        if type(value) in _SIZED:
            return len(value)
        if value is None:
            return 0
        return _celpy(function_size, value)

    return size


_BUILDERS: dict[type, Callable[[Any], Closure]] = {
    Literal: _literal,
    Ident: _ident,
    Select: _select,
    Index: _index,
    Binary: _binary,
    Unary: _unary,
    Logical: _logical,
    Conditional: _conditional,
    ListLit: _list,
    MapLit: _map,
    Call: _call,
}
