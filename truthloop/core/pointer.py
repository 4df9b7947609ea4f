"""RFC 6901 JSON Pointer: parse, resolve, and say where a walk stopped.

A pointer is `""` (the whole document) or a sequence of `/`-prefixed reference tokens in which `~1`
stands for `/` and `~0` for `~`. `parse` refuses anything else with a `PointerError`; spec parsing
calls it, so a parsed ModelMonitor only carries valid pointers.

`resolve` never raises for a document that lacks what the pointer names: it returns a `Missing`
value that says how far the walk got (`/features/tenure: no key "tenure" at /features`). Array
indices follow the RFC: `0` or digits without a leading zero; `-` (the element after the last)
names nothing that can be read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_BAD_TILDE = re.compile(r"~(?![01])")
_INDEX = re.compile(r"0|[1-9][0-9]*")


class PointerError(ValueError):
    """A string that is not a JSON pointer; the message names the pointer and the problem."""


@dataclass(frozen=True, slots=True)
class Missing:
    """The value a pointer names is not in the document.

    `at` is the pointer to the last value the walk reached, `reason` what stopped it there.
    """

    pointer: str
    at: str
    reason: str

    def __str__(self) -> str:
        where = self.at if self.at else "the document root"
        return f"{self.pointer or '(the whole document)'}: {self.reason} at {where}"


def parse(pointer: str) -> tuple[str, ...]:
    """The pointer's reference tokens, unescaped; `()` for `""`. Raises PointerError."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise PointerError(f"{pointer!r}: a JSON pointer is empty or starts with '/'")
    bad = _BAD_TILDE.search(pointer)
    if bad is not None:
        raise PointerError(
            f"{pointer!r}: '~' at character {bad.start() + 1} must be followed by '0' or '1'"
        )
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def escape(token: str) -> str:
    """One reference token as it is written inside a pointer."""
    return token.replace("~", "~0").replace("/", "~1")


def is_index(token: str) -> bool:
    """Whether `token` can index an array (`0`, or digits without a leading zero)."""
    return _INDEX.fullmatch(token) is not None


def render(tokens: Sequence[str]) -> str:
    """The pointer for `tokens`, the inverse of `parse`: `render(parse(p)) == p`."""
    return "".join("/" + escape(t) for t in tokens)


def resolve(document: Any, pointer: str | Sequence[str]) -> Any:
    """The value `pointer` names in `document` (decoded JSON), or a `Missing`.

    `pointer` is a pointer string (parsed here; PointerError if invalid) or the tokens from
    `parse`, which skips the parsing on hot paths: a batch's rows resolve each pointer once a
    row, so the walk through plain objects and arrays that hold what is named is the short way,
    and any other walk is taken again step by step, which says where it stopped.
    """
    tokens = parse(pointer) if isinstance(pointer, str) else tuple(pointer)
    value = document
    for token in tokens:
        kind = type(value)
        if kind is dict and token in value:
            value = value[token]
        elif (
            kind is list
            and token.isascii()
            and token.isdigit()
            and (token[0] != "0" or token == "0")
            and int(token) < len(value)
        ):
            value = value[int(token)]
        else:
            return _walk(document, tokens)
    return value


def _walk(document: Any, tokens: tuple[str, ...]) -> Any:
    """`resolve` a step at a time: the value, or a `Missing` saying where the walk stopped."""
    value = document
    for depth, token in enumerate(tokens):
        if isinstance(value, dict):
            if token not in value:
                return _missing(tokens, depth, f"no key {_quote(token)}")
            value = value[token]
        elif isinstance(value, list):
            if not is_index(token):
                if token == "-":
                    reason = '"-" (after the last element) names no value'
                else:
                    reason = f"{_quote(token)} is not an array index"
                return _missing(tokens, depth, reason)
            index = int(token)
            if index >= len(value):
                return _missing(
                    tokens, depth, f"index {index} is past the end (length {len(value)})"
                )
            value = value[index]
        else:
            return _missing(tokens, depth, f"cannot descend into {describe(value)}")
    return value


def _missing(tokens: tuple[str, ...], depth: int, reason: str) -> Missing:
    return Missing(render(tokens), render(tokens[:depth]), reason)


def _quote(token: str) -> str:
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def describe(value: Any) -> str:
    """The JSON type of a decoded value with its article ("a number", "null"), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
