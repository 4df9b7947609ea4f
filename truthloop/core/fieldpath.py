"""Field paths as users read them: `spec.alerts[1].below`, `spec.selector.matchLabels["app/x"]`.

Spec errors name their field with these paths and YAML positions are keyed by the same strings, so
a validator can point at the line of the offending field, or of its nearest parent when the field
is missing. The root is `""`. A key that is not a plain identifier is written as a JSON string in
brackets, so every path splits back into its parts unambiguously.
"""

from __future__ import annotations

import json
import re

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LAST = re.compile(r'(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[[0-9]+\]|\["(?:[^"\\]|\\.)*"\])\Z')


def child(path: str, key: str) -> str:
    """The path of `key` inside the mapping at `path`."""
    if _PLAIN.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def item(path: str, index: int) -> str:
    """The path of item `index` of the list at `path`."""
    return f"{path}[{index}]"


def parent(path: str) -> str:
    """The path one level up; the root's parent is the root."""
    last = _LAST.search(path)
    if last is None:  # a plain top-level key
        return ""
    return path[: last.start()]
