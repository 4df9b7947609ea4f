"""Segment keys, the assignment of a raw value to a kept value, and the choice of value sets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthloop.core import segmented, segments
from truthloop.core.segments import MISSING, OTHER
from truthloop.core.spec import SegmentSpec, Source
from truthloop.core.wire import Scalar

COUNTRY = SegmentSpec("country", Source(header="X-Country"), max_values=3)
TENURE = SegmentSpec("tenure", Source(pointer="/tenure"), buckets=(6.0, 12.0, 24.5))
PLAN = SegmentSpec("plan", Source(pointer="/plan"))


def test_a_key_is_the_segment_the_escaped_value_and_the_counter() -> None:
    assert segments.prefix("country", "DE") == "^country=DE:"
    assert segments.key("country", "DE", "@predictions") == "^country=DE:@predictions"
    assert segments.key("url", "http://x/%20", "n") == "^url=http%3A//x/%2520:n"
    assert segments.is_counter("^country=DE:n")
    assert not segments.is_counter("@predictions")
    assert not segments.is_counter("")


@given(st.text())
def test_escaping_round_trips_and_leaves_no_colon(value: str) -> None:
    escaped = segments.escape(value)
    assert ":" not in escaped
    assert segments.unescape(escaped) == value
    counter = "~cbpe:acc@x"
    assert segments.split({segments.key("s", value, counter): 2.0}, "s") == {value: {counter: 2.0}}


@pytest.mark.parametrize(
    ("edge", "name"),
    [(10.0, "10"), (2.5, "2.5"), (-3.0, "-3"), (-0.0, "0"), (0.1, "0.1"), (1e20, "1e+20")],
)
def test_format_edge(edge: float, name: str) -> None:
    assert segments.format_edge(edge) == name


@pytest.mark.parametrize(
    ("raw", "bucket"),
    [
        (-1, "<6"),
        (5.99, "<6"),
        (6, "[6,12)"),
        (11.9, "[6,12)"),
        (12, "[12,24.5)"),
        (24.4, "[12,24.5)"),
        (24.5, ">=24.5"),
        (1e9, ">=24.5"),
        ("7", "[6,12)"),  # a header's text holding a JSON number
        ("2.5e1", ">=24.5"),
        ("seven", OTHER),
        ("", OTHER),
        (True, OTHER),
        ("true", OTHER),
        ("1e999", OTHER),
        (10**400, OTHER),
        (None, MISSING),
    ],
)
def test_numeric_buckets_name_the_range(raw: object, bucket: str) -> None:
    assert segments.assign(TENURE, (), raw) == bucket  # type: ignore[arg-type]


def test_a_single_edge_makes_two_buckets() -> None:
    one = SegmentSpec("age", Source(pointer="/age"), buckets=(18.0,))
    assert [segments.assign(one, (), v) for v in (17, 18, 99)] == ["<18", ">=18", ">=18"]


def test_a_categorical_value_is_itself_when_kept_else_other_and_absent_is_missing() -> None:
    kept = ("DE", "FR", "true", "3", "2.5")
    assert segments.assign(COUNTRY, kept, "DE") == "DE"
    assert segments.assign(COUNTRY, kept, "US") == OTHER
    assert segments.assign(COUNTRY, kept, None) == MISSING
    assert segments.assign(COUNTRY, kept, "de") == OTHER  # values are exact
    # numbers and booleans by their JSON text; 3 and 3.0 are one value
    assert segments.assign(COUNTRY, kept, True) == "true"
    assert segments.assign(COUNTRY, kept, False) == OTHER
    assert segments.assign(COUNTRY, kept, 3) == "3"
    assert segments.assign(COUNTRY, kept, 3.0) == "3"
    assert segments.assign(COUNTRY, kept, 2.5) == "2.5"
    assert segments.assign(COUNTRY, kept, "3") == "3"


def test_the_reserved_names_are_never_kept_values() -> None:
    assert segments.assign(COUNTRY, ("missing", "other"), "missing") == OTHER
    assert segments.choose(COUNTRY, {"missing": 50, "other": 40, "DE": 1}) == ("DE",)


def test_text_of_raw_values() -> None:
    assert [segments.text(v) for v in ("x", True, False, 7, -7, 7.0, 0.25, 2**62)] == [
        "x",
        "true",
        "false",
        "7",
        "-7",
        "7",
        "0.25",
        str(2**62),
    ]


def test_prefixes_follow_the_spec_order_and_read_each_sets_values() -> None:
    sets = {"country": ("DE",), "plan": ("pro",)}
    raw: dict[str, Scalar] = {"plan": "pro", "country": "US", "tenure": 13, "unknown": "x"}
    assert segments.prefixes((COUNTRY, TENURE, PLAN), sets, raw) == (
        "^country=other:",
        "^tenure=[12,24.5):",
        "^plan=pro:",
    )
    # no set yet (before the leader's first choice): everything categorical is other
    assert segments.prefixes((COUNTRY, PLAN), {}, {"plan": "pro"}) == (
        "^country=missing:",
        "^plan=other:",
    )
    assert segments.prefixes((COUNTRY,), sets, None) == ("^country=missing:",)
    assert segments.prefixes((), sets, raw) == ()


def test_choose_keeps_the_most_frequent_sorted_by_value() -> None:
    counts = {"DE": 10, "FR": 30, "US": 20, "IT": 5, "ES": 0}
    assert segments.choose(COUNTRY, counts) == ("DE", "FR", "US")
    assert segments.choose(COUNTRY, {"DE": 1}) == ("DE",)
    assert segments.choose(COUNTRY, {"DE": 0}) == ()
    assert segments.choose(TENURE, counts) == ()  # numeric: the buckets are the values


def test_choose_breaks_ties_by_what_is_kept_then_by_value() -> None:
    counts = {"A": 9, "B": 5, "C": 5, "D": 5, "E": 5}
    assert segments.choose(COUNTRY, counts) == ("A", "B", "C")
    assert segments.choose(COUNTRY, counts, kept=("E", "D", "Z")) == ("A", "D", "E")
    # a kept value loses its place to a more frequent one
    assert segments.choose(COUNTRY, {"A": 9, "B": 8, "C": 7, "D": 6}, kept=("D",)) == (
        "A",
        "B",
        "C",
    )


def test_cardinality_is_bounded_under_a_flood_of_distinct_values() -> None:
    flood = {f"v{i}": 1 for i in range(100_000)}
    flood.update({"DE": 3, "FR": 2})
    kept = segments.choose(COUNTRY, flood)
    assert kept == ("DE", "FR", "v0")
    assigned = {segments.assign(COUNTRY, kept, v) for v in flood}
    assert assigned == {"DE", "FR", "v0", OTHER}
    wide = SegmentSpec("id", Source(pointer="/id"), max_values=100)
    kept = segments.choose(wide, flood)
    assert len(kept) == 100
    every = {segments.prefixes((wide,), {"id": kept}, {"id": v}) for v in flood}
    every.add(segments.prefixes((wide,), {"id": kept}, {}))
    assert len(every) == 100 + 2  # the kept values, other and missing


def test_split_takes_one_segments_counters_by_value() -> None:
    counters = {
        "@predictions": 10.0,
        "^country=DE:@predictions": 4.0,
        "^country=DE:acc:n": 3.0,
        "^country=other:@predictions": 6.0,
        "^country2=DE:@predictions": 1.0,
        "^plan=pro:@predictions": 10.0,
        "^country=a%3Ab:@predictions": 1.0,
    }
    assert segments.split(counters, "country") == {
        "DE": {"@predictions": 4.0, "acc:n": 3.0},
        OTHER: {"@predictions": 6.0},
        "a:b": {"@predictions": 1.0},
    }
    assert segments.split(counters, "device") == {}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("DE", None),
        ("", None),
        ("é" * 128, None),
        ("x" * 129, "too_long"),
        ("a\nb", "invalid"),
        ("a\x00", "invalid"),
        ("a\x7f", "invalid"),
        ("a\x85", "invalid"),
        (True, None),
        (0, None),
        (-(2**53), None),
        (2**53 + 1, "out_of_range"),
        (1.5, None),
        (float("inf"), "out_of_range"),
        (float("nan"), "out_of_range"),
        (None, "wrong_type"),
        ([1], "wrong_type"),
        ({"a": 1}, "wrong_type"),
    ],
)
def test_invalid_names_what_a_raw_value_may_not_be(raw: object, reason: str | None) -> None:
    problem = segments.invalid(raw)
    assert (problem and problem[0]) == reason


def test_only_keeps_the_named_segments_prefixes_renumbered() -> None:
    names = ("", "^country=DE:", "^device=ios:", "^country=FR:", "^device=web:")
    ids = np.array([[1, 2], [3, 4], [0, 2]], dtype=np.intp)
    kept = segmented.only(segmented.Assigned(names, ids), frozenset({"country"}))
    assert kept is not None
    assert kept.names == ("", "^country=DE:", "^country=FR:")
    assert kept.ids.tolist() == [[1, 0], [2, 0], [0, 0]]
    assert segmented.only(segmented.Assigned(names, ids), frozenset({"tenure"})) is None
    assert segmented.only(None, frozenset({"country"})) is None
