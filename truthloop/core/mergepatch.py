"""JSON merge patch (RFC 7386) as a difference: the smallest patch that turns `old` into `new`.

Objects are compared key by key (a key missing from `new` becomes `null`, which deletes it);
anything else — arrays included — is replaced whole when it differs. `new` must hold no `null`
inside objects, since a merge patch cannot store one: `null` always means "delete".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The patch; empty when `old` already equals `new`."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = diff(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or not _same(before, value):
            patch[key] = value
    return patch


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: 1 and 1.0 are one number, but True is not 1."""
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
