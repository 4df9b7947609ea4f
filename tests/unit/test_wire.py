"""The shapes the parts exchange (core/wire.py): their JSON, round trips, and how they evolve."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import wire
from truthloop.core.wire import Cause

CAUSES = (Cause("alert", "accuracy-low"), Cause("alertmanager", "LatencyHigh"))
STATE = wire.MonitorState(
    monitor="ml/churn",
    generation=3,
    version=17,
    phase="FallbackActive",
    fallback=wire.FallbackState(active=True, mode="auto", since=120.0, causes=CAUSES),
    alerts=(wire.AlertState("accuracy-low", "firing", 60.0, 0.62, 80),),
    external=("LatencyHigh",),
    capture=wire.CaptureState(
        refused="unauthorized",
        since=30.0,
        last=90.0,
        passthrough=wire.Passthrough(connections={"h2c": 12}, since=0.0, last=60.0),
    ),
    drift=wire.DriftSummary(
        status="ok",
        drifted=True,
        share=0.5,
        threshold=0.5,
        features=("tenure", "plan"),
        profiled=4,
        prediction=True,
    ),
    review=wire.ReviewSummary(
        enabled=True,
        status="under_traffic",
        message="the traffic fills 320 of the 500 a day",
        budget_per_day=500.0,
        expected_per_day=320.0,
        depth=12,
        oldest=45.0,
    ),
    versions=(wire.VersionSeen("v1", 0.0), wire.VersionSeen("v2", 600.0)),
    report=wire.ReportLink(4, 60.0, "accuracy-low", "/v1/monitors/ml/churn/reports/4"),
)


def json_of(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def test_the_state_on_the_wire() -> None:
    assert json_of(STATE) == {
        "monitor": "ml/churn",
        "generation": 3,
        "version": 17,
        "phase": "FallbackActive",
        "fallback": {
            "active": True,
            "mode": "auto",
            "since": 120.0,
            "causes": [
                {"kind": "alert", "name": "accuracy-low"},
                {"kind": "alertmanager", "name": "LatencyHigh"},
            ],
            "reason": "accuracy-low, alertmanager: LatencyHigh",
        },
        "alerts": [
            {"name": "accuracy-low", "state": "firing", "since": 60.0, "value": 0.62, "samples": 80}
        ],
        "external": ["LatencyHigh"],
        "capture": {
            "refused": "unauthorized",
            "since": 30.0,
            "last": 90.0,
            "passthrough": {"connections": {"h2c": 12}, "since": 0.0, "last": 60.0},
        },
        "drift": {
            "status": "ok",
            "drifted": True,
            "share": 0.5,
            "threshold": 0.5,
            "features": ["tenure", "plan"],
            "profiled": 4,
            "prediction": True,
            "reason": None,
        },
        "review": {
            "enabled": True,
            "status": "under_traffic",
            "message": "the traffic fills 320 of the 500 a day",
            "budget_per_day": 500.0,
            "expected_per_day": 320.0,
            "depth": 12,
            "oldest": 45.0,
        },
        "versions": [{"version": "v1", "first_seen": 0.0}, {"version": "v2", "first_seen": 600.0}],
        "report": {
            "id": 4,
            "at": 60.0,
            "alert": "accuracy-low",
            "url": "/v1/monitors/ml/churn/reports/4",
        },
    }
    assert msgspec.json.decode(msgspec.json.encode(STATE), type=wire.MonitorState) == STATE


def test_the_status_is_the_state_with_the_window_in_camel_case() -> None:
    status = wire.MonitorStatus.of(STATE, samples=120, labeled=80, metrics={"accuracy": None})
    shown = json_of(status)
    assert {k: shown[k] for k in ("samples", "labeled", "metrics")} == {
        "samples": 120,
        "labeled": 80,
        "metrics": {"accuracy": None},
    }
    assert (shown["observedGeneration"], shown["stateVersion"]) == (3, 17)
    assert (shown["fallback"], shown["alerts"]) == (json_of(STATE.fallback), json_of(STATE.alerts))
    assert shown["drift"] == json_of(STATE.drift)
    assert shown["review"] == json_of(STATE.review)
    assert shown["versions"] == json_of(STATE.versions)
    assert shown["report"] == json_of(STATE.report)
    view = {"apiVersion": "truthloop.dev/v1alpha1", "metadata": {"name": "churn",
            "namespace": "ml", "uid": "u"}, "spec": {}, "status": status}  # fmt: skip
    read = msgspec.json.decode(msgspec.json.encode(view), type=wire.MonitorView)
    assert read == wire.MonitorView(wire.ObjectMeta("churn", "ml"), status)


@pytest.mark.parametrize(
    ("causes", "reason"),
    [
        ((), None),
        ((wire.MANUAL,), "manual"),
        (CAUSES, "accuracy-low, alertmanager: LatencyHigh"),
    ],
)
def test_the_reason_is_always_the_causes_told_in_a_line(
    causes: tuple[Cause, ...], reason: str | None
) -> None:
    made = wire.FallbackState(active=bool(causes), mode="auto", causes=causes, reason="made up")
    assert made.reason == reason
    sent = json_of(made) | {"reason": "made up"}
    decoded = msgspec.json.decode(msgspec.json.encode(sent), type=wire.FallbackState)
    assert decoded.reason == reason


def test_a_reader_ignores_fields_it_does_not_know_and_defaults_those_it_misses() -> None:
    newer = json_of(STATE) | {"forecast": {"accuracy": 0.3}}
    newer["drift"] |= {"psi": 0.3}
    newer["fallback"] |= {"budget": 3}
    assert msgspec.json.decode(msgspec.json.encode(newer), type=wire.MonitorState) == STATE
    older = {
        "monitor": "ml/churn",
        "generation": 1,
        "version": 2,
        "phase": "Healthy",
        "fallback": {"active": False, "mode": "auto"},
    }
    state = msgspec.json.decode(msgspec.json.encode(older), type=wire.MonitorState)
    assert (state.alerts, state.external, state.capture) == ((), (), wire.CaptureState())
    assert state.drift == wire.DriftSummary(status="no_reference")
    assert state.review == wire.ReviewSummary(enabled=False)
    assert state.fallback == wire.FallbackState(active=False, mode="auto")


def test_a_value_outside_the_contract_is_refused_naming_its_path() -> None:
    wrong = json_of(STATE)
    wrong["fallback"]["causes"][1]["kind"] = "hunch"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.fallback\.causes\[1\]\.kind"):
        msgspec.json.decode(msgspec.json.encode(wrong), type=wire.MonitorState)


optional = st.none() | st.just(msgspec.UNSET)
records = st.builds(
    wire.CaptureRecord,
    prediction_id=st.text(min_size=1, max_size=8),
    monitor=st.just("ml/churn"),
    model_version=st.text(max_size=4),
    entity_id=st.none() | st.text(max_size=4) | st.integers(-(2**53), 2**53),
    tag=optional | st.text(max_size=4),
    ts=st.floats(0, 2e9) | st.just("2026-01-01T00:00:00Z"),
    prediction=st.booleans() | st.integers(-9, 9) | st.floats(-9, 9) | st.text(max_size=4),
    score=optional | st.floats(0, 1),
    features=optional | st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=3),
    served_by=st.sampled_from(wire.SERVED_BY),
)


@settings(max_examples=200, deadline=None)
@given(records)
def test_a_capture_record_round_trips_and_leaves_out_what_it_lacks(
    record: wire.CaptureRecord,
) -> None:
    encoded = msgspec.json.encode(record)
    assert msgspec.json.decode(encoded, type=wire.CaptureRecord) == record
    fields = msgspec.json.decode(encoded)
    for name in ("tag", "score", "features"):
        assert (name in fields) is (getattr(record, name) is not msgspec.UNSET)
