"""The CRD as a real apiserver takes it: it applies, and kubectl explains its fields."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from tests.support.envtest import ControlPlane
from tests.support.feedback import monitor_body
from tests.support.waiting import eventually
from truthloop.core.spec import SpecError, parse_monitor


def test_the_crd_applies_and_kubectl_explains_the_spec(
    control_plane: ControlPlane, crd: str
) -> None:
    def explained() -> str:
        done = control_plane.kubectl("explain", "modelmonitors.spec", check=False)
        return done.stdout if done.returncode == 0 else ""

    # the apiserver publishes a new CRD's OpenAPI a moment after it is Established
    text = asyncio.run(eventually(explained, "kubectl explain modelmonitors.spec"))
    assert "ModelMonitor" in text
    assert "<no description>" not in text
    for field in ("model", "task", "alerts", "capture"):
        assert f"\n  {field}\t" in text, f"spec.{field} missing from:\n{text}"


BOUNDS = [
    # (spec path, the longest accepted, the shortest refused, the limit the message names)
    ("metrics.window", "2160h", "90d1s", "90d"),
    ("feedback.attributionWindow", "90d", "99999999999d", "90d"),
    ("alerts.0.for", "6d24h", "604801s", "7d"),
    ("fallback.recoverAfter", "7d", "10081m", "7d"),
]


def _monitor(path: str, value: str) -> dict[str, Any]:
    body = monitor_body(namespace="default")
    node: Any = body["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[leaf] = value
    return body


def _same_verdict(
    control_plane: ControlPlane,
    body: dict[str, Any],
    refused: Sequence[str] = (),
    error: str | None = None,
) -> SpecError | None:
    """Apply `body` in a server-side dry run and parse it with spec.py: both take it, or both
    refuse it, the apiserver saying each of `refused` and spec.py an error matching `error`."""
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    if not refused:
        assert done.returncode == 0, done.stderr
        parse_monitor(body)
        return None
    assert done.returncode != 0
    for text in refused:
        assert text in done.stderr, done.stderr
    with pytest.raises(SpecError, match=None if error is None else re.escape(error)) as raised:
        parse_monitor(body)
    return raised.value


@pytest.mark.parametrize(("path", "longest", "refused", "limit"), BOUNDS)
def test_a_duration_past_its_bound_is_refused_naming_the_field_and_the_limit(
    control_plane: ControlPlane, crd: str, path: str, longest: str, refused: str, limit: str
) -> None:
    """The rules run as the real apiserver runs them (within its CEL cost budget), and agree
    with spec.py at the bound."""
    field = "spec." + path.replace(".0.", "[0].")

    def dry_run(value: str) -> subprocess.CompletedProcess[str]:
        manifest = yaml.safe_dump(_monitor(path, value))
        return control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=manifest, check=False
        )

    accepted = dry_run(longest)
    assert accepted.returncode == 0, accepted.stderr
    parse_monitor(_monitor(path, longest))
    done = dry_run(refused)
    assert done.returncode != 0
    assert f"{field}: Invalid value" in done.stderr, done.stderr
    assert f"must be at most {limit}" in done.stderr, done.stderr
    with pytest.raises(SpecError, match=re.escape(f"{field}: must be at most {limit}")):
        parse_monitor(_monitor(path, refused))


FEATURES = [
    {"name": "tenure", "type": "numeric"},
    {"name": "plan", "pointer": "/account/plan", "type": "categorical"},
]
DRIFT_CASES = [
    # (spec.drift, the field the apiserver names, a word of its message, spec.py's field);
    # None: accepted
    (
        {
            "share": 0.3,
            "reference": {"from": "2026-01-01T00:00:00.5Z", "to": "2026-01-01T01:00:01+01:00"},
            "overrides": [
                {"feature": "tenure", "method": "ks", "threshold": 1},
                {"feature": "prediction", "method": "psi"},
            ],
        },
        None,
        None,
        None,
    ),
    (
        {"reference": {"from": "2026-02-30T00:00:00Z", "to": "2026-03-02T00:00:00Z"}},
        "spec.drift.reference.from",
        "date-time",
        "spec.drift.reference.from",
    ),
    (
        {"reference": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:30:00+01:00"}},
        "spec.drift.reference.to",
        "must be after from",
        "spec.drift.reference.to",
    ),
    (
        {"overrides": [{"feature": "plan", "method": "ks"}]},
        "spec.drift.overrides",
        "ordered",
        "spec.drift.overrides[0].method",
    ),
    (
        {"overrides": [{"feature": "income", "method": "psi"}]},
        "spec.drift.overrides",
        "only name",
        "spec.drift.overrides[0].feature",
    ),
]


@pytest.mark.parametrize(("drift", "field", "message", "path"), DRIFT_CASES)
def test_features_and_drift_as_the_apiserver_checks_them(
    control_plane: ControlPlane,
    crd: str,
    drift: dict[str, Any],
    field: str | None,
    message: str | None,
    path: str | None,
) -> None:
    """The date-time format, the timestamp comparison and the rules over the features run in
    the real apiserver (within its CEL cost budget: 100 features, 100 overrides) as in spec.py."""
    body = monitor_body(namespace="default")
    body["spec"]["features"] = [
        *FEATURES,
        *({"name": f"f{i}", "type": "numeric"} for i in range(98)),
    ]
    body["spec"]["drift"] = drift
    if field is None:
        _same_verdict(control_plane, body)
        return
    assert message is not None
    error = _same_verdict(control_plane, body, [f"{field}: Invalid value", message])
    assert error is not None
    assert [e.path for e in error.errors] == [path]


@pytest.mark.parametrize(
    ("alert", "refusal"),
    [
        ({"metric": "feature_drift", "feature": "tenure", "above": 0.1}, None),
        ({"metric": "missing_ratio", "feature": "plan", "above": 0.05}, None),
        ({"metric": "drift_share", "above": 0.5}, None),
        ({"metric": "feature_drift", "above": 0.1}, "feature is required with metric"),
        ({"metric": "outlier_ratio", "feature": "tenure", "above": 0.1}, "allowed only with"),
        ({"metric": "feature_drift", "feature": "score", "above": 0.1}, "not a feature"),
    ],
)
def test_a_drift_alert_names_its_feature_as_the_apiserver_checks_it(
    control_plane: ControlPlane, crd: str, alert: dict[str, Any], refusal: str | None
) -> None:
    """The feature rule runs in the real apiserver (its CEL and cost budget), at the field."""
    body = monitor_body(namespace="default")
    body["spec"]["alerts"] = [{"name": "drift", **alert}]
    said = [] if refusal is None else ["spec.alerts[0].feature: Invalid value", refusal]
    _same_verdict(control_plane, body, said, "spec.alerts[0].feature: ")


def test_a_drift_alert_names_one_of_the_declared_features(
    control_plane: ControlPlane, crd: str
) -> None:
    """With 100 features and 32 alerts (the most), within the apiserver's CEL cost budget."""
    body = monitor_body(namespace="default")
    body["spec"]["features"] = [{"name": f"f{i}", "type": "numeric"} for i in range(100)]
    body["spec"]["alerts"] = [
        {"name": f"a{i}", "metric": "feature_drift", "feature": f"f{i}", "above": 0.1}
        for i in range(32)
    ]
    body["spec"].pop("fallback")
    _same_verdict(control_plane, body)
    body["spec"]["alerts"][31]["feature"] = "age"
    said = ["spec.alerts: Invalid value", "an alert's feature must be one of spec.features"]
    _same_verdict(control_plane, body, said, 'spec.alerts[31].feature: no feature named "age"')


@pytest.mark.parametrize(
    ("task", "cost", "refusal"),
    [
        ("binary", {"falsePositive": 5, "falseNegative": 50, "trueNegative": 1}, None),
        ("regression", {"overPrediction": 1, "underPrediction": 3}, None),
        ("binary", {"overPrediction": 1, "underPrediction": 3}, "spec.metrics.cost: Invalid"),
        (
            "multiclass",
            {"matrix": [{"actual": f"c{i}", "predicted": f"p{i}", "cost": i} for i in range(100)]},
            None,
        ),
        (
            "multiclass",
            {"matrix": [{"actual": "c", "predicted": "p", "cost": 1}] * 2},
            "each (actual, predicted) pair at most once",
        ),
    ],
)
def test_a_cost_as_the_apiserver_checks_it(
    control_plane: ControlPlane,
    crd: str,
    task: str,
    cost: dict[str, Any],
    refusal: str | None,
) -> None:
    """The cost rules run in the real apiserver (the matrix's uniqueness over 100 cells within
    its CEL cost budget), with spec.py's verdict."""
    body = monitor_body(namespace="default")
    body["spec"]["task"] = task
    body["spec"]["metrics"] = {"cost": cost}
    body["spec"].pop("alerts", None)
    body["spec"].pop("fallback", None)
    _same_verdict(control_plane, body, [] if refusal is None else [refusal], "spec.metrics.cost")


@pytest.mark.parametrize(
    ("alert", "refusal"),
    [
        ({"metric": "accuracy", "below": 0.8, "source": "estimated"}, None),
        ({"metric": "roc_auc", "below": 0.7, "source": "auto"}, None),
        ({"metric": "drift_share", "above": 0.5, "source": "realized"}, None),
        ({"metric": "drift_share", "above": 0.5, "source": "estimated"}, "for a model metric"),
        ({"metric": "accuracy", "below": 0.8, "source": "guess"}, "Unsupported value"),
    ],
)
def test_an_alert_s_source_as_the_apiserver_checks_it(
    control_plane: ControlPlane, crd: str, alert: dict[str, Any], refusal: str | None
) -> None:
    """The source rule runs in the real apiserver (its CEL and cost budget, 32 alerts), at the
    field."""
    body = monitor_body(namespace="default")
    body["spec"]["alerts"] = [{"name": f"a{i}", **alert} for i in range(32)]
    body["spec"]["fallback"]["engageOn"] = ["a0"]
    said = [] if refusal is None else ["spec.alerts[0].source: ", refusal]
    _same_verdict(control_plane, body, said, "spec.alerts[0].source: ")


REVIEW: dict[str, Any] = {
    "budget": 500,
    "random": 0.3,
    "borderline": 0.7,
    "outliers": 0.5,
    "lease": "10m",
    "abstain": {
        "band": {"low": 0.4, "high": 0.6},
        "explore": 0.01,
        "response": {
            "status": 503,
            "body": {"abstained": True, "why": [1, None, "unsure"]},
            "headers": {f"X-{i}": "v" for i in range(32)},
        },
    },
}


@pytest.mark.parametrize(
    ("changes", "refusal", "error"),
    [
        ({}, None, None),
        ({"lease": "10s"}, None, None),
        ({"lease": "1d"}, None, None),
        ({"abstain": None, "random": None}, None, None),
        (
            {"lease": "9s"},
            ["spec.review.lease: Invalid value", "at least 10s"],
            "spec.review.lease",
        ),
        (
            {"lease": "24h1s"},
            ["spec.review.lease: Invalid value", "at most 1d"],
            "spec.review.lease",
        ),
        (
            {"random": 0.5},
            ["spec.review.borderline: Invalid value", "they sum to 1"],
            "spec.review.borderline",
        ),
        (
            {"abstain": {"band": {"low": 0.6, "high": 0.4}}},
            ["spec.review.abstain.band.high: Invalid value", "at least low"],
            "spec.review.abstain.band.high",
        ),
        (
            {"abstain": {**REVIEW["abstain"], "response": {"headers": {"X-A": "a\nb"}}}},
            ["spec.review.abstain.response.headers.X-A"],
            "spec.review.abstain.response.headers.X-A",
        ),
        ({"budget": 0}, ["spec.review.budget"], "spec.review.budget"),
    ],
)
def test_a_review_as_the_apiserver_checks_it(
    control_plane: ControlPlane,
    crd: str,
    changes: dict[str, Any],
    refusal: list[str] | None,
    error: str | None,
) -> None:
    """spec.review's schema and rules run in the real apiserver (the most headers, and 32
    reviewed alerts, within its CEL cost budget), with spec.py's verdict at the field."""
    body = monitor_body(namespace="default")
    review = {**REVIEW, **changes}
    body["spec"]["review"] = {k: v for k, v in review.items() if v is not None}
    body["spec"]["alerts"] = [
        {"name": f"a{i}", "metric": "balanced_accuracy", "below": 0.8, "source": "reviewed"}
        for i in range(32)
    ]
    body["spec"]["fallback"]["engageOn"] = ["a0"]
    found = _same_verdict(control_plane, body, refusal or (), error and f"{error}: ")
    if found is not None:
        assert [e.path for e in found.errors] == [error]


@pytest.mark.parametrize(
    ("spec", "refusal", "error"),
    [
        ({"task": "regression"}, "spec.review.abstain: Invalid value", "spec.review.abstain"),
        (
            {
                "capture": {
                    "prediction": {"pointer": ""},
                    "batch": {"instances": "/i", "predictions": "/p"},
                }
            },
            "spec.review.abstain: Invalid value",
            "spec.review.abstain",
        ),
        ({"review": None}, "source reviewed needs spec.review", "spec.alerts[0].source"),
        (
            {"alerts": [{"name": "a0", "metric": "roc_auc", "below": 0.8, "source": "reviewed"}]},
            "source reviewed needs spec.review",
            "spec.alerts[0].metric",
        ),
    ],
)
def test_review_across_fields_as_the_apiserver_checks_it(
    control_plane: ControlPlane, crd: str, spec: dict[str, Any], refusal: str, error: str
) -> None:
    """The rules that read more than spec.review: abstain for a classifier without a batch, and
    an alert with source reviewed."""
    body = monitor_body(namespace="default")
    body["spec"]["review"] = REVIEW
    body["spec"]["alerts"] = [
        {"name": "a0", "metric": "accuracy", "below": 0.8, "source": "reviewed"}
    ]
    body["spec"]["fallback"]["engageOn"] = ["a0"]
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key)
        else:
            body["spec"][key] = value
    found = _same_verdict(control_plane, body, [refusal], f"{error}: ")
    assert found is not None
    assert error in [e.path for e in found.errors]


COUNTRY = {"name": "country", "header": "X-Country", "maxValues": 100, "export": True}


def _on(segment: str) -> dict[str, str]:
    """Changes moving the alerts on the last segment to `segment`."""
    return {f"alerts.{i}.segment": segment for i in (7, 15, 23, 31)}


def _segmented() -> dict[str, Any]:
    """The most a monitor may have of segments, 8 of 50 buckets each, and 32 segment alerts."""
    body = monitor_body(namespace="default")
    body["spec"]["segments"] = [
        {"name": f"s{i}", "pointer": f"/s{i}", "buckets": [j * 1.5 for j in range(50)]}
        for i in range(8)
    ]
    body["spec"]["alerts"] = [
        {"name": f"a{i}", "metric": "accuracy", "below": 0.8, "segment": f"s{i % 8}"}
        for i in range(32)
    ]
    body["spec"]["fallback"]["engageOn"] = ["a0"]
    return body


def test_the_most_segments_and_segment_alerts_are_taken(
    control_plane: ControlPlane, crd: str
) -> None:
    """8 segments of 50 buckets and 32 segment alerts: the rules run within the apiserver's CEL
    cost budget (a rule over its estimate would make the CRD itself refused, one over the
    runtime budget the object), as spec.py takes them."""
    _same_verdict(control_plane, _segmented())


@pytest.mark.parametrize(
    ("change", "refusal", "error"),
    [
        ({"segments.7": COUNTRY, **_on("country")}, None, None),
        (
            {"segments.0.buckets": [0, 1.5, 1.5]},
            ["spec.segments[0].buckets: Invalid value", "strictly ascending"],
            "spec.segments[0].buckets[2]",
        ),
        (
            {"segments.6.buckets": [3, 2]},
            ["spec.segments[6].buckets: Invalid value", "strictly ascending"],
            "spec.segments[6].buckets[1]",
        ),
        (
            {"segments.0.maxValues": 10},
            ["spec.segments[0].maxValues: Invalid value", "not with buckets"],
            "spec.segments[0].maxValues",
        ),
        (
            {"segments.7.header": "X-Country"},
            ["spec.segments[7]: Invalid value", "exactly one of header or pointer"],
            "spec.segments[7]",
        ),
        (
            {"segments.7.name": "s0", **_on("s0")},
            ["spec.segments: Invalid value", "segment names must be unique"],
            "spec.segments[7].name",
        ),
        (
            {"alerts.31.segment": "city"},
            ["spec.alerts: Invalid value", "an alert's segment must be one of spec.segments"],
            "spec.alerts[31].segment",
        ),
        (
            {"alerts.0.metric": "drift_share", "alerts.0.below": None, "alerts.0.above": 0.5},
            ["spec.alerts: Invalid value", "needs a segment with drift: true"],
            "spec.alerts[0].segment",
        ),
        (
            {
                **{f"segments.{i}.drift": True for i in range(8)},
                **{f"alerts.{i}.metric": "drift_share" for i in range(32)},
                **{f"alerts.{i}.below": None for i in range(32)},
                **{f"alerts.{i}.above": 0.5 for i in range(32)},
            },
            None,
            None,
        ),
        (
            {
                "segments.1.drift": True,
                "alerts.0.metric": "outlier_ratio",
                "alerts.0.below": None,
                "alerts.0.above": 0.5,
            },
            ["spec.alerts: Invalid value", "needs a segment with drift: true"],
            "spec.alerts[0].segment",
        ),
        (
            {"segments.7": {**COUNTRY, "maxValues": 101}, **_on("country")},
            ["spec.segments[7].maxValues: Invalid value"],
            "spec.segments[7].maxValues",
        ),
    ],
)
def test_segments_as_the_apiserver_checks_them(
    control_plane: ControlPlane,
    crd: str,
    change: dict[str, Any],
    refusal: list[str] | None,
    error: str | None,
) -> None:
    """Each segment rule in the real apiserver at its field, on the largest monitor, with
    spec.py's verdict at the item."""
    body = _segmented()
    for path, value in change.items():
        *parents, leaf = path.split(".")
        node: Any = body["spec"]
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is None:
            node.pop(leaf)
        else:
            node[int(leaf) if leaf.isdigit() else leaf] = value
    found = _same_verdict(control_plane, body, refusal or (), error and f"{error}: ")
    if found is not None:
        assert [e.path for e in found.errors] == [error]


@pytest.mark.parametrize(
    ("capture", "refusal", "error"),
    [
        ({"protocol": "open-inference-v2"}, None, None),
        ({"protocol": "torchserve", "entityId": {"header": "X-Entity-ID"}}, None, None),
        ({"protocol": "kserve-v1", "entityId": {"pointer": "/ids", "perRow": True}}, None, None),
        (
            {"protocol": "triton"},
            'spec.capture.protocol: Unsupported value: "triton"',
            "spec.capture.protocol",
        ),
        (
            {"protocol": "custom"},
            "spec.capture.prediction: Invalid value",
            "spec.capture.prediction",
        ),
        (
            {"protocol": "mlflow", "batch": {"instances": "/i", "predictions": "/p"}},
            "spec.capture.batch: Invalid value",
            "spec.capture.batch",
        ),
        (
            {"protocol": "torchserve", "entityId": {"header": "X-Ids", "perRow": True}},
            "spec.capture.entityId.perRow: Invalid value",
            "spec.capture.entityId.perRow",
        ),
    ],
)
def test_a_capture_s_protocol_as_the_apiserver_checks_it(
    control_plane: ControlPlane,
    crd: str,
    capture: dict[str, Any],
    refusal: str | None,
    error: str | None,
) -> None:
    """spec.capture.protocol's enum and the rules tying it to the prediction, the batch and a
    per-row entity run in the real apiserver, with spec.py's verdict at the field."""
    body = monitor_body(namespace="default")
    body["spec"]["capture"] = capture
    found = _same_verdict(control_plane, body, [refusal] if refusal else (), error and f"{error}: ")
    if found is not None:
        assert [e.path for e in found.errors] == [error]
