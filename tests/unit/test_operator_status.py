"""ModelMonitor status: composed from observations, written only when it changed, with Events.

The composed status must fit the CRD's status schema exactly — a field the schema does not have
would be pruned by the apiserver and then look changed on every pass — so it is checked against
that schema with unknown fields forbidden.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import mergepatch, wire
from truthloop.core.spec import AlertSpec
from truthloop.operator import status
from truthloop.operator.census import Census
from truthloop.operator.status import Event, Observation

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ALERTS = (AlertSpec("accuracy-low", "accuracy", below=0.8, for_=120.0),)
CRD = yaml.safe_load((Path(__file__).parents[2] / "crds" / "modelmonitor.yaml").read_text())


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD's structural schema as JSON Schema with unknown fields refused (pruning)."""
    out: dict[str, Any] = {}
    if "type" in schema:
        out["type"] = [schema["type"], "null"] if schema.get("nullable") else schema["type"]
    if "enum" in schema:
        out["enum"] = schema["enum"]
    if "properties" in schema:
        out["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
        out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = closed(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = closed(schema["items"])
    if "required" in schema:
        out["required"] = schema["required"]
    return out


STATUS_SCHEMA = closed(
    CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
)


def view(**changes: Any) -> wire.MonitorStatus:
    base = wire.MonitorStatus(
        phase="Healthy",
        samples=120,
        labeled=80,
        metrics={"accuracy": 0.93, "accuracyLower": 0.9, "accuracyUpper": 0.951},
        fallback=wire.FallbackState(active=False, mode="auto"),
        alerts=(alert("ok", 0.93),),
        observed_generation=2,
        state_version=7,
    )
    return msgspec.structs.replace(base, **changes)


def alert(status: wire.AlertStatus, value: float | None) -> wire.AlertState:
    return wire.AlertState("accuracy-low", status, T0, value, 80)


def registered(**changes: Any) -> Observation:
    census = changes.pop("census", Census(injected=2, total=2))
    return Observation(2, (), "registered", "", view(**changes), ALERTS, census)


def conditions(composed: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in composed["conditions"]}


def test_a_healthy_monitor() -> None:
    composed = status.compose({}, registered(), T0)
    jsonschema.validate(composed, STATUS_SCHEMA)
    assert composed["phase"] == "Healthy"
    assert composed["samples"] == 120
    assert composed["labeled"] == 80
    assert composed["metric"] == "accuracy=0.93 [0.9–0.951]"
    assert composed["fallback"] == {"active": False}
    assert composed["injectedPods"] == 2
    assert composed["observedGeneration"] == 2
    assert composed["alerts"] == [{"name": "accuracy-low", "status": "ok", "value": 0.93}]
    assert conditions(composed) == {
        "Ready": ("True", "Monitoring"),
        "SpecValid": ("True", "Valid"),
        "Registered": ("True", "Registered"),
        "PodsInjected": ("True", "AllPodsInjected"),
        "Breached": ("False", "WithinThresholds"),
        "FallbackActive": ("False", "ModelServing"),
        "TrafficBypass": ("False", "NoBypass"),
        "CaptureRefused": ("False", "Accepted"),
        "CaptureIncomplete": ("False", "AllCaptured"),
        "Drift": ("Unknown", "NoReference"),
        "ReviewBudget": ("Unknown", "NoReview"),
        "Synced": ("True", "OperatorSyncing"),
    }
    assert composed["drift"] == {"status": "no_reference", "drifted": False, "features": []}
    assert "review" not in composed
    assert all(c["lastTransitionTime"] == "2026-01-01T00:00:00Z" for c in composed["conditions"])
    assert composed["lastSyncTime"] == "2026-01-01T00:00:00Z"


def test_refused_capture_is_a_condition_and_one_warning_while_it_lasts() -> None:
    healthy = status.compose({}, registered(), T0)
    capture = wire.CaptureState(refused="unauthorized", since=T0 + 60, last=T0 + 90)
    refused = status.compose(healthy, registered(capture=capture), T0 + 120)
    jsonschema.validate(refused, STATUS_SCHEMA)
    condition = next(c for c in refused["conditions"] if c["type"] == "CaptureRefused")
    assert (condition["status"], condition["reason"]) == ("True", "Unauthorized")
    assert "since 2026-01-01T00:01:00Z" in condition["message"]
    assert "write token" in condition["message"]
    assert status.events(healthy, refused) == [
        Event("Warning", "CaptureRefused", condition["message"])
    ]
    later = msgspec.structs.replace(capture, last=T0 + 150)
    again = status.compose(refused, registered(capture=later), T0 + 180)
    assert status.events(refused, again) == []
    assert mergepatch.diff(refused, again) == {"lastSyncTime": "2026-01-01T00:03:00Z"}
    over = status.compose(again, registered(capture=wire.CaptureState()), T0 + 600)
    assert conditions(over)["CaptureRefused"] == ("False", "Accepted")


def test_connections_passed_through_are_a_condition_and_one_warning_while_they_go_on() -> None:
    healthy = status.compose({}, registered(), T0)
    passed = wire.Passthrough(connections={"h2c": 12, "websocket": 1}, since=T0, last=T0 + 60)
    grpc = status.compose(
        healthy, registered(capture=wire.CaptureState(passthrough=passed)), T0 + 120
    )
    jsonschema.validate(grpc, STATUS_SCHEMA)
    condition = next(c for c in grpc["conditions"] if c["type"] == "CaptureIncomplete")
    assert (condition["status"], condition["reason"]) == ("True", "PassedThrough")
    assert condition["message"] == (
        "13 connections went to the model uncaptured in the last hour: 12 h2c (HTTP/2 cleartext,"
        " as gRPC speaks), 1 websocket (WebSocket); since 2026-01-01T00:00:00Z, the last at"
        " 2026-01-01T00:01:00Z. The model answered their requests, but they are not monitored:"
        " the sidecar captures HTTP/1.1 requests only"
    )
    assert status.events(healthy, grpc) == [
        Event("Warning", "CaptureIncomplete", condition["message"])
    ]
    more = msgspec.structs.replace(passed, connections={"h2c": 40}, last=T0 + 120)
    again = status.compose(grpc, registered(capture=wire.CaptureState(passthrough=more)), T0 + 180)
    assert status.events(grpc, again) == []  # the message moved, not the condition
    assert conditions(again)["CaptureIncomplete"] == ("True", "PassedThrough")
    over = status.compose(again, registered(), T0 + 4000)
    assert conditions(over)["CaptureIncomplete"] == ("False", "AllCaptured")
    assert status.events(again, over) == []


def summary(*features: str, drifted: bool = False, prediction: bool = False) -> wire.DriftSummary:
    share = len(features) / 4
    return wire.DriftSummary(
        status="ok",
        drifted=drifted,
        share=share,
        threshold=0.5,
        features=features,
        profiled=4,
        prediction=prediction,
    )


def test_drift_is_a_condition_naming_the_drifted_features_and_one_warning() -> None:
    calm = status.compose({}, registered(drift=summary()), T0)
    jsonschema.validate(calm, STATUS_SCHEMA)
    drift = next(c for c in calm["conditions"] if c["type"] == "Drift")
    assert (drift["status"], drift["reason"], drift["message"]) == (
        "False",
        "NoDrift",
        "no feature drifted (4 compared with the reference)",
    )
    assert calm["drift"] == {"status": "ok", "drifted": False, "share": 0.0, "features": []}

    some = status.compose(calm, registered(drift=summary("tenure")), T0 + 60)
    drift = next(c for c in some["conditions"] if c["type"] == "Drift")
    assert (drift["status"], drift["reason"], drift["message"]) == (
        "False",
        "BelowShare",
        "1 of 4 features drifted (share 0.25 < 0.5): tenure",
    )
    assert status.events(calm, some) == []

    shifted = summary("tenure", "plan", drifted=True, prediction=True)
    drifted = status.compose(some, registered(drift=shifted), T0 + 120)
    jsonschema.validate(drifted, STATUS_SCHEMA)
    drift = next(c for c in drifted["conditions"] if c["type"] == "Drift")
    message = "2 of 4 features drifted (share 0.5 >= 0.5): tenure, plan; the prediction drifted too"
    assert (drift["status"], drift["reason"], drift["message"]) == ("True", "DatasetDrift", message)
    assert drift["lastTransitionTime"] == "2026-01-01T00:02:00Z"
    assert drifted["drift"] == {
        "status": "ok",
        "drifted": True,
        "share": 0.5,
        "features": ["tenure", "plan"],
    }
    assert status.events(some, drifted) == [Event("Warning", "DriftDetected", message)]
    again = status.compose(drifted, registered(drift=shifted), T0 + 130)
    assert status.events(drifted, again) == []
    assert conditions(status.compose(again, registered(), T0 + 140))["Drift"] == (
        "Unknown",
        "NoReference",
    )
    no_data = registered(drift=wire.DriftSummary(status="no_data"))
    assert conditions(status.compose(again, no_data, T0 + 150))["Drift"] == ("Unknown", "NoData")


def queue(status: str = "ok", message: str | None = None, **changes: Any) -> wire.ReviewSummary:
    """A review summary of a monitor with `spec.review`."""
    fields: dict[str, Any] = {
        "budget_per_day": 500.0,
        "expected_per_day": 480.0,
        "depth": 12,
        "oldest": T0 - 3600,
        **changes,
    }
    return wire.ReviewSummary(enabled=True, status=status, message=message, **fields)


def test_the_review_budget_is_a_condition_the_status_shows_and_warns_of_once() -> None:
    kept = status.compose({}, registered(review=queue()), T0)
    jsonschema.validate(kept, STATUS_SCHEMA)
    condition = next(c for c in kept["conditions"] if c["type"] == "ReviewBudget")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "Ok",
        "about 480 items a day queued of a budget of 500; 12 waiting, the oldest queued at "
        "2025-12-31T23:00:00Z",
    )
    assert kept["review"] == {
        "status": "ok",
        "budgetPerDay": 500.0,
        "expectedPerDay": 480.0,
        "depth": 12,
        "oldest": "2025-12-31T23:00:00Z",
    }
    assert [e.reason for e in status.events({}, kept)] == ["Healthy"]  # nothing of the queue

    said = "the abstain band alone queues 900 items a day, over the budget of 500"
    over = status.compose(kept, registered(review=queue("over_budget", said)), T0 + 60)
    jsonschema.validate(over, STATUS_SCHEMA)
    condition = next(c for c in over["conditions"] if c["type"] == "ReviewBudget")
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "OverBudget",
        said,
    )
    assert condition["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert over["review"]["status"] == "over_budget"
    assert status.events(kept, over) == [Event("Warning", "OverBudget", said)]
    again = status.compose(over, registered(review=queue("over_budget", said, depth=13)), T0 + 90)
    assert status.events(over, again) == []
    changed = mergepatch.diff(over, again)
    assert changed == {"review": {"depth": 13}, "lastSyncTime": "2026-01-01T00:01:30Z"}

    behind = status.compose(again, registered(review=queue("behind", "3 items expired")), T0 + 120)
    assert conditions(behind)["ReviewBudget"] == ("False", "Behind")
    assert status.events(again, behind) == [Event("Warning", "Behind", "3 items expired")]
    back = status.compose(behind, registered(review=queue("ok", "on budget")), T0 + 180)
    assert status.events(behind, back) == [Event("Normal", "ReviewBudgetMet", "on budget")]

    unread = status.compose(back, Observation(2, (), "unavailable", "down"), T0 + 240)
    assert unread["review"] == back["review"]
    assert conditions(unread)["ReviewBudget"] == ("Unknown", "NoData")
    for waiting in ("under_traffic", "no_traffic"):
        composed = status.compose({}, registered(review=queue(waiting, None, oldest=None)), T0)
        assert conditions(composed)["ReviewBudget"] == ("False", status._camel(waiting))
        assert "oldest" not in composed["review"]


def test_a_drift_alert_first_shows_its_value_in_the_metric_column() -> None:
    tenure = AlertSpec("tenure-drift", "feature_drift", above=0.1, feature="tenure")
    firing = wire.AlertState("tenure-drift", "firing", T0, 0.2345, 900)
    seen = Observation(
        2, (), "registered", "", view(alerts=(firing,)), (tenure, *ALERTS), Census(2, 2)
    )
    composed = status.compose({}, seen, T0)
    assert composed["metric"] == "feature_drift:tenure=0.234"
    breached = next(c for c in composed["conditions"] if c["type"] == "Breached")
    assert breached["message"] == "tenure-drift firing: feature_drift:tenure 0.234 > 0.1"
    unread = wire.AlertState("tenure-drift", "insufficient", T0, None, 0)
    quiet = Observation(2, (), "registered", "", view(alerts=(unread,)), (tenure,), Census(2, 2))
    assert "metric" not in status.compose({}, quiet, T0)


def test_the_same_observation_renews_only_the_sync_time_once_per_interval() -> None:
    """A running operator says so about once per status interval, and writes nothing else."""
    first = status.compose({}, registered(), T0, interval=10)
    assert mergepatch.diff(first, status.compose(first, registered(), T0 + 9.5, interval=10)) == {}
    later = status.compose(first, registered(), T0 + 10, interval=10)
    assert mergepatch.diff(first, later) == {"lastSyncTime": "2026-01-01T00:00:10Z"}
    synced = next(c for c in later["conditions"] if c["type"] == "Synced")
    assert "every 10s" in synced["message"]


def test_any_change_renews_the_sync_time() -> None:
    first = status.compose({}, registered(), T0, interval=10)
    fewer = registered(census=Census(injected=1, total=2))
    changed = status.compose(first, fewer, T0 + 3, interval=10)
    assert changed["lastSyncTime"] == "2026-01-01T00:00:03Z"


def test_a_transition_moves_only_its_condition_time() -> None:
    first = status.compose({}, registered(), T0)
    firing = (alert("firing", 0.62),)
    engaged = wire.FallbackState(
        active=True, mode="auto", since=T0 + 60, causes=(wire.Cause("alert", "accuracy-low"),)
    )
    later = status.compose(
        first, registered(phase="FallbackActive", alerts=firing, fallback=engaged), T0 + 60
    )
    jsonschema.validate(later, STATUS_SCHEMA)
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times["FallbackActive"] == times["Breached"] == "2026-01-01T00:01:00Z"
    assert times["Ready"] == times["SpecValid"] == "2026-01-01T00:00:00Z"
    assert later["fallback"] == {
        "active": True,
        "since": "2026-01-01T00:01:00Z",
        "reason": "accuracy-low: accuracy 0.62 < 0.8 for 2m",
    }
    breached = next(c for c in later["conditions"] if c["type"] == "Breached")
    assert breached["message"] == "accuracy-low firing: accuracy 0.62 < 0.8 for 2m"
    assert status.events(first, later) == [
        Event("Normal", "FallbackEngaged", "accuracy-low: accuracy 0.62 < 0.8 for 2m")
    ]
    manual = wire.FallbackState(active=True, mode="engaged", since=T0 + 60, causes=(wire.MANUAL,))
    by_hand = status.compose(later, registered(phase="FallbackActive", fallback=manual), T0 + 61)
    assert by_hand["fallback"]["reason"].startswith("engaged by hand")
    back = status.compose(later, registered(), T0 + 900)
    assert status.events(later, back) == [
        Event("Normal", "FallbackDisengaged", "the model answers again (phase Healthy)")
    ]


def test_every_cause_of_the_engagement_is_told_whatever_its_name_holds() -> None:
    causes = (
        wire.Cause("alert", "accuracy-low"),
        wire.Cause("alertmanager", "LatencyHigh, p99"),
        wire.Cause("alert", "removed-since"),
    )
    fallback = wire.FallbackState(active=True, mode="auto", since=T0, causes=causes)
    seen = registered(phase="FallbackActive", alerts=(alert("firing", 0.62),), fallback=fallback)
    composed = status.compose({}, seen, T0)
    jsonschema.validate(composed, STATUS_SCHEMA)
    told = "accuracy-low: accuracy 0.62 < 0.8 for 2m; alertmanager: LatencyHigh, p99; removed-since"
    assert composed["fallback"]["reason"] == told
    engaged = next(c for c in composed["conditions"] if c["type"] == "FallbackActive")
    assert (engaged["reason"], engaged["message"]) == ("FallbackEngaged", told)


def test_an_invalid_spec() -> None:
    errors = ("spec.alerts[0].below: expected a number, got 'high'",)
    composed = status.compose({}, Observation(4, errors, "invalid"), T0)
    jsonschema.validate(composed, STATUS_SCHEMA)
    assert composed["phase"] == "Invalid"
    assert composed["observedGeneration"] == 4
    assert conditions(composed)["SpecValid"] == ("False", "InvalidSpec")
    assert conditions(composed)["Ready"] == ("False", "InvalidSpec")
    assert conditions(composed)["PodsInjected"] == ("Unknown", "InvalidSpec")
    assert status.events({}, composed) == [Event("Warning", "InvalidSpec", errors[0])]
    other = ("spec.port: must be a port number 1-65535 or a port name, got 0",)
    worse = status.compose(composed, Observation(5, other, "invalid"), T0 + 1)
    assert status.events(composed, worse) == [Event("Warning", "InvalidSpec", other[0])]


def test_a_feedback_service_that_does_not_answer_keeps_the_last_numbers() -> None:
    healthy = status.compose({}, registered(), T0)
    down = Observation(2, (), "unavailable", "GET …: ClientConnectorError", None, ALERTS, Census())
    composed = status.compose(healthy, down, T0 + 5)
    jsonschema.validate(composed, STATUS_SCHEMA)
    assert composed["phase"] == "Healthy"
    assert composed["labeled"] == 80
    assert composed["metric"] == healthy["metric"]
    assert conditions(composed)["Ready"] == ("False", "FeedbackUnavailable")
    assert conditions(composed)["Breached"] == ("Unknown", "NoData")
    assert status.events(healthy, composed) == [
        Event("Warning", "FeedbackUnavailable", "GET …: ClientConnectorError")
    ]
    still = status.compose(composed, down, T0 + 10)
    assert status.events(composed, still) == []


def test_before_the_first_registration_the_phase_is_pending() -> None:
    composed = status.compose({}, Observation(1, alerts=ALERTS, census=Census()), T0)
    assert composed["phase"] == "Pending"
    assert "metric" not in composed
    assert conditions(composed)["Registered"] == ("Unknown", "Registering")
    assert status.events({}, composed) == []


def test_pods_without_the_sidecar_are_reported_once() -> None:
    refused = (
        ("port_number_needs_env", "spec.port 8080 is a number and spec.modelPortEnv is not set"),
        ("port_number_needs_env", "spec.port 8080 is a number and spec.modelPortEnv is not set"),
        ("pod_predates_monitor", "created before the monitor"),
    )
    composed = status.compose({}, registered(census=Census(1, 4, refused)), T0)
    pods = next(c for c in composed["conditions"] if c["type"] == "PodsInjected")
    assert (pods["status"], pods["reason"]) == ("False", "PortNumberNeedsEnv")
    assert pods["message"].startswith("1 of 4 selected pods have the sidecar; 2 without it")
    assert Event("Warning", "PodsNotInjected", pods["message"]) in status.events({}, composed)
    fewer = status.compose(composed, registered(census=Census(3, 4, refused[:1])), T0 + 1)
    assert status.events(composed, fewer) == []
    other = status.compose(fewer, registered(census=Census(3, 4, refused[2:])), T0 + 2)
    assert [e.reason for e in status.events(fewer, other)] == ["PodsNotInjected"]


def test_a_service_that_bypasses_the_sidecar() -> None:
    line = "Service churn-direct port 80 targets the model's port 8080 directly"
    composed = status.compose({}, registered(census=Census(2, 2, bypass=(line,))), T0)
    assert conditions(composed)["TrafficBypass"] == ("True", "ServiceTargetsModelPort")
    (warning,) = [e for e in status.events({}, composed) if e.reason == "TrafficBypass"]
    assert warning.message.startswith(line)


def test_phase_events() -> None:
    collecting = status.compose({}, registered(phase="Collecting", labeled=3), T0)
    assert status.events({}, collecting) == [
        Event("Normal", "Collecting", "collecting labeled predictions (3 so far)")
    ]
    pending = (alert("pending", 0.7),)
    degraded = status.compose(collecting, registered(phase="Degraded", alerts=pending), T0 + 1)
    assert status.events(collecting, degraded) == [
        Event("Warning", "Degraded", "accuracy-low pending: accuracy 0.7 < 0.8 for 2m")
    ]
    healthy = status.compose(degraded, registered(), T0 + 2)
    assert status.events(degraded, healthy) == [
        Event("Normal", "Healthy", "accuracy=0.93 [0.9–0.951]")
    ]


def test_nulls_and_non_finite_numbers_are_left_out() -> None:
    odd = registered(
        metrics={"accuracy": float("nan"), "recall": None, "precision": 0.5},
        alerts=(alert("insufficient", None),),
    )
    composed = status.compose({}, odd, T0)
    jsonschema.validate(composed, STATUS_SCHEMA)
    assert composed["metrics"] == {"precision": 0.5}
    assert "metric" not in composed
    assert composed["alerts"] == [{"name": "accuracy-low", "status": "insufficient"}]
    assert conditions(composed)["Breached"] == ("False", "InsufficientData")


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.93, "0.93"), (0.9345, "0.934"), (1234.5678, "1234.568"), (0.0001234, "0.000123"),
     (0.0, "0"), (2.5e6, "2.5e+06")],
)  # fmt: skip
def test_numbers_in_the_metric_column(value: float, text: str) -> None:
    composed = status.compose({}, registered(metrics={"accuracy": value}), T0)
    assert composed["metric"] == f"accuracy={text}"


# -- the merge patch --------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False)
json_values = st.recursive(
    scalars | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386's MergePatch, as the apiserver applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=2), json_values, max_size=4),
    st.dictionaries(st.text(max_size=2), json_values, max_size=4),
)
def test_the_merge_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    new = without_nulls(new)
    patch = mergepatch.diff(old, new)
    assert merge(old, patch) == new
    assert mergepatch.diff(new, new) == {}


def test_the_merge_patch_is_minimal() -> None:
    old = {"phase": "Healthy", "metrics": {"a": 1.0, "b": 2.0}, "samples": 3}
    new = {"phase": "Healthy", "metrics": {"a": 1, "c": 3.0}, "samples": 3}
    assert mergepatch.diff(old, new) == {"metrics": {"b": None, "c": 3.0}}
    assert mergepatch.diff({"on": 1}, {"on": True}) == {"on": True}


def test_no_reference_says_why_the_history_reference_is_not_there_when_the_service_does() -> None:
    def message(summary: wire.DriftSummary) -> str:
        composed = status.compose({}, registered(drift=summary), T0)
        (drift,) = [c for c in composed["conditions"] if c["type"] == "Drift"]
        assert (drift["status"], drift["reason"]) == ("Unknown", "NoReference")
        return str(drift["message"])

    assert "truthloop reference" in message(wire.DriftSummary())
    why = "the period 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z gave none (no rows)"
    assert message(wire.DriftSummary(reason=why)).endswith(why)


ESTIMATED = {
    "accuracy": 0.93,
    "accuracyLower": 0.9,
    "accuracyUpper": 0.951,
    "accuracyEstimated": 0.912,
    "accuracyEstimatedLower": 0.884,
    "accuracyEstimatedUpper": 0.934,
}


@pytest.mark.parametrize(
    ("source", "labeled", "metrics", "text"),
    [
        ("realized", 49, ESTIMATED, "accuracy≈0.912 [0.884–0.934]"),
        ("realized", 50, ESTIMATED, "accuracy=0.93 [0.9–0.951]"),
        ("auto", 0, {"accuracyEstimated": 0.912}, "accuracy≈0.912"),
        ("auto", 80, ESTIMATED, "accuracy=0.93 [0.9–0.951]"),
        ("estimated", 80, ESTIMATED, "accuracy≈0.912 [0.884–0.934]"),
        ("estimated", 80, {"accuracy": 0.93}, None),
        ("realized", 10, {"accuracy": 0.93}, "accuracy=0.93"),  # no estimate: the realized one
    ],
)
def test_the_metric_column_shows_the_estimate_marked_before_min_samples_labels(
    source: str, labeled: int, metrics: dict[str, float], text: str | None
) -> None:
    alert = AlertSpec("accuracy-low", "accuracy", below=0.8, source=source)  # type: ignore[arg-type]
    seen = Observation(
        2,
        (),
        "registered",
        "",
        view(labeled=labeled, metrics=metrics),
        (alert,),
        Census(2, 2),
        min_samples=50,
    )
    composed = status.compose({}, seen, T0)
    jsonschema.validate(composed, STATUS_SCHEMA)
    assert composed.get("metric") == text


def test_an_estimated_alert_tells_what_it_read_in_the_breached_condition() -> None:
    alert = AlertSpec("accuracy-low", "accuracy", below=0.8, source="estimated")
    firing = wire.AlertState("accuracy-low", "firing", T0, 0.71, 400)
    seen = Observation(
        2,
        (),
        "registered",
        "",
        view(alerts=(firing,), labeled=0, metrics={"accuracyEstimated": 0.71}),
        (alert,),
        Census(2, 2),
    )
    composed = status.compose({}, seen, T0)
    breached = next(c for c in composed["conditions"] if c["type"] == "Breached")
    assert breached["message"] == "accuracy-low firing: estimated:accuracy 0.71 < 0.8"
    assert composed["metric"] == "accuracy≈0.71"
    quiet = wire.AlertState("accuracy-low", "insufficient", T0, None, 3)
    unknown = status.compose(
        {}, Observation(2, (), "registered", "", view(alerts=(quiet,)), (alert,), Census(2, 2)), T0
    )
    found = next(c for c in unknown["conditions"] if c["type"] == "Breached")
    assert found["reason"] == "InsufficientData"
    assert "for an estimate, predictions" in found["message"]


SOMEWHERE = AlertSpec("accuracy-low-somewhere", "accuracy", below=0.8, segment="country")


def segment_alert(
    state: wire.AlertStatus, value: float | None, values: tuple[str, ...]
) -> wire.AlertState:
    return wire.AlertState("accuracy-low-somewhere", state, T0, value, 60, values)


def test_a_segment_alert_names_its_breaching_values_in_the_condition_and_the_event() -> None:
    """The worst value's metric and every breaching value, worst first, in the Breached
    condition, the Degraded Event and the fallback's reason."""
    quiet = Observation(2, (), "registered", "", view(), (SOMEWHERE, *ALERTS), Census(2, 2))
    first = status.compose({}, quiet, T0)
    pending = segment_alert("pending", 0.71, ("DE", "FR"))
    seen = Observation(
        2,
        (),
        "registered",
        "",
        view(phase="Degraded", alerts=(pending, alert("ok", 0.93))),
        (SOMEWHERE, *ALERTS),
        Census(2, 2),
    )
    degraded = status.compose(first, seen, T0 + 60)
    jsonschema.validate(degraded, STATUS_SCHEMA)
    said = "accuracy-low-somewhere pending: accuracy 0.71 < 0.8 in country=DE, FR"
    breached = next(c for c in degraded["conditions"] if c["type"] == "Breached")
    assert (breached["reason"], breached["message"]) == ("AlertPending", said)
    assert status.events(first, degraded) == [Event("Warning", "Degraded", said)]
    firing = segment_alert("firing", 0.64, ("FR", "DE", "IT"))
    engaged = wire.FallbackState(
        active=True,
        mode="auto",
        since=T0 + 120,
        causes=(wire.Cause("alert", "accuracy-low-somewhere"),),
    )
    seen = Observation(
        2,
        (),
        "registered",
        "",
        view(phase="FallbackActive", alerts=(firing,), fallback=engaged),
        (SOMEWHERE,),
        Census(2, 2),
    )
    active = status.compose(degraded, seen, T0 + 120)
    breached = next(c for c in active["conditions"] if c["type"] == "Breached")
    assert breached["message"] == (
        "accuracy-low-somewhere firing: accuracy 0.64 < 0.8 in country=FR, DE, IT"
    )
    assert active["fallback"]["reason"] == (
        "accuracy-low-somewhere: accuracy 0.64 < 0.8 in country=FR, DE, IT"
    )
    assert status.events(degraded, active) == [
        Event("Normal", "FallbackEngaged", active["fallback"]["reason"])
    ]


def breached_message(composed: dict[str, Any]) -> str:
    return str(next(c["message"] for c in composed["conditions"] if c["type"] == "Breached"))


def test_a_segment_alert_on_an_estimate_names_what_it_read_and_at_most_ten_values() -> None:
    estimated = AlertSpec(
        "est-low", "accuracy", below=0.8, for_=120.0, source="auto", segment="device"
    )
    values = tuple(f"d{i}" for i in range(13))
    firing = wire.AlertState("est-low", "firing", T0, 0.5, 70, values)
    seen = Observation(2, (), "registered", "", view(alerts=(firing,)), (estimated,), Census(2, 2))
    assert breached_message(status.compose({}, seen, T0)) == (
        "est-low firing: auto:accuracy 0.5 < 0.8 in device=d0, d1, d2, d3, d4, d5, d6, d7, d8, d9 "
        "and 3 more for 2m"
    )
    unnamed = wire.AlertState("est-low", "firing", T0, 0.5, 70)
    seen = Observation(2, (), "registered", "", view(alerts=(unnamed,)), (estimated,), Census(2, 2))
    assert breached_message(status.compose({}, seen, T0)) == (
        "est-low firing: auto:accuracy 0.5 < 0.8 in device for 2m"
    )


def seen(*versions: tuple[str, float]) -> tuple[wire.VersionSeen, ...]:
    return tuple(wire.VersionSeen(v, at) for v, at in versions)


def test_a_new_model_version_is_a_normal_event_once() -> None:
    first = status.compose({}, registered(versions=seen(("v1", T0 - 3600))), T0)
    jsonschema.validate(first, STATUS_SCHEMA)
    assert first["versions"] == [{"version": "v1", "firstSeen": "2025-12-31T23:00:00Z"}]
    assert "NewVersion" not in [e.reason for e in status.events({}, first)]  # no list before
    both = seen(("v1", T0 - 3600), ("v2", T0 + 420))
    second = status.compose(first, registered(versions=both), T0 + 480)
    jsonschema.validate(second, STATUS_SCHEMA)
    assert status.events(first, second) == [
        Event("Normal", "NewVersion", "model version v2 first seen at 2026-01-01T00:07:00Z")
    ]
    again = status.compose(second, registered(versions=both), T0 + 540)
    assert status.events(second, again) == []
    unread = status.compose(again, Observation(2, (), "unavailable", "down"), T0 + 600)
    assert unread["versions"] == again["versions"]
    assert "NewVersion" not in [e.reason for e in status.events(again, unread)]


def test_a_fresh_monitors_first_version_is_an_event() -> None:
    empty = status.compose({}, registered(), T0)
    assert empty["versions"] == []
    found = status.compose(empty, registered(versions=seen(("v1", T0))), T0 + 60)
    assert [e.reason for e in status.events(empty, found)] == ["NewVersion"]


def test_a_new_report_is_linked_and_a_normal_event_naming_it() -> None:
    url = "/v1/monitors/ml/churn/reports/"
    none = status.compose({}, registered(), T0)
    assert "report" not in none
    link = wire.ReportLink(3, T0 + 60, "accuracy-low", url + "3")
    first = status.compose(none, registered(report=link), T0 + 65)
    jsonschema.validate(first, STATUS_SCHEMA)
    assert first["report"] == {
        "id": 3,
        "at": "2026-01-01T00:01:00Z",
        "alert": "accuracy-low",
        "url": url + "3",
    }
    assert [e for e in status.events(none, first) if e.reason == "ReportReady"] == [
        Event(
            "Normal",
            "ReportReady",
            "report 3 on accuracy-low firing at 2026-01-01T00:01:00Z: the feedback service"
            f" serves it at {url}3 (its JSON at {url}3.json)",
        )
    ]
    again = status.compose(first, registered(report=link), T0 + 70)
    assert status.events(first, again) == []
    newer = wire.ReportLink(4, T0 + 600, "accuracy-low", url + "4")
    second = status.compose(again, registered(report=newer), T0 + 605)
    assert [e.reason for e in status.events(again, second)] == ["ReportReady"]
    unread = status.compose(second, Observation(2, (), "unavailable", "down"), T0 + 700)
    assert unread["report"] == second["report"]
    assert "ReportReady" not in [e.reason for e in status.events(second, unread)]
