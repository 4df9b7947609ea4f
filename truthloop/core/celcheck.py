"""Declarations and a static type check for rule expressions, before anything runs.

cel-python 0.5.0 parses CEL but has no checker: an undeclared name or `1 + "a"` only fails when
evaluated, which for a fallback rule is while the model is already degraded. This module does
what CEL's checker does for the declarations rules get, at apply time:

- every identifier is a declared variable (`request`, `headers`), a macro's bound variable or a
  type name (`int`, `string`, ... as in `type(x) == int`); every function is one CEL defines, with
  the right number of arguments; `has()` takes a field selection;
- where both operand types are known statically, the operator has a CEL overload for them (CEL's
  standard overloads: no int/double mixing, no `bool + int`, `in` needs a list or a map);
- map literal keys are not repeated.

`request` is `dyn` (any JSON value), so most rule expressions are checked structurally and their
types are settled at run time; `headers` is `map(string, string)`. Types are CEL type names; the
map/list element types are not tracked except for `headers`.
"""

from __future__ import annotations

from collections.abc import Mapping

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

DYN = "dyn"
BOOL = "bool"
STRING_MAP = "map(string, string)"

TYPE_NAMES = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"}
)
"""Identifiers that name types: cel-python binds them to its type conversions."""

_CONVERSIONS = {
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bool": BOOL,
    "bytes": "bytes",
    "dyn": DYN,
    "type": "type",
    "timestamp": "timestamp",
    "duration": "duration",
}
_STRING_METHODS = frozenset({"startsWith", "endsWith", "contains", "matches"})
_TIME_METHODS = frozenset(
    {
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getMonth",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getSeconds",
    }
)
_MACROS = {"all": BOOL, "exists": BOOL, "exists_one": BOOL, "filter": "list", "map": "list"}
_SIZED = frozenset({"string", "bytes", "list", "map", STRING_MAP, DYN})
_ARITHMETIC = {
    "+": frozenset({"int", "uint", "double", "string", "bytes", "list"}),
    "-": frozenset({"int", "uint", "double"}),
    "*": frozenset({"int", "uint", "double"}),
    "/": frozenset({"int", "uint", "double"}),
    "%": frozenset({"int", "uint"}),
}
_ORDERED = frozenset({"int", "uint", "double", "string", "bytes", BOOL, "timestamp", "duration"})
_TIME = frozenset({"timestamp", "duration"})
_MAPS = frozenset({"map", STRING_MAP})


class TypeProblem(ValueError):
    """An expression that CEL's checker would refuse; `line`/`column` are 1-based."""

    def __init__(self, message: str, node: Node) -> None:
        super().__init__(message)
        self.message = message
        self.line = node.line
        self.column = node.column


def check(root: Node, declarations: Mapping[str, str]) -> str:
    """The static type of `root` given the variables' types; raises TypeProblem."""
    return _Checker(declarations).type_of(root, frozenset())


class _Checker:
    def __init__(self, declarations: Mapping[str, str]) -> None:
        self.declarations = declarations

    def type_of(self, node: Node, bound: frozenset[str]) -> str:
        if isinstance(node, Literal):
            return node.kind
        if isinstance(node, Ident):
            return self.ident(node, bound)
        if isinstance(node, Select):
            return self.select(node, self.type_of(node.operand, bound))
        if isinstance(node, Index):
            return self.index(node, bound)
        if isinstance(node, Unary):
            operand = self.type_of(node.operand, bound)
            allowed = {BOOL} if node.op == "!" else {"int", "double"}
            if operand != DYN and operand not in allowed:
                raise _overload(node, f"{node.op}_", operand)
            return operand
        if isinstance(node, Binary):
            left, right = self.type_of(node.left, bound), self.type_of(node.right, bound)
            return self.binary(node, left, right)
        if isinstance(node, Logical):
            left, right = self.type_of(node.left, bound), self.type_of(node.right, bound)
            if {left, right} - {BOOL, DYN}:
                raise _overload(node, f"_{node.op}_", left, right)
            return BOOL
        if isinstance(node, Conditional):
            return self.conditional(node, bound)
        if isinstance(node, ListLit):
            for item in node.items:
                self.type_of(item, bound)
            return "list"
        if isinstance(node, MapLit):
            return self.map_literal(node, bound)
        if isinstance(node, Call):
            return self.call(node, bound)
        raise TypeProblem(f"unsupported expression {type(node).__name__}", node)

    def ident(self, node: Ident, bound: frozenset[str]) -> str:
        if node.name in bound:
            return DYN
        if node.name in self.declarations:
            return self.declarations[node.name]
        if node.name in TYPE_NAMES:
            return "type"
        raise TypeProblem(f"undeclared reference {node.name!r}", node)

    def select(self, node: Select, operand: str) -> str:
        if operand == STRING_MAP:
            return "string"
        if operand in (DYN, "map"):
            return DYN
        raise TypeProblem(f"{operand} has no fields (selecting {node.field!r})", node)

    def index(self, node: Index, bound: frozenset[str]) -> str:
        operand = self.type_of(node.operand, bound)
        key = self.type_of(node.index, bound)
        if operand == DYN or operand == "map":
            return DYN
        if operand == "list" and key in ("int", "uint", DYN):
            return DYN
        if operand == STRING_MAP and key in ("string", DYN):
            return "string"
        raise _overload(node, "_[_]", operand, key)

    def binary(self, node: Binary, left: str, right: str) -> str:
        op = node.op
        if op == "in":
            if right not in (DYN, "list", *_MAPS):
                raise _overload(node, "@in", left, right)
            return BOOL
        dynamic = DYN in (left, right)
        if op in ("==", "!="):
            if not dynamic and left != right and "null_type" not in (left, right):
                raise _overload(node, f"_{op}_", left, right)
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if not dynamic and (left != right or left not in _ORDERED):
                raise _overload(node, f"_{op}_", left, right)
            return BOOL
        if dynamic or _TIME & {left, right}:
            return DYN
        if left != right or left not in _ARITHMETIC[op]:
            raise _overload(node, f"_{op}_", left, right)
        return left

    def conditional(self, node: Conditional, bound: frozenset[str]) -> str:
        condition = self.type_of(node.condition, bound)
        if condition not in (BOOL, DYN):
            raise _overload(node, "_?_:_", condition)
        then, otherwise = self.type_of(node.then, bound), self.type_of(node.otherwise, bound)
        if then == otherwise:
            return then
        if DYN in (then, otherwise) or "null_type" in (then, otherwise):
            return DYN
        raise TypeProblem(f"the branches of ?: have different types, {then} and {otherwise}", node)

    def map_literal(self, node: MapLit, bound: frozenset[str]) -> str:
        seen: set[object] = set()
        for key, value in node.entries:
            kind = self.type_of(key, bound)
            if kind not in ("int", "uint", BOOL, "string", DYN):
                raise TypeProblem(f"a map key cannot be {kind}", key)
            if isinstance(key, Literal):
                marker = (key.kind, key.value)
                if marker in seen:
                    raise TypeProblem(f"duplicate map key {key.value!r}", key)
                seen.add(marker)
            self.type_of(value, bound)
        return "map"

    def call(self, node: Call, bound: frozenset[str]) -> str:
        name, args = node.function, node.args
        if node.target is None:
            if name == "has":
                _arity(node, 1)
                if not isinstance(args[0], Select):
                    raise TypeProblem("has() takes a field selection: has(request.field)", node)
                self.type_of(args[0], bound)
                return BOOL
            if name == "size":
                _arity(node, 1)
                return self.sized(node, self.type_of(args[0], bound))
            if name in _CONVERSIONS:
                _arity(node, 1)
                self.type_of(args[0], bound)
                return _CONVERSIONS[name]
            raise TypeProblem(f"undeclared reference to function {name!r}", node)
        if name in _MACROS:
            return self.macro(node, node.target, bound)
        target = self.type_of(node.target, bound)
        arg_types = [self.type_of(a, bound) for a in args]
        if name == "size":
            _arity(node, 0)
            return self.sized(node, target)
        if name in _STRING_METHODS:
            _arity(node, 1)
            if target not in ("string", DYN) or arg_types[0] not in ("string", DYN):
                raise _overload(node, name, target, *arg_types)
            return BOOL
        if name in _TIME_METHODS:
            if len(args) > 1:
                raise TypeProblem(f"{name}() takes at most 1 argument, got {len(args)}", node)
            if target not in (*_TIME, DYN):
                raise _overload(node, name, target, *arg_types)
            return "int"
        raise TypeProblem(f"undeclared reference to function {name!r}", node)

    def sized(self, node: Call, operand: str) -> str:
        if operand not in _SIZED:
            raise _overload(node, "size", operand)
        return "int"

    def macro(self, node: Call, receiver: Node, bound: frozenset[str]) -> str:
        _arity(node, 2)
        variable, body = node.args
        if not isinstance(variable, Ident):
            raise TypeProblem(f"the first argument of {node.function}() is a variable name", node)
        target = self.type_of(receiver, bound)
        if target not in ("list", DYN, *_MAPS):
            raise _overload(node, node.function, target)
        result = self.type_of(body, bound | {variable.name})
        if node.function != "map" and result not in (BOOL, DYN):
            raise TypeProblem(f"the condition of {node.function}() is {result}, not bool", body)
        return _MACROS[node.function]


def _arity(node: Call, expected: int) -> None:
    if len(node.args) != expected:
        plural = "" if expected == 1 else "s"
        raise TypeProblem(
            f"{node.function}() takes {expected} argument{plural}, got {len(node.args)}", node
        )


def _overload(node: Node, function: str, *types: str) -> TypeProblem:
    return TypeProblem(
        f"found no matching overload for '{function}' applied to ({', '.join(types)})", node
    )
