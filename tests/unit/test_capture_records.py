"""Capture records: their wire shape (the one the service decodes), one per batch row, and
sampling by prediction ID."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import capture, records, wire
from truthloop.core.extract import Row
from truthloop.core.ids import uuid7
from truthloop.core.records import Limits, PredictionRecord


def build(rows: list[Row], *, batch: bool, served_by: Any = "model") -> list[dict[str, Any]]:
    made = capture.records(
        rows,
        prediction_id="0190c6e4-0000-7000-8000-000000000001",
        monitor="ml/churn",
        model_version="v3",
        served_by=served_by,
        ts=1700000000.25,
        batch=batch,
    )
    return [msgspec.json.decode(msgspec.json.encode(r)) for r in made]


def parse(
    ndjson: bytes, segments: dict[str, frozenset[str]] | None = None
) -> records.Parsed[PredictionRecord]:
    """What the service makes of the sidecar's NDJSON batch."""
    steps = records.parse_predictions(
        ndjson, {"ml/churn": "binary"}, 1700000001.0, Limits(), ndjson=True, segments=segments
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def test_a_record_carries_exactly_the_fields_the_feedback_service_takes() -> None:
    [record] = build([Row("u1", 1, 0.9, {"tenure": 3})], batch=False)
    assert record == {
        "prediction_id": "0190c6e4-0000-7000-8000-000000000001",
        "monitor": "ml/churn",
        "model_version": "v3",
        "entity_id": "u1",
        "ts": 1700000000.25,
        "prediction": 1,
        "served_by": "model",
        "score": 0.9,
        "features": {"tenure": 3},
        "abstained": False,
    }


def test_missing_score_and_features_are_left_out_and_a_missing_entity_is_null() -> None:
    [record] = build([Row(None, "yes")], batch=False, served_by="fallback")
    assert record["entity_id"] is None
    assert "score" not in record
    assert "features" not in record
    assert record["served_by"] == "fallback"


def test_what_the_sidecar_encodes_the_service_decodes_as_the_same_struct() -> None:
    rows = [Row("u1", 1, 0.9, {"tenure": 3}, index=0), Row(None, 0, index=1)]
    made = capture.records(
        rows,
        prediction_id="pid",
        monitor="ml/churn",
        model_version="v3",
        served_by="fallback",
        ts=1700000000.25,
        batch=True,
    )
    lines = [msgspec.json.encode(r) for r in made]
    assert [msgspec.json.decode(line, type=wire.CaptureRecord) for line in lines] == made
    parsed = parse(b"\n".join(lines))
    assert parsed.errors == ()
    assert parsed.items == (
        PredictionRecord("ml/churn", "pid.0", "fallback", "v3", 1700000000.25, 1, "u1", None,
                         0.9, {"tenure": 3}),
        PredictionRecord("ml/churn", "pid.1", "fallback", "v3", 1700000000.25, 0),
    )  # fmt: skip


def test_a_batch_gives_one_record_per_row_numbered_after_the_request() -> None:
    records = build([Row(f"u{i}", i % 2, index=i) for i in range(3)], batch=True)
    assert [r["prediction_id"] for r in records] == [
        f"0190c6e4-0000-7000-8000-000000000001.{i}" for i in range(3)
    ]
    assert [r["entity_id"] for r in records] == ["u0", "u1", "u2"]


def test_sampling_keeps_everything_at_one_and_nothing_at_zero() -> None:
    assert capture.sampled("any", 1.0)
    assert not capture.sampled("any", 0.0)


def test_sampling_keeps_about_the_rate_of_uuid7_ids() -> None:
    ids = [uuid7(1_700_000_000_000 + i // 7, i.to_bytes(10, "big")) for i in range(20_000)]
    kept = sum(capture.sampled(pid, 0.25) for pid in ids)
    assert 0.23 * len(ids) < kept < 0.27 * len(ids)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60), st.floats(0.0, 1.0))
def test_sampling_is_a_function_of_the_id_and_monotone_in_the_rate(pid: str, rate: float) -> None:
    assert capture.sampled(pid, rate) == capture.sampled(pid, rate)
    if capture.sampled(pid, rate):
        assert capture.sampled(pid, min(1.0, rate + 0.1))


def test_a_rows_segments_go_on_its_record_and_none_leave_the_field_out() -> None:
    rows = [Row("u1", 1, segments={"country": "DE", "tenure": 3}, index=0), Row("u2", 0, index=1)]
    made = build(rows, batch=True)
    assert made[0]["segments"] == {"country": "DE", "tenure": 3}
    assert "segments" not in made[1]
    lines = b"\n".join(msgspec.json.encode(r) for r in made)
    parsed = parse(lines, segments={"ml/churn": frozenset({"country", "tenure"})})
    assert parsed.errors == ()
    assert [r.segments for r in parsed.items] == [{"country": "DE", "tenure": 3}, None]
