"""What a fallback rule's CEL expression reads of a request: each `request.…` and `headers[…]`
path, as far as it is static.

A backtest replays rules on stored records, which keep the captured features, not the request
(`rulehistory`): a rule reading anything else cannot be replayed, and these paths say which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from truthloop.core import celast

Path = tuple[str | int, ...]
Root = Literal["request", "headers"]


@dataclass(frozen=True, slots=True)
class Read:
    """One request value a rule expression reads: `request` or `headers` and the path below."""

    root: Root
    path: Path

    def __str__(self) -> str:
        return self.root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)


def reads(source: str) -> tuple[Read, ...]:
    """The `request` and `headers` values a CEL expression reads, in source order: each chain of
    field selections and literal indexes from either name, as far as it is static (`size(request)`
    reads all of `request`; `request.a[i]` all of `request.a`)."""
    found: list[Read] = []
    _walk(celast.parse(source).root, found)
    return tuple(found)


def _walk(node: celast.Node, found: list[Read]) -> None:
    chain = _chain(node)
    if chain is not None:
        root, path = chain
        found.append(Read(root, path))
        return
    if isinstance(node, celast.Select):
        _walk(node.operand, found)
    elif isinstance(node, celast.Index):
        _walk(node.operand, found)
        _walk(node.index, found)
    elif isinstance(node, celast.Call):
        for child in (node.target, *node.args):
            if child is not None:
                _walk(child, found)
    elif isinstance(node, celast.Unary):
        _walk(node.operand, found)
    elif isinstance(node, celast.Binary | celast.Logical):
        _walk(node.left, found)
        _walk(node.right, found)
    elif isinstance(node, celast.Conditional):
        for child in (node.condition, node.then, node.otherwise):
            _walk(child, found)
    elif isinstance(node, celast.ListLit):
        for child in node.items:
            _walk(child, found)
    elif isinstance(node, celast.MapLit):
        for key, value in node.entries:
            _walk(key, found)
            _walk(value, found)


def _chain(node: celast.Node) -> tuple[Root, Path] | None:
    """`node` as a static path from `request` or `headers`, or None."""
    path: list[str | int] = []
    while True:
        if isinstance(node, celast.Ident):
            if node.name == "request":
                return "request", tuple(reversed(path))
            if node.name == "headers":
                return "headers", tuple(reversed(path))
            return None
        if isinstance(node, celast.Select):
            path.append(node.field)
            node = node.operand
        elif (
            isinstance(node, celast.Index)
            and isinstance(node.index, celast.Literal)
            and node.index.kind in ("string", "int")
        ):
            path.append(node.index.value)
            node = node.operand
        else:
            return None
