"""Capture records and actuals: typed values, or every bad item named by index and field."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import records
from truthloop.core.records import Actual, Limits, PredictionRecord

NOW = 1_767_225_600.0
TASKS = {"ml/churn": "binary", "ml/price": "regression", "ml/kinds": "multiclass"}
LIMITS = Limits()
T = TypeVar("T")


def run(steps: records.Steps[T]) -> T:
    """All the slices of a parser at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def parse_body(
    body: bytes,
    limits: Limits = LIMITS,
    *,
    ndjson: bool = False,
    segments: dict[str, frozenset[str]] | None = None,
) -> Any:
    return run(
        records.parse_predictions(body, TASKS, NOW, limits, ndjson=ndjson, segments=segments)
    )


def rec(**fields: Any) -> dict[str, Any]:
    base = {"prediction_id": "p1", "monitor": "ml/churn", "ts": NOW - 10, "prediction": 1}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def parse(
    *items: Any, ndjson: bool = False, segments: dict[str, frozenset[str]] | None = None
) -> records.Parsed[PredictionRecord]:
    if ndjson:
        body = b"\n".join(msgspec.json.encode(i) for i in items)
    else:
        body = msgspec.json.encode(list(items))
    return parse_body(body, ndjson=ndjson, segments=segments)  # type: ignore[no-any-return]


def parse_actuals(body: Any) -> records.Parsed[Actual]:
    return run(records.parse_actuals(msgspec.json.encode(body), TASKS, NOW, LIMITS))


def problems(parsed: records.Parsed[Any]) -> list[tuple[int | None, str, str]]:
    return [(e.index, e.field, e.reason) for e in parsed.errors]


def test_a_valid_record_becomes_a_typed_value_with_defaults() -> None:
    parsed = parse(
        rec(ts="2025-12-31T23:59:00Z", entity_id=42, score=0.8, features={"tenure": 3}, tag="t")
    )
    assert parsed.errors == ()
    assert parsed.items == (
        PredictionRecord(
            monitor="ml/churn",
            prediction_id="p1",
            served_by="model",
            model_version="",
            ts=NOW - 60,
            prediction=1,
            entity_id="42",
            tag="t",
            score=0.8,
            features={"tenure": 3},
        ),
    )


def test_a_record_the_sidecar_abstained_on_says_so() -> None:
    [record] = parse(rec(abstained=True)).items
    assert record.abstained is True
    assert parse(rec()).items[0].abstained is False


@pytest.mark.parametrize("ndjson", [False, True])
def test_an_optional_field_sent_as_null_is_absent(ndjson: bool) -> None:
    nulls = {"prediction_id": "p1", "monitor": "ml/churn", "ts": NOW - 10, "prediction": 1,
             "entity_id": None, "tag": None, "score": None, "features": None}  # fmt: skip
    parsed = parse(nulls, ndjson=ndjson)
    assert parsed.errors == ()
    assert parsed.items == (PredictionRecord("ml/churn", "p1", "model", "", NOW - 10, 1),)


def test_every_bad_item_is_named_by_index_and_field() -> None:
    parsed = parse(
        rec(prediction_id="ok"),
        rec(prediction_id="a", ts="yesterday"),
        rec(prediction_id="b", monitor="ml/nope"),
        rec(prediction_id="c", prediction=[1]),
        rec(prediction_id=None),
        rec(prediction_id="d", served_by="human"),
        rec(prediction_id="e", entity_id="x" * 600),
        rec(prediction_id="f", score=2.0),
        rec(prediction_id="g", ts=-1),
        rec(prediction_id="h", ts=NOW + 3600),
        rec(prediction_id="i", ts=NOW - 31 * 86400),
        rec(prediction_id="j", prediction=2**60),
        rec(prediction_id="k\x00"),
        rec(prediction_id="l", ts="2026-01-01T00:00:00"),
        rec(prediction_id="m", features="x"),
        rec(prediction_id="n", monitor="ml/price", score=0.5),
    )
    assert problems(parsed) == [
        (1, "ts", "invalid"),
        (2, "monitor", "unknown_monitor"),
        (3, "prediction", "wrong_type"),
        (4, "prediction_id", "missing"),
        (5, "served_by", "wrong_type"),
        (6, "entity_id", "too_long"),
        (7, "score", "out_of_range"),
        (8, "ts", "out_of_range"),
        (9, "ts", "out_of_range"),
        (10, "ts", "too_old"),
        (11, "prediction", "out_of_range"),
        (12, "prediction_id", "invalid"),
        (13, "ts", "invalid"),
        (14, "features", "wrong_type"),
        (15, "score", "invalid"),
    ]
    assert [r.prediction_id for r in parsed.items] == ["ok"]
    assert parsed.indices == (0,)
    assert parsed.rejected == {"ml/churn": 13, "ml/price": 1, "": 1}


def test_identical_repeats_are_duplicates_and_conflicting_ones_are_errors() -> None:
    parsed = parse(rec(), rec(), rec(served_by="fallback"), rec(prediction=0))
    assert parsed.repeats == 1
    assert [r.served_by for r in parsed.items] == ["model", "fallback"]
    assert problems(parsed) == [(3, "prediction_id", "duplicate_in_batch")]


def test_a_value_accepted_once_in_a_batch_is_not_confused_with_an_equal_one() -> None:
    # True == 1 == 1.0 in Python; a regression takes the numbers but not the boolean.
    price = {"monitor": "ml/price"}
    parsed = parse(
        *(rec(prediction_id=f"p{i}", prediction=v, **price) for i, v in enumerate([1, 1.0, True]))
    )
    assert problems(parsed) == [(2, "prediction", "unusable_label")]
    assert [r.prediction for r in parsed.items] == [1, 1.0]


def test_ndjson_lines_are_items_and_a_broken_line_is_its_own_error() -> None:
    body = (
        msgspec.json.encode(rec(prediction_id="a"))
        + b"\n\n{oops\n[1]\n"
        + msgspec.json.encode(rec(prediction_id="b"))
    )
    parsed = parse_body(body, ndjson=True)
    assert problems(parsed) == [(1, "", "invalid_json"), (2, "", "wrong_type")]
    assert [r.prediction_id for r in parsed.items] == ["a", "b"]
    assert parsed.indices == (0, 3)


def test_a_body_that_is_not_an_array_or_too_long_is_refused_whole() -> None:
    assert problems(parse_body(b'{"a": 1}')) == [(None, "", "wrong_type")]
    small = Limits(max_items=2)
    parsed = parse_body(msgspec.json.encode([rec(prediction_id=str(i)) for i in range(3)]), small)
    assert problems(parsed) == [(None, "", "too_many_items")]
    with pytest.raises(msgspec.DecodeError):
        parse_body(b"[{")


def test_characters_a_store_cannot_keep_are_refused_where_they_would_be_stored() -> None:
    parsed = parse(
        rec(prediction_id="a", monitor="ml/kinds", prediction="x\ny"),
        rec(prediction_id="b", monitor="ml/kinds", prediction="crème brûlée"),
        rec(prediction_id="c", features={"k": [{"deep": "\x00"}]}),
        rec(prediction_id="d", features={"text": "a\tb\r\nc", "\x01": "other controls"}),
        rec(prediction_id="e", entity_id="non\u00a0breaking"),
        rec(prediction_id="f", monitor="ml/kinds", prediction="\x7f"),
    )
    assert problems(parsed) == [
        (0, "prediction", "invalid"),
        (2, "features", "invalid"),
        (4, "entity_id", "invalid"),
        (5, "prediction", "invalid"),
    ]
    labels = parse_actuals({"monitor": "ml/kinds", "prediction_id": "p", "actual": "a\x85"})
    assert problems(labels) == [(0, "actual", "invalid")]


def test_a_parser_yields_between_slices_and_counts_items_before_converting_any() -> None:
    n = 4 * records.SLICE
    body = msgspec.json.encode([rec(prediction_id=f"p{i}", ts="bad") for i in range(n)])
    steps = records.parse_predictions(body, TASKS, NOW, LIMITS)
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            parsed = done.value
            break
        yields += 1
    assert yields == 4
    assert (len(parsed.errors), parsed.omitted) == (records.MAX_ERRORS, n - records.MAX_ERRORS)
    assert [e.index for e in parsed.errors] == list(range(records.MAX_ERRORS))
    assert parsed.rejected == {"ml/churn": n}
    few = Limits(max_items=n - 1)
    for over in (body, b"{}\n" * n):
        steps = records.parse_predictions(over, TASKS, NOW, few, ndjson=over != body)
        with pytest.raises(StopIteration) as done:
            next(steps)  # refused before the first slice
        assert problems(done.value.value) == [(None, "", "too_many_items")]


def test_actuals_come_as_one_item_an_array_or_items() -> None:
    one = {"monitor": "ml/churn", "prediction_id": "p1", "actual": 1}
    expected = (Actual("ml/churn", NOW, prediction_id="p1", value=1),)
    assert parse_actuals(one).items == expected
    assert parse_actuals([one]).items == expected
    assert parse_actuals({"items": [one]}).items == expected
    by_entity = {
        "monitor": "ml/churn",
        "entity_id": "u",
        "tag": "buy",
        "vote": "down",
        "timestamp": "2025-12-31T23:00:00+00:00",
    }
    assert parse_actuals(by_entity).items == (
        Actual("ml/churn", NOW - 3600, entity_id="u", tag="buy", vote="down"),
    )


def test_bad_actuals_are_all_named() -> None:
    base = {"monitor": "ml/churn", "prediction_id": "p1", "actual": 1}
    parsed = parse_actuals(
        {
            "items": [
                base,
                {**base, "entity_id": "u"},
                {"monitor": "ml/churn", "actual": 1},
                {**base, "vote": "up"},
                {"monitor": "ml/churn", "prediction_id": "p2"},
                {**base, "prediction_id": "p3", "actual": None},
                {**base, "prediction_id": "p4", "actual": "cat"},
                {**base, "prediction_id": "p5", "tag": "buy"},
                {**base, "prediction_id": "p6", "vote": "maybe", "actual": None},
                {**base, "prediction_id": "p7", "timestamp": NOW + 3600},
                {**base, "actual": 0},
                {**base, "prediction_id": "p8", "monitor": "ml/price", "actual": "x"},
            ]
        }
    )
    assert problems(parsed) == [
        (1, "prediction_id", "missing"),
        (2, "prediction_id", "missing"),
        (3, "actual", "missing"),
        (4, "actual", "missing"),
        (5, "actual", "missing"),
        (6, "actual", "unusable_label"),
        (7, "tag", "invalid"),
        (8, "vote", "wrong_type"),
        (9, "timestamp", "out_of_range"),
        (10, "prediction_id", "duplicate_in_batch"),
        (11, "actual", "unusable_label"),
    ]


valid_items = st.lists(
    st.builds(
        rec,
        prediction_id=st.text(
            st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20
        ),
        prediction=st.one_of(st.booleans(), st.sampled_from([0, 1, 0.25, 0.75])),
        ts=st.floats(NOW - 86400, NOW),
        entity_id=st.one_of(st.none(), st.text(min_size=1, max_size=10), st.integers(0, 10**6)),
        served_by=st.sampled_from(["model", "fallback"]),
        score=st.one_of(st.none(), st.floats(0, 1)),
    ),
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(valid_items)
def test_the_fast_and_the_item_by_item_paths_agree(items: list[dict[str, Any]]) -> None:
    fast = parse(*items)
    slow = parse(*items, {"prediction_id": 5})  # a type error forces the item-by-item path
    assert slow.items == fast.items
    assert slow.repeats == fast.repeats
    assert slow.errors[-1].index == len(items)
    assert slow.errors[:-1] == fast.errors


@pytest.mark.parametrize("field", ["prediction_id", "entity_id", "model_version", "tag"])
def test_an_identifier_of_exactly_the_limit_passes_and_one_more_character_does_not(
    field: str,
) -> None:
    longest = "x" * LIMITS.max_id_length
    assert parse(rec(**{field: longest})).errors == ()
    assert problems(parse(rec(**{field: longest + "x"}))) == [(0, field, "too_long")]


def test_a_multiclass_record_may_carry_its_class_scores() -> None:
    kinds = {"monitor": "ml/kinds", "prediction": "cat"}
    parsed = parse(
        rec(prediction_id="a", score={"cat": 0.7, "dog": 0.3}, **kinds),
        rec(prediction_id="b", score={"cat": 1.5}, **kinds),
        rec(prediction_id="c", score={"cat": 0.5}),  # a binary monitor's score is a number
        rec(prediction_id="d", score=0.5, **kinds),  # a multiclass one's is an object
        rec(prediction_id="e", score={f"c{i}": 0.01 for i in range(51)}, **kinds),
    )
    assert problems(parsed) == [
        (1, "score", "out_of_range"),
        (2, "score", "invalid"),
        (3, "score", "invalid"),
        (4, "score", "invalid"),
    ]
    (one,) = parsed.items
    assert one.scores == {"cat": 0.7, "dog": 0.3}
    assert one.score is None


def test_a_review_label_names_its_reviewer_and_prediction() -> None:
    review = {"monitor": "ml/churn", "prediction_id": "p1", "source": "review"}
    parsed = parse_actuals(
        [
            {**review, "reviewer": "ana@example.com", "actual": 0},
            {**review, "prediction_id": "p2", "reviewer": "bo", "vote": "up"},
            {**review, "prediction_id": "p3", "reviewer": "c.d+x-y_z", "decision": "skip"},
            {**review, "prediction_id": "p4", "reviewer": "bo", "decision": "unsure"},
        ]
    )
    assert parsed.errors == ()
    assert parsed.items == (
        Actual("ml/churn", NOW, "p1", value=0, reviewer="ana@example.com"),
        Actual("ml/churn", NOW, "p2", vote="up", reviewer="bo"),
        Actual("ml/churn", NOW, "p3", reviewer="c.d+x-y_z", decision="skip"),
        Actual("ml/churn", NOW, "p4", reviewer="bo", decision="unsure"),
    )


def test_bad_review_labels_are_all_named() -> None:
    review = {"monitor": "ml/churn", "prediction_id": "p1", "source": "review", "reviewer": "bo"}
    parsed = parse_actuals(
        [
            {**review, "reviewer": None, "actual": 1},
            {**review, "prediction_id": None, "entity_id": "u", "actual": 1},
            {**review, "reviewer": "a b", "actual": 1},
            {**review, "reviewer": "x" * 129, "actual": 1},
            {**review, "reviewer": "a:b", "actual": 1},
            {**review, "reviewer": "", "actual": 1},
            {**review, "decision": "skip", "actual": 1},
            {**review, "decision": "skip", "vote": "up"},
            {**review, "decision": "maybe"},
            {**review},
            {"monitor": "ml/churn", "prediction_id": "p9", "reviewer": "bo", "actual": 1},
            {"monitor": "ml/churn", "prediction_id": "p9", "decision": "skip"},
            {**review, "source": "people", "actual": 1},
            {**review, "entity_id": "u", "actual": 1},
        ]
    )
    assert problems(parsed) == [
        (0, "reviewer", "missing"),
        (1, "prediction_id", "missing"),
        (2, "reviewer", "invalid"),
        (3, "reviewer", "invalid"),
        (4, "reviewer", "invalid"),
        (5, "reviewer", "invalid"),
        (6, "actual", "invalid"),
        (7, "vote", "invalid"),
        (8, "decision", "wrong_type"),
        (9, "actual", "missing"),
        (10, "reviewer", "invalid"),
        (11, "decision", "invalid"),
        (12, "source", "wrong_type"),
        (13, "entity_id", "invalid"),
    ]
    assert "source" in parsed.errors[10].message
    assert "an email fits" in parsed.errors[3].message
    assert "actual, vote and decision" in parsed.errors[9].message


SEGMENTS = {"ml/churn": frozenset({"country", "device", "tenure"})}


def parse_segmented(*items: Any, ndjson: bool = False) -> records.Parsed[PredictionRecord]:
    return parse(*items, ndjson=ndjson, segments=SEGMENTS)


@pytest.mark.parametrize("ndjson", [False, True])
def test_a_records_segment_values_are_kept_raw_and_nulls_left_out(ndjson: bool) -> None:
    parsed = parse_segmented(
        rec(segments={"country": "DE", "device": True, "tenure": 12.5}),
        rec(prediction_id="p2", segments={"country": None, "tenure": 3}),
        rec(prediction_id="p3", segments={"country": None}),
        rec(prediction_id="p4", segments={}),
        rec(prediction_id="p5"),
        ndjson=ndjson,
    )
    assert parsed.errors == ()
    assert [r.segments for r in parsed.items] == [
        {"country": "DE", "device": True, "tenure": 12.5},
        {"tenure": 3},
        None,
        None,
        None,
    ]


@pytest.mark.parametrize("ndjson", [False, True])
def test_bad_segments_are_named_by_item_and_segment(ndjson: bool) -> None:
    parsed = parse_segmented(
        rec(segments={"country": "DE"}),
        rec(prediction_id="p2", segments={"country": "x" * 129}),
        rec(prediction_id="p3", segments={"country": "a\tb"}),
        rec(prediction_id="p4", segments={"tenure": 2**60}),
        rec(prediction_id="p5", segments={"device": [1]}),
        rec(prediction_id="p6", segments={f"s{i}": 1 for i in range(9)}),
        rec(prediction_id="p7", segments=["DE"]),
        rec(prediction_id="p9", segments={"country": "x" * 128, "device": 2**53}),
        ndjson=ndjson,
    )
    assert problems(parsed) == [
        (1, "segments.country", "too_long"),
        (2, "segments.country", "invalid"),
        (3, "segments.tenure", "out_of_range"),
        (4, "segments.device", "wrong_type"),
        (5, "segments", "too_many_items"),
        (6, "segments", "wrong_type"),
    ]
    # the limits themselves pass: 128 characters, ±2**53
    assert [(r.prediction_id, r.segments) for r in parsed.items] == [
        ("p1", {"country": "DE"}),
        ("p9", {"country": "x" * 128, "device": 2**53}),
    ]
    assert parsed.warnings == ()


def warnings(parsed: records.Parsed[Any]) -> list[tuple[int | None, str, str]]:
    return [(w.index, w.field, w.reason) for w in parsed.warnings]


@pytest.mark.parametrize("ndjson", [False, True])
def test_a_segment_the_monitor_does_not_declare_is_left_out_with_a_warning(ndjson: bool) -> None:
    """A sidecar may hold records captured before the spec dropped a segment: refusing them
    would lose them (it drops a refused record), so only the undeclared value is left out."""
    parsed = parse_segmented(
        rec(segments={"plan": "pro"}),
        rec(prediction_id="p2", segments={"country": "DE", "plan": None, "old": 3}),
        rec(prediction_id="p3", monitor="ml/price", prediction=1.5, segments={"country": "DE"}),
        ndjson=ndjson,
    )
    assert parsed.errors == ()
    assert [(r.prediction_id, r.segments) for r in parsed.items] == [
        ("p1", None),
        ("p2", {"country": "DE"}),
        ("p3", None),
    ]
    assert warnings(parsed) == [
        (0, "segments.plan", "unknown_segment"),
        (1, "segments.plan", "unknown_segment"),
        (1, "segments.old", "unknown_segment"),
        (2, "segments.country", "unknown_segment"),
    ]
    assert "its segments: country, device, tenure" in parsed.warnings[0].message
    assert "its segments: none" in parsed.warnings[-1].message
    assert parsed.ignored == {
        ("ml/churn", "unknown_segment"): 3,
        ("ml/price", "unknown_segment"): 1,
    }


def test_an_invalid_value_of_a_declared_segment_is_still_refused_beside_a_warning() -> None:
    parsed = parse_segmented(rec(segments={"plan": "pro", "country": "a\x00b"}))
    assert problems(parsed) == [(0, "segments.country", "invalid")]
    assert warnings(parsed) == [(0, "segments.plan", "unknown_segment")]
    assert parsed.items == ()


def test_warnings_are_bounded_and_the_others_counted() -> None:
    count = records.MAX_ERRORS + 7
    parsed = parse_segmented(
        *(rec(prediction_id=f"p{i}", segments={"plan": i}) for i in range(count))
    )
    assert (len(parsed.items), len(parsed.warnings), parsed.warnings_omitted) == (
        count,
        records.MAX_ERRORS,
        7,
    )
    assert parsed.ignored == {("ml/churn", "unknown_segment"): count}


def test_an_unknown_segment_of_an_unknown_monitor_is_only_the_monitors_error() -> None:
    parsed = parse_segmented(rec(monitor="ml/nope", segments={"country": "DE"}))
    assert problems(parsed) == [(0, "monitor", "unknown_monitor")]
    assert parsed.warnings == ()


def test_a_long_unknown_segment_name_is_not_echoed_whole_in_the_field() -> None:
    parsed = parse_segmented(rec(segments={"n" * 1000: 1}))
    [warning] = parsed.warnings
    assert (warning.field, warning.reason, len(warning.message) < 200) == (
        "segments",
        "unknown_segment",
        True,
    )
