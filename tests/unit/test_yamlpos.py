"""YAML with line numbers, and the field paths they are keyed by."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthloop.core import fieldpath, yamlpos

TEXT = """\
# a comment
apiVersion: v1
spec:
  alerts:
    - name: a
      below: 0.8
    - {name: b, above: 1}
  selector:
    matchLabels:
      app.kubernetes.io/name: x
base: &base {p: 1, q: 2}
merged:
  <<: *base
  q: 3
---
---
second: true
"""


def test_every_path_has_the_line_of_its_key_or_item() -> None:
    first, empty, second = yamlpos.load_all(TEXT)
    assert first.value["spec"]["alerts"][1] == {"name": "b", "above": 1}  # type: ignore[index]
    assert first.line == 2
    assert first.lines == {
        "apiVersion": 2,
        "spec": 3,
        "spec.alerts": 4,
        "spec.alerts[0]": 5,
        "spec.alerts[0].name": 5,
        "spec.alerts[0].below": 6,
        "spec.alerts[1]": 7,
        "spec.alerts[1].name": 7,
        "spec.alerts[1].above": 7,
        "spec.selector": 8,
        "spec.selector.matchLabels": 9,
        'spec.selector.matchLabels["app.kubernetes.io/name"]': 10,
        "base": 11,
        "base.p": 11,
        "base.q": 11,
        "merged": 12,
        "merged.p": 11,
        "merged.q": 14,
    }
    assert (empty.value, empty.lines) == (None, {})
    assert (second.value, second.line) == ({"second": True}, 17)


def test_a_missing_path_answers_with_its_nearest_parent() -> None:
    (document, *_) = yamlpos.load_all(TEXT)
    assert document.line_of("spec.alerts[1].for") == 7
    assert document.line_of("spec.alerts[5].name") == 4
    assert document.line_of("spec.model.name") == 3
    assert document.line_of("kind") == 2
    assert document.line_of("") == 2


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: [1\n", 2, "expected ',' or ']'"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first on line 1)"),
        ("a: b: c\n", 1, "mapping values are not allowed here"),
        ("x: 1\n\t- y\n", 2, "found character '\\t' that cannot start any token"),
        ("x: *nope\n", 1, "found undefined alias 'nope'"),
        ("? [a, b]\n: 1\n", 1, "found unhashable key"),
    ],
)
def test_yaml_errors_carry_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(yamlpos.YamlError) as raised:
        yamlpos.load_all(text)
    assert raised.value.line == line
    assert message in raised.value.message


def test_alias_bombs_are_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(yamlpos.YamlError, match="more than 100000 nodes"):
        yamlpos.load_all("\n".join(lines))


def test_a_recursive_alias_is_indexed_once() -> None:
    (document,) = yamlpos.load_all("a: &x [1, *x]\n")
    assert document.lines == {"a": 1, "a[0]": 1, "a[1]": 1}


def test_empty_text_has_no_documents() -> None:
    assert yamlpos.load_all("") == []
    assert yamlpos.load_all("# only a comment\n") == []


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        (["spec"], "spec"),
        (["spec", "alerts", 1, "below"], "spec.alerts[1].below"),
        (["labels", "app.kubernetes.io/name"], 'labels["app.kubernetes.io/name"]'),
        (["a b", 'q"]'], '["a b"]["q\\"]"]'),
        ([0, "x-y_z"], "[0].x-y_z"),
    ],
)  # fmt: skip
def test_paths_are_written_as_users_read_them(parts: list[str | int], path: str) -> None:
    built = ""
    for part in parts:
        built = (
            fieldpath.item(built, part) if isinstance(part, int) else fieldpath.child(built, part)
        )
    assert built == path


@given(st.lists(st.text(max_size=6) | st.integers(0, 99), max_size=5))
def test_parent_undoes_one_step(parts: list[str | int]) -> None:
    paths = [""]
    for part in parts:
        last = paths[-1]
        paths.append(
            fieldpath.item(last, part) if isinstance(part, int) else fieldpath.child(last, part)
        )
    for inner, outer in itertools.pairwise(paths):
        assert fieldpath.parent(outer) == inner
    assert fieldpath.parent("") == ""
