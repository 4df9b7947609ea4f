"""YAML with line numbers: text in, documents out, each with the line of every field path.

`load_all` parses a YAML stream (several documents allowed) with PyYAML's safe loader, as
`kubectl` does, and returns each document's value together with `lines`, the 1-based line of every
node keyed by its `fieldpath` (`spec.alerts[1].below` → 14). A mapping entry is at its key's line;
a list item at the item's. `line_of` answers for a path that is not in the map with its nearest
existing parent, so an error about a missing field points at the object that lacks it.

Beyond PyYAML, a mapping with the same key twice is refused (the apiserver's strict decoding does
too, and silently keeping the last one hides typos). Every problem is a `YamlError` that carries
the line; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from truthloop.core import fieldpath


class YamlError(ValueError):
    """Text that is not YAML; `line` is 1-based (None when unknown), `message` says why."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its value (None for an empty document) and the line of each path."""

    value: object
    line: int
    lines: Mapping[str, int]

    def line_of(self, path: str) -> int:
        """The line of `path`, or of its nearest parent that is in the document."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = fieldpath.parent(path)
        return self.line


MAX_NODES = 100_000
"""Refuse documents whose aliases expand to more nodes than this (a "billion laughs" file)."""


def load_all(text: str) -> list[Document]:
    """Every document in `text`, in order; raises YamlError for text that is not YAML."""
    loader = yaml.SafeLoader(text)
    documents = []
    try:
        while loader.check_node() and (node := loader.get_node()) is not None:
            lines: dict[str, int] = {}
            _Indexer(lines).index(node, "")
            value = loader.construct_document(node)
            documents.append(Document(value, node.start_mark.line + 1, lines))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = ": ".join(part for part in (e.context, e.problem) if part)
        raise YamlError(None if mark is None else mark.line + 1, problem) from e
    except yaml.YAMLError as e:
        raise YamlError(None, str(e)) from e
    except RecursionError as e:
        raise YamlError(None, "nested too deeply") from e
    finally:
        loader.dispose()
    return documents


class _Indexer:
    """Records the line of every node under a document's root, keyed by field path."""

    __slots__ = ("active", "lines")

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines
        self.active: set[int] = set()  # nodes being walked: an alias back to one is a cycle

    def index(self, node: Node, path: str) -> None:
        if id(node) in self.active:
            return
        self.active.add(id(node))
        if isinstance(node, MappingNode):
            self._mapping(node, path)
        elif isinstance(node, SequenceNode):
            for index, value in enumerate(node.value):
                self._record(fieldpath.item(path, index), value)
        self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: str) -> None:
        entries = [(k, v) for k, v in node.value if isinstance(k, ScalarNode)]
        for key, value in entries:  # merged entries first: the mapping's own keys override them
            if key.tag == "tag:yaml.org,2002:merge":
                merged = value.value if isinstance(value, SequenceNode) else [value]
                for source in merged:
                    self.index(source, path)
        seen: dict[str, int] = {}
        for key, value in entries:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                raise YamlError(
                    line, f"duplicate key {key.value!r} (first on line {seen[key.value]})"
                )
            seen[key.value] = line
            self._record(fieldpath.child(path, key.value), value, line)

    def _record(self, path: str, node: Node, line: int | None = None) -> None:
        if len(self.lines) >= MAX_NODES:
            raise YamlError(None, f"more than {MAX_NODES} nodes (aliases expanding?)")
        self.lines[path] = node.start_mark.line + 1 if line is None else line
        self.index(node, path)
