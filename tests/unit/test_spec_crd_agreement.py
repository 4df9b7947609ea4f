"""spec.py and the CRD give every ModelMonitor the same verdict.

One corpus, hand-written cases and hypothesis-generated ones, goes through `parse_monitor` and
through what the apiserver does with `crds/modelmonitor.yaml` (tests/support/apiserver.py: prune
nulls, default, the openAPIV3Schema under strict field validation, then every CEL rule with
cel-python). Both must accept, or both refuse. For an accepted monitor, the CRD's defaults must
also be spec.py's: parsing the apiserver-defaulted object gives the same `Monitor`.

`SPEC_ONLY` lists what spec.py checks and a CRD cannot (the CRD accepts these, spec.py refuses):
- fallback rules that do not compile (cel-python parses and type-checks them; a CRD's CEL cannot
  evaluate CEL held in a string);
- ObjectMeta: the apiserver checks names itself, outside the CRD's schema; spec.py applies the
  same DNS rules so a monitor fed straight to the feedback service gets them too;
- label keys in `matchLabels`: a structural schema cannot constrain map keys, and a CEL rule over
  them has unbounded estimated cost (keys have no maxLength), which the apiserver refuses;
- an alert's metric that is not one of its task's (or, with `source` estimated or auto, not one
  its task's estimator gives): a CRD rule can see the task only from `spec`,
  so its message could name only `spec.alerts` (a messageExpression naming the alert is over the
  apiserver's cost budget, even `string(1)` is), and it would hide the validating webhook's
  `spec.alerts[1].metric: "rmse" is not a metric of a binary model; expected one of: ...`;
- of an abstain response, the header names (map keys again: HTTP tokens, not one the sidecar
  sets, each once in any case) and the size of the body as JSON (a CEL rule cannot render it).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.apiserver import CustomResource
from truthloop.core import metrics
from truthloop.core.spec import (
    DRIFT_METRICS,
    FEATURE_METRICS,
    Monitor,
    SpecError,
    parse_monitor,
)

ROOT = Path(__file__).resolve().parents[2]
CRD = CustomResource.load(ROOT / "crds" / "modelmonitor.yaml")
DELETE = object()

CHURN: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "churn", "namespace": "ml"},
    "spec": {
        "selector": {"matchLabels": {"app": "churn-model"}},
        "model": {"name": "churn", "versionLabel": "app.kubernetes.io/version"},
        "port": "http",
        "task": "binary",
        "threshold": 0.5,
        "capture": {
            "entityId": {"header": "X-Entity-ID"},
            "prediction": {"pointer": "/prediction"},
            "score": {"pointer": "/score"},
            "features": {"pointer": "/features"},
            "sampleRate": 1.0,
        },
        "feedback": {"attributionWindow": "24h", "match": "latest"},
        "metrics": {"window": "1h", "minSamples": 50},
        "alerts": [{"name": "acc-low", "metric": "accuracy", "below": 0.8, "for": "2m"}],
        "fallback": {
            "mode": "auto",
            "engageOn": ["acc-low"],
            "recoverAfter": "10m",
            "rules": [
                {"when": "request.features.tenure < 6", "prediction": "1"},
                {"prediction": "0"},
            ],
        },
    },
}
MINIMAL: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "m"},
    "spec": {
        "selector": {"matchLabels": {"app": "m"}},
        "model": {"name": "m"},
        "capture": {"prediction": {"pointer": "/prediction"}},
    },
}
IRIS: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "iris.v2", "namespace": "ml", "labels": {"team": "a"}},
    "spec": {
        "selector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["iris"]}
            ]
        },
        "model": {"name": "iris"},
        "port": 8080,
        "modelPortEnv": "PORT",
        "task": "multiclass",
        "capture": {
            "entityId": {"pointer": "/id"},
            "prediction": {"pointer": ""},
            "batch": {"instances": "/instances", "predictions": "/predictions"},
            "sampleRate": 0.25,
        },
        "feedback": {"match": "all", "missingActual": {"policy": "assume", "value": "setosa"}},
        "alerts": [{"name": "f1", "metric": "macro_f1", "below": 0.7}],
    },
}
PRICE: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "price"},
    "spec": {
        "selector": {"matchLabels": {"app": "price"}},
        "model": {"name": "price"},
        "task": "regression",
        "capture": {"prediction": {"pointer": "/y"}},
        "feedback": {"missingActual": {"policy": "assume", "value": 0}},
        "alerts": [{"name": "err", "metric": "mae", "above": 12.5, "for": "1h30m"}],
        "fallback": {"mode": "engaged", "recoverAfter": "0s", "rules": [{"prediction": "100.0"}]},
    },
}
BASES = {"churn": CHURN, "minimal": MINIMAL, "iris": IRIS, "price": PRICE}
FEATURES = [
    {"name": "tenure", "type": "numeric"},
    {"name": "plan", "pointer": "/account/plan", "type": "categorical"},
]


def patched(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with dotted paths set (or removed, with DELETE); parents are made."""
    obj = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return obj


DRIFTING = patched(
    CHURN,
    {
        "spec.features": FEATURES,
        "spec.drift": {
            "share": 0.3,
            "reference": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00+02:00"},
            "overrides": [
                {"feature": "tenure", "method": "ks", "threshold": 0.01},
                {"feature": "plan", "threshold": 0.2},
                {"feature": "score", "method": "wasserstein"},
            ],
        },
    },
)


def parsed(obj: Any) -> Monitor | SpecError:
    try:
        return parse_monitor(obj)
    except SpecError as e:
        return e


METRIC_PATH = re.compile(r"spec\.alerts\[\d+\]\.metric")


def assert_agree(obj: Any) -> bool:
    """Both sides' verdict, after checking they are the same (but for SPEC_ONLY's alert metrics,
    which only spec.py checks); defaults agree when accepted."""
    crd_problems = CRD.admit(obj)
    monitor = parsed(obj)
    if isinstance(monitor, SpecError):
        metrics_only = all(METRIC_PATH.fullmatch(e.path) for e in monitor.errors)
        assert crd_problems or metrics_only, f"the CRD accepts what spec.py refuses: {monitor}"
        return False
    assert not crd_problems, f"spec.py accepts what the CRD refuses: {crd_problems}"
    assert parse_monitor(CRD.defaulted(obj)) == monitor, "the CRD's defaults are not spec.py's"
    return True


# -- the hand-written corpus: (id, object, valid?) ------------------------------------------------

C = CHURN
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("churn", C, True),
    ("minimal", MINIMAL, True),
    ("iris", IRIS, True),
    ("price", PRICE, True),
    (
        "null fields are absent",
        patched(C, {"spec.modelPortEnv": None, "spec.threshold": None}),
        True,
    ),
    ("status is ignored", patched(C, {"status": {"phase": "Healthy", "samples": 3}}), True),
    ("port number", patched(C, {"spec.port": 8080}), True),
    ("port 65535", patched(C, {"spec.port": 65535}), True),
    ("port name with digits", patched(C, {"spec.port": "web-8080"}), True),
    (
        "durations combined",
        patched(
            C,
            {
                "spec.alerts": [{"name": "a", "metric": "f1", "above": 0.1, "for": "1d2h3m4s"}],
                "spec.fallback.engageOn": ["a"],
            },
        ),
        True,
    ),
    (
        "for 0s",
        patched(
            C,
            {
                "spec.alerts": [{"name": "a", "metric": "f1", "below": 0.5, "for": "0s"}],
                "spec.fallback.engageOn": DELETE,
            },
        ),
        True,
    ),
    (
        "binary assumes 1",
        patched(C, {"spec.feedback.missingActual": {"policy": "assume", "value": 1}}),
        True,
    ),
    (
        "entity by pointer with escapes",
        patched(C, {"spec.capture.entityId": {"pointer": "/a~1b/~0c/0"}}),
        True,
    ),
    ("whole-body prediction", patched(C, {"spec.capture.prediction": {"pointer": ""}}), True),
    (
        "matchExpressions Exists",
        patched(
            MINIMAL, {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}
        ),
        True,
    ),
    ("sampleRate tiny", patched(C, {"spec.capture.sampleRate": 1e-6}), True),
    ("minSamples as 20.0", patched(C, {"spec.metrics.minSamples": 20.0}), True),
    (
        "no rules, no engageOn",
        patched(C, {"spec.fallback.rules": DELETE, "spec.fallback.engageOn": DELETE}),
        True,
    ),
    (
        "empty rules list",
        patched(C, {"spec.fallback.rules": [], "spec.fallback.engageOn": []}),
        True,
    ),
    ("disengaged without rules", patched(MINIMAL, {"spec.fallback": {"mode": "disengaged"}}), True),
    # -- invalid --
    ("wrong apiVersion", patched(C, {"apiVersion": "truthloop.dev/v1"}), False),
    ("wrong kind", patched(C, {"kind": "Monitor"}), False),
    ("no spec", patched(C, {"spec": DELETE}), False),
    ("unknown top-level field", patched(C, {"extra": 1}), False),
    ("unknown spec field", patched(C, {"spec.replicas": 2}), False),
    ("unknown nested field", patched(C, {"spec.capture.prediction.header": "X-P"}), False),
    ("no selector", patched(C, {"spec.selector": DELETE}), False),
    ("empty selector", patched(C, {"spec.selector": {}}), False),
    ("empty matchLabels", patched(C, {"spec.selector": {"matchLabels": {}}}), False),
    ("bad label value", patched(C, {"spec.selector.matchLabels": {"app": "-x"}}), False),
    (
        "In without values",
        patched(
            MINIMAL, {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}
        ),
        False,
    ),
    (
        "Exists with values",
        patched(
            MINIMAL,
            {
                "spec.selector": {
                    "matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]
                }
            },
        ),
        False,
    ),
    (
        "unknown operator",
        patched(
            MINIMAL,
            {
                "spec.selector": {
                    "matchExpressions": [{"key": "app", "operator": "Near", "values": ["a"]}]
                }
            },
        ),
        False,
    ),
    ("model without name", patched(C, {"spec.model": {}}), False),
    ("empty model name", patched(C, {"spec.model.name": ""}), False),
    ("bad version label", patched(C, {"spec.model.versionLabel": "a/b/c"}), False),
    ("port 0", patched(C, {"spec.port": 0}), False),
    ("port 65536", patched(C, {"spec.port": 65536}), False),
    ("port name uppercase", patched(C, {"spec.port": "HTTP"}), False),
    ("port name all digits", patched(C, {"spec.port": "8080"}), False),
    ("port name double hyphen", patched(C, {"spec.port": "a--b"}), False),
    ("port name 16 chars", patched(C, {"spec.port": "abcdefghijklmnop"}), False),
    ("port true", patched(C, {"spec.port": True}), False),
    ("bad env name", patched(C, {"spec.modelPortEnv": "1PORT"}), False),
    ("restartExisting yes", patched(C, {"spec.restartExisting": "yes"}), False),
    ("unknown task", patched(C, {"spec.task": "ranking"}), False),
    ("threshold 1.5", patched(C, {"spec.threshold": 1.5}), False),
    ("threshold a string", patched(C, {"spec.threshold": "0.5"}), False),
    ("no capture", patched(C, {"spec.capture": DELETE}), False),
    ("no prediction", patched(C, {"spec.capture.prediction": DELETE}), False),
    ("prediction from a header", patched(C, {"spec.capture.prediction": {"header": "X-P"}}), False),
    ("pointer without slash", patched(C, {"spec.capture.prediction.pointer": "prediction"}), False),
    ("pointer bad escape", patched(C, {"spec.capture.features.pointer": "/a~2"}), False),
    ("entity both", patched(C, {"spec.capture.entityId": {"header": "X", "pointer": "/x"}}), False),
    ("entity neither", patched(C, {"spec.capture.entityId": {}}), False),
    ("header with a space", patched(C, {"spec.capture.entityId": {"header": "X Entity"}}), False),
    (
        "batch without predictions",
        patched(C, {"spec.capture.batch": {"instances": "/instances"}}),
        False,
    ),
    ("unknown protocol", patched(C, {"spec.capture.protocol": "grpc"}), False),
    ("protocol in capitals", patched(C, {"spec.capture.protocol": "MLflow"}), False),
    (
        "custom protocol without prediction",
        patched(C, {"spec.capture.prediction": DELETE, "spec.capture.protocol": "custom"}),
        False,
    ),
    (
        "preset without prediction",
        patched(
            C, {"spec.capture.prediction": DELETE, "spec.capture.protocol": "open-inference-v2"}
        ),
        True,
    ),
    ("preset with its own pointers", patched(C, {"spec.capture.protocol": "kserve-v1"}), True),
    (
        "torchserve without prediction",
        patched(C, {"spec.capture.prediction": DELETE, "spec.capture.protocol": "torchserve"}),
        True,
    ),
    ("preset with a batch", patched(IRIS, {"spec.capture.protocol": "mlflow"}), False),
    ("custom with a batch", patched(IRIS, {"spec.capture.protocol": "custom"}), True),
    (
        "entity per row of a batch",
        patched(IRIS, {"spec.capture.entityId": {"pointer": "/ids", "perRow": True}}),
        True,
    ),
    (
        "entity per row of a preset",
        patched(
            C,
            {
                "spec.capture.protocol": "seldon-v1",
                "spec.capture.entityId": {"header": "X-Ids", "perRow": True},
            },
        ),
        True,
    ),
    (
        "entity per row not",
        patched(
            C,
            {
                "spec.capture.protocol": "seldon-v1",
                "spec.capture.entityId": {"header": "X-Ids", "perRow": False},
            },
        ),
        True,
    ),
    (
        "entity per row of one row",
        patched(C, {"spec.capture.entityId": {"header": "X-Ids", "perRow": True}}),
        False,
    ),
    (
        "entity per row of torchserve",
        patched(
            C,
            {
                "spec.capture.protocol": "torchserve",
                "spec.capture.entityId": {"header": "X-Ids", "perRow": True},
            },
        ),
        False,
    ),
    (
        "entity per row a string",
        patched(IRIS, {"spec.capture.entityId": {"pointer": "/ids", "perRow": "yes"}}),
        False,
    ),
    ("sampleRate 0", patched(C, {"spec.capture.sampleRate": 0}), False),
    ("sampleRate above 1", patched(C, {"spec.capture.sampleRate": 1.01}), False),
    ("attributionWindow 0s", patched(C, {"spec.feedback.attributionWindow": "0s"}), False),
    ("duration with a fraction", patched(C, {"spec.feedback.attributionWindow": "1.5h"}), False),
    (
        "duration units out of order",
        patched(C, {"spec.feedback.attributionWindow": "30m1h"}),
        False,
    ),
    ("duration as a number", patched(C, {"spec.metrics.window": 60}), False),
    ("duration with a newline", patched(C, {"spec.metrics.window": "1h\n"}), False),
    ("unknown match", patched(C, {"spec.feedback.match": "first"}), False),
    (
        "assume without value",
        patched(C, {"spec.feedback.missingActual": {"policy": "assume"}}),
        False,
    ),
    (
        "ignore with value",
        patched(C, {"spec.feedback.missingActual": {"policy": "ignore", "value": 0}}),
        False,
    ),
    (
        "binary assumes 2",
        patched(C, {"spec.feedback.missingActual": {"policy": "assume", "value": 2}}),
        False,
    ),
    (
        "regression assumes a string",
        patched(PRICE, {"spec.feedback.missingActual.value": "high"}),
        False,
    ),
    ("window 0s", patched(C, {"spec.metrics.window": "0s"}), False),
    ("window 90d", patched(C, {"spec.metrics.window": "89d23h60m"}), True),
    ("window past 90d", patched(C, {"spec.metrics.window": "7776001s"}), False),
    ("window of 99999999999 days", patched(C, {"spec.metrics.window": "99999999999d"}), False),
    ("attribution 2160h", patched(C, {"spec.feedback.attributionWindow": "2160h"}), True),
    ("attribution past 90d", patched(C, {"spec.feedback.attributionWindow": "2161h"}), False),
    ("recoverAfter 7d", patched(C, {"spec.fallback.recoverAfter": "10080m"}), True),
    ("recoverAfter past 7d", patched(C, {"spec.fallback.recoverAfter": "7d1s"}), False),
    (
        "for past 7d",
        patched(C, {"spec.alerts": [{"name": "a", "metric": "f1", "below": 0.5, "for": "8d"}]}),
        False,
    ),
    ("minSamples 0", patched(C, {"spec.metrics.minSamples": 0}), False),
    ("minSamples 2.5", patched(C, {"spec.metrics.minSamples": 2.5}), False),
    (
        "below a string",
        patched(C, {"spec.alerts": [{"name": "acc-low", "metric": "accuracy", "below": "high"}]}),
        False,
    ),
    (
        "below and above",
        patched(
            C,
            {
                "spec.alerts": [
                    {"name": "acc-low", "metric": "accuracy", "below": 0.8, "above": 0.9}
                ]
            },
        ),
        False,
    ),
    (
        "neither below nor above",
        patched(C, {"spec.alerts": [{"name": "acc-low", "metric": "accuracy"}]}),
        False,
    ),
    (
        "duplicate alert names",
        patched(
            C,
            {
                "spec.alerts": [
                    {"name": "acc-low", "metric": "accuracy", "below": 0.8},
                    {"name": "acc-low", "metric": "f1", "below": 0.8},
                ]
            },
        ),
        False,
    ),
    (
        "alert name with a space",
        patched(
            C,
            {
                "spec.alerts": [{"name": "acc low", "metric": "accuracy", "below": 0.8}],
                "spec.fallback.engageOn": DELETE,
            },
        ),
        False,
    ),
    (
        "too many alerts",
        patched(
            C,
            {
                "spec.alerts": [{"name": f"a{i}", "metric": "f1", "below": 0.5} for i in range(33)],
                "spec.fallback.engageOn": DELETE,
            },
        ),
        False,
    ),
    ("engageOn an unknown alert", patched(C, {"spec.fallback.engageOn": ["nope"]}), False),
    ("engageOn without alerts", patched(C, {"spec.alerts": DELETE}), False),
    ("engageOn without rules", patched(C, {"spec.fallback.rules": DELETE}), False),
    ("engaged without rules", patched(MINIMAL, {"spec.fallback": {"mode": "engaged"}}), False),
    ("unknown mode", patched(C, {"spec.fallback.mode": "on"}), False),
    (
        "last rule has when",
        patched(C, {"spec.fallback.rules": [{"when": "true", "prediction": "1"}]}),
        False,
    ),
    (
        "two rules without when",
        patched(C, {"spec.fallback.rules": [{"prediction": "1"}, {"prediction": "0"}]}),
        False,
    ),
    (
        "rule without prediction",
        patched(C, {"spec.fallback.rules": [{"when": "true"}, {"prediction": "0"}]}),
        False,
    ),
    (
        "empty when",
        patched(C, {"spec.fallback.rules": [{"when": "", "prediction": "1"}, {"prediction": "0"}]}),
        False,
    ),
    ("not an object", {"spec": []}, False),  # type: ignore[dict-item]
    # -- alerts on drift: any task; `feature` with feature_drift and missing_ratio, only them --
    *[
        (
            f"drift alert {metric} on {base}",
            patched(
                BASES[base],
                {
                    "spec.alerts": [{"name": "d", "metric": metric, "above": 0.1, **extra}],
                    "spec.fallback.engageOn": DELETE,
                },
            ),
            True,
        )
        for base in ("churn", "iris", "price")
        for metric, extra in (
            ("drift_share", {}),
            ("prediction_drift", {"for": "5m"}),
            ("feature_drift", {"feature": "tenure"}),
            ("missing_ratio", {"feature": "plan.type"}),
            ("outlier_ratio", {}),
        )
    ],
    # -- alerts on estimates: source realized | estimated | auto, for a model metric --------
    *[
        (
            f"{source} alert on {metric} of {base}",
            patched(
                BASES[base],
                {
                    "spec.alerts": [
                        {"name": "e", "metric": metric, "below": 0.8, "source": source}
                    ],
                    "spec.fallback.engageOn": DELETE,
                },
            ),
            True,
        )
        for source in ("realized", "estimated", "auto")
        for base, metric in (("churn", "accuracy"), ("iris", "macro_f1"), ("price", "rmse"))
    ],
    *[
        (
            f"alert source {why}",
            patched(
                BASES[base],
                {
                    "spec.alerts": [{"name": "e", "below": 0.8, **alert}],
                    "spec.fallback.engageOn": DELETE,
                },
            ),
            False,
        )
        for why, base, alert in (
            ("unknown", "churn", {"metric": "accuracy", "source": "guessed"}),
            ("a number", "churn", {"metric": "accuracy", "source": 1}),
            ("empty", "churn", {"metric": "accuracy", "source": ""}),
            ("estimated on drift", "churn", {"metric": "drift_share", "source": "estimated"}),
            (
                "auto on a feature's drift",
                "churn",
                {"metric": "feature_drift", "feature": "tenure", "source": "auto"},
            ),
            # spec.py only (SPEC_ONLY: at the alert's metric): no estimate of these
            ("estimated brier score", "churn", {"metric": "brier_score", "source": "estimated"}),
            ("auto log loss", "churn", {"metric": "log_loss", "source": "auto"}),
            ("estimated r2", "price", {"metric": "r2", "source": "estimated"}),
            ("estimated mape", "price", {"metric": "mape", "source": "auto"}),
        )
    ],
    (
        "a drift alert with source realized",
        patched(
            C,
            {
                "spec.alerts": [
                    {"name": "d", "metric": "drift_share", "above": 0.5, "source": "realized"}
                ],
                "spec.fallback.engageOn": DELETE,
            },
        ),
        True,
    ),
    (
        "a drift alert engages the fallback",
        patched(
            C,
            {
                "spec.alerts": [
                    {"name": "t", "metric": "feature_drift", "feature": "tenure", "above": 0.2}
                ],
                "spec.fallback.engageOn": ["t"],
            },
        ),
        True,
    ),
    *[
        (
            f"drift alert {why}",
            patched(
                C,
                {
                    "spec.alerts": [{"name": "d", "above": 0.1, **alert}],
                    "spec.fallback.engageOn": DELETE,
                },
            ),
            False,
        )
        for why, alert in (
            ("feature_drift without feature", {"metric": "feature_drift"}),
            ("missing_ratio without feature", {"metric": "missing_ratio"}),
            ("drift_share with a feature", {"metric": "drift_share", "feature": "tenure"}),
            ("outlier_ratio with a feature", {"metric": "outlier_ratio", "feature": "tenure"}),
            ("accuracy with a feature", {"metric": "accuracy", "feature": "tenure"}),
            ("feature prediction", {"metric": "feature_drift", "feature": "prediction"}),
            ("feature ts", {"metric": "missing_ratio", "feature": "ts"}),
            ("feature with a colon", {"metric": "feature_drift", "feature": "a:b"}),
            ("empty feature", {"metric": "feature_drift", "feature": ""}),
            ("long feature", {"metric": "feature_drift", "feature": "f" * 64}),
            ("feature with a space", {"metric": "feature_drift", "feature": "plan type"}),
            ("feature a number", {"metric": "feature_drift", "feature": 3}),
        )
    ],
    *[
        (
            f"drift alert on {feature} with features {'declared' if declared else 'empty'}",
            patched(
                C,
                {
                    "spec.features": FEATURES if declared else [],
                    "spec.alerts": [
                        {"name": "d", "metric": "missing_ratio", "feature": feature, "above": 0.1}
                    ],
                    "spec.fallback.engageOn": DELETE,
                },
            ),
            valid,
        )
        for feature, declared, valid in (
            ("plan", True, True),
            ("age", True, False),
            ("age", False, True),
        )
    ],
    ("NaN threshold", patched(C, {"spec.threshold": float("nan")}), False),
    # -- features and drift --
    ("features and drift", DRIFTING, True),
    ("features empty", patched(C, {"spec.features": [], "spec.drift": {}}), True),
    *[
        (f"feature {why}", patched(C, {"spec.features": [feature]}), valid)
        for why, feature, valid in (
            ("name with dots, dashes, digits", {"name": "a.b-c_9", "type": "numeric"}, True),
            ("name starting with a digit", {"name": "9lives", "type": "numeric"}, True),
            ("name starting with _", {"name": "_x", "type": "categorical"}, True),
            ("name of 63", {"name": "f" * 63, "type": "numeric"}, True),
            ("pointer to the whole object", {"name": "x", "pointer": "", "type": "numeric"}, True),
            ("pointer deep", {"name": "x", "pointer": "/a/0/b~1c", "type": "numeric"}, True),
            ("name of 64", {"name": "f" * 64, "type": "numeric"}, False),
            ("name empty", {"name": "", "type": "numeric"}, False),
            ("name with a colon", {"name": "a:b", "type": "numeric"}, False),
            ("name with a space", {"name": "a b", "type": "numeric"}, False),
            ("name starting with -", {"name": "-a", "type": "numeric"}, False),
            ("name starting with .", {"name": ".a", "type": "numeric"}, False),
            ("name prediction", {"name": "prediction", "type": "categorical"}, False),
            ("name score", {"name": "score", "type": "numeric"}, False),
            ("name actual", {"name": "actual", "type": "numeric"}, False),
            ("name ts", {"name": "ts", "type": "numeric"}, False),
            ("name a number", {"name": 5, "type": "numeric"}, False),
            ("without a name", {"type": "numeric"}, False),
            ("without a type", {"name": "x"}, False),
            ("type text", {"name": "x", "type": "text"}, False),
            ("pointer without /", {"name": "x", "pointer": "x", "type": "numeric"}, False),
            ("pointer with ~2", {"name": "x", "pointer": "/a~2", "type": "numeric"}, False),
            ("unknown field", {"name": "x", "type": "numeric", "kind": "numeric"}, False),
        )
    ],
    (
        "features of the same name",
        patched(
            C,
            {"spec.features": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "numeric"}]},
        ),
        False,
    ),
    (
        "100 features",
        patched(C, {"spec.features": [{"name": f"f{i}", "type": "numeric"} for i in range(100)]}),
        True,
    ),
    (
        "101 features",
        patched(C, {"spec.features": [{"name": f"f{i}", "type": "numeric"} for i in range(101)]}),
        False,
    ),
    ("features not a list", patched(C, {"spec.features": {"name": "x"}}), False),
    *[
        (f"drift {why}", patched(DRIFTING, {f"spec.drift.{field}": value}), valid)
        for why, field, value, valid in (
            ("share 1", "share", 1, True),
            ("share tiny", "share", 1e-9, True),
            ("share 0", "share", 0, False),
            ("share above 1", "share", 1.01, False),
            ("share text", "share", "half", False),
            ("no reference", "reference", DELETE, True),
            ("no overrides", "overrides", DELETE, True),
            ("overrides empty", "overrides", [], True),
            ("unknown field", "window", "1h", False),
        )
    ],
    *[
        (
            f"drift reference {why}",
            patched(DRIFTING, {"spec.drift.reference": {"from": start, "to": end}}),
            valid,
        )
        for why, start, end, valid in (
            ("with fractions", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00.75Z", True),
            ("across offsets", "2026-01-01T00:00:00Z", "2026-01-01T01:00:01+01:00", True),
            ("in the far past", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", True),
            ("empty", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
            ("reversed by its offset", "2026-01-01T00:00:00Z", "2026-01-01T00:30:00+01:00", False),
            ("reversed", "2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
            ("without an offset", "2026-01-01T00:00:00", "2026-01-02T00:00:00Z", False),
            ("a date", "2026-01-01", "2026-01-02T00:00:00Z", False),
            ("lowercase", "2026-01-01t00:00:00z", "2026-01-02T00:00:00Z", False),
            ("with a space", "2026-01-01 00:00:00Z", "2026-01-02T00:00:00Z", False),
            ("February 30", "2026-02-30T00:00:00Z", "2026-03-02T00:00:00Z", False),
            ("hour 24", "2026-01-01T24:00:00Z", "2026-03-02T00:00:00Z", False),
            ("month 13", "2026-01-01T00:00:00Z", "2026-13-01T00:00:00Z", False),
            ("epoch seconds", 1767225600, "2026-03-02T00:00:00Z", False),
        )
    ],
    (
        "drift reference without to",
        patched(DRIFTING, {"spec.drift.reference": {"from": "2026-01-01T00:00:00Z"}}),
        False,
    ),
    *[
        (f"drift override {why}", patched(DRIFTING, {"spec.drift.overrides": [override]}), valid)
        for why, override, valid in (
            ("threshold alone", {"feature": "plan", "threshold": 0.3}, True),
            ("method alone", {"feature": "plan", "method": "chisquare"}, True),
            ("p-value bound of 1", {"feature": "tenure", "method": "ks", "threshold": 1}, True),
            ("a big distance", {"feature": "tenure", "method": "psi", "threshold": 25}, True),
            ("on the score", {"feature": "score", "method": "ks"}, True),
            ("on the prediction", {"feature": "prediction", "method": "psi"}, True),
            ("neither method nor threshold", {"feature": "plan"}, False),
            ("without a feature", {"method": "psi"}, False),
            ("unknown method", {"feature": "plan", "method": "energy"}, False),
            ("threshold 0", {"feature": "plan", "threshold": 0}, False),
            ("threshold negative", {"feature": "plan", "threshold": -1}, False),
            ("p-value bound above 1", {"feature": "tenure", "method": "ks", "threshold": 2}, False),
            (
                "chisquare above 1",
                {"feature": "plan", "method": "chisquare", "threshold": 2},
                False,
            ),
            ("on actual", {"feature": "actual", "method": "psi"}, False),
            ("on ts", {"feature": "ts", "threshold": 0.2}, False),
            ("on an undeclared feature", {"feature": "income", "method": "psi"}, False),
            ("ks on a categorical feature", {"feature": "plan", "method": "ks"}, False),
            ("wasserstein on a categorical", {"feature": "plan", "method": "wasserstein"}, False),
            ("ks on a binary prediction", {"feature": "prediction", "method": "ks"}, False),
            ("bad feature name", {"feature": "a:b", "method": "psi"}, False),
            ("unknown field", {"feature": "plan", "method": "psi", "bins": 10}, False),
        )
    ],
    (
        "drift overrides twice one feature",
        patched(
            DRIFTING,
            {
                "spec.drift.overrides": [
                    {"feature": "plan", "method": "psi"},
                    {"feature": "plan", "threshold": 0.2},
                ]
            },
        ),
        False,
    ),
    (
        "drift override of any feature when none are declared",
        patched(C, {"spec.drift": {"overrides": [{"feature": "income", "method": "ks"}]}}),
        True,
    ),
    (
        "drift override ks on a regression prediction",
        patched(PRICE, {"spec.drift": {"overrides": [{"feature": "prediction", "method": "ks"}]}}),
        True,
    ),
    (
        "drift override wasserstein on a multiclass prediction",
        patched(
            IRIS,
            {"spec.drift": {"overrides": [{"feature": "prediction", "method": "wasserstein"}]}},
        ),
        False,
    ),
]

BINARY_COST = {"falsePositive": 5, "falseNegative": 50}
MATRIX = [{"actual": "setosa", "predicted": "virginica", "cost": 3}]
REGRESSION_COST = {"overPrediction": 1.5, "underPrediction": 4}
CASES += [
    ("binary cost", patched(C, {"spec.metrics.cost": BINARY_COST}), True),
    (
        "binary cost with gains",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, "truePositive": 20, "trueNegative": 0}}),
        True,
    ),
    ("binary cost by the default task", patched(MINIMAL, {"spec.metrics.cost": BINARY_COST}), True),
    ("multiclass cost matrix", patched(IRIS, {"spec.metrics.cost": {"matrix": MATRIX}}), True),
    (
        "multiclass matrix with a right pair priced",
        patched(
            IRIS,
            {
                "spec.metrics.cost": {
                    "matrix": [*MATRIX, {"actual": "1", "predicted": "1", "cost": 0}]
                }
            },
        ),
        True,
    ),
    ("regression cost", patched(PRICE, {"spec.metrics.cost": REGRESSION_COST}), True),
    (
        "zero costs",
        patched(PRICE, {"spec.metrics.cost": {"overPrediction": 0, "underPrediction": 0}}),
        True,
    ),
    (
        "an alert on cost",
        patched(
            PRICE,
            {
                "spec.metrics.cost": REGRESSION_COST,
                "spec.alerts": [{"name": "expensive", "metric": "cost", "above": 12}],
            },
        ),
        True,
    ),
    ("null cost is none", patched(C, {"spec.metrics.cost": None}), True),
    ("empty cost", patched(C, {"spec.metrics.cost": {}}), False),
    (
        "binary cost without falseNegative",
        patched(C, {"spec.metrics.cost": {"falsePositive": 1}}),
        False,
    ),
    (
        "binary cost negative",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, "falsePositive": -1}}),
        False,
    ),
    (
        "binary gain negative",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, "trueNegative": -2}}),
        False,
    ),
    (
        "binary cost a string",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, "falseNegative": "50"}}),
        False,
    ),
    (
        "binary cost with a matrix",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, "matrix": MATRIX}}),
        False,
    ),
    (
        "binary cost per unit",
        patched(C, {"spec.metrics.cost": {**BINARY_COST, **REGRESSION_COST}}),
        False,
    ),
    ("multiclass without a matrix", patched(IRIS, {"spec.metrics.cost": BINARY_COST}), False),
    ("multiclass empty matrix", patched(IRIS, {"spec.metrics.cost": {"matrix": []}}), False),
    (
        "multiclass matrix twice a pair",
        patched(IRIS, {"spec.metrics.cost": {"matrix": MATRIX * 2}}),
        False,
    ),
    (
        "multiclass cell without cost",
        patched(IRIS, {"spec.metrics.cost": {"matrix": [{"actual": "a", "predicted": "b"}]}}),
        False,
    ),
    (
        "multiclass cell with an integer class",
        patched(
            IRIS, {"spec.metrics.cost": {"matrix": [{"actual": 1, "predicted": "b", "cost": 1}]}}
        ),
        False,
    ),
    (
        "multiclass cell with an empty class",
        patched(
            IRIS, {"spec.metrics.cost": {"matrix": [{"actual": "", "predicted": "b", "cost": 1}]}}
        ),
        False,
    ),
    (
        "multiclass cell with an unknown field",
        patched(IRIS, {"spec.metrics.cost": {"matrix": [{**MATRIX[0], "gain": 1}]}}),
        False,
    ),
    (
        "multiclass matrix of 101",
        patched(
            IRIS,
            {
                "spec.metrics.cost": {
                    "matrix": [{"actual": f"c{i}", "predicted": "x", "cost": 1} for i in range(101)]
                }
            },
        ),
        False,
    ),
    (
        "multiclass matrix of 100",
        patched(
            IRIS,
            {
                "spec.metrics.cost": {
                    "matrix": [{"actual": f"c{i}", "predicted": "x", "cost": 1} for i in range(100)]
                }
            },
        ),
        True,
    ),
    (
        "regression cost without under",
        patched(PRICE, {"spec.metrics.cost": {"overPrediction": 1}}),
        False,
    ),
    (
        "regression cost with falsePositive",
        patched(PRICE, {"spec.metrics.cost": {**REGRESSION_COST, "falsePositive": 1}}),
        False,
    ),
    (
        "regression cost unknown field",
        patched(PRICE, {"spec.metrics.cost": {**REGRESSION_COST, "perUnit": 1}}),
        False,
    ),
    ("cost a list", patched(C, {"spec.metrics.cost": [BINARY_COST]}), False),
]

REVIEW: dict[str, Any] = {
    "budget": 500,
    "per": "day",
    "random": 0.3,
    "borderline": 0.7,
    "outliers": 0.5,
    "lease": "10m",
    "seed": 0,
    "abstain": {
        "band": {"low": 0.4, "high": 0.6},
        "explore": 0.01,
        "response": {"status": 200, "body": {"abstained": True}, "headers": {"X-Foo": "bar"}},
    },
}
REVIEWED = patched(C, {"spec.review": REVIEW})


def reviewed_alert(base: dict[str, Any], metric: str, **changes: Any) -> dict[str, Any]:
    alert = {"name": "r", "metric": metric, "below": 0.8, "source": "reviewed"}
    return patched(base, {"spec.alerts": [alert], "spec.fallback.engageOn": DELETE, **changes})


REVIEW_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("review whole", REVIEWED, True),
    ("review budget alone", patched(C, {"spec.review": {"budget": 1}}), True),
    ("review per window", patched(REVIEWED, {"spec.review.per": "window"}), True),
    ("review random alone", patched(C, {"spec.review": {"budget": 1, "random": 0.2}}), True),
    ("review borderline alone", patched(C, {"spec.review": {"budget": 1, "borderline": 1}}), True),
    (
        "review split 0.1 + 0.9",
        patched(REVIEWED, {"spec.review.random": 0.1, "spec.review.borderline": 0.9}),
        True,
    ),
    ("review budget 1e7", patched(REVIEWED, {"spec.review.budget": 10_000_000}), True),
    ("review budget fraction", patched(REVIEWED, {"spec.review.budget": 0.5}), True),
    ("review lease 10s", patched(REVIEWED, {"spec.review.lease": "10s"}), True),
    ("review lease 1d", patched(REVIEWED, {"spec.review.lease": "23h60m"}), True),
    ("review seed large", patched(REVIEWED, {"spec.review.seed": 2**32 - 1}), True),
    (
        "review band a point",
        patched(REVIEWED, {"spec.review.abstain.band": {"low": 0.5, "high": 0.5}}),
        True,
    ),
    (
        "review band whole",
        patched(REVIEWED, {"spec.review.abstain.band": {"low": 0, "high": 1}}),
        True,
    ),
    ("abstain response empty", patched(REVIEWED, {"spec.review.abstain.response": {}}), True),
    ("abstain without response", patched(REVIEWED, {"spec.review.abstain.response": DELETE}), True),
    (
        "abstain body a string",
        patched(REVIEWED, {"spec.review.abstain.response.body": "unsure"}),
        True,
    ),
    (
        "abstain body a list",
        patched(REVIEWED, {"spec.review.abstain.response.body": [1, {"a": None}]}),
        True,
    ),
    ("abstain body a number", patched(REVIEWED, {"spec.review.abstain.response.body": 0}), True),
    ("abstain status 599", patched(REVIEWED, {"spec.review.abstain.response.status": 599}), True),
    (
        "abstain on multiclass",
        patched(IRIS, {"spec.capture.batch": DELETE, "spec.review": REVIEW}),
        True,
    ),
    ("review on a batch", patched(IRIS, {"spec.review": {"budget": 5}}), True),
    (
        "abstain on a preset with rows",
        patched(C, {"spec.capture.protocol": "kserve-v1", "spec.review": REVIEW}),
        False,
    ),
    (
        "abstain on torchserve",
        patched(C, {"spec.capture.protocol": "torchserve", "spec.review": REVIEW}),
        True,
    ),
    ("review on regression", patched(PRICE, {"spec.review": {"budget": 5, "outliers": 0.1}}), True),
    *[
        (
            f"reviewed alert on {metric} of {base}",
            reviewed_alert(BASES[base], metric, **{"spec.review": {"budget": 1}}),
            True,
        )
        for base, metric in (
            ("churn", "accuracy"),
            ("churn", "balanced_accuracy"),
            ("iris", "accuracy"),
            ("price", "mean_error"),
        )
    ],
    # -- invalid --
    ("review without budget", patched(C, {"spec.review": {"per": "day"}}), False),
    ("review budget 0", patched(REVIEWED, {"spec.review.budget": 0}), False),
    ("review budget past 1e7", patched(REVIEWED, {"spec.review.budget": 10_000_001}), False),
    ("review budget a string", patched(REVIEWED, {"spec.review.budget": "500"}), False),
    ("review per week", patched(REVIEWED, {"spec.review.per": "week"}), False),
    ("review split over 1", patched(REVIEWED, {"spec.review.random": 0.5}), False),
    ("review split under 1", patched(REVIEWED, {"spec.review.borderline": 0.5}), False),
    ("review random past 1", patched(C, {"spec.review": {"budget": 1, "random": 1.5}}), False),
    ("review outliers 1", patched(REVIEWED, {"spec.review.outliers": 1}), False),
    ("review outliers negative", patched(REVIEWED, {"spec.review.outliers": -0.1}), False),
    ("review lease 9s", patched(REVIEWED, {"spec.review.lease": "9s"}), False),
    ("review lease 0s", patched(REVIEWED, {"spec.review.lease": "0s"}), False),
    ("review lease past 1d", patched(REVIEWED, {"spec.review.lease": "1d1s"}), False),
    ("review lease huge", patched(REVIEWED, {"spec.review.lease": "99999999999d"}), False),
    ("review lease a number", patched(REVIEWED, {"spec.review.lease": 600}), False),
    ("review seed negative", patched(REVIEWED, {"spec.review.seed": -1}), False),
    ("review seed 2^32", patched(REVIEWED, {"spec.review.seed": 2**32}), False),
    ("review seed a fraction", patched(REVIEWED, {"spec.review.seed": 0.5}), False),
    ("review unknown field", patched(REVIEWED, {"spec.review.queue": "a"}), False),
    ("review a list", patched(C, {"spec.review": [REVIEW]}), False),
    ("abstain without band", patched(REVIEWED, {"spec.review.abstain.band": DELETE}), False),
    (
        "abstain band without high",
        patched(REVIEWED, {"spec.review.abstain.band": {"low": 0.4}}),
        False,
    ),
    (
        "abstain band reversed",
        patched(REVIEWED, {"spec.review.abstain.band": {"low": 0.6, "high": 0.4}}),
        False,
    ),
    ("abstain band past 1", patched(REVIEWED, {"spec.review.abstain.band.high": 1.5}), False),
    ("abstain explore 1", patched(REVIEWED, {"spec.review.abstain.explore": 1}), False),
    ("abstain unknown field", patched(REVIEWED, {"spec.review.abstain.share": 0.1}), False),
    ("abstain status 199", patched(REVIEWED, {"spec.review.abstain.response.status": 199}), False),
    ("abstain status 600", patched(REVIEWED, {"spec.review.abstain.response.status": 600}), False),
    (
        "abstain status a string",
        patched(REVIEWED, {"spec.review.abstain.response.status": "200"}),
        False,
    ),
    (
        "abstain header not a string",
        patched(REVIEWED, {"spec.review.abstain.response.headers": {"X-A": 1}}),
        False,
    ),
    (
        "abstain header with a newline",
        patched(REVIEWED, {"spec.review.abstain.response.headers": {"X-A": "a\nb"}}),
        False,
    ),
    (
        "abstain headers a list",
        patched(REVIEWED, {"spec.review.abstain.response.headers": ["X-A"]}),
        False,
    ),
    (
        "abstain 33 headers",
        patched(
            REVIEWED, {"spec.review.abstain.response.headers": {f"X-{i}": "v" for i in range(33)}}
        ),
        False,
    ),
    ("abstain on regression", patched(PRICE, {"spec.review": REVIEW}), False),
    ("abstain with a batch", patched(IRIS, {"spec.review": REVIEW}), False),
    ("reviewed alert without review", reviewed_alert(C, "accuracy"), False),
    ("reviewed alert on roc_auc", reviewed_alert(REVIEWED, "roc_auc"), False),
    (
        "reviewed alert on macro_f1",
        reviewed_alert(IRIS, "macro_f1", **{"spec.review": {"budget": 1}}),
        False,
    ),
    ("reviewed alert on r2", reviewed_alert(PRICE, "r2", **{"spec.review": {"budget": 1}}), False),
    ("reviewed alert on drift", reviewed_alert(REVIEWED, "drift_share"), False),
    (
        "reviewed alert on cost",
        reviewed_alert(
            REVIEWED, "cost", **{"spec.metrics.cost": {"falsePositive": 1, "falseNegative": 1}}
        ),
        False,
    ),
]
CASES += REVIEW_CASES

SEGMENTS: list[dict[str, Any]] = [
    {"name": "country", "header": "X-Country"},
    {"name": "device", "pointer": "/device", "maxValues": 10, "export": True},
    {"name": "tenure", "pointer": "/features/tenure", "buckets": [6, 12.5, 24]},
]
SEGMENTED = patched(
    C,
    {
        "spec.segments": SEGMENTS,
        "spec.alerts": [
            {"name": "acc-low", "metric": "accuracy", "below": 0.8, "for": "2m"},
            {"name": "acc-low-somewhere", "metric": "accuracy", "below": 0.8, "segment": "country"},
        ],
    },
)


def segment(**changes: Any) -> dict[str, Any]:
    """SEGMENTED with its first segment changed (a None value removes the field)."""
    changed = {k: v for k, v in {**SEGMENTS[0], **changes}.items() if v is not None}
    return patched(SEGMENTED, {"spec.segments": [changed, *SEGMENTS[1:]]})


def segment_alert(metric: str, name: str = "country", **more: Any) -> dict[str, Any]:
    alert = {"name": "s", "metric": metric, "below": 0.8, "segment": name, **more}
    return patched(SEGMENTED, {"spec.alerts": [alert], "spec.fallback.engageOn": DELETE})


def drifting(obj: dict[str, Any], drift: bool = True) -> dict[str, Any]:
    """`obj` with its first segment's `drift` set."""
    first = {**obj["spec"]["segments"][0], "drift": drift}
    return patched(obj, {"spec.segments": [first, *obj["spec"]["segments"][1:]]})


SEGMENT_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("segments", SEGMENTED, True),
    ("segments empty", patched(C, {"spec.segments": []}), True),
    ("segment by pointer", segment(header=None, pointer="/country"), True),
    ("segment pointer to the body", segment(header=None, pointer=""), True),
    ("segment maxValues 1", segment(maxValues=1), True),
    ("segment maxValues 100", segment(maxValues=100), True),
    ("segment export false", segment(export=False), True),
    ("segment one bucket", segment(buckets=[0]), True),
    ("segment 50 buckets", segment(buckets=[i / 2 - 10 for i in range(50)]), True),
    ("segment negative buckets", segment(buckets=[-1e9, -0.5, 0, 1e9]), True),
    (
        "segment name like a feature",
        patched(C, {"spec.segments": [{"name": "_a.b-c", "pointer": "/x"}]}),
        True,
    ),
    (
        "eight segments",
        patched(C, {"spec.segments": [{"name": f"s{i}", "pointer": "/s"} for i in range(8)]}),
        True,
    ),
    ("segment alert estimated", segment_alert("accuracy", source="estimated"), True),
    ("segment alert auto", segment_alert("accuracy", "tenure", source="auto"), True),
    (
        "segment alert reviewed",
        patched(segment_alert("recall", source="reviewed"), {"spec.review": {"budget": 5}}),
        True,
    ),
    (
        "segment alert on cost",
        patched(
            segment_alert("cost", "device"),
            {"spec.metrics.cost": {"falsePositive": 1, "falseNegative": 5}},
        ),
        True,
    ),
    (
        "segment alert of regression",
        patched(
            PRICE,
            {
                "spec.segments": [{"name": "store", "pointer": "/store"}],
                "spec.alerts": [{"name": "e", "metric": "mae", "above": 3, "segment": "store"}],
            },
        ),
        True,
    ),
    (
        "segment on a batch's row",
        patched(
            IRIS,
            {
                "spec.segments": [{"name": "region", "pointer": "/region"}],
                "spec.alerts": [
                    {"name": "f1", "metric": "macro_f1", "below": 0.7, "segment": "region"}
                ],
            },
        ),
        True,
    ),
    # -- invalid --
    (
        "nine segments",
        patched(C, {"spec.segments": [{"name": f"s{i}", "pointer": "/s"} for i in range(9)]}),
        False,
    ),
    ("segments an object", patched(C, {"spec.segments": {"country": "X-Country"}}), False),
    (
        "segment names twice",
        patched(SEGMENTED, {"spec.segments": [*SEGMENTS, {"name": "device", "header": "X-D"}]}),
        False,
    ),
    ("segment without name", segment(name=None), False),
    ("segment name empty", segment(name=""), False),
    ("segment name with a colon", segment(name="a:b"), False),
    ("segment name with =", segment(name="a=b"), False),
    ("segment name with ^", segment(name="^a"), False),
    ("segment name starting with -", segment(name="-a"), False),
    ("segment name of 64", segment(name="a" * 64), False),
    ("segment header and pointer", segment(pointer="/country"), False),
    ("segment neither header nor pointer", segment(header=None), False),
    ("segment header empty", segment(header=""), False),
    ("segment header with a space", segment(header="X Country"), False),
    ("segment pointer not a pointer", segment(header=None, pointer="country"), False),
    ("segment pointer bad escape", segment(header=None, pointer="/a~2"), False),
    ("segment maxValues 0", segment(maxValues=0), False),
    ("segment maxValues 101", segment(maxValues=101), False),
    ("segment maxValues a fraction", segment(maxValues=2.5), False),
    ("segment maxValues a string", segment(maxValues="20"), False),
    ("segment buckets empty", segment(buckets=[]), False),
    ("segment 51 buckets", segment(buckets=list(range(51))), False),
    ("segment buckets descending", segment(buckets=[12, 6]), False),
    ("segment buckets repeated", segment(buckets=[6, 6, 12]), False),
    ("segment buckets unsorted", segment(buckets=[1, 3, 2]), False),
    ("segment bucket a string", segment(buckets=[1, "2"]), False),
    ("segment bucket not finite", segment(buckets=[1, float("inf")]), False),
    ("segment buckets a number", segment(buckets=6), False),
    ("segment buckets and maxValues", segment(buckets=[1, 2], maxValues=5), False),
    ("segment export a string", segment(export="true"), False),
    ("segment unknown field", segment(values=["DE"]), False),
    ("segment a string", patched(C, {"spec.segments": ["country"]}), False),
    ("segment alert of no segment", segment_alert("accuracy", "city"), False),
    (
        "segment alert without segments",
        patched(segment_alert("accuracy"), {"spec.segments": DELETE}),
        False,
    ),
    ("segment alert on drift_share", segment_alert("drift_share"), False),
    ("segment alert on prediction_drift", segment_alert("prediction_drift"), False),
    ("segment alert on feature_drift", segment_alert("feature_drift", feature="tenure"), False),
    ("segment alert on missing_ratio", segment_alert("missing_ratio", feature="tenure"), False),
    ("segment alert on outlier_ratio", segment_alert("outlier_ratio"), False),
    ("segment drift true", segment(drift=True), True),
    ("segment drift false", segment(drift=False), True),
    ("segment drift a string", segment(drift="true"), False),
    ("segment drift a number", segment(drift=1), False),
    *(
        (
            f"drifting segment alert on {metric}",
            drifting(segment_alert(metric, **more)),
            True,
        )
        for metric, more in (
            ("drift_share", {}),
            ("prediction_drift", {}),
            ("feature_drift", {"feature": "tenure"}),
            ("missing_ratio", {"feature": "tenure"}),
            ("outlier_ratio", {}),
        )
    ),
    (
        "drift alert on another segment than the drifting one",
        drifting(segment_alert("drift_share", "device")),
        False,
    ),
    (
        "drift alert on a segment with drift false",
        drifting(segment_alert("drift_share"), False),
        False,
    ),
    (
        "drift alert on an undeclared segment beside a drifting one",
        drifting(segment_alert("drift_share", "city")),
        False,
    ),
    ("segment alert empty", segment_alert("accuracy", ""), False),
    ("segment alert a number", segment_alert("accuracy", 1), False),
    ("segment alert name with a colon", segment_alert("accuracy", "a:b"), False),
]
CASES += SEGMENT_CASES

# -- what only spec.py checks: (id, object, path of spec.py's error) ------------------------------

SPEC_ONLY: list[tuple[str, dict[str, Any], str]] = [
    (
        "metric of another task",
        patched(C, {"spec.alerts": [{"name": "acc-low", "metric": "rmse", "above": 3}]}),
        "spec.alerts[0].metric",
    ),
    (
        "unknown metric",
        patched(PRICE, {"spec.alerts": [{"name": "err", "metric": "accuracy", "below": 0.8}]}),
        "spec.alerts[0].metric",
    ),
    (
        "unknown drift metric",
        patched(C, {"spec.alerts": [{"name": "acc-low", "metric": "drift", "above": 0.1}]}),
        "spec.alerts[0].metric",
    ),
    (
        "an alert on cost without metrics.cost",
        patched(PRICE, {"spec.alerts": [{"name": "err", "metric": "cost", "above": 3}]}),
        "spec.alerts[0].metric",
    ),
    (
        "rule syntax error",
        patched(
            C,
            {
                "spec.fallback.rules": [
                    {"when": "request.x <", "prediction": "1"},
                    {"prediction": "0"},
                ]
            },
        ),
        "spec.fallback.rules[0].when",
    ),
    (
        "undeclared identifier",
        patched(
            C,
            {
                "spec.fallback.rules": [
                    {"when": "req.x < 1", "prediction": "1"},
                    {"prediction": "0"},
                ]
            },
        ),
        "spec.fallback.rules[0].when",
    ),
    (
        "prediction type error",
        patched(C, {"spec.fallback.rules": [{"prediction": "1 + 'a'"}]}),
        "spec.fallback.rules[0].prediction",
    ),
    ("name not a DNS name", patched(C, {"metadata.name": "Churn_Model"}), "metadata.name"),
    ("no name", patched(C, {"metadata.name": DELETE}), "metadata.name"),
    (
        "namespace not a DNS label",
        patched(C, {"metadata.namespace": "ml.prod"}),
        "metadata.namespace",
    ),
    ("generation 0", patched(C, {"metadata.generation": 0}), "metadata.generation"),
    (
        "bad matchLabels key",
        patched(C, {"spec.selector.matchLabels": {"app name": "x"}}),
        'spec.selector.matchLabels["app name"]',
    ),
    *[
        (
            f"abstain header {why}",
            patched(REVIEWED, {"spec.review.abstain.response.headers": headers}),
            f"spec.review.abstain.response.headers{at}",
        )
        for why, headers, at in (
            ("name with a space", {"X Foo": "a"}, '["X Foo"]'),
            ("name empty", {"": "a"}, '[""]'),
            ("X-Prediction-ID", {"X-Prediction-ID": "a"}, ".X-Prediction-ID"),
            ("x-truthloop-abstain", {"x-truthloop-abstain": "false"}, ".x-truthloop-abstain"),
            ("Connection", {"Connection": "close"}, ".Connection"),
            ("twice in two cases", {"X-A": "1", "x-a": "2"}, ".x-a"),
        )
    ],
    (
        "abstain body past 64 KiB",
        patched(REVIEWED, {"spec.review.abstain.response.body": {"a": "x" * 65536}}),
        "spec.review.abstain.response.body",
    ),
]


def test_the_corpus_is_big_and_two_sided() -> None:
    assert len(CASES) >= 40
    assert {valid for _, _, valid in CASES} == {True, False}


@pytest.mark.parametrize(("obj", "valid"), [(o, v) for _, o, v in CASES], ids=[c[0] for c in CASES])
def test_hand_written_cases_get_the_same_verdict(obj: dict[str, Any], valid: bool) -> None:
    assert assert_agree(obj) is valid


@pytest.mark.parametrize(
    ("obj", "path"), [(o, p) for _, o, p in SPEC_ONLY], ids=[c[0] for c in SPEC_ONLY]
)
def test_what_only_spec_checks(obj: dict[str, Any], path: str) -> None:
    assert CRD.admit(obj) == []
    with pytest.raises(SpecError) as raised:
        parse_monitor(obj)
    assert [e.path for e in raised.value.errors] == [path]


ALL_METRICS = sorted({m for names in metrics.METRIC_NAMES.values() for m in names})


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("metric", [*ALL_METRICS, *DRIFT_METRICS, "accuracyLower", "auc"])
def test_spec_alone_knows_each_tasks_metrics(task: str, metric: str) -> None:
    """Each task's own metrics and the drift metrics (every task's) pass, others only the CRD."""
    feature = {"feature": "tenure"} if metric in FEATURE_METRICS else {}
    obj = patched(
        MINIMAL,
        {
            "spec.task": task,
            "spec.alerts": [{"name": "a", "metric": metric, "below": 0.5, **feature}],
        },
    )
    assert CRD.admit(obj) == []
    assert assert_agree(obj) is (metric in (*metrics.METRIC_NAMES[task], *DRIFT_METRICS))


# -- generated: a base monitor with generated alerts, rules and field changes ---------------------

NAMES = ["acc-low", "a", "b"]
RULES = [
    {"when": "request.features.tenure < 6", "prediction": "1"},
    {"when": "has(request.x) && headers['x-tier'] == 'gold'", "prediction": "'yes'"},
    {"prediction": "0"},
    {"prediction": "request.fallback"},
]
MUTATIONS: dict[str, list[Any]] = {
    "apiVersion": ["truthloop.dev/v1", DELETE],
    "kind": ["Monitor"],
    "status": [{"phase": "Healthy"}, "junk"],
    "spec.selector": [
        DELETE,
        {},
        "app=x",
        {"matchLabels": {"app": "x"}, "extra": 1},
        {"matchLabels": {"app": ""}},
        {"matchLabels": {"app": "bad value"}},
        {"matchLabels": {"app": None}},
        {"matchExpressions": []},
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a", "b"]}]},
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist", "values": []}]},
        {"matchExpressions": [{"key": "bad key", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["ok", "-bad"]}]},
    ],
    "spec.model": [
        DELETE,
        {},
        {"name": 5},
        {"name": "m", "versionLabel": ""},
        {"name": "m", "versionLabel": "example.com/version"},
        {"name": "x" * 254},
    ],
    "spec.port": ["metrics", 1, 8080.0, 80.5, -1, "-ab", "ab-", "web-1", None, [80]],
    "spec.modelPortEnv": ["_P1", "", "A-B", 5],
    "spec.restartExisting": [True, 1],
    "spec.task": ["multiclass", "regression", "Binary", 1],
    "spec.threshold": [0, 1, -0.1, True, float("inf")],
    "spec.capture": [DELETE, {}, "x"],
    "spec.capture.entityId": [
        {"pointer": "/user_id"},
        {"pointer": ""},
        {"header": ""},
        {"pointer": "user"},
        None,
    ],
    "spec.capture.score": [{"pointer": "/score"}, {"pointer": "score"}, {}, {"header": "X"}],
    "spec.capture.features": [{"pointer": "/features/" + "x" * 1100}, {"pointer": "/features~01"}],
    "spec.capture.batch": [
        {"instances": "/i", "predictions": "/p"},
        {"instances": "i", "predictions": "/p"},
        {},
    ],
    "spec.capture.protocol": ["open-inference-v2", "torchserve", "custom", "v2", 1, ""],
    "spec.capture.sampleRate": [1, 0.5, 0, -1, "1", 2],
    "spec.feedback": [DELETE, {}, None, "x", {"extra": 1}],
    "spec.feedback.attributionWindow": [
        "7d",
        "1h30m",
        "00h",
        "",
        "90",
        90,
        "1h1h",
        "1" * 40 + "s",
        "9s",
        "1D",
    ],
    "spec.feedback.match": ["all", "first", 0],
    "spec.feedback.missingActual": [
        {"policy": "assume", "value": 0},
        {"policy": "assume", "value": 1.0},
        {"policy": "assume", "value": 0.5},
        {"policy": "assume", "value": True},
        {"policy": "assume", "value": "churned"},
        {"policy": "assume"},
        {"policy": "guess"},
        {},
        {"value": 1},
        {"policy": "ignore", "value": None},
    ],
    "spec.metrics": [
        {},
        {"window": "1m", "minSamples": 1},
        {"window": "0s"},
        {"minSamples": 0},
        {"minSamples": "20"},
        {"window": 60},
        {"window": None, "minSamples": None},
    ],
    "spec.metrics.cost": [
        DELETE,
        {},
        {"falsePositive": 1, "falseNegative": 2},
        {"falsePositive": 1, "falseNegative": 2, "truePositive": 3},
        {"falsePositive": 1},
        {"matrix": [{"actual": "a", "predicted": "b", "cost": 1}]},
        {"matrix": [{"actual": "a", "predicted": "b", "cost": 1}] * 2},
        {"matrix": []},
        {"overPrediction": 1, "underPrediction": 2},
        {"overPrediction": -1, "underPrediction": 2},
        {"overPrediction": 1, "underPrediction": 2, "trueNegative": 0},
        "cheap",
    ],
    "spec.fallback": [DELETE, {}, {"mode": "engaged"}, [], {"extra": True}],
    "spec.fallback.mode": ["auto", "engaged", "disengaged", "on"],
    "spec.fallback.recoverAfter": ["0s", "ten", "1d", "7d", "7d1s", "999999999999s"],
    "spec.fallback.engageOn": [[], ["acc-low"], ["a", "b"], ["nope"], "acc-low", [1], [""]],
    "spec.features": [
        DELETE,
        [],
        FEATURES,
        [*FEATURES, {"name": "age", "pointer": "", "type": "numeric"}],
        [*FEATURES, {"name": "tenure", "type": "numeric"}],
        [*FEATURES, {"name": "score", "type": "numeric"}],
        [*FEATURES, {"name": "a:b", "type": "numeric"}],
        [{"name": "tenure"}, FEATURES[1]],
        {"tenure": "numeric"},
    ],
    "spec.drift": [DELETE, {}, {"share": 1}, {"share": 0}, "x", {"extra": 1}],
    "spec.drift.share": [0.5, 1e-3, 1, 0, -1, "1"],
    "spec.drift.reference": [
        DELETE,
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
        {"from": "2026-01-02T00:00:00+05:00", "to": "2026-01-01T23:00:00Z"},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
        {"from": "2026-01-01T00:00:00Z"},
        {"from": "2026-02-29T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        {"from": "2024-02-29T00:00:00Z", "to": "2024-03-01T00:00:00Z"},
    ],
    "spec.drift.overrides": [
        DELETE,
        [],
        [{"feature": "tenure", "method": "ks"}],
        [{"feature": "plan", "method": "ks"}],
        [{"feature": "plan", "method": "chisquare", "threshold": 0.01}],
        [{"feature": "plan", "method": "chisquare", "threshold": 1.5}],
        [{"feature": "prediction", "method": "wasserstein"}],
        [{"feature": "prediction", "threshold": 0.2}, {"feature": "score", "method": "ks"}],
        [{"feature": "income", "threshold": 0.2}],
        [{"feature": "tenure"}],
        [{"feature": "tenure", "threshold": 0.1}, {"feature": "tenure", "method": "psi"}],
    ],
    "spec.review": [
        DELETE,
        {},
        {"budget": 1},
        REVIEW,
        {"budget": 1, "random": 0.4, "borderline": 0.6},
        {"budget": 1, "random": 0.4, "borderline": 0.5},
        {"budget": 1, "abstain": {"band": {"low": 0.2, "high": 0.1}}},
        {"budget": -1},
        "x",
    ],
    "spec.review.budget": [3, 0, 1e8, "1"],
    "spec.review.random": [0, 0.7, 1, 2],
    "spec.review.lease": ["10s", "9s", "1d", "24h1s", "1m30s", "1", 10],
    "spec.review.abstain": [DELETE, {}, {"band": {"low": 0, "high": 1}, "explore": 0.5}],
    "spec.review.abstain.response": [
        {},
        {"status": 404, "body": None, "headers": {"X-A": "b"}},
        {"status": 200.0},
        {"body": [1]},
        {"headers": {"Connection": "x"}},
    ],
    "spec.segments": [
        DELETE,
        [],
        SEGMENTS,
        [{"name": "country", "pointer": "/c"}],
        [{"name": "country", "header": "X-C", "pointer": "/c"}],
        [{"name": "country", "pointer": "/c", "buckets": [2, 1]}],
        [{"name": "country", "pointer": "/c", "buckets": [1, 2], "maxValues": 3}],
        [{"name": "country", "pointer": "/c", "maxValues": 0}],
        [{"name": "c:d", "pointer": "/c"}],
        [{"name": "country", "header": "X-C", "drift": True}],
        [{"name": "country", "header": "X-C", "drift": "yes"}],
        "country",
    ],
    "spec.extra": [1],
}
CHANGES = [(path, value) for path, values in MUTATIONS.items() for value in values]

GOOD_METRICS = {
    task: [
        *({"metric": m} for m in names),
        {"metric": "drift_share"},
        {"metric": "outlier_ratio"},
        {"metric": "feature_drift", "feature": "tenure"},
        {"metric": "missing_ratio", "feature": "plan"},
    ]
    for task, names in metrics.METRIC_NAMES.items()
}
BAD_METRICS = [
    *({"metric": m} for m in ALL_METRICS),
    {"metric": "nope"},
    {"metric": "feature_drift"},
    {"metric": "prediction_drift", "feature": "tenure"},
    {"metric": "missing_ratio", "feature": "score"},
    {"metric": "feature_drift", "feature": "x:y"},
    {"metric": "accuracy", "feature": "tenure"},
    {"metric": "cost"},
]
GOOD_THRESHOLDS = [{"below": 0.8}, {"above": 0.2}, {"below": 1}, {"above": 100}]
BAD_THRESHOLDS = [{"below": 1, "above": 2}, {}, {"below": "x"}]


def often(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """One of `good` three times in four, else one of `bad`."""
    return (
        st.sampled_from(good) | st.sampled_from(good) | st.sampled_from(good) | st.sampled_from(bad)
    )


@st.composite
def monitors(draw: st.DrawFn) -> dict[str, Any]:
    """A base monitor with generated alerts, engageOn and rules (mostly sound), and up to two
    field changes (often unsound): near the edge between valid and invalid, on both sides."""
    obj = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    changes: dict[str, Any] = {}
    if draw(st.booleans()):
        task = obj["spec"].get("task", "binary")
        names = draw(st.lists(often(NAMES, ["bad name", "", "a"]), max_size=3))
        alerts = [
            {
                "name": name,
                **draw(often(GOOD_METRICS[task], BAD_METRICS)),
                **draw(often(GOOD_THRESHOLDS, BAD_THRESHOLDS)),
                **draw(st.fixed_dictionaries({}, optional={"for": often(["0s", "2m"], ["2", 5])})),
                **draw(
                    st.fixed_dictionaries(
                        {}, optional={"source": often(["estimated", "auto"], ["x", None])}
                    )
                ),
                **draw(
                    st.fixed_dictionaries(
                        {}, optional={"segment": often(["country"], ["tenure", "", None])}
                    )
                ),
            }
            for name in names
        ]
        changes["spec.alerts"] = alerts
        changes["spec.fallback.engageOn"] = draw(
            st.just(DELETE) | st.lists(often(names or ["acc-low"], ["zz"]), max_size=2)
        )
    if draw(st.booleans()):
        whens = draw(st.lists(often(RULES[:2], [{"when": "true"}, RULES[2]]), max_size=3))
        last = draw(often(RULES[2:], [{"when": "true"}, {"prediction": "1", "x": 1}]))
        changes["spec.fallback.rules"] = draw(st.just([*whens, last]) | st.just([]))
    for path, value in draw(st.lists(st.sampled_from(CHANGES), max_size=2)):
        changes[path] = value
    return patched(obj, changes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(monitors())
def test_generated_monitors_get_the_same_verdict(obj: dict[str, Any]) -> None:
    assert_agree(obj)


DURATION_FIELDS = [
    "spec.metrics.window",
    "spec.feedback.attributionWindow",
    "spec.fallback.recoverAfter",
    "spec.alerts",
]


@st.composite
def durations(draw: st.DrawFn) -> str:
    """Durations in the grammar, many near the bounds (7d, 90d) and some huge, some with leading
    zeros, each unit's number drawn from a range around where it crosses a bound."""
    units = {"d": 100, "h": 2500, "m": 150_000, "s": 8_000_000}
    text = ""
    for unit, around in units.items():
        if draw(st.booleans()):
            number = draw(
                st.one_of(
                    st.integers(0, around),
                    st.integers(0, 10**12),
                    st.sampled_from([7, 90, 168, 2160, 10080, 129600, 604800, 7776000]),
                )
            )
            text += "0" * draw(st.integers(0, 2)) + str(number) + unit
    return text[:32] or "0s"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DURATION_FIELDS), durations())
def test_generated_durations_get_the_same_verdict(path: str, text: str) -> None:
    """The CRD's bound (computed in CEL from the string) is spec.py's, to the second."""
    if path == "spec.alerts":
        obj = patched(C, {path: [{"name": "a", "metric": "f1", "below": 0.5, "for": text}]})
    else:
        obj = patched(C, {path: text})
    assert_agree(obj)
