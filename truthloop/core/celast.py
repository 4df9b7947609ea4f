"""CEL source → cel-python's parse tree → a small typed syntax tree for checking and translation.

cel-python's lark grammar keeps one tree level per precedence rule (`expr` → `conditionalor` →
... → `primary`), most of them pass-throughs. `parse` keeps cel-python's tree (its runner
evaluates it) and folds it into the `Node` classes here, each with the 1-based line and column it
starts at, so the checker and the closure translator each see one node per construct. Literals are
decoded with cel-python's own functions, so both paths agree on what `"\\x41"` or `0x10` means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lark
from celpy import celparser, celtypes
from celpy.evaluation import celbytes, celstr


class SyntaxProblem(ValueError):
    """The source is not CEL, or uses a construct no rule needs (message construction)."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """`kind` is the CEL type: int, uint, double, string, bytes, bool or null_type."""

    kind: str
    value: Any


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    """`operand.field`."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    """`operand[index]`."""

    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """`function(args)` when `target` is None, else the method form `target.function(args)`."""

    function: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """`!operand` or `-operand`."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """A relation (`<` ... `in`) or arithmetic; `line`/`column` locate the operator."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logical(Node):
    """`&&` or `||`."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    entries: tuple[tuple[Node, Node], ...]


Tree = lark.Tree[lark.Token]
"""cel-python's parse tree: rules are trees, and their leaves tokens."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """cel-python's tree (what its runner evaluates) and the folded syntax tree."""

    tree: Tree
    root: Node


_OPERATORS = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}
_PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)
_LITERAL_KINDS = {
    "INT_LIT": "int",
    "UINT_LIT": "uint",
    "FLOAT_LIT": "double",
    "STRING_LIT": "string",
    "MLSTRING_LIT": "string",
    "BYTES_LIT": "bytes",
    "BOOL_LIT": "bool",
    "NULL_LIT": "null_type",
}


def parse(source: str) -> Parsed:
    """Parse CEL `source`; raises SyntaxProblem with the line and column of the fault."""
    try:
        tree = celparser.CELParser().parse(source)
    except celparser.CELParseError as e:
        # At the end of the input, lark reports the last token: the operator left dangling.
        raise SyntaxProblem(_parse_message(e.__context__), e.line, e.column) from e
    return Parsed(tree, _fold(tree, (1, 1)))


def _parse_message(cause: BaseException | None) -> str:
    if isinstance(cause, lark.exceptions.UnexpectedCharacters):
        return f"syntax error: unexpected character {cause.char!r}"
    if isinstance(cause, lark.exceptions.UnexpectedToken):
        if cause.token.type == "$END":
            return "syntax error: unexpected end of expression"
        return f"syntax error: unexpected {str(cause.token)!r}"
    return "syntax error"


def _fold(branch: Tree | lark.Token, at: tuple[int, int]) -> Node:
    """`branch` as a Node; `at` is where the enclosing tree starts, for trees without a position."""
    tree = _tree(branch, at)
    kind = tree.data
    children = tree.children
    at = _start(tree, at)
    if len(children) == 1 and kind in _PASS_THROUGH:
        return _fold(children[0], at)
    line, column = at
    if kind == "expr":
        condition, then, otherwise = (_fold(c, at) for c in children)
        return Conditional(line, column, condition, then, otherwise)
    if kind in ("conditionalor", "conditionaland"):
        op = "||" if kind == "conditionalor" else "&&"
        return Logical(line, column, op, _fold(children[0], at), _fold(children[1], at))
    if kind in ("relation", "addition", "multiplication"):
        operator_tree, right = _tree(children[0], at), children[1]
        op = _OPERATORS[operator_tree.data]
        at_line, at_column = _operator_at(operator_tree, op)
        return Binary(
            at_line, at_column, op, _fold(operator_tree.children[0], at), _fold(right, at)
        )
    if kind == "unary":
        op = "!" if _tree(children[0], at).data == "unary_not" else "-"
        return Unary(line, column, op, _fold(children[1], at))
    if kind == "member_dot":
        return Select(line, column, _fold(children[0], at), str(children[1]))
    if kind == "member_dot_arg":
        args = _list(children[2], at) if len(children) > 2 else ()
        return Call(line, column, str(children[1]), _fold(children[0], at), args)
    if kind == "member_index":
        return Index(line, column, _fold(children[0], at), _fold(children[1], at))
    if kind in ("ident_arg", "dot_ident_arg"):
        args = _list(children[1], at) if len(children) > 1 else ()
        return Call(line, column, str(children[0]), None, args)
    if kind in ("ident", "dot_ident"):
        return Ident(line, column, str(children[0]))
    if kind == "list_lit":
        return ListLit(line, column, _list(children[0], at) if children else ())
    if kind == "map_lit":
        values = _list(children[0], at) if children else ()
        return MapLit(line, column, tuple(zip(values[0::2], values[1::2], strict=True)))
    if kind == "literal":
        token = children[0]
        if isinstance(token, lark.Token):
            return _literal(token, line, column)
    raise SyntaxProblem(f"{kind.replace('_', ' ')} is not supported in rules", line, column)


def _list(branch: Tree | lark.Token, at: tuple[int, int]) -> tuple[Node, ...]:
    return tuple(_fold(c, at) for c in _tree(branch, at).children)


def _tree(branch: Tree | lark.Token, at: tuple[int, int]) -> Tree:
    """`branch` where the grammar has a rule; a token there is a construct rules do not know."""
    if isinstance(branch, lark.Tree):
        return branch
    raise SyntaxProblem(f"unexpected {str(branch)!r}", *at)


def _literal(token: lark.Token, line: int, column: int) -> Literal:
    kind = _LITERAL_KINDS[token.type]
    text = str(token)
    try:
        if kind == "int":
            value: Any = int(celtypes.IntType(text))
        elif kind == "uint":
            value = int(celtypes.UintType(text[:-1]))
        elif kind == "double":
            value = float(text)
        elif kind == "string":
            value = str(celstr(token))
        elif kind == "bytes":
            value = bytes(celbytes(token))
        else:
            value = {"true": True, "false": False, "null": None}[text]
    except (ValueError, UnicodeError) as e:
        raise SyntaxProblem(f"invalid {kind} literal {text}: {e}", line, column) from e
    return Literal(line, column, kind, value)


def _start(tree: Tree, default: tuple[int, int]) -> tuple[int, int]:
    """Where `tree` starts. cel-python re-makes `true`/`false` tokens without one, so trees that
    start with them have none either."""
    line, column = getattr(tree.meta, "line", None), getattr(tree.meta, "column", None)
    return default if line is None or column is None else (line, column)


def _operator_at(operator_tree: Tree, op: str) -> tuple[int, int]:
    """Where a relation or arithmetic operator is: its grammar rule (`relation_lt`) ends with it."""
    meta = operator_tree.meta
    return meta.end_line, meta.end_column - len(op)
