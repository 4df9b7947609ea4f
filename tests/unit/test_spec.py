"""spec.py: a ModelMonitor becomes frozen values with every default, or all its errors, by path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import metrics, review
from truthloop.core.spec import (
    MAX_ABSTAIN_BODY,
    AbstainResponse,
    AbstainSpec,
    AlertSpec,
    BatchSpec,
    CaptureSpec,
    CostCell,
    CostSpec,
    DriftOverride,
    DriftSpec,
    FallbackRule,
    FallbackSpec,
    FeatureSpec,
    FeedbackSpec,
    FieldError,
    LabelRequirement,
    MetricsSpec,
    MissingActual,
    ModelRef,
    Monitor,
    MonitorSpec,
    ReviewSpec,
    SegmentSpec,
    Selector,
    Source,
    SpecError,
    counts_labels,
    format_duration,
    is_drift_key,
    parse_duration,
    parse_monitor,
    parse_spec,
)


def monitor(**spec: Any) -> dict[str, Any]:
    """A minimal valid ModelMonitor; keyword arguments replace (or, as None, remove) spec fields."""
    body: dict[str, Any] = {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {
            "selector": {"matchLabels": {"app": "churn-model"}},
            "model": {"name": "churn"},
            "capture": {"prediction": {"pointer": "/prediction"}},
        },
    }
    for key, value in spec.items():
        if value is None:
            del body["spec"][key]
        else:
            body["spec"][key] = copy.deepcopy(value)
    return body


def errors(obj: Any) -> list[str]:
    with pytest.raises(SpecError) as raised:
        parse_monitor(obj)
    return [str(e) for e in raised.value.errors]


RULES = [{"when": "request.features.tenure < 6", "prediction": "1"}, {"prediction": "0"}]


def test_a_minimal_monitor_gets_every_default() -> None:
    body = monitor()
    body["metadata"] = {"name": "churn"}
    assert parse_monitor(body) == Monitor(
        namespace="default",
        name="churn",
        generation=1,
        spec=MonitorSpec(
            selector=Selector(match_labels=(("app", "churn-model"),)),
            model=ModelRef("churn", "app.kubernetes.io/version"),
            capture=CaptureSpec(prediction=Source(pointer="/prediction"), sample_rate=1.0),
            port="http",
            model_port_env=None,
            restart_existing=False,
            task="binary",
            threshold=0.5,
            feedback=FeedbackSpec(86400.0, "latest", MissingActual("ignore", None)),
            metrics=MetricsSpec(window=3600.0, min_samples=50),
            alerts=(),
            fallback=FallbackSpec(mode="auto", engage_on=(), recover_after=600.0, rules=()),
        ),
    )


def test_every_field_is_read() -> None:
    body = monitor(
        selector={
            "matchLabels": {"app": "iris"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
        },
        model={"name": "iris", "versionLabel": "example.com/version"},
        port=8080,
        modelPortEnv="PORT",
        restartExisting=True,
        task="multiclass",
        threshold=0.7,
        capture={
            "entityId": {"pointer": "/id"},
            "prediction": {"pointer": ""},
            "score": {"pointer": "/p"},
            "features": {"pointer": "/x"},
            "batch": {"instances": "/instances", "predictions": "/predictions"},
            "sampleRate": 0.25,
        },
        feedback={
            "attributionWindow": "7d",
            "match": "all",
            "missingActual": {"policy": "assume", "value": "setosa"},
        },
        metrics={"window": "90s", "minSamples": 5},
        alerts=[
            {"name": "f1-low", "metric": "macro_f1", "below": 0.7, "for": "1h30m"},
            {"name": "acc", "metric": "accuracy", "below": 1},
        ],
        fallback={"mode": "disengaged", "engageOn": ["acc"], "recoverAfter": "0s", "rules": RULES},
    )
    body["metadata"]["generation"] = 7
    assert parse_monitor(body) == Monitor(
        namespace="ml",
        name="churn",
        generation=7,
        spec=MonitorSpec(
            selector=Selector((("app", "iris"),), (LabelRequirement("tier", "In", ("a", "b")),)),
            model=ModelRef("iris", "example.com/version"),
            capture=CaptureSpec(
                prediction=Source(pointer=""),
                entity_id=Source(pointer="/id"),
                score=Source(pointer="/p"),
                features=Source(pointer="/x"),
                batch=BatchSpec("/instances", "/predictions"),
                sample_rate=0.25,
            ),
            port=8080,
            model_port_env="PORT",
            restart_existing=True,
            task="multiclass",
            threshold=0.7,
            feedback=FeedbackSpec(7 * 86400.0, "all", MissingActual("assume", "setosa")),
            metrics=MetricsSpec(90.0, 5),
            alerts=(
                AlertSpec("f1-low", "macro_f1", below=0.7, for_=5400.0),
                AlertSpec("acc", "accuracy", below=1.0, for_=0.0),
            ),
            fallback=FallbackSpec(
                mode="disengaged",
                engage_on=("acc",),
                recover_after=0.0,
                rules=(
                    FallbackRule(prediction="1", when="request.features.tenure < 6"),
                    FallbackRule(prediction="0"),
                ),
            ),
        ),
    )


def test_engage_on_defaults_to_every_alert() -> None:
    alerts = [
        {"name": "a", "metric": "accuracy", "below": 0.8},
        {"name": "b", "metric": "f1", "below": 0.5},
    ]
    parsed = parse_monitor(monitor(alerts=alerts, fallback={"rules": RULES})).spec
    assert parsed.fallback.engage_on == ("a", "b")
    assert parse_monitor(monitor(alerts=alerts)).spec.fallback.engage_on == ("a", "b")
    explicit = monitor(alerts=alerts, fallback={"engageOn": ["b"], "rules": RULES})
    assert parse_monitor(explicit).spec.fallback.engage_on == ("b",)


def test_null_is_absent_and_status_and_other_metadata_are_ignored() -> None:
    body = monitor()
    body["spec"].update(modelPortEnv=None, threshold=None, feedback=None)
    body["status"] = {"phase": "Healthy", "fallback": {"active": True}}
    body["metadata"].update(uid="u-1", labels={"a": "b"}, resourceVersion="42", namespace=None)
    parsed = parse_monitor(body)
    assert (parsed.namespace, parsed.spec.threshold) == ("default", 0.5)
    assert parsed.spec.model_port_env is None
    assert parsed.spec.feedback == FeedbackSpec()


def test_integral_floats_are_integers() -> None:
    parsed = parse_monitor(monitor(port=8080.0, metrics={"minSamples": 20.0})).spec
    assert (parsed.port, parsed.metrics.min_samples) == (8080, 20)
    assert isinstance(parsed.port, int)


def test_a_binary_monitor_may_assume_a_label() -> None:
    body = monitor(feedback={"missingActual": {"policy": "assume", "value": 0}})
    assert parse_monitor(body).spec.feedback.missing_actual == MissingActual("assume", 0)


def test_parse_spec_reads_a_spec_alone_with_its_own_path() -> None:
    spec = monitor()["spec"]
    assert parse_spec(spec) == parse_monitor(monitor()).spec
    with pytest.raises(SpecError) as raised:
        parse_spec({**spec, "port": 0}, path="monitor.spec")
    assert [e.path for e in raised.value.errors] == ["monitor.spec.port"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("2m", 120),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("0s", 0),
        ("00h", 0),
        ("3600s", 3600),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "90", "1.5h", "1 h", "30m1h", "1h1h", "-1s", "1H", "1w", "1ms", "h", "１s", "1h\n"]
)
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 90s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (90, "1m30s"),
        (120, "2m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3661, "1h1m1s"),
        (86400, "1d"),
        (93784, "1d2h3m4s"),
        (600.75, "10m"),
        (0.4, "0s"),
        (-90, "-1m30s"),
    ],
)
def test_durations_are_told_in_largest_units_first_without_zero_units(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 400 * 86400))
def test_a_formatted_duration_parses_back_to_its_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


P = {"prediction": {"pointer": "/p"}}  # a capture's required part
ALERT = {"name": "a", "metric": "f1", "above": 1}
DURATION = "expected a duration like 90s, 2m, 24h, 7d or 1h30m, got"


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"task": "ranking"},
            'spec.task: expected one of: binary, multiclass, regression; got "ranking"',
        ),
        ({"threshold": "high"}, 'spec.threshold: expected a number, got "high"'),
        ({"threshold": True}, "spec.threshold: expected a number, got true"),
        ({"threshold": 1.5}, "spec.threshold: must be between 0 and 1, got 1.5"),
        ({"threshold": float("nan")}, "spec.threshold: expected a finite number, got nan"),
        ({"port": 0}, "spec.port: must be a port number 1-65535 or a port name, got 0"),
        ({"port": "HTTP"}, "spec.port: expected a port name (at most 15 lowercase letters,"),
        ({"port": [80]}, "spec.port: expected a port name or number, got a list"),
        (
            {"modelPortEnv": "1X"},
            'spec.modelPortEnv: expected an environment variable name like PORT, got "1X"',
        ),
        ({"restartExisting": "yes"}, 'spec.restartExisting: expected true or false, got "yes"'),
        ({"replicas": 2}, "spec.replicas: unknown field; expected one of: selector, model, port,"),
        ({"selector": None}, "spec.selector: required"),
        ({"selector": {}}, "spec.selector: must select pods: give matchLabels or matchExpressions"),
        (
            {"selector": {"matchLabels": {"app": "-x"}}},
            "spec.selector.matchLabels.app: expected a label value",
        ),
        (
            {"selector": {"matchLabels": {"a b": "x"}}},
            'spec.selector.matchLabels["a b"]: the key is not a label key',
        ),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.selector.matchExpressions[0].values: required (at least one) with operator In",
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "spec.selector.matchExpressions[0].values: must be empty with operator Exists",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            "spec.selector.matchExpressions[0].operator: expected one of: In, NotIn,",
        ),
        (
            {"selector": {"matchExpressions": "app"}},
            'spec.selector.matchExpressions: expected a list, got "app"',
        ),
        ({"model": {}}, "spec.model.name: required"),
        ({"model": {"name": ""}}, "spec.model.name: must not be empty"),
        (
            {"model": {"name": "x" * 254}},
            "spec.model.name: must be at most 253 characters, got 254",
        ),
        ({"model": "churn"}, 'spec.model: expected an object, got "churn"'),
        ({"capture": {}}, "spec.capture.prediction: required"),
        (
            {"capture": {"prediction": {"pointer": "p"}}},
            "spec.capture.prediction.pointer: not a JSON pointer (RFC 6901): ",
        ),
        (
            {"capture": {**P, "entityId": {}}},
            "spec.capture.entityId: exactly one of header or pointer",
        ),
        (
            {"capture": {**P, "entityId": {"header": "X Y"}}},
            'spec.capture.entityId.header: expected an HTTP header name, got "X Y"',
        ),
        (
            {"capture": {**P, "batch": {"instances": "/i"}}},
            "spec.capture.batch.predictions: required",
        ),
        (
            {"capture": {**P, "sampleRate": 0}},
            "spec.capture.sampleRate: must be > 0 and <= 1, got 0",
        ),
        (
            {"feedback": {"attributionWindow": "0s"}},
            "spec.feedback.attributionWindow: must be longer than 0s",
        ),
        (
            {"feedback": {"attributionWindow": "1 day"}},
            f'spec.feedback.attributionWindow: {DURATION} "1 day"',
        ),
        (
            {"feedback": {"attributionWindow": 60}},
            f"spec.feedback.attributionWindow: {DURATION} 60",
        ),
        (
            {"feedback": {"match": "first"}},
            'spec.feedback.match: expected one of: latest, all; got "first"',
        ),
        (
            {"feedback": {"missingActual": {"policy": "assume"}}},
            "spec.feedback.missingActual.value: required with policy assume",
        ),
        (
            {"feedback": {"missingActual": {"value": 1}}},
            "spec.feedback.missingActual.value: only allowed with policy assume",
        ),
        (
            {"feedback": {"missingActual": {"policy": "assume", "value": 2}}},
            "spec.feedback.missingActual.value: a binary label is 0 or 1, got 2",
        ),
        (
            {"feedback": {"missingActual": {"policy": "assume", "value": 0.5}}},
            "spec.feedback.missingActual.value: expected an integer or a string, got 0.5",
        ),
        (
            {
                "task": "regression",
                "feedback": {"missingActual": {"policy": "assume", "value": "x"}},
            },
            "spec.feedback.missingActual.value: a regression label is an integer",
        ),
        ({"metrics": {"window": "0s"}}, "spec.metrics.window: must be longer than 0s"),
        (
            {"metrics": {"window": "99999999999d"}},
            "spec.metrics.window: must be at most 90d, got 99999999999d",
        ),
        (
            {"feedback": {"attributionWindow": "2161h"}},
            "spec.feedback.attributionWindow: must be at most 90d, got 2161h",
        ),
        (
            {"fallback": {"recoverAfter": "7d1s", "rules": [{"prediction": "0"}]}},
            "spec.fallback.recoverAfter: must be at most 7d, got 7d1s",
        ),
        ({"metrics": {"minSamples": 0}}, "spec.metrics.minSamples: must be at least 1, got 0"),
        ({"metrics": {"minSamples": 2.5}}, "spec.metrics.minSamples: expected an integer, got 2.5"),
        ({"alerts": {"name": "a"}}, "spec.alerts: expected a list, got an object"),
        (
            {"alerts": [{**ALERT, "above": "high"}]},
            'spec.alerts[0].above: expected a number, got "high"',
        ),
        (
            {"alerts": [{"name": "a", "metric": "f1"}]},
            "spec.alerts[0]: exactly one of below or above",
        ),
        ({"alerts": [{"metric": "f1", "below": 1}]}, "spec.alerts[0].name: required"),
        (
            {"alerts": [{**ALERT, "name": "a b"}]},
            "spec.alerts[0].name: expected a name of letters, digits,",
        ),
        (
            {"alerts": [{**ALERT, "metric": "rmse"}]},
            'spec.alerts[0].metric: "rmse" is not a metric of a binary model; expected one of:',
        ),
        ({"alerts": [{**ALERT, "for": "soon"}]}, f'spec.alerts[0].for: {DURATION} "soon"'),
        ({"alerts": [{**ALERT, "for": "8d"}]}, "spec.alerts[0].for: must be at most 7d, got 8d"),
        (
            {"alerts": [{**ALERT, "name": f"a{i}"} for i in range(33)]},
            "spec.alerts: must have at most 32 items, got 33",
        ),
        (
            {"alerts": [ALERT, ALERT]},
            "spec.alerts[1].name: duplicate: spec.alerts[0] has this name",
        ),
        (
            {"fallback": {"mode": "on"}},
            'spec.fallback.mode: expected one of: auto, engaged, disengaged; got "on"',
        ),
        ({"fallback": {"mode": "engaged"}}, "spec.fallback.rules: required with mode engaged"),
        (
            {"fallback": {"engageOn": ["a"], "rules": RULES}},
            'spec.fallback.engageOn[0]: no alert named "a" in spec.alerts',
        ),
        (
            {"alerts": [ALERT], "fallback": {"engageOn": ["a"]}},
            "spec.fallback.engageOn: needs fallback rules",
        ),
        ({"fallback": {"recoverAfter": "1y"}}, f'spec.fallback.recoverAfter: {DURATION} "1y"'),
        (
            {"fallback": {"rules": [{"when": "true", "prediction": "1"}]}},
            "spec.fallback.rules[0].when: the last rule has no when",
        ),
        (
            {"fallback": {"rules": [{"prediction": "1"}, {"prediction": "0"}]}},
            "spec.fallback.rules[0]: only the last rule may omit when",
        ),
        (
            {"fallback": {"rules": [{"when": "", "prediction": "1"}, {"prediction": "0"}]}},
            "spec.fallback.rules[0].when: must not be empty",
        ),
        (
            {"fallback": {"rules": [{"when": "request.x <", "prediction": "1"}, RULES[1]]}},
            "spec.fallback.rules[0].when: column 11: ",
        ),
        (
            {"fallback": {"rules": [{"prediction": "x"}]}},
            "spec.fallback.rules[0].prediction: column 1: ",
        ),
        (
            {"model": {"name": "a\u0000b"}},
            "spec.model.name: must not contain control characters",
        ),
        (
            {"model": {"name": "churn\n"}},
            "spec.model.name: must not contain control characters",
        ),
        (
            {"capture": {"prediction": {"pointer": "/p\u0007"}}},
            "spec.capture.prediction.pointer: must not contain control characters",
        ),
        (
            {"fallback": {"rules": [{"when": "true\u0000", "prediction": "1"}, RULES[1]]}},
            "spec.fallback.rules[0].when: must not contain control characters",
        ),
    ],
)
def test_each_error_names_its_path(spec: dict[str, Any], error: str) -> None:
    (found,) = errors(monitor(**spec))
    assert found.startswith(error)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "expected a ModelMonitor object, got a list"),
        ({"kind": "ModelMonitor", "metadata": {"name": "a"}, "spec": {}}, "apiVersion: required"),
        (
            {**monitor(), "apiVersion": "v1"},
            'apiVersion: expected "truthloop.dev/v1alpha1", got "v1"',
        ),
        ({**monitor(), "kind": "Monitor"}, 'kind: expected "ModelMonitor", got "Monitor"'),
        ({**monitor(), "metadata": {}}, "metadata.name: required"),
        (
            {**monitor(), "metadata": {"name": "Churn"}},
            "metadata.name: expected a DNS subdomain name (lowercase letters, digits, '-' and '.')",
        ),
        (
            {**monitor(), "metadata": {"name": "a", "namespace": "a.b"}},
            "metadata.namespace: expected a DNS label (lowercase letters, digits and '-'), got",
        ),
        (
            {**monitor(), "metadata": {"name": "a", "generation": 0}},
            "metadata.generation: must be at least 1, got 0",
        ),
        ({**monitor(), "spec": None}, "spec: required"),
        (
            {**monitor(), "extra": 1},
            "extra: unknown field; expected one of: apiVersion, kind, metadata, spec, status",
        ),
    ],
)
def test_errors_outside_the_spec(body: Any, error: str) -> None:
    assert any(found.startswith(error) for found in errors(body))


def test_a_rule_may_span_lines() -> None:
    rule = {"when": "request.features.tenure < 6 &&\n\trequest.features.plan == 'pro'"}
    parsed = parse_monitor(monitor(fallback={"rules": [{**rule, "prediction": "1"}, RULES[1]]}))
    assert parsed.spec.fallback.rules[0].when == rule["when"]


def test_every_error_is_reported_at_once() -> None:
    body = monitor(
        port=0,
        task="binary",
        capture={"prediction": {"header": "X"}, "sampleRate": 2},
        metrics={"window": "soon", "minSamples": 0},
        alerts=[
            {"name": "a", "metric": "rmse", "below": "high", "above": 1},
            {"name": "a", "metric": "f1", "below": 0.5, "extra": True},
        ],
        fallback={"mode": "engaged", "engageOn": ["zz"], "rules": [{"prediction": "1"}, {}]},
    )
    body["metadata"]["name"] = "Bad"
    with pytest.raises(SpecError) as raised:
        parse_monitor(body)
    assert [e.path for e in raised.value.errors] == [
        "metadata.name",
        "spec.port",
        "spec.capture.prediction.header",
        "spec.capture.prediction.pointer",
        "spec.capture.sampleRate",
        "spec.metrics.window",
        "spec.metrics.minSamples",
        "spec.alerts[0].metric",
        "spec.alerts[0].below",
        "spec.alerts[0]",
        "spec.alerts[1].extra",
        "spec.alerts[1].name",
        "spec.fallback.rules[0]",
        "spec.fallback.rules[1].prediction",
        "spec.fallback.engageOn[0]",
    ]
    assert str(raised.value).startswith("metadata.name: expected a DNS subdomain name")


def test_field_errors_read_as_path_and_message() -> None:
    assert str(FieldError("spec.port", "required")) == "spec.port: required"
    assert str(FieldError("", "expected an object")) == "expected an object"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = ["selector", "model", "port", "capture", "feedback", "metrics", "alerts", "fallback",
          "task", "threshold", "modelPortEnv", "restartExisting"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
def test_garbage_is_an_error_value_never_an_exception(changes: dict[str, Any]) -> None:
    body = monitor()
    body["spec"].update(changes)
    try:
        parse_monitor(body)
    except SpecError as e:
        problems = e.errors
    else:
        return
    assert problems
    assert all(problem.path.startswith("spec") for problem in problems)


# -- alerts on drift -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_drift_alerts_are_read_for_every_task_with_their_keys(task: str) -> None:
    drift = [
        {"name": "share", "metric": "drift_share", "above": 0.5},
        {"name": "pred", "metric": "prediction_drift", "above": 0.1, "for": "10m"},
        {"name": "tenure", "metric": "feature_drift", "feature": "tenure", "above": 0.2},
        {"name": "plan-missing", "metric": "missing_ratio", "feature": "plan", "above": 0.05},
        {"name": "odd", "metric": "outlier_ratio", "above": 0.01},
    ]
    spec = parse_monitor(monitor(task=task, alerts=drift)).spec
    assert spec.alerts == (
        AlertSpec("share", "drift_share", above=0.5),
        AlertSpec("pred", "prediction_drift", above=0.1, for_=600.0),
        AlertSpec("tenure", "feature_drift", above=0.2, feature="tenure"),
        AlertSpec("plan-missing", "missing_ratio", above=0.05, feature="plan"),
        AlertSpec("odd", "outlier_ratio", above=0.01),
    )
    assert [a.key for a in spec.alerts] == [
        "drift_share",
        "prediction_drift",
        "feature_drift:tenure",
        "missing_ratio:plan",
        "outlier_ratio",
    ]
    assert [is_drift_key(a.key) for a in spec.alerts] == [True] * 5
    assert not is_drift_key("accuracy")
    assert not is_drift_key("accuracy:x")


@pytest.mark.parametrize(
    ("alert", "error"),
    [
        (
            {"name": "d", "metric": "feature_drift", "above": 0.1},
            "spec.alerts[0].feature: required with metric feature_drift: the feature it watches",
        ),
        (
            {"name": "d", "metric": "missing_ratio", "above": 0.1},
            "spec.alerts[0].feature: required with metric missing_ratio",
        ),
        (
            {"name": "d", "metric": "drift_share", "feature": "tenure", "above": 0.5},
            "spec.alerts[0].feature: only with metric feature_drift or missing_ratio",
        ),
        (
            {"name": "d", "metric": "accuracy", "feature": "tenure", "below": 0.5},
            "spec.alerts[0].feature: only with metric feature_drift or missing_ratio",
        ),
        (
            {"name": "d", "metric": "feature_drift", "feature": "score", "above": 0.1},
            'spec.alerts[0].feature: "score" is not a feature; prediction drift is metric '
            "prediction_drift",
        ),
        (
            {"name": "d", "metric": "feature_drift", "feature": "a:b", "above": 0.1},
            "spec.alerts[0].feature: expected a feature name (at most 63 letters, digits, '_', "
            "'-' and '.', not starting with '-' or '.'), got \"a:b\"",
        ),
        (
            {"name": "d", "metric": "feature_drift", "feature": "", "above": 0.1},
            "spec.alerts[0].feature: must not be empty",
        ),
        (
            {"name": "d", "metric": "drift", "above": 0.1},
            'spec.alerts[0].metric: "drift" is not a metric of a binary model; expected one of: '
            "accuracy,",
        ),
    ],
)
def test_a_drift_alert_names_its_feature_when_and_only_when_it_needs_one(
    alert: dict[str, Any], error: str
) -> None:
    (found,) = errors(monitor(alerts=[alert]))
    assert found.startswith(error)


def test_the_unknown_metric_message_lists_the_drift_metrics() -> None:
    (found,) = errors(monitor(alerts=[{"name": "d", "metric": "drift", "above": 0.1}]))
    assert found.endswith(
        "roc_auc, drift_share, prediction_drift, feature_drift, missing_ratio, outlier_ratio, cost"
    )


# -- spec.metrics.cost -----------------------------------------------------------------------------


def test_each_tasks_cost_is_parsed() -> None:
    binary = parse_monitor(
        monitor(metrics={"cost": {"falsePositive": 5, "falseNegative": 50, "truePositive": 2}})
    )
    assert binary.spec.metrics.cost == CostSpec(
        false_positive=5.0, false_negative=50.0, true_positive=2.0
    )
    matrix = [
        {"actual": "cat", "predicted": "dog", "cost": 3},
        {"actual": "dog", "predicted": "cat", "cost": 1.5},
    ]
    multiclass = parse_monitor(monitor(task="multiclass", metrics={"cost": {"matrix": matrix}}))
    assert multiclass.spec.metrics.cost == CostSpec(
        matrix=(CostCell("cat", "dog", 3.0), CostCell("dog", "cat", 1.5))
    )
    regression = parse_monitor(
        monitor(
            task="regression",
            metrics={"cost": {"overPrediction": 1, "underPrediction": 4}},
            alerts=[{"name": "pricey", "metric": "cost", "above": 2.5}],
        )
    )
    assert regression.spec.metrics.cost == CostSpec(over_prediction=1.0, under_prediction=4.0)
    assert regression.spec.alerts[0].metric == "cost"
    assert parse_monitor(monitor()).spec.metrics.cost is None


def test_a_cost_that_does_not_fit_the_task_names_each_field() -> None:
    assert errors(
        monitor(metrics={"cost": {"falsePositive": -1, "overPrediction": 2, "falseNegative": "x"}})
    ) == [
        "spec.metrics.cost.falsePositive: must be at least 0, got -1",
        'spec.metrics.cost.falseNegative: expected a number, got "x"',
        "spec.metrics.cost.overPrediction: only for a regression model, this one is binary: "
        "falsePositive and falseNegative, optionally the gains truePositive, trueNegative",
    ]
    assert errors(monitor(task="regression", metrics={"cost": {"overPrediction": 1}})) == [
        "spec.metrics.cost.underPrediction: required for a regression model: overPrediction and "
        "underPrediction, per unit"
    ]
    twice = [{"actual": "a", "predicted": "b", "cost": 1}] * 2
    assert errors(monitor(task="multiclass", metrics={"cost": {"matrix": twice}})) == [
        "spec.metrics.cost.matrix[1]: duplicate: spec.metrics.cost.matrix[0] prices this pair"
    ]


def test_a_cost_alert_needs_the_cost() -> None:
    assert errors(monitor(alerts=[{"name": "c", "metric": "cost", "above": 1}])) == [
        "spec.alerts[0].metric: cost needs spec.metrics.cost: what a mistake costs"
    ]


# -- spec.features and spec.drift ------------------------------------------------------------------


def test_features_and_drift_parse_with_their_defaults() -> None:
    spec = parse_monitor(
        monitor(
            task="regression",
            features=[
                {"name": "tenure", "type": "numeric"},
                {"name": "plan.tier", "pointer": "/account/plan", "type": "categorical"},
                {"name": "whole", "pointer": "", "type": "categorical"},
            ],
            drift={
                "share": 0.25,
                "reference": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T02:00:00+02:00"},
                "overrides": [
                    {"feature": "tenure", "method": "ks", "threshold": 0.01},
                    {"feature": "plan.tier", "threshold": 0.2},
                    {"feature": "prediction", "method": "wasserstein"},
                    {"feature": "score", "method": "psi"},
                ],
            },
        )
    ).spec
    assert spec.features == (
        FeatureSpec("tenure", "/tenure", "numeric"),
        FeatureSpec("plan.tier", "/account/plan", "categorical"),
        FeatureSpec("whole", "", "categorical"),
    )
    assert spec.drift == DriftSpec(
        share=0.25,
        reference=(1767225600.0, 1767225600.0 + 7 * 86400),
        overrides=(
            DriftOverride("tenure", "ks", 0.01),
            DriftOverride("plan.tier", None, 0.2),
            DriftOverride("prediction", "wasserstein"),
            DriftOverride("score", "psi"),
        ),
    )
    bare = parse_monitor(monitor()).spec
    assert (bare.features, bare.drift) == ((), DriftSpec())
    assert parse_monitor(monitor(features=[], drift={})).spec == bare


def test_without_declared_features_an_override_names_any_feature() -> None:
    spec = parse_monitor(
        monitor(drift={"overrides": [{"feature": "anything", "method": "chisquare"}]})
    ).spec
    assert spec.drift.overrides == (DriftOverride("anything", "chisquare"),)


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ([{"name": "a"}], ["spec.features[0].type: required"]),
        (
            [{"name": "a", "type": "text"}],
            ['spec.features[0].type: expected one of: numeric, categorical; got "text"'],
        ),
        (
            [{"name": "a:b", "type": "numeric"}],
            [
                "spec.features[0].name: expected a feature name (at most 63 letters, digits, "
                "'_', '-' and '.', not starting with '-' or '.'), got \"a:b\""
            ],
        ),
        (
            [{"name": "x" * 64, "type": "numeric"}],
            ["spec.features[0].name: must be at most 63 characters, got 64"],
        ),
        (
            [{"name": "score", "type": "numeric"}],
            [
                'spec.features[0].name: "score" is a reserved column (prediction, score, actual, '
                "ts), not a feature"
            ],
        ),
        (
            [{"name": "a", "type": "numeric"}, {"name": "a", "type": "categorical"}],
            ["spec.features[1].name: duplicate: spec.features[0] has this name"],
        ),
        (
            [{"name": "a", "pointer": "a", "type": "numeric"}],
            [
                "spec.features[0].pointer: not a JSON pointer (RFC 6901): 'a': a JSON pointer "
                "is empty or starts with '/'"
            ],
        ),
        (
            [{"name": "a", "type": "numeric", "kind": "x"}],
            ["spec.features[0].kind: unknown field; expected one of: name, pointer, type"],
        ),
        (
            [{"name": f"f{i}", "type": "numeric"} for i in range(101)],
            ["spec.features: must have at most 100 items, got 101"],
        ),
    ],
)
def test_bad_features_are_named_by_path(features: list[Any], expected: list[str]) -> None:
    assert errors(monitor(features=features)) == expected


DECLARED = [{"name": "age", "type": "numeric"}, {"name": "plan", "type": "categorical"}]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"share": 0}, ["spec.drift.share: must be > 0 and <= 1, got 0"]),
        ({"share": 1.5}, ["spec.drift.share: must be > 0 and <= 1, got 1.5"]),
        ({"reference": {"from": "2026-01-01T00:00:00Z"}}, ["spec.drift.reference.to: required"]),
        (
            {"reference": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-02T01:00:00+01:00"}},
            ["spec.drift.reference.to: must be after from"],
        ),
        (
            {"reference": {"from": "2026-01-01", "to": "2026-01-02T00:00:00Z"}},
            [
                "spec.drift.reference.from: expected an RFC 3339 timestamp like "
                '2026-01-31T00:00:00Z, got "2026-01-01"'
            ],
        ),
        (
            {"reference": {"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"}},
            [
                "spec.drift.reference.from: expected an RFC 3339 timestamp like "
                '2026-01-31T00:00:00Z, got "2026-01-01T00:00:00"'
            ],
        ),
        (
            {"reference": {"from": "2026-02-30T00:00:00Z", "to": "2026-03-02T00:00:00Z"}},
            ["spec.drift.reference.from: not a date and time: day is out of range for month"],
        ),
        (
            {"overrides": [{"feature": "age"}]},
            ["spec.drift.overrides[0]: give a method, a threshold or both"],
        ),
        (
            {"overrides": [{"feature": "income", "method": "psi"}]},
            ['spec.drift.overrides[0].feature: no feature named "income" in spec.features'],
        ),
        (
            {"overrides": [{"feature": "actual", "method": "psi"}]},
            [
                'spec.drift.overrides[0].feature: "actual" is not profiled; a column of '
                "spec.features, prediction or score"
            ],
        ),
        (
            {"overrides": [{"feature": "plan", "method": "ks"}]},
            [
                'spec.drift.overrides[0].method: ks needs ordered values; "plan" is '
                "categorical: jensenshannon, psi or chisquare"
            ],
        ),
        (
            {"overrides": [{"feature": "prediction", "method": "wasserstein"}]},
            [
                "spec.drift.overrides[0].method: wasserstein needs ordered values; "
                '"prediction" is categorical: jensenshannon, psi or chisquare'
            ],
        ),
        (
            {"overrides": [{"feature": "age", "method": "energy"}]},
            [
                "spec.drift.overrides[0].method: expected one of: wasserstein, jensenshannon, "
                'psi, ks, chisquare; got "energy"'
            ],
        ),
        (
            {"overrides": [{"feature": "age", "threshold": 0}]},
            ["spec.drift.overrides[0].threshold: must be > 0, got 0"],
        ),
        (
            {"overrides": [{"feature": "age", "method": "ks", "threshold": 5}]},
            [
                "spec.drift.overrides[0].threshold: ks's threshold bounds a p-value: at most 1, "
                "got 5"
            ],
        ),
        (
            {
                "overrides": [
                    {"feature": "age", "method": "psi"},
                    {"feature": "age", "threshold": 1},
                ]
            },
            [
                "spec.drift.overrides[1].feature: duplicate: spec.drift.overrides[0] overrides "
                "this feature"
            ],
        ),
        (
            {"window": "1h"},
            ["spec.drift.window: unknown field; expected one of: share, reference, overrides"],
        ),
    ],
)
def test_bad_drift_settings_are_named_by_path(drift: dict[str, Any], expected: list[str]) -> None:
    assert errors(monitor(features=DECLARED, drift=drift)) == expected


def test_a_regression_prediction_takes_ordered_methods() -> None:
    spec = parse_monitor(
        monitor(
            task="regression",
            drift={"overrides": [{"feature": "prediction", "method": "ks", "threshold": 0.01}]},
        )
    ).spec
    assert spec.drift.overrides == (DriftOverride("prediction", "ks", 0.01),)


def test_a_drift_alert_names_a_declared_feature_when_features_are_declared() -> None:
    features = [{"name": "tenure", "type": "numeric"}, {"name": "plan", "type": "categorical"}]
    alert = {"name": "d", "metric": "feature_drift", "feature": "age", "above": 0.1}
    (found,) = errors(monitor(features=features, alerts=[alert]))
    assert found == 'spec.alerts[0].feature: no feature named "age" in spec.features'
    declared = parse_monitor(monitor(features=features, alerts=[{**alert, "feature": "plan"}]))
    assert declared.spec.alerts[0].key == "feature_drift:plan"
    discovered = parse_monitor(monitor(features=[], alerts=[alert]))
    assert discovered.spec.alerts[0].key == "feature_drift:age"


# -- alerts on estimates ---------------------------------------------------------------------------


def test_an_alert_reads_the_realized_metric_by_default_or_its_estimate_by_source() -> None:
    alerts = [
        {"name": "r", "metric": "accuracy", "below": 0.8},
        {"name": "e", "metric": "roc_auc", "below": 0.7, "source": "estimated"},
        {"name": "a", "metric": "f1", "below": 0.6, "source": "auto"},
        {"name": "d", "metric": "drift_share", "above": 0.5, "source": "realized"},
    ]
    spec = parse_monitor(monitor(alerts=alerts)).spec
    assert [a.source for a in spec.alerts] == ["realized", "estimated", "auto", "realized"]
    assert [a.key for a in spec.alerts] == [
        "accuracy",
        "estimated:roc_auc",
        "auto:f1",
        "drift_share",
    ]
    assert [counts_labels(a.key) for a in spec.alerts] == [True, False, False, False]


@pytest.mark.parametrize(
    ("task", "alert", "error"),
    [
        (
            "binary",
            {"metric": "accuracy", "source": "guess"},
            "spec.alerts[0].source: expected one of: realized, estimated, auto, reviewed; "
            'got "guess"',
        ),
        (
            "binary",
            {"metric": "drift_share", "source": "estimated"},
            "spec.alerts[0].source: estimated is for a model metric; a drift metric needs no "
            "labels",
        ),
        (
            "binary",
            {"metric": "brier_score", "source": "auto"},
            'spec.alerts[0].metric: "brier_score" has no estimate before labels (source auto); '
            "expected one of: accuracy, precision, recall, f1, specificity, balanced_accuracy, "
            "roc_auc",
        ),
        (
            "regression",
            {"metric": "r2", "source": "estimated"},
            'spec.alerts[0].metric: "r2" has no estimate before labels (source estimated); '
            "expected one of: mae, rmse, mean_error",
        ),
    ],
)
def test_an_estimated_alert_names_a_metric_its_task_estimates(
    task: str, alert: dict[str, Any], error: str
) -> None:
    (found,) = errors(monitor(task=task, alerts=[{"name": "x", "below": 0.5, **alert}]))
    assert found == error


# -- review ----------------------------------------------------------------------------------------

REVIEW: dict[str, Any] = {
    "budget": 500,
    "per": "window",
    "random": 0.3,
    "borderline": 0.7,
    "outliers": 0.5,
    "lease": "1h30m",
    "seed": 7,
    "abstain": {
        "band": {"low": 0.4, "high": 0.6},
        "explore": 0.01,
        "response": {
            "status": 503,
            "body": {"abstained": True, "why": ["unsure", 0.5, None]},
            "headers": {"X-Foo": "bar", "Retry-After": "5"},
        },
    },
}


def test_a_review_section_is_read_whole() -> None:
    assert parse_monitor(monitor(review=REVIEW)).spec.review == ReviewSpec(
        budget=500.0,
        per="window",
        random=0.3,
        borderline=0.7,
        outliers=0.5,
        abstain=AbstainSpec(
            low=0.4,
            high=0.6,
            explore=0.01,
            response=AbstainResponse(
                status=503,
                body='{"abstained":true,"why":["unsure",0.5,null]}',
                headers=(("X-Foo", "bar"), ("Retry-After", "5")),
            ),
        ),
        lease=5400.0,
        seed=7,
    )


def test_a_review_without_options_gets_every_default() -> None:
    assert parse_monitor(monitor()).spec.review is None
    spec = parse_monitor(
        monitor(review={"budget": 100, "abstain": {"band": {"low": 0.5, "high": 0.5}}})
    )
    assert spec.spec.review == ReviewSpec(
        budget=100.0,
        abstain=AbstainSpec(low=0.5, high=0.5, explore=0.0, response=AbstainResponse()),
    )
    assert spec.spec.review.per_day == 100.0
    assert spec.spec.review.abstain.response.body == '{"abstained":true}'  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("given", "split"),
    [
        ({}, (1.0, 0.0)),
        ({"random": 0.25}, (0.25, 0.75)),
        ({"borderline": 0.25}, (0.75, 0.25)),
        ({"random": 0.3, "borderline": 0.7}, (0.3, 0.7)),
        ({"random": 0, "borderline": 1}, (0.0, 1.0)),
        ({"random": 1, "borderline": 0}, (1.0, 0.0)),
    ],
)
def test_random_and_borderline_split_the_budget(
    given: dict[str, float], split: tuple[float, float]
) -> None:
    found = parse_monitor(monitor(review={"budget": 10, **given})).spec.review
    assert found is not None
    assert (found.random, found.borderline) == pytest.approx(split)


@pytest.mark.parametrize(
    "body",
    [{"a": [1, 2.5, None, "é"]}, "I don't know", 0, None, [], True],
)
def test_an_abstain_body_is_any_json_rendered_compact(body: Any) -> None:
    review_ = {"budget": 1, "abstain": {"band": {"low": 0, "high": 1}, "response": {"body": body}}}
    found = parse_monitor(monitor(review=review_)).spec.review
    assert found is not None
    assert found.abstain is not None
    rendered = found.abstain.response.body
    if body is None:  # a null field is an absent one
        assert rendered == '{"abstained":true}'
    else:
        assert " " not in rendered.replace("I don't know", "")
        assert json.loads(rendered) == body


def test_a_body_of_the_largest_size_is_taken() -> None:
    text = "x" * (MAX_ABSTAIN_BODY - 2)  # and its two quotes
    review_ = {"budget": 1, "abstain": {"band": {"low": 0, "high": 1}, "response": {"body": text}}}
    found = parse_monitor(monitor(review=review_)).spec.review
    assert found is not None
    assert found.abstain is not None
    assert len(found.abstain.response.body) == MAX_ABSTAIN_BODY


BAND = {"low": 0.4, "high": 0.6}
RESPONSE = "spec.review.abstain.response"
SET_BY_SIDECAR = (
    "is set by the sidecar; the response may not set x-prediction-id, x-truthloop-abstain, "
    "content-length, transfer-encoding, connection"
)


@pytest.mark.parametrize(
    ("review_", "expected"),
    [
        ({}, ["spec.review.budget: required"]),
        ({"budget": 0}, ["spec.review.budget: must be > 0 and <= 1e+07, got 0"]),
        ({"budget": 1e7 + 1}, ["spec.review.budget: must be > 0 and <= 1e+07, got 10000001.0"]),
        ({"budget": "500"}, ['spec.review.budget: expected a number, got "500"']),
        (
            {"budget": 1, "per": "week"},
            ['spec.review.per: expected one of: day, window; got "week"'],
        ),
        ({"budget": 1, "random": 1.5}, ["spec.review.random: must be between 0 and 1, got 1.5"]),
        (
            {"budget": 1, "borderline": -0.1},
            ["spec.review.borderline: must be between 0 and 1, got -0.1"],
        ),
        (
            {"budget": 1, "random": 0.5, "borderline": 0.6},
            [
                "spec.review.borderline: random and borderline split the budget: they sum to 1, "
                "got 0.5 + 0.6"
            ],
        ),
        ({"budget": 1, "outliers": 1}, ["spec.review.outliers: must be >= 0 and < 1, got 1"]),
        ({"budget": 1, "outliers": -0.5}, ["spec.review.outliers: must be >= 0 and < 1, got -0.5"]),
        ({"budget": 1, "lease": "9s"}, ["spec.review.lease: must be at least 10s, got 9s"]),
        ({"budget": 1, "lease": "0s"}, ["spec.review.lease: must be at least 10s, got 0s"]),
        ({"budget": 1, "lease": "1d1s"}, ["spec.review.lease: must be at most 1d, got 1d1s"]),
        (
            {"budget": 1, "lease": 60},
            ["spec.review.lease: expected a duration like 90s, 2m, 24h, 7d or 1h30m, got 60"],
        ),
        ({"budget": 1, "seed": -1}, ["spec.review.seed: must be at least 0, got -1"]),
        ({"budget": 1, "seed": 1.5}, ["spec.review.seed: expected an integer, got 1.5"]),
        (
            {"budget": 1, "seed": 2**32},
            [f"spec.review.seed: must be at most {2**32 - 1}, got {2**32}"],
        ),
        (
            {"budget": 1, "extra": 1},
            [
                "spec.review.extra: unknown field; expected one of: budget, per, random, "
                "borderline, outliers, lease, seed, abstain"
            ],
        ),
        ({"budget": 1, "abstain": {}}, ["spec.review.abstain.band: required"]),
        (
            {"budget": 1, "abstain": {"band": {"low": 0.4}}},
            ["spec.review.abstain.band.high: required"],
        ),
        (
            {"budget": 1, "abstain": {"band": {"low": 0.6, "high": 0.4}}},
            ["spec.review.abstain.band.high: must be at least low (0.6), got 0.4"],
        ),
        (
            {"budget": 1, "abstain": {"band": {"low": -0.1, "high": 1.1}}},
            [
                "spec.review.abstain.band.low: must be between 0 and 1, got -0.1",
                "spec.review.abstain.band.high: must be between 0 and 1, got 1.1",
            ],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "explore": 1}},
            ["spec.review.abstain.explore: must be >= 0 and < 1, got 1"],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"status": 199}}},
            ["spec.review.abstain.response.status: must be at least 200, got 199"],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"status": 600}}},
            ["spec.review.abstain.response.status: must be at most 599, got 600"],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"body": float("nan")}}},
            [f"{RESPONSE}.body: expected JSON: Out of range float values are not JSON compliant"],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"body": "x" * MAX_ABSTAIN_BODY}}},
            [f"{RESPONSE}.body: must be at most 65536 bytes as JSON, got {MAX_ABSTAIN_BODY + 2}"],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"headers": ["X-Foo"]}}},
            ["spec.review.abstain.response.headers: expected an object, got a list"],
        ),
        (
            {
                "budget": 1,
                "abstain": {
                    "band": BAND,
                    "response": {"headers": {f"X-{i}": "v" for i in range(33)}},
                },
            },
            ["spec.review.abstain.response.headers: must have at most 32 headers, got 33"],
        ),
        (
            {
                "budget": 1,
                "abstain": {
                    "band": BAND,
                    "response": {
                        "headers": {
                            "X Foo": "a",
                            "x-prediction-id": "b",
                            "Content-Length": "1",
                            "X-Truthloop-Abstain": "false",
                            "X-A": "line\nbreak",
                            "X-B": 5,
                            "X-C": None,
                            "x-d": "1",
                            "X-D": "2",
                        }
                    },
                },
            },
            [
                f'{RESPONSE}.headers["X Foo"]: expected an HTTP header name, got "X Foo"',
                f"{RESPONSE}.headers.x-prediction-id: x-prediction-id {SET_BY_SIDECAR}",
                f"{RESPONSE}.headers.Content-Length: Content-Length {SET_BY_SIDECAR}",
                f"{RESPONSE}.headers.X-Truthloop-Abstain: X-Truthloop-Abstain {SET_BY_SIDECAR}",
                f'{RESPONSE}.headers.X-A: must not contain control characters, got "line\\nbreak"',
                f"{RESPONSE}.headers.X-B: expected a string, got 5",
                f"{RESPONSE}.headers.X-C: expected a string, got null",
                f"{RESPONSE}.headers.X-D: duplicate: {RESPONSE}.headers.x-d names this header",
            ],
        ),
        (
            {"budget": 1, "abstain": {"band": BAND, "response": {"headers": {"X-A": "é"}}}},
            [f'{RESPONSE}.headers.X-A: expected a header value of printable ASCII, got "é"'],
        ),
    ],
)
def test_bad_review_settings_are_named_by_path(
    review_: dict[str, Any], expected: list[str]
) -> None:
    assert errors(monitor(review=review_)) == expected


def test_every_review_problem_is_reported_at_once() -> None:
    found = errors(
        monitor(
            task="regression",
            review={
                "budget": -1,
                "random": 2,
                "lease": "1s",
                "abstain": {"band": {"low": 0.9, "high": 0.1}, "response": {"status": 404.5}},
            },
        )
    )
    assert [e.split(":")[0] for e in found] == [
        "spec.review.budget",
        "spec.review.random",
        "spec.review.abstain",
        "spec.review.abstain.band.high",
        "spec.review.abstain.response.status",
        "spec.review.lease",
    ]


def test_abstaining_needs_a_classifier_answering_one_row() -> None:
    abstain = {"budget": 1, "abstain": {"band": BAND}}
    assert errors(monitor(task="regression", review=abstain)) == [
        "spec.review.abstain: only for a classifier: a regression model has no score to abstain on"
    ]
    batch = {
        "prediction": {"pointer": ""},
        "batch": {"instances": "/instances", "predictions": "/predictions"},
    }
    assert errors(monitor(capture=batch, review=abstain)) == [
        "spec.review.abstain: only without spec.capture.batch: the sidecar answers for a whole "
        "response, and a batch holds many records"
    ]
    assert parse_monitor(monitor(task="multiclass", review=abstain)).spec.review is not None
    # without abstain, review takes any task and a batch
    assert parse_monitor(
        monitor(task="regression", capture=batch, review={"budget": 1})
    ).spec.review


def test_reviewed_names_are_one_table_for_the_spec_and_the_estimator() -> None:
    assert review.REVIEWED_NAMES is metrics.REVIEWED_NAMES
    for task, names in metrics.REVIEWED_NAMES.items():
        assert set(names) <= set(metrics.METRIC_NAMES[task])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_reviewed_alert_reads_a_metric_the_reviews_estimate(task: str) -> None:
    alerts = [
        {"name": f"a{i}", "metric": metric, "below": 0.5, "source": "reviewed"}
        for i, metric in enumerate(metrics.REVIEWED_NAMES[task])
    ]
    spec = parse_monitor(monitor(task=task, review={"budget": 50}, alerts=alerts)).spec
    assert [a.key for a in spec.alerts] == [f"reviewed:{m}" for m in metrics.REVIEWED_NAMES[task]]
    assert all(counts_labels(a.key) for a in spec.alerts)
    others = [m for m in metrics.METRIC_NAMES[task] if m not in metrics.REVIEWED_NAMES[task]]
    for metric in others:
        (found,) = errors(
            monitor(
                task=task,
                review={"budget": 50},
                alerts=[{"name": "x", "metric": metric, "below": 0.5, "source": "reviewed"}],
            )
        )
        assert found == (
            f'spec.alerts[0].metric: "{metric}" has no estimate from reviewed labels (source '
            f"reviewed); expected one of: {', '.join(metrics.REVIEWED_NAMES[task])}"
        )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"alerts": [{"name": "x", "metric": "accuracy", "below": 0.5, "source": "reviewed"}]},
            [
                "spec.alerts[0].source: reviewed needs spec.review: the review queue whose "
                "labels it reads"
            ],
        ),
        (
            {
                "review": {"budget": 1},
                "alerts": [
                    {"name": "x", "metric": "drift_share", "above": 0.5, "source": "reviewed"}
                ],
            },
            [
                "spec.alerts[0].source: reviewed is for a model metric; a drift metric needs "
                "no labels"
            ],
        ),
        (
            {
                "review": {"budget": 1},
                "metrics": {"cost": {"falsePositive": 1, "falseNegative": 2}},
                "alerts": [{"name": "x", "metric": "cost", "above": 0.5, "source": "reviewed"}],
            },
            [
                'spec.alerts[0].metric: "cost" has no estimate from reviewed labels (source '
                "reviewed); expected one of: accuracy, precision, recall, f1, specificity, "
                "balanced_accuracy"
            ],
        ),
        (
            {"alerts": [{"name": "x", "metric": "cost", "above": 0.5, "source": "reviewed"}]},
            [
                "spec.alerts[0].metric: cost needs spec.metrics.cost: what a mistake costs",
                "spec.alerts[0].source: reviewed needs spec.review: the review queue whose labels "
                "it reads",
            ],
        ),
    ],
)
def test_a_reviewed_alert_needs_the_review_queue(spec: dict[str, Any], expected: list[str]) -> None:
    assert errors(monitor(**spec)) == expected


# -- segments --------------------------------------------------------------------------------------

SEGMENTS = [
    {"name": "country", "header": "X-Country"},
    {"name": "device", "pointer": "/device", "maxValues": 10, "export": True},
    {"name": "tenure", "pointer": "/features/tenure", "buckets": [6, 12.5, 24]},
]
SEGMENT_ALERT = {"name": "accuracy-low-somewhere", "metric": "accuracy", "below": 0.8}


def test_segments_are_read_with_their_defaults() -> None:
    spec = parse_monitor(monitor(segments=SEGMENTS)).spec
    assert spec.segments == (
        SegmentSpec("country", Source(header="X-Country")),
        SegmentSpec("device", Source(pointer="/device"), max_values=10, export=True),
        SegmentSpec("tenure", Source(pointer="/features/tenure"), buckets=(6.0, 12.5, 24.0)),
    )
    assert parse_monitor(monitor()).spec.segments == ()
    assert parse_monitor(monitor(segments=[])).spec.segments == ()


def test_a_segment_alert_names_its_segment_in_its_key() -> None:
    alerts = [
        {**SEGMENT_ALERT, "segment": "country"},
        {"name": "est", "metric": "accuracy", "below": 0.8, "segment": "tenure", "source": "auto"},
        {"name": "all", "metric": "accuracy", "below": 0.8},
    ]
    spec = parse_monitor(monitor(segments=SEGMENTS, alerts=alerts)).spec
    assert [(a.segment, a.key) for a in spec.alerts] == [
        ("country", "segment:country:accuracy"),
        ("tenure", "segment:tenure:auto:accuracy"),
        (None, "accuracy"),
    ]


ONE = {"name": "s", "pointer": "/s"}


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ("country", ['spec.segments: expected a list, got "country"']),
        (
            [{**ONE, "name": f"s{i}"} for i in range(9)],
            ["spec.segments: must have at most 8 items, got 9"],
        ),
        (
            [{"pointer": "/s"}, {"name": "a:b", "pointer": "/s"}, {"name": "a=b", "pointer": "/s"}],
            [
                "spec.segments[0].name: required",
                "spec.segments[1].name: expected a segment name (at most 63 letters, digits, "
                "'_', '-' and '.', not starting with '-' or '.'), got \"a:b\"",
                "spec.segments[2].name: expected a segment name (at most 63 letters, digits, "
                "'_', '-' and '.', not starting with '-' or '.'), got \"a=b\"",
            ],
        ),
        ([ONE, ONE], ["spec.segments[1].name: duplicate: spec.segments[0] has this name"]),
        (
            [{"name": "s"}, {"name": "t", "pointer": "/t", "header": "X-T"}],
            [
                "spec.segments[0]: exactly one of header or pointer",
                "spec.segments[1]: exactly one of header or pointer",
            ],
        ),
        (
            [{"name": "s", "pointer": "s"}, {"name": "t", "header": "X T"}],
            [
                "spec.segments[0].pointer: not a JSON pointer (RFC 6901): 's': a JSON pointer "
                "is empty or starts with '/'",
                'spec.segments[1].header: expected an HTTP header name, got "X T"',
            ],
        ),
        (
            [{**ONE, "maxValues": 0}, {**ONE, "name": "t", "maxValues": 101}],
            [
                "spec.segments[0].maxValues: must be at least 1, got 0",
                "spec.segments[1].maxValues: must be at most 100, got 101",
            ],
        ),
        ([{**ONE, "maxValues": 2.5}], ["spec.segments[0].maxValues: expected an integer, got 2.5"]),
        (
            [{**ONE, "buckets": [1, 2], "maxValues": 5}],
            [
                "spec.segments[0].maxValues: not with buckets: a numeric segment's values are "
                "its buckets"
            ],
        ),
        (
            [{**ONE, "buckets": [3, 2, 2, "x", float("inf"), True]}],
            [
                "spec.segments[0].buckets[1]: must be above the edge before it, 3: buckets are "
                "strictly ascending, got 2",
                "spec.segments[0].buckets[2]: must be above the edge before it, 3: buckets are "
                "strictly ascending, got 2",
                'spec.segments[0].buckets[3]: expected a number, got "x"',
                "spec.segments[0].buckets[4]: expected a finite number, got inf",
                "spec.segments[0].buckets[5]: expected a number, got true",
            ],
        ),
        ([{**ONE, "buckets": []}], ["spec.segments[0].buckets: must have at least 1 item"]),
        (
            [{**ONE, "buckets": list(range(51))}],
            ["spec.segments[0].buckets: must have at most 50 items, got 51"],
        ),
        ([{**ONE, "buckets": 5}], ["spec.segments[0].buckets: expected a list, got 5"]),
        (
            [{**ONE, "export": "yes"}],
            ['spec.segments[0].export: expected true or false, got "yes"'],
        ),
        (
            [{**ONE, "values": ["a"]}],
            [
                "spec.segments[0].values: unknown field; expected one of: name, pointer, header, "
                "maxValues, buckets, export, drift"
            ],
        ),
    ],
)
def test_bad_segments_are_named_by_path(segments: Any, expected: list[str]) -> None:
    assert errors(monitor(segments=segments)) == expected


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (
            {**SEGMENT_ALERT, "segment": "city"},
            ['spec.alerts[0].segment: no segment named "city" in spec.segments'],
        ),
        (
            {"name": "d", "metric": "drift_share", "above": 0.5, "segment": "country"},
            [
                "spec.alerts[0].segment: a drift metric (drift_share) needs a segment with "
                "drift: true (country keeps no feature sketches per value)"
            ],
        ),
        (
            {"name": "d", "metric": "missing_ratio", "feature": "x", "above": 0.5, "segment": "s"},
            [
                "spec.alerts[0].segment: a drift metric (missing_ratio) needs a segment with "
                "drift: true (s keeps no feature sketches per value)"
            ],
        ),
        ({**SEGMENT_ALERT, "segment": 1}, ["spec.alerts[0].segment: expected a string, got 1"]),
    ],
)
def test_an_alert_segment_names_a_declared_segment_of_a_model_metric(
    alert: dict[str, Any], expected: list[str]
) -> None:
    segments = [{"name": "country", "header": "X-Country"}, ONE]
    assert errors(monitor(segments=segments, alerts=[alert])) == expected


def test_a_drift_alert_on_a_segment_with_drift_is_taken() -> None:
    segments = [{"name": "country", "header": "X-Country", "drift": True}, ONE]
    alert = {"name": "d", "metric": "drift_share", "above": 0.5, "segment": "country"}
    found = parse_monitor(monitor(segments=segments, alerts=[alert]))
    assert [s.drift for s in found.spec.segments] == [True, False]
    assert found.spec.alerts[0].key == "segment:country:drift_share"


def test_a_segment_alert_without_segments_is_refused() -> None:
    assert errors(monitor(alerts=[{**SEGMENT_ALERT, "segment": "country"}])) == [
        'spec.alerts[0].segment: no segment named "country" in spec.segments'
    ]


def test_every_segment_problem_is_reported_at_once() -> None:
    found = errors(
        monitor(
            segments=[
                {"name": "a", "header": "X", "pointer": "/a"},
                {"name": "b", "buckets": [2, 1]},
            ],
            alerts=[{**SEGMENT_ALERT, "segment": "c"}],
        )
    )
    assert [e.split(":")[0] for e in found] == [
        "spec.alerts[0].segment",
        "spec.segments[0]",
        "spec.segments[1]",
        "spec.segments[1].buckets[1]",
    ]


# -- capture.protocol ------------------------------------------------------------------------------


def capture(**fields: Any) -> CaptureSpec:
    return parse_monitor(monitor(capture=fields)).spec.capture


def test_a_capture_without_a_protocol_is_custom_and_reads_one_record() -> None:
    found = capture(prediction={"pointer": "/prediction"})
    assert found == CaptureSpec(Source(pointer="/prediction"))
    assert found.protocol == "custom"
    assert not found.row_based
    assert capture(prediction={"pointer": ""}, batch={"instances": "", "predictions": ""}).row_based


@pytest.mark.parametrize(
    ("protocol", "prediction"),
    [
        ("open-inference-v2", "/predict"),
        ("kserve-v1", ""),
        ("tfserving", ""),
        ("seldon-v1", ""),
        ("mlflow", ""),
    ],
)
def test_a_preset_with_rows_fills_the_prediction_and_the_features(
    protocol: str, prediction: str
) -> None:
    assert capture(protocol=protocol) == CaptureSpec(
        Source(pointer=prediction), features=Source(pointer=""), protocol=protocol
    )
    assert capture(protocol=protocol).row_based


def test_torchserve_reads_the_whole_response_as_one_record_without_features() -> None:
    found = capture(protocol="torchserve", entityId={"header": "X-Entity-ID"})
    assert found == CaptureSpec(
        Source(pointer=""), entity_id=Source(header="X-Entity-ID"), protocol="torchserve"
    )
    assert not found.row_based


def test_a_preset_keeps_what_the_spec_gives() -> None:
    found = capture(
        protocol="open-inference-v2",
        prediction={"pointer": "/output-0"},
        score={"pointer": "/predict_proba/1"},
        features={"pointer": "/predict"},
        entityId={"pointer": "/parameters/entity_ids", "perRow": True},
    )
    assert found == CaptureSpec(
        Source(pointer="/output-0"),
        entity_id=Source(pointer="/parameters/entity_ids", per_row=True),
        score=Source(pointer="/predict_proba/1"),
        features=Source(pointer="/predict"),
        protocol="open-inference-v2",
    )


def test_an_entity_per_row_reads_a_header_list_of_a_batch() -> None:
    found = capture(
        prediction={"pointer": ""},
        batch={"instances": "/instances", "predictions": "/predictions"},
        entityId={"header": "X-Entity-IDs", "perRow": True},
    )
    assert found.entity_id == Source(header="X-Entity-IDs", per_row=True)
    assert capture(protocol="mlflow", entityId={"pointer": "/id", "perRow": False}).entity_id == (
        Source(pointer="/id")
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"protocol": "grpc"},
            "spec.capture.protocol: expected one of: custom, open-inference-v2, kserve-v1, "
            'tfserving, seldon-v1, mlflow, torchserve; got "grpc"',
        ),
        ({"protocol": 2}, "spec.capture.protocol: expected one of: custom, "),
        ({"protocol": "custom"}, "spec.capture.prediction: required"),
        (
            {"protocol": "kserve-v1", "batch": {"instances": "/i", "predictions": "/p"}},
            "spec.capture.batch: only with protocol custom: kserve-v1 reads the rows itself",
        ),
        (
            {"protocol": "mlflow", "batch": {}},
            "spec.capture.batch: only with protocol custom: mlflow reads the rows itself",
        ),
        (
            {"prediction": {"pointer": ""}, "entityId": {"header": "X-Ids", "perRow": True}},
            "spec.capture.entityId.perRow: only for rows: with a protocol other than custom and "
            "torchserve, or with capture.batch",
        ),
        (
            {"protocol": "torchserve", "entityId": {"pointer": "/ids", "perRow": True}},
            "spec.capture.entityId.perRow: only for rows: ",
        ),
        (
            {"protocol": "tfserving", "entityId": {"pointer": "/ids", "perRow": "yes"}},
            'spec.capture.entityId.perRow: expected true or false, got "yes"',
        ),
        (
            {"protocol": "tfserving", "prediction": {"pointer": "/x", "perRow": True}},
            "spec.capture.prediction.perRow: unknown field; expected one of: pointer",
        ),
    ],
)
def test_a_capture_s_protocol_errors_name_the_field(fields: dict[str, Any], expected: str) -> None:
    [error] = errors(monitor(capture=fields))
    assert error.startswith(expected)


def test_abstaining_needs_a_single_row_capture() -> None:
    abstain = {"budget": 1, "abstain": {"band": {"low": 0.4, "high": 0.6}}}
    assert errors(monitor(capture={"protocol": "open-inference-v2"}, review=abstain)) == [
        "spec.review.abstain: only for a single-row capture: spec.capture.protocol "
        "open-inference-v2 holds many records in a response"
    ]
    parsed = parse_monitor(monitor(capture={"protocol": "torchserve"}, review=abstain))
    assert parsed.spec.review is not None
    assert parsed.spec.review.abstain is not None
