"""The ModelMonitor spec: parsed once into frozen values with every default applied.

`parse_monitor` takes a ModelMonitor object (a dict from YAML or JSON) and returns a `Monitor`, or
raises `SpecError` carrying *every* problem found, each as a `FieldError` naming its path
(`spec.alerts[1].below: expected a number, got "high"`). Bad input is never an exception of
another kind.

The rules are the CRD's (crds/modelmonitor.yaml: schema, defaults and CEL validations; a test
holds the two to the same verdict on a corpus of monitors):
- unknown fields are errors; a `null` field is an absent one (the apiserver prunes those);
- `selector` must select something (an empty one would inject every pod in the namespace);
  `matchExpressions` take values with In/NotIn only;
- `capture.protocol` is one of `PROTOCOLS` (`custom`); a preset (any other) fills the prediction
  (`PRESET_PREDICTIONS`) and, when it yields rows, the features (the whole row) the spec leaves
  out, and takes no `batch` (it reads the rows itself); `custom` needs the prediction;
- `capture.entityId` is exactly one of a header or a pointer, `perRow` (one value per row from
  the whole request) only for rows (a row-based protocol, or `batch`); the prediction, score,
  features and batch are pointers into a body (RFC 6901);
- `port` is an IANA service name (at most 15 of `a-z0-9-`, a letter, no `--`) or 1-65535;
- durations are integers with units in order, `90s`, `2m`, `24h`, `7d`, `1h30m`; the windows are
  longer than `0s` and at most `MAX_WINDOW` (90d), while `for` and `recoverAfter` may be `0s` and
  are at most `MAX_HOLD` (7d);
- `threshold` is in [0, 1], `sampleRate` in (0, 1], `minSamples` at least 1;
- `metrics.cost` fits the task: binary `falsePositive` and `falseNegative` (required) and the
  gains `truePositive`, `trueNegative`; multiclass a `matrix` of 1 to `MAX_COST_CELLS` unique
  `{actual, predicted, cost}`; regression `overPrediction` and `underPrediction` (per unit); every
  amount a finite number >= 0;
- `missingActual.value` is given with policy `assume` and only then, and fits the task: 0 or 1
  for binary, an integer for regression, an integer or a string for multiclass;
- alerts: at most 32, unique names, exactly one of `below`/`above`, a metric the task has
  (`metrics.METRIC_NAMES`) or a drift metric (`DRIFT_METRICS`, any task) or `cost` (with
  `metrics.cost`); `feature` given with
  `feature_drift` and `missing_ratio` and only with them, one of `spec.features` when those are
  declared, never a reserved column (`prediction`, `score`, `actual`, `ts`); `source` realized
  (default), estimated or auto, the last two only for a model metric the task's estimator gives
  (`metrics.ESTIMATED_NAMES`), or reviewed, only with `spec.review` and for a metric the reviewed
  labels estimate (`metrics.REVIEWED_NAMES`); `segment` one of `spec.segments`, with a drift
  metric only one with `drift` (only those keep the feature sketches per value);
- features: at most `MAX_FEATURES` (100), unique names of `profile.FEATURE_NAME` (no `:`, so
  they fit sketch keys) that are not reserved columns, a pointer (default `/<name>`), a type;
- drift: `share` in (0, 1] (0.5); `reference` a period `{from, to}` of RFC 3339 timestamps with
  an offset, `from` before `to`; `overrides` at most 100, one per column (a feature, or the
  prediction or score), a method and/or a threshold > 0 (at most 1 for the p-value methods `ks`
  and `chisquare`), `wasserstein` and `ks` refused for a categorical column (a declared
  categorical feature; the prediction of a classifier), a feature of `spec.features` when those
  are declared;
- segments: at most `MAX_SEGMENTS` (8), unique names of `profile.FEATURE_NAME` (no `:`, `=`
  or `^`, so they fit counter keys), exactly one of a `pointer` (into the request body, the row
  of a row-based capture) or a `header`, `maxValues` 1 to `MAX_SEGMENT_VALUES` (100; default 20) or
  `buckets`, not both: 1 to `MAX_SEGMENT_BUCKETS` (50) finite numbers, strictly ascending;
  `export` a boolean (false); `drift` a boolean (false);
- fallback: at most 64 rules, the last one and only the last without `when`; mode `engaged` needs
  rules, and so does a non-empty `engageOn` (an engaged fallback would have nothing to serve);
  `engageOn` names alerts and defaults to all of them;
- review: `budget` in (0, `MAX_REVIEW_BUDGET`] items `per` day (default) or window; `random` and
  `borderline` in [0, 1] summing to 1 when both are given (one given, the other is the rest;
  neither, random 1), `outliers` in [0, 1), `lease` 10s to 1d (10m), `seed` an integer in [0, 2^32);
  `abstain` only for a classifier with a single-row capture (no `capture.batch`, no row-based
  protocol): a `band` `{low, high}` in [0, 1], low <= high, `explore` in [0, 1), a `response`
  with `status` 200-599 (200), any JSON `body` (`{"abstained": true}`) and at most
  `MAX_ABSTAIN_HEADERS` `headers` of string values.
Checked here only, as a CRD cannot: that the rules compile (`celrules.check_rules`: every bad rule,
with its column), the names in metadata and the label keys of `matchLabels`, and of the abstain
response the header names (HTTP tokens, none the sidecar sets itself: `RESERVED_HEADERS`, in any
case, each once) and the body's size as JSON (at most `MAX_ABSTAIN_BODY` bytes).

Durations are seconds (float); `format_duration` tells them back in the same grammar. Time is
never read here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar, overload

from truthloop.core import fieldpath, metrics, pointer
from truthloop.core.columns import (
    FEATURE_KINDS,
    FEATURE_NAME,
    FEATURE_NAME_EXPECTED,
    MAX_FEATURES,
    PREDICTION,
    RESERVED,
    SCORE,
    FeatureKind,
)
from truthloop.core.rules import FallbackRule
from truthloop.core.tasks import TASKS, Task

MatchPolicy = Literal["latest", "all"]
Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
MissingPolicy = Literal["ignore", "assume"]
FallbackMode = Literal["auto", "engaged", "disengaged"]

FALLBACK_MODES: tuple[FallbackMode, ...] = ("auto", "engaged", "disengaged")

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field; `path` is dotted with [i] indices (`spec.alerts[1].below`).

    Paths are built with `truthloop.core.fieldpath`; `""` is the object itself.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A ModelMonitor that cannot be used; `errors` lists every problem, not just the first."""

    def __init__(self, errors: list[FieldError] | tuple[FieldError, ...]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One `matchExpressions` entry of a Kubernetes label selector."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Selector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version_label: str | None = "app.kubernetes.io/version"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value is taken from: a request header, or an RFC 6901 pointer into a JSON body.

    Exactly one of the two is set. For the entity ID the pointer reads the *request* body; for the
    prediction and score it reads the *response* body; for features the request body. In a
    row-based capture the pointers read the row; `per_row` (the entity only) reads one value per
    row from the whole request instead: an array at the pointer, or a comma-separated header.
    """

    header: str | None = None
    pointer: str | None = None
    per_row: bool = False


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """Batch models: one record per row, zipping request `instances` with response `predictions`.

    Inside a batch, the entity/prediction/score/feature pointers are relative to the row.
    """

    instances: str
    predictions: str


Protocol = Literal[
    "custom", "open-inference-v2", "kserve-v1", "tfserving", "seldon-v1", "mlflow", "torchserve"
]
PROTOCOLS: tuple[Protocol, ...] = (
    "custom", "open-inference-v2", "kserve-v1", "tfserving", "seldon-v1", "mlflow", "torchserve"
)  # fmt: skip
"""The request and response shapes a capture reads (`core.protocols`): `custom` is the user's
own pointers (with `batch` for rows); the others are model servers' protocols, which yield the
rows themselves, except `torchserve` (one record per request)."""
SINGLE_ROW_PROTOCOLS: tuple[Protocol, ...] = ("custom", "torchserve")
"""Protocols that are not row-based on their own (`custom` is, with `batch`)."""

PRESET_PREDICTIONS: Mapping[Protocol, str] = {
    "open-inference-v2": "/predict",
    "kserve-v1": "",
    "tfserving": "",
    "seldon-v1": "",
    "mlflow": "",
    "torchserve": "",
}
"""A preset's prediction pointer when the spec gives none, into the response row (the response
body for torchserve): MLServer names a scikit-learn model's output `predict`; the other
protocols' rows are the predictions themselves."""


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    prediction: Source
    entity_id: Source | None = None
    score: Source | None = None
    features: Source | None = None
    """With a row-based preset and none given: `Source(pointer="")`, the whole row (which
    `core.protocols.features` flattens)."""
    batch: BatchSpec | None = None
    sample_rate: float = 1.0
    protocol: Protocol = "custom"

    @property
    def row_based(self) -> bool:
        """Whether an exchange holds rows, each its own record (`<prediction id>.<row>`)."""
        return self.batch is not None or self.protocol not in SINGLE_ROW_PROTOCOLS


@dataclass(frozen=True, slots=True)
class MissingActual:
    """`ignore` leaves unlabeled predictions out; `assume` labels them `value` once the window
    has passed."""

    policy: MissingPolicy = "ignore"
    value: float | int | str | bool | None = None


@dataclass(frozen=True, slots=True)
class FeedbackSpec:
    attribution_window: float = 86400.0
    match: MatchPolicy = "latest"
    missing_actual: MissingActual = field(default_factory=MissingActual)


@dataclass(frozen=True, slots=True)
class CostCell:
    """What predicting `predicted` costs when the class was `actual` (multiclass)."""

    actual: str
    predicted: str
    cost: float


@dataclass(frozen=True, slots=True)
class CostSpec:
    """What a prediction costs (`core.cost`), per task: binary, the cost of a false positive and
    of a false negative and the gain of a true positive and of a true negative; multiclass, a
    cost per (actual, predicted) pair (pairs not listed cost nothing); regression, the cost per
    unit of over-prediction (prediction above the actual) and of under-prediction."""

    false_positive: float = 0.0
    false_negative: float = 0.0
    true_positive: float = 0.0
    true_negative: float = 0.0
    matrix: tuple[CostCell, ...] = ()
    over_prediction: float = 0.0
    under_prediction: float = 0.0


COST = "cost"
"""The metric of what the predictions cost, per prediction (lower is better: alerts use
`above`); an alert may name it when the spec says what a mistake costs (`metrics.cost`)."""


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    window: float = 3600.0
    min_samples: int = 50
    cost: CostSpec | None = None


DriftMetric = Literal[
    "drift_share", "prediction_drift", "feature_drift", "missing_ratio", "outlier_ratio"
]
DRIFT_METRICS: tuple[DriftMetric, ...] = (
    "drift_share", "prediction_drift", "feature_drift", "missing_ratio", "outlier_ratio",
)  # fmt: skip
"""Metrics an alert of any task may name, read from the window's feature sketches against the
reference (no labels needed): the share of drifted features, the prediction's drift statistic,
one feature's drift statistic or missing ratio (these two name the `feature`), the outlier share."""
FEATURE_METRICS: tuple[DriftMetric, ...] = ("feature_drift", "missing_ratio")
"""Drift metrics of one feature: an alert naming one of these names its `feature`, and only they."""


def metric_key(metric: str, feature: str | None = None) -> str:
    """The name an alert reads its value by: the metric, or `feature_drift:tenure` for one
    feature's (a feature name never holds a `:`)."""
    return metric if feature is None else f"{metric}:{feature}"


def is_drift_key(key: str) -> bool:
    """Whether a value read by `key` comes from the sketches (its samples are sketched records,
    not labeled ones)."""
    return key.partition(":")[0] in DRIFT_METRICS


AlertSource = Literal["realized", "estimated", "auto", "reviewed"]
ALERT_SOURCES: tuple[AlertSource, ...] = ("realized", "estimated", "auto", "reviewed")
"""What an alert on a model metric reads: the realized metric (labeled predictions), its
estimate before labels (`core.estimate`, from every prediction of the window), `auto`: the
realized metric once the window holds `minSamples` labeled predictions, the estimate before, or
`reviewed`: the estimate from the review queue's labels (`core.review`, with `spec.review`)."""


def counts_labels(key: str) -> bool:
    """Whether the samples behind the value read by `key` are labeled predictions: not a drift
    metric's (records), nor an estimate's (predictions, labeled or not); a segment alert's
    (`segment:<segment>:<key>`) as its `<key>`'s."""
    if key.startswith("segment:"):
        key = key.split(":", 2)[2]
    head = key.partition(":")[0]
    return head not in DRIFT_METRICS and head not in ("estimated", "auto")


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """Fires when `metric` (of `feature`, for the per-feature drift metrics) is below `below` (or
    above `above`) for `for_` seconds straight."""

    name: str
    metric: str
    below: float | None = None
    above: float | None = None
    for_: float = 0.0
    feature: str | None = None
    source: AlertSource = "realized"
    segment: str | None = None
    """Watch each value of this segment (`spec.segments`): the alert breaches when any value with
    `minSamples` breaches, and its state names those values."""

    @property
    def key(self) -> str:
        """The name of the value this alert reads (`metric_key`); with source estimated or auto
        `estimated:accuracy` or `auto:accuracy` (the engine feeds those); with a segment
        `segment:<segment>:` before it (`segment:country:estimated:accuracy`)."""
        found = metric_key(self.metric, self.feature)
        found = found if self.source == "realized" else f"{self.source}:{found}"
        return found if self.segment is None else f"segment:{self.segment}:{found}"

    def breached(self, value: float) -> bool:
        if self.below is not None:
            return value < self.below
        return self.above is not None and value > self.above


@dataclass(frozen=True, slots=True)
class FallbackSpec:
    mode: FallbackMode = "auto"
    engage_on: tuple[str, ...] = ()  # defaulted by the parser to every alert's name
    recover_after: float = 600.0
    rules: tuple[FallbackRule, ...] = ()


DriftMethod = Literal["wasserstein", "jensenshannon", "psi", "ks", "chisquare"]

DRIFT_METHODS: tuple[DriftMethod, ...] = ("wasserstein", "jensenshannon", "psi", "ks", "chisquare")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A profiled input: `pointer` is relative to the captured features object."""

    name: str
    pointer: str
    kind: FeatureKind


@dataclass(frozen=True, slots=True)
class DriftOverride:
    """One feature's own drift test: a method and/or a threshold in place of the default's."""

    feature: str
    method: DriftMethod | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """`share`: the share of drifted features that is dataset drift; `reference`: the period
    (epoch seconds, from and to) of captured records a reference is built from, if any."""

    share: float = 0.5
    reference: tuple[float, float] | None = None
    overrides: tuple[DriftOverride, ...] = ()


MAX_SEGMENTS = 8
MAX_SEGMENT_VALUES = 100
MAX_SEGMENT_BUCKETS = 50


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """A slice the metrics are kept for: each record's value is read from the request (`pointer`
    into the body, the row for a row-based capture, or a request `header`); numeric `buckets`
    (ascending edges) name ranges, else the `max_values` most frequent values are kept as
    themselves and the rest are `other` (`core.segments`). `export` puts the segment's values on
    Prometheus series (their cardinality is then the user's choice)."""

    name: str
    source: Source
    max_values: int = 20
    buckets: tuple[float, ...] = ()
    export: bool = False
    drift: bool = False
    """Keep the feature sketches per value too (drift per value; they cost what the drift
    read's counters cost, again for each value)."""


ReviewPer = Literal["day", "window"]
REVIEW_PER: tuple[ReviewPer, ...] = ("day", "window")


@dataclass(frozen=True, slots=True)
class AbstainResponse:
    """What the sidecar answers instead of the model's response when it abstains: `status`,
    `body` (JSON text, rendered once at parse time) and extra `headers`; the sidecar always adds
    `X-Truthloop-Abstain: true` and `X-Prediction-ID`."""

    status: int = 200
    body: str = '{"abstained":true}'
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AbstainSpec:
    """The model answers "I don't know" for a score in [`low`, `high`] (binary: the score;
    multiclass: the predicted class's score), and for a share `explore` of the other records at
    random (`review.draw(...) < explore`), so the confident region is reviewed too. Only for a
    single-row capture (no `capture.batch`, no protocol with rows) of a classifier."""

    low: float
    high: float
    explore: float = 0.0
    response: AbstainResponse = field(default_factory=AbstainResponse)


@dataclass(frozen=True, slots=True)
class ReviewSpec:
    """Human review: `budget` items per day (`per: day`) or per metrics window (`per: window`),
    split between a uniform share (`random`) and an uncertainty share (`borderline`, the two sum
    to 1); `outliers` is the probability a record flagged as an outlier is queued (its own
    stratum); `abstain` the score band the sidecar answers "I don't know" in; `lease` how long
    an item stays with the reviewer it was handed to; `seed` varies the selection (the same
    seed, monitor and prediction id always decide the same)."""

    budget: float
    per: ReviewPer = "day"
    random: float = 1.0
    borderline: float = 0.0
    outliers: float = 0.0
    abstain: AbstainSpec | None = None
    lease: float = 600.0
    seed: int = 0

    @property
    def per_day(self) -> float | None:
        """The budget per day for `per: day` (None for `per: window`: the caller knows it)."""
        return self.budget if self.per == "day" else None


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    selector: Selector
    model: ModelRef
    capture: CaptureSpec
    port: str | int = "http"
    model_port_env: str | None = None
    restart_existing: bool = False
    task: Task = "binary"
    threshold: float = 0.5
    feedback: FeedbackSpec = field(default_factory=FeedbackSpec)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    alerts: tuple[AlertSpec, ...] = ()
    fallback: FallbackSpec = field(default_factory=FallbackSpec)
    features: tuple[FeatureSpec, ...] = ()
    """Left empty: discovered from the reference."""
    drift: DriftSpec = field(default_factory=DriftSpec)
    review: ReviewSpec | None = None
    """None: no review queue (and no abstaining)."""
    segments: tuple[SegmentSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Monitor:
    """A parsed ModelMonitor: identity, generation and spec. `key` is `namespace/name`."""

    namespace: str
    name: str
    spec: MonitorSpec
    generation: int = 1

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# -- parsing -------------------------------------------------------------------------------------

API_VERSION = "truthloop.dev/v1alpha1"
KIND = "ModelMonitor"

MAX_ALERTS = 32
MAX_RULES = 64
MAX_EXPRESSIONS = 64

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_DURATION_UNITS = (86400, 3600, 60, 1)
_DURATION_EXAMPLE = "a duration like 90s, 2m, 24h, 7d or 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in `text`: integers with units d, h, m, s, largest first, each at most once.

    `90s`, `2m`, `24h`, `7d`, `1h30m`, `0s`. Raises ValueError for anything else (no fractions,
    no bare numbers, no spaces): the same grammar as the CRD's duration pattern.
    """
    found = _DURATION.fullmatch(text) if text else None
    if found is None:
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got {_show(text)}")
    return float(
        sum(int(n) * unit for n, unit in zip(found.groups(), _DURATION_UNITS, strict=True) if n)
    )


def format_time(ts: float) -> str:
    """Epoch seconds as an RFC 3339 UTC timestamp (`2026-01-01T00:00:00Z`), as the API shows
    a time that is meant for people (a lease's end) and the logs do."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """`seconds` in the grammar `parse_duration` reads, largest units first and zero units left
    out, as Prometheus prints durations: `45s`, `1m30s`, `2m`, `1h30m`, `1d2h`, `0s`.

    One form everywhere a duration is shown (events, conditions, logs), so what a user reads can
    be pasted back into a spec: `parse_duration(format_duration(s)) == s` for whole seconds. A
    fraction of a second is dropped; a negative duration gets a leading `-`.
    """
    whole = int(abs(seconds))
    parts = []
    for unit, size in zip("dhms", _DURATION_UNITS, strict=True):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    text = "".join(parts) or "0s"
    return "-" + text if seconds <= -1 else text


def parse_monitor(obj: object, *, bounded: bool = True) -> Monitor:
    """A ModelMonitor object (from YAML or JSON) as a `Monitor`, or SpecError with every problem.

    `status` and metadata other than name, namespace and generation are ignored; the namespace
    defaults to `default` and the generation to 1. `bounded=False` reads a monitor accepted
    before the durations were bounded (`MAX_WINDOW`, `MAX_HOLD`) as it was then: what a store or
    a running sidecar already holds keeps working; only a new or changed monitor must fit.
    """
    read = _Reader(bounded)
    if not isinstance(obj, Mapping):
        raise SpecError([FieldError("", f"expected a ModelMonitor object, got {_show(obj)}")])
    root = read.mapping(obj, "", _ROOT_FIELDS)
    name, namespace, generation, spec = "", "default", 1, None
    if root is not None:
        for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
            value = read.field(root, "", key, required=True)
            if value is not None and value != expected:
                read.fail(key, f"expected {_show(expected)}, got {_show(value)}")
        meta = read.open(root, "", "metadata", None, required=True)
        if meta is not None:
            name = read.text(meta, "metadata", "name", _DNS_SUBDOMAIN, required=True) or ""
            namespace = read.text(meta, "metadata", "namespace", _DNS_LABEL) or namespace
            generation = read.integer(meta, "metadata", "generation", low=1) or generation
        if "spec" in root:
            spec = _spec(read, root["spec"], "spec")
        else:
            read.fail("spec", "required")
    if read.errors or spec is None:
        raise SpecError(read.errors)
    return Monitor(namespace=namespace, name=name, spec=spec, generation=generation)


def parse_update(obj: object, old: Mapping[str, object] | None) -> Monitor:
    """`parse_monitor` of a new or replacing object: a spec changed from `old`'s (or without an
    `old`) must fit today's bounds, a spec left as it was is read as it was accepted (as the
    apiserver ratchets the CRD's rules), so a monitor from before the bounds stays editable."""
    unchanged = old is not None and isinstance(obj, Mapping) and obj.get("spec") == old.get("spec")
    return parse_monitor(obj, bounded=not unchanged)


def parse_spec(obj: object, path: str = "spec") -> MonitorSpec:
    """A ModelMonitor's `spec` as a `MonitorSpec` with every default applied, or SpecError."""
    read = _Reader()
    spec = _spec(read, obj, path)
    if read.errors or spec is None:
        raise SpecError(read.errors)
    return spec


# -- the grammar of each field (crds/modelmonitor.yaml states the same, tests hold them equal) --


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _has_control(value: str, multiline: bool) -> bool:
    return (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value) is not None


@dataclass(frozen=True, slots=True)
class _Text:
    """What a string field accepts: length bounds and a pattern described in words. No field
    takes control characters (they end up in labels, logs and database rows); `multiline` ones
    (CEL) take tabs and line breaks."""

    max_length: int
    pattern: re.Pattern[str] | None = None
    expected: str = ""
    min_length: int = 0
    multiline: bool = False


_ROOT_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
_SPEC_FIELDS = (
    "selector", "model", "port", "modelPortEnv", "restartExisting", "task", "threshold",
    "capture", "feedback", "metrics", "alerts", "fallback", "features", "drift", "review",
    "segments",
)  # fmt: skip
_FEATURE_FIELDS = ("name", "pointer", "type")
_DRIFT_FIELDS = ("share", "reference", "overrides")
_PERIOD_FIELDS = ("from", "to")
_OVERRIDE_FIELDS = ("feature", "method", "threshold")
_SELECTOR_FIELDS = ("matchLabels", "matchExpressions")
_REQUIREMENT_FIELDS = ("key", "operator", "values")
_MODEL_FIELDS = ("name", "versionLabel")
_CAPTURE_FIELDS = (
    "protocol", "entityId", "prediction", "score", "features", "batch", "sampleRate",
)  # fmt: skip
_SOURCE_FIELDS = ("header", "pointer")
_ENTITY_FIELDS = ("header", "pointer", "perRow")
_BODY_FIELDS = ("pointer",)
_BATCH_FIELDS = ("instances", "predictions")
_FEEDBACK_FIELDS = ("attributionWindow", "match", "missingActual")
_MISSING_FIELDS = ("policy", "value")
_METRICS_FIELDS = ("window", "minSamples", "cost")
_BINARY_COSTS = ("falsePositive", "falseNegative", "truePositive", "trueNegative")
_REGRESSION_COSTS = ("overPrediction", "underPrediction")
_COST_FIELDS = (*_BINARY_COSTS, "matrix", *_REGRESSION_COSTS)
_CELL_FIELDS = ("actual", "predicted", "cost")
_ALERT_FIELDS = ("name", "metric", "feature", "below", "above", "for", "source", "segment")
_SEGMENT_FIELDS = ("name", "pointer", "header", "maxValues", "buckets", "export", "drift")
_FALLBACK_FIELDS = ("mode", "engageOn", "recoverAfter", "rules")
_RULE_FIELDS = ("when", "prediction")
_REVIEW_FIELDS = ("budget", "per", "random", "borderline", "outliers", "lease", "seed", "abstain")
_ABSTAIN_FIELDS = ("band", "explore", "response")
_BAND_FIELDS = ("low", "high")
_RESPONSE_FIELDS = ("status", "body", "headers")

_OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")
_MATCH_POLICIES: tuple[MatchPolicy, ...] = ("latest", "all")
_MISSING_POLICIES: tuple[MissingPolicy, ...] = ("ignore", "assume")

_DNS_LABEL_RE = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE = rf"{_DNS_LABEL_RE}(?:\.{_DNS_LABEL_RE})*"
_DNS_SUBDOMAIN = _Text(
    253,
    re.compile(_DNS_SUBDOMAIN_RE),
    "a DNS subdomain name (lowercase letters, digits, '-' and '.')",
    1,
)
_DNS_LABEL = _Text(
    63, re.compile(_DNS_LABEL_RE), "a DNS label (lowercase letters, digits and '-')", 1
)


def is_namespace(text: str) -> bool:
    """Whether `text` is a namespace name as `metadata.namespace` accepts it (a DNS label)."""
    return len(text) <= _DNS_LABEL.max_length and re.fullmatch(_DNS_LABEL_RE, text) is not None


def is_monitor_key(text: str) -> bool:
    """Whether `text` is a monitor's `namespace/name` as `metadata` accepts them (a DNS label,
    a DNS subdomain name)."""
    namespace, slash, name = text.partition("/")
    return (
        bool(slash)
        and is_namespace(namespace)
        and len(name) <= _DNS_SUBDOMAIN.max_length
        and re.fullmatch(_DNS_SUBDOMAIN_RE, name) is not None
    )


_LABEL_NAME_RE = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(rf"(?:{_DNS_LABEL_RE}(?:\.{_DNS_LABEL_RE})*/)?{_LABEL_NAME_RE}")
_LABEL_KEY = _Text(317, _LABEL_KEY_RE, "a label key like app.kubernetes.io/version")
_LABEL_VALUE = _Text(
    63,
    re.compile(rf"(?:{_LABEL_NAME_RE})?"),
    "a label value (letters, digits, '-', '_' and '.', alphanumeric at both ends)",
)
_ALERT_NAME = _Text(
    63,
    re.compile(_LABEL_NAME_RE),
    "a name of letters, digits, '-', '_' and '.', alphanumeric at both ends",
    1,
)
_PORT_NAME = _Text(
    15,
    re.compile(r"(?:[a-z0-9]+-)*[0-9]*[a-z][a-z0-9]*(?:-[a-z0-9]+)*"),
    "a port name (at most 15 lowercase letters, digits and single '-', with a letter) "
    "or a number 1-65535",
)
_HEADER = _Text(256, re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"), "an HTTP header name", 1)
_HEADER_VALUE = _Text(4096, re.compile(r"[\x20-\x7e]*"), "a header value of printable ASCII")
_ENV_NAME = _Text(
    256, re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "an environment variable name like PORT", 1
)
_MODEL_NAME = _Text(253, min_length=1)
_METRIC = _Text(64, min_length=1)
_FEATURE = _Text(63, FEATURE_NAME, f"a feature name ({FEATURE_NAME_EXPECTED})", 1)
_SEGMENT = _Text(63, FEATURE_NAME, f"a segment name ({FEATURE_NAME_EXPECTED})", 1)
_TIMESTAMP = _Text(
    64,
    re.compile(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
    ),
    "an RFC 3339 timestamp like 2026-01-31T00:00:00Z",
    1,
)
_CEL = _Text(4096, min_length=1, multiline=True)
_POINTER_MAX = 1024
_DURATION_MAX = 32

MAX_WINDOW = 90 * 86400.0
"""The longest `metrics.window` and `feedback.attributionWindow`: longer is a typo (a window
starting centuries ago), not a need."""
MAX_HOLD = 7 * 86400.0
"""The longest an alert's `for` and the fallback's `recoverAfter` may hold a change back."""


# -- the spec, section by section ------------------------------------------------------------------


def _spec(read: _Reader, obj: object, path: str) -> MonitorSpec | None:
    spec = read.mapping(obj, path, _SPEC_FIELDS)
    if spec is None:
        return None
    selector = _selector(read, spec, path)
    model = _model(read, spec, path)
    port = _port(read, spec, path)
    model_port_env = read.text(spec, path, "modelPortEnv", _ENV_NAME)
    restart_existing = read.boolean(spec, path, "restartExisting", default=False)
    checked = read.choice(spec, path, "task", TASKS)
    task = checked or "binary"
    known = task if checked or "task" not in spec else None  # cross-checks need a valid task
    threshold = read.number(spec, path, "threshold", low=0.0, high=1.0, default=0.5)
    capture = _capture(read, spec, path)
    feedback = _feedback(read, spec, path, known)
    windows = _metrics(read, spec, path, known)
    alerts = _alerts(read, spec, path, known)
    features = _features(read, spec, path)
    return MonitorSpec(
        selector=selector,
        model=model,
        capture=capture,
        port=port,
        model_port_env=model_port_env,
        restart_existing=restart_existing,
        task=task,
        threshold=threshold,
        feedback=feedback,
        metrics=windows,
        alerts=alerts,
        fallback=_fallback(read, spec, path, alerts),
        features=features,
        drift=_drift(read, spec, path, features, known),
        review=_review(read, spec, path, known, capture),
        segments=_segments(read, spec, path),
    )


def _selector(read: _Reader, spec: Mapping[str, object], path: str) -> Selector:
    where = fieldpath.child(path, "selector")
    selector = read.open(spec, path, "selector", _SELECTOR_FIELDS, required=True)
    if selector is None:
        return Selector()
    labels: list[tuple[str, str]] = []
    matched = read.open(selector, where, "matchLabels", None)
    if matched is not None:
        at = fieldpath.child(where, "matchLabels")
        for key, value in matched.items():
            key_path = fieldpath.child(at, key)
            if len(key) > _LABEL_KEY.max_length or not _LABEL_KEY_RE.fullmatch(key):
                read.fail(key_path, f"the key is not {_LABEL_KEY.expected}")
                continue
            label = read.check_text(value, key_path, _LABEL_VALUE)
            if label is not None:
                labels.append((key, label))
    expressions = []
    for item_path, item in read.items(
        selector, where, "matchExpressions", max_items=MAX_EXPRESSIONS
    ):
        expression = _requirement(read, item, item_path)
        if expression is not None:
            expressions.append(expression)
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        read.fail(where, "must select pods: give matchLabels or matchExpressions (an empty "
                  "selector would select every pod in the namespace)")  # fmt: skip
    return Selector(tuple(labels), tuple(expressions))


def _requirement(read: _Reader, obj: object, path: str) -> LabelRequirement | None:
    requirement = read.mapping(obj, path, _REQUIREMENT_FIELDS)
    if requirement is None:
        return None
    key = read.text(requirement, path, "key", _LABEL_KEY, required=True)
    operator = read.choice(requirement, path, "operator", _OPERATORS, required=True)
    values = []
    for value_path, value in read.items(requirement, path, "values"):
        text = read.check_text(value, value_path, _LABEL_VALUE)
        if text is not None:
            values.append(text)
    given = read.given(requirement, "values")
    if operator in ("In", "NotIn") and not given:
        read.fail(
            fieldpath.child(path, "values"), f"required (at least one) with operator {operator}"
        )
    elif operator in ("Exists", "DoesNotExist") and given:
        read.fail(fieldpath.child(path, "values"), f"must be empty with operator {operator}")
    if key is None or operator is None:
        return None
    return LabelRequirement(key, operator, tuple(values))


def _model(read: _Reader, spec: Mapping[str, object], path: str) -> ModelRef:
    where = fieldpath.child(path, "model")
    model = read.open(spec, path, "model", _MODEL_FIELDS, required=True)
    if model is None:
        return ModelRef("")
    return ModelRef(
        name=read.text(model, where, "name", _MODEL_NAME, required=True) or "",
        version_label=read.text(model, where, "versionLabel", _LABEL_KEY)
        or "app.kubernetes.io/version",
    )


def _port(read: _Reader, spec: Mapping[str, object], path: str) -> str | int:
    value = spec.get("port", "http")
    where = fieldpath.child(path, "port")
    number = _integral(value)
    if number is not None:
        if 1 <= number <= 65535:
            return number
        read.fail(where, f"must be a port number 1-65535 or a port name, got {_show(value)}")
        return "http"
    if not isinstance(value, str):
        read.fail(where, f"expected a port name or number, got {_show(value)}")
        return "http"
    return read.check_text(value, where, _PORT_NAME) or "http"


def _capture(read: _Reader, spec: Mapping[str, object], path: str) -> CaptureSpec:
    """`spec.capture`: a preset (`protocol`) fills the prediction and features it leaves out."""
    where = fieldpath.child(path, "capture")
    capture = read.open(spec, path, "capture", _CAPTURE_FIELDS, required=True)
    if capture is None:
        return CaptureSpec(Source(pointer=""))
    checked = read.choice(capture, where, "protocol", PROTOCOLS)
    protocol = checked or "custom"
    preset = protocol != "custom"
    unknown = checked is None and "protocol" in capture  # its error is enough
    entity = read.open(capture, where, "entityId", _ENTITY_FIELDS)
    batch = read.open(capture, where, "batch", _BATCH_FIELDS)
    batch_path = fieldpath.child(where, "batch")
    if batch is not None and preset:
        read.fail(batch_path, f"only with protocol custom: {protocol} reads the rows itself")
    entity_id = None
    if entity is not None:
        entity_path = fieldpath.child(where, "entityId")
        entity_id = _header_or_pointer(read, entity, entity_path)
        per_row = read.boolean(entity, entity_path, "perRow", default=False)
        if per_row and protocol in SINGLE_ROW_PROTOCOLS and batch is None:
            read.fail(fieldpath.child(entity_path, "perRow"), "only for rows: with a protocol "
                      "other than custom and torchserve, or with capture.batch")  # fmt: skip
        if entity_id is not None and per_row:
            entity_id = Source(entity_id.header, entity_id.pointer, per_row=True)
    prediction = _body_source(read, capture, where, "prediction", required=not (preset or unknown))
    score = _body_source(read, capture, where, "score")
    features = _body_source(read, capture, where, "features")
    if protocol not in SINGLE_ROW_PROTOCOLS:  # a preset with rows: the whole row
        features = features or Source(pointer="")
    return CaptureSpec(
        prediction=prediction or Source(pointer=PRESET_PREDICTIONS.get(protocol, "")),
        entity_id=entity_id,
        score=score,
        features=features,
        batch=None
        if batch is None or preset
        else BatchSpec(
            instances=read.pointer(batch, batch_path, "instances", required=True) or "",
            predictions=read.pointer(batch, batch_path, "predictions", required=True) or "",
        ),
        sample_rate=read.number(
            capture, where, "sampleRate", low=0.0, high=1.0, low_open=True, default=1.0
        ),
        protocol=protocol,
    )


def _header_or_pointer(read: _Reader, obj: Mapping[str, object], path: str) -> Source | None:
    """A request value's `Source`: exactly one of a `header` or a `pointer` (None when wrong)."""
    header = read.text(obj, path, "header", _HEADER)
    pointer_ = read.pointer(obj, path, "pointer")
    if ("header" in obj) == ("pointer" in obj):
        read.fail(path, "exactly one of header or pointer")
        return None
    if header is None and pointer_ is None:
        return None
    return Source(header=header, pointer=pointer_)


def _body_source(
    read: _Reader, capture: Mapping[str, object], path: str, key: str, *, required: bool = False
) -> Source | None:
    source = read.open(capture, path, key, _BODY_FIELDS, required=required)
    if source is None:
        return None
    found = read.pointer(source, fieldpath.child(path, key), "pointer", required=True)
    return None if found is None else Source(pointer=found)


def _feedback(
    read: _Reader, spec: Mapping[str, object], path: str, task: Task | None
) -> FeedbackSpec:
    where = fieldpath.child(path, "feedback")
    feedback = read.open(spec, path, "feedback", _FEEDBACK_FIELDS)
    if feedback is None:
        return FeedbackSpec()
    return FeedbackSpec(
        attribution_window=read.duration(
            feedback, where, "attributionWindow", positive=True, default=86400.0, most=MAX_WINDOW
        ),
        match=read.choice(feedback, where, "match", _MATCH_POLICIES) or "latest",
        missing_actual=_missing_actual(read, feedback, where, task),
    )


def _missing_actual(
    read: _Reader, feedback: Mapping[str, object], path: str, task: Task | None
) -> MissingActual:
    where = fieldpath.child(path, "missingActual")
    missing = read.open(feedback, path, "missingActual", _MISSING_FIELDS)
    if missing is None:
        return MissingActual()
    policy = read.choice(missing, where, "policy", _MISSING_POLICIES) or "ignore"
    value_path = fieldpath.child(where, "value")
    value = missing.get("value")
    if value is None:
        if policy == "assume":
            read.fail(value_path, "required with policy assume: the label to assume")
        return MissingActual(policy)
    if policy != "assume":
        read.fail(value_path, "only allowed with policy assume")
    assumed = value if isinstance(value, str) else _integral(value)
    if assumed is None:
        read.fail(value_path, f"expected an integer or a string, got {_show(value)}")
    elif task == "binary" and assumed not in (0, 1):
        read.fail(value_path, f"a binary label is 0 or 1, got {_show(value)}")
    elif task == "regression" and not isinstance(assumed, int):
        read.fail(value_path, f"a regression label is an integer here, got {_show(value)}")
    return MissingActual(policy, assumed)


def _metrics(
    read: _Reader, spec: Mapping[str, object], path: str, task: Task | None
) -> MetricsSpec:
    where = fieldpath.child(path, "metrics")
    section = read.open(spec, path, "metrics", _METRICS_FIELDS)
    if section is None:
        return MetricsSpec()
    return MetricsSpec(
        window=read.duration(
            section, where, "window", positive=True, default=3600.0, most=MAX_WINDOW
        ),
        min_samples=read.integer(section, where, "minSamples", low=1) or 50,
        cost=_cost(read, section, where, task),
    )


MAX_COST_CELLS = 100
"""Cells a multiclass cost matrix lists (the pairs not listed cost nothing)."""
_LABEL = _Text(63, min_length=1)
_COST_KINDS: Mapping[str, tuple[str, ...]] = {
    "binary": _BINARY_COSTS,
    "multiclass": ("matrix",),
    "regression": _REGRESSION_COSTS,
}
_COST_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "binary": ("falsePositive", "falseNegative"),
    "multiclass": ("matrix",),
    "regression": _REGRESSION_COSTS,
}


def _cost(
    read: _Reader, section: Mapping[str, object], path: str, task: Task | None
) -> CostSpec | None:
    """`metrics.cost`: the fields of the task's kind of cost (`_COST_KINDS`), its required ones
    given, every amount a finite number >= 0, a matrix's pairs unique."""
    where = fieldpath.child(path, "cost")
    cost = read.open(section, path, "cost", _COST_FIELDS)
    if cost is None:
        return None
    amounts = {key: _amount(read, cost, where, key) for key in _COST_FIELDS if key != "matrix"}
    matrix = _cost_matrix(read, cost, where)
    if task is not None:
        for key in _COST_FIELDS:
            if key in cost and key not in _COST_KINDS[task]:
                owner = next(t for t, keys in _COST_KINDS.items() if key in keys)
                read.fail(fieldpath.child(where, key), f"only for a {owner} model, this one is "
                          f"{task}: {_cost_expected(task)}")  # fmt: skip
        for key in _COST_REQUIRED[task]:
            if key not in cost:
                read.fail(fieldpath.child(where, key), f"required for a {task} model: "
                          f"{_cost_expected(task)}")  # fmt: skip
    return CostSpec(
        false_positive=amounts["falsePositive"],
        false_negative=amounts["falseNegative"],
        true_positive=amounts["truePositive"],
        true_negative=amounts["trueNegative"],
        matrix=matrix,
        over_prediction=amounts["overPrediction"],
        under_prediction=amounts["underPrediction"],
    )


def _cost_expected(task: Task) -> str:
    if task == "binary":
        return "falsePositive and falseNegative, optionally the gains truePositive, trueNegative"
    if task == "multiclass":
        return "a matrix of {actual, predicted, cost}"
    return "overPrediction and underPrediction, per unit"


def _amount(read: _Reader, obj: Mapping[str, object], path: str, key: str) -> float:
    """A cost or gain: a finite number >= 0 (0 when absent or wrong)."""
    value = read.number(obj, path, key, default=0.0)
    if value < 0:
        read.fail(fieldpath.child(path, key), f"must be at least 0, got {_show(obj[key])}")
        return 0.0
    return value


def _cost_matrix(read: _Reader, cost: Mapping[str, object], path: str) -> tuple[CostCell, ...]:
    items = read.items(cost, path, "matrix", min_items=1, max_items=MAX_COST_CELLS)
    cells: list[CostCell] = []
    seen: dict[tuple[str, str], str] = {}
    for item_path, item in items:
        cell = read.mapping(item, item_path, _CELL_FIELDS)
        if cell is None:
            continue
        actual = read.text(cell, item_path, "actual", _LABEL, required=True)
        predicted = read.text(cell, item_path, "predicted", _LABEL, required=True)
        if "cost" not in cell:
            read.fail(fieldpath.child(item_path, "cost"), "required")
        amount = _amount(read, cell, item_path, "cost")
        if actual is None or predicted is None:
            continue
        if (
            read.unique(seen, (actual, predicted), item_path, item_path, "prices this pair")
            is not None
        ):
            cells.append(CostCell(actual, predicted, amount))
    return tuple(cells)


def _alerts(
    read: _Reader, spec: Mapping[str, object], path: str, task: Task | None
) -> tuple[AlertSpec, ...]:
    section = spec.get("metrics")
    priced = isinstance(section, Mapping) and section.get("cost") is not None
    known = (*metrics.METRIC_NAMES.get(task, ()), *DRIFT_METRICS) if task is not None else None
    reviewing = spec.get("review") is not None
    declared = spec.get("features")
    features = (  # an empty list declares none: the features are discovered
        {f.get("name") for f in declared if isinstance(f, Mapping)}
        if isinstance(declared, list) and declared
        else None
    )
    declared_segments = spec.get("segments")
    segments = (
        {s.get("name"): s.get("drift") is True for s in declared_segments if isinstance(s, Mapping)}
        if isinstance(declared_segments, list)
        else {}
    )
    alerts: list[AlertSpec] = []
    seen: dict[str, str] = {}
    for where, alert in read.objects(spec, path, "alerts", _ALERT_FIELDS, max_items=MAX_ALERTS):
        name = read.text(alert, where, "name", _ALERT_NAME, required=True)
        name = read.unique(seen, name, where, fieldpath.child(where, "name"), "has this name")
        metric = read.text(alert, where, "metric", _METRIC, required=True)
        if metric == COST and not priced:
            read.fail(fieldpath.child(where, "metric"), "cost needs spec.metrics.cost: what a "
                      "mistake costs")  # fmt: skip
        elif metric is not None and known is not None and metric not in (*known, COST):
            read.fail(
                fieldpath.child(where, "metric"),
                f"{_show(metric)} is not a metric of a {task} model; "
                f"expected one of: {', '.join((*known, COST))}",
            )
        feature = _alert_feature(read, alert, where, metric, features)
        below = read.number(alert, where, "below")
        above = read.number(alert, where, "above")
        if ("below" in alert) == ("above" in alert):
            read.fail(where, "exactly one of below or above")
        for_ = read.duration(alert, where, "for", positive=False, default=0.0, most=MAX_HOLD)
        source = _alert_source(read, alert, where, metric, task, reviewing=reviewing, priced=priced)
        segment = _alert_segment(read, alert, where, metric, segments)
        if name is not None and metric is not None:
            alerts.append(AlertSpec(name, metric, below, above, for_, feature, source, segment))
    return tuple(alerts)


def _alert_segment(
    read: _Reader,
    alert: Mapping[str, object],
    path: str,
    metric: str | None,
    segments: Mapping[object, bool],
) -> str | None:
    """The alert's `segment`: one of `spec.segments` (`segments`: each declared name, whether it
    has `drift`), one with `drift` for a drift metric (only those keep the feature sketches per
    value)."""
    segment = read.text(alert, path, "segment", _SEGMENT)
    where = fieldpath.child(path, "segment")
    if segment is None:
        return None
    if segment not in segments:
        read.fail(where, f"no segment named {_show(segment)} in spec.segments")
        return None
    if metric in DRIFT_METRICS and not segments[segment]:
        read.fail(where, f"a drift metric ({metric}) needs a segment with drift: true "
                  f"({segment} keeps no feature sketches per value)")  # fmt: skip
        return None
    return segment


def _alert_source(
    read: _Reader,
    alert: Mapping[str, object],
    path: str,
    metric: str | None,
    task: Task | None,
    *,
    reviewing: bool,
    priced: bool,
) -> AlertSource:
    """The alert's `source` (realized by default): estimated or auto only for a metric the
    task's estimator gives (`metrics.ESTIMATED_NAMES`; a drift metric needs no labels), reviewed
    only with `spec.review` (`reviewing`) and for a metric the reviewed labels estimate
    (`metrics.REVIEWED_NAMES`; not the cost, which `priced` says the spec has)."""
    source = read.choice(alert, path, "source", ALERT_SOURCES) or "realized"
    if source == "realized" or metric is None:
        return source
    if metric in DRIFT_METRICS:
        read.fail(
            fieldpath.child(path, "source"),
            f"{source} is for a model metric; a drift metric needs no labels",
        )
        return "realized"
    if source == "reviewed" and not reviewing:
        read.fail(
            fieldpath.child(path, "source"),
            "reviewed needs spec.review: the review queue whose labels it reads",
        )
    names = metrics.REVIEWED_NAMES if source == "reviewed" else metrics.ESTIMATED_NAMES
    estimated = names.get(task, ()) if task is not None else None
    known = metrics.METRIC_NAMES.get(task, ()) if task is not None else ()
    cost = priced and metric == COST and source == "reviewed"
    if estimated is not None and (metric in known or cost) and metric not in estimated:
        said = "from reviewed labels" if source == "reviewed" else "before labels"
        read.fail(
            fieldpath.child(path, "metric"),
            f"{_show(metric)} has no estimate {said} (source {source}); "
            f"expected one of: {', '.join(estimated)}",
        )
    return source


def _alert_feature(
    read: _Reader,
    alert: Mapping[str, object],
    path: str,
    metric: str | None,
    features: set[object] | None,
) -> str | None:
    """The alert's `feature`: required by the per-feature drift metrics and refused by the rest;
    one of `spec.features` when those are declared (`features`), never a reserved column."""
    where = fieldpath.child(path, "feature")
    wanted = metric in FEATURE_METRICS
    if "feature" not in alert:
        if wanted:
            read.fail(where, f"required with metric {metric}: the feature it watches")
        return None
    feature = read.text(alert, path, "feature", _FEATURE)
    if feature is None:
        return None
    if not wanted:
        read.fail(where, f"only with metric {' or '.join(FEATURE_METRICS)}")
        return None
    if feature in RESERVED:
        read.fail(where, f"{_show(feature)} is not a feature; prediction drift is metric "
                  "prediction_drift")  # fmt: skip
        return None
    if features is not None and feature not in features:
        read.fail(where, f"no feature named {_show(feature)} in spec.features")
        return None
    return feature


def _features(read: _Reader, spec: Mapping[str, object], path: str) -> tuple[FeatureSpec, ...]:
    """`spec.features`: unique names that are not reserved columns, a pointer into the captured
    features object (default `/<name>`) and a kind each."""
    found: list[FeatureSpec] = []
    seen: dict[str, str] = {}
    for where, declared in read.objects(
        spec, path, "features", _FEATURE_FIELDS, max_items=MAX_FEATURES
    ):
        name = read.text(declared, where, "name", _FEATURE, required=True)
        name_path = fieldpath.child(where, "name")
        if name is not None and name in RESERVED:
            read.fail(name_path, f"{_show(name)} is a reserved column ({', '.join(RESERVED)}), "
                      "not a feature")  # fmt: skip
            name = None
        name = read.unique(seen, name, where, name_path, "has this name")
        given = read.pointer(declared, where, "pointer")
        kind = read.choice(declared, where, "type", FEATURE_KINDS, required=True)
        if (
            name is not None
            and kind is not None
            and ("pointer" not in declared or given is not None)
        ):
            at = pointer.render((name,)) if given is None else given
            found.append(FeatureSpec(name, at, kind))
    return tuple(found)


def _segments(read: _Reader, spec: Mapping[str, object], path: str) -> tuple[SegmentSpec, ...]:
    """`spec.segments`: at most `MAX_SEGMENTS`, unique names (a feature name's grammar: no `:`,
    `=` or `^`, so they fit counter keys), each read from exactly one of a pointer or a header,
    and either `buckets` (numeric edges, strictly ascending) or `maxValues`, not both."""
    found: list[SegmentSpec] = []
    seen: dict[str, str] = {}
    for where, declared in read.objects(
        spec, path, "segments", _SEGMENT_FIELDS, max_items=MAX_SEGMENTS
    ):
        name = read.text(declared, where, "name", _SEGMENT, required=True)
        name = read.unique(seen, name, where, fieldpath.child(where, "name"), "has this name")
        source = _header_or_pointer(read, declared, where)
        max_values = read.integer(declared, where, "maxValues", low=1, high=MAX_SEGMENT_VALUES)
        buckets = _buckets(read, declared, where)
        if "buckets" in declared and "maxValues" in declared:
            read.fail(fieldpath.child(where, "maxValues"), "not with buckets: a numeric segment's "
                      "values are its buckets")  # fmt: skip
        export = read.boolean(declared, where, "export", default=False)
        drifting = read.boolean(declared, where, "drift", default=False)
        if name is not None and source is not None:
            found.append(SegmentSpec(name, source, max_values or 20, buckets, export, drifting))
    return tuple(found)


def _buckets(read: _Reader, segment: Mapping[str, object], path: str) -> tuple[float, ...]:
    """A segment's `buckets`: 1 to `MAX_SEGMENT_BUCKETS` finite numbers, strictly ascending."""
    items = read.items(segment, path, "buckets", min_items=1, max_items=MAX_SEGMENT_BUCKETS)
    edges: list[float] = []
    for item_path, item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            read.fail(item_path, f"expected a number, got {_show(item)}")
        elif not math.isfinite(item):
            read.fail(item_path, f"expected a finite number, got {_show(item)}")
        elif edges and item <= edges[-1]:
            read.fail(item_path, f"must be above the edge before it, {edges[-1]:g}: buckets are "
                      f"strictly ascending, got {_show(item)}")  # fmt: skip
        else:
            edges.append(float(item))
    return tuple(edges) if len(edges) == len(items) else ()


def _drift(
    read: _Reader,
    spec: Mapping[str, object],
    path: str,
    features: tuple[FeatureSpec, ...],
    task: Task | None,
) -> DriftSpec:
    where = fieldpath.child(path, "drift")
    drift = read.open(spec, path, "drift", _DRIFT_FIELDS)
    if drift is None:
        return DriftSpec()
    return DriftSpec(
        share=read.number(drift, where, "share", low=0.0, high=1.0, low_open=True, default=0.5),
        reference=_period(read, drift, where),
        overrides=_overrides(read, drift, where, features, spec, task),
    )


def _period(read: _Reader, drift: Mapping[str, object], path: str) -> tuple[float, float] | None:
    """`drift.reference`: the period `{from, to}` a history reference is built from, as epoch
    seconds, `from` before `to`."""
    where = fieldpath.child(path, "reference")
    period = read.open(drift, path, "reference", _PERIOD_FIELDS)
    if period is None:
        return None
    bounds = [read.timestamp(period, where, key, required=True) for key in _PERIOD_FIELDS]
    start, end = bounds
    if start is None or end is None:
        return None
    if start >= end:
        read.fail(fieldpath.child(where, "to"), "must be after from")
        return None
    return start, end


_ORDERED_METHODS = ("wasserstein", "ks")
_P_VALUE_METHODS = ("ks", "chisquare")


def _overrides(
    read: _Reader,
    drift: Mapping[str, object],
    path: str,
    features: tuple[FeatureSpec, ...],
    spec: Mapping[str, object],
    task: Task | None,
) -> tuple[DriftOverride, ...]:
    """`drift.overrides`: per profiled column (a feature, the prediction or the score) a method
    and/or a threshold; a method that needs ordered values is refused for a categorical one, a
    p-value bound is at most 1."""
    kinds: dict[str, FeatureKind | None] = {f.name: f.kind for f in features}
    kinds[SCORE] = "numeric"
    kinds[PREDICTION] = (
        None if task is None else "numeric" if task == "regression" else "categorical"
    )
    declared = read.given(spec, "features")
    found: list[DriftOverride] = []
    seen: dict[str, str] = {}
    for where, override in read.objects(
        drift, path, "overrides", _OVERRIDE_FIELDS, max_items=MAX_FEATURES
    ):
        name = read.text(override, where, "feature", _FEATURE, required=True)
        name_path = fieldpath.child(where, "feature")
        if name is not None and name in RESERVED and name not in (PREDICTION, SCORE):
            read.fail(name_path, f"{_show(name)} is not profiled; a column of "
                      f"spec.features, {PREDICTION} or {SCORE}")  # fmt: skip
            name = None
        elif name is not None and declared and name not in kinds:
            read.fail(name_path, f"no feature named {_show(name)} in spec.features")
            name = None
        name = read.unique(seen, name, where, name_path, "overrides this feature")
        method = read.choice(override, where, "method", DRIFT_METHODS)
        kind = kinds.get(name) if name is not None else None
        if method in _ORDERED_METHODS and kind == "categorical":
            read.fail(fieldpath.child(where, "method"), f"{method} needs ordered values; "
                      f"{_show(name)} is categorical: jensenshannon, psi or chisquare")  # fmt: skip
            method = None
        threshold = read.number(override, where, "threshold")
        threshold_path = fieldpath.child(where, "threshold")
        if threshold is not None and threshold <= 0:
            read.fail(threshold_path, f"must be > 0, got {_show(override['threshold'])}")
            threshold = None
        elif threshold is not None and method in _P_VALUE_METHODS and threshold > 1:
            read.fail(threshold_path, f"{method}'s threshold bounds a p-value: at most 1, got "
                      f"{_show(override['threshold'])}")  # fmt: skip
            threshold = None
        if "method" not in override and "threshold" not in override:
            read.fail(where, "give a method, a threshold or both")
        elif name is not None and (method is not None or threshold is not None):
            found.append(DriftOverride(name, method, threshold))
    return tuple(found)


def _fallback(
    read: _Reader, spec: Mapping[str, object], path: str, alerts: tuple[AlertSpec, ...]
) -> FallbackSpec:
    where = fieldpath.child(path, "fallback")
    fallback = read.open(spec, path, "fallback", _FALLBACK_FIELDS)
    if fallback is None:
        return FallbackSpec(engage_on=tuple(a.name for a in alerts))
    mode = read.choice(fallback, where, "mode", FALLBACK_MODES) or "auto"
    parsed = _rules(read, fallback, where)
    declared = spec.get("alerts")
    names = (
        {a.get("name") for a in declared if isinstance(a, Mapping)}
        if isinstance(declared, list)
        else set()
    )
    engage_on: list[str] = []
    for item_path, item in read.items(fallback, where, "engageOn", max_items=MAX_ALERTS):
        name = read.check_text(item, item_path, _ALERT_NAME)
        if name is not None and name not in names:
            read.fail(
                item_path, f"no alert named {_show(name)} in {fieldpath.child(path, 'alerts')}"
            )
        elif name is not None:
            engage_on.append(name)
    has_rules = read.given(fallback, "rules")
    if mode == "engaged" and not has_rules:
        read.fail(fieldpath.child(where, "rules"), "required with mode engaged: the fallback "
                  "would have nothing to serve")  # fmt: skip
    if read.given(fallback, "engageOn") and not has_rules:
        read.fail(fieldpath.child(where, "engageOn"), "needs fallback rules: without them an "
                  "engaged fallback has nothing to serve")  # fmt: skip
    return FallbackSpec(
        mode=mode,
        engage_on=tuple(engage_on) if "engageOn" in fallback else tuple(a.name for a in alerts),
        recover_after=read.duration(
            fallback, where, "recoverAfter", positive=False, default=600.0, most=MAX_HOLD
        ),
        rules=parsed,
    )


def _rules(read: _Reader, fallback: Mapping[str, object], path: str) -> tuple[FallbackRule, ...]:
    errors_before = len(read.errors)
    items = read.items(fallback, path, "rules", max_items=MAX_RULES)
    parsed: list[FallbackRule] = []
    for index, (where, item) in enumerate(items):
        rule = read.mapping(item, where, _RULE_FIELDS)
        if rule is None:
            continue
        when = read.text(rule, where, "when", _CEL)
        prediction = read.text(rule, where, "prediction", _CEL, required=True)
        last = index == len(items) - 1
        if last and "when" in rule:
            read.fail(fieldpath.child(where, "when"), "the last rule has no when: it answers "
                      "every request the rules before it did not")  # fmt: skip
        elif not last and "when" not in rule:
            read.fail(where, "only the last rule may omit when: the rules after it would never "
                      "be tried")  # fmt: skip
        if prediction is not None:
            parsed.append(FallbackRule(prediction=prediction, when=when))
    if parsed and len(read.errors) == errors_before:
        _compile(read, tuple(parsed), fieldpath.child(path, "rules"))
    return tuple(parsed)


def _compile(read: _Reader, parsed: tuple[FallbackRule, ...], path: str) -> None:
    """Report every rule expression that does not compile, at its field, with the position.

    CEL is imported here, with the first spec that has rules: one without never loads it."""
    from truthloop.core import celrules

    for e in celrules.check_rules(parsed):
        if e.column is None:
            where = ""
        elif e.line is not None and e.line > 1:
            where = f"line {e.line}, column {e.column}: "
        else:
            where = f"column {e.column}: "
        read.fail(fieldpath.child(fieldpath.item(path, e.index), e.field), where + e.message)


# -- review ----------------------------------------------------------------------------------------

MAX_REVIEW_BUDGET = 1e7
"""The most items a `spec.review.budget` may ask for (per day or per window)."""
MAX_ABSTAIN_BODY = 64 * 1024
"""The longest abstain response body, in bytes of its compact JSON."""
MAX_ABSTAIN_HEADERS = 32
RESERVED_HEADERS = (
    "x-prediction-id", "x-truthloop-abstain", "content-length", "transfer-encoding", "connection",
)  # fmt: skip
"""Headers (lower-cased) an abstain response may not set: the sidecar sets them itself."""
MAX_SEED = 2**32 - 1
_LEASE_BOUNDS = (10.0, 86400.0)
_SHARE_TOLERANCE = 1e-9
"""How far from 1 `random + borderline` may be (decimal shares like 0.3 + 0.7 are not exact)."""


def _review(
    read: _Reader, spec: Mapping[str, object], path: str, task: Task | None, capture: CaptureSpec
) -> ReviewSpec | None:
    """`spec.review`: the budget and its split, the outlier stratum, the lease, the seed and the
    abstain band (None without the section)."""
    where = fieldpath.child(path, "review")
    review = read.open(spec, path, "review", _REVIEW_FIELDS)
    if review is None:
        return None
    if "budget" not in review:
        read.fail(fieldpath.child(where, "budget"), "required")
    budget = read.number(review, where, "budget", low=0.0, high=MAX_REVIEW_BUDGET, low_open=True)
    random = read.number(review, where, "random", low=0.0, high=1.0)
    borderline = read.number(review, where, "borderline", low=0.0, high=1.0)
    if (
        random is not None
        and borderline is not None
        and abs(random + borderline - 1.0) > _SHARE_TOLERANCE
    ):
        read.fail(fieldpath.child(where, "borderline"), "random and borderline split the budget: "
                  f"they sum to 1, got {random:g} + {borderline:g}")  # fmt: skip
    if random is None:
        random = 1.0 - (borderline or 0.0)
    if borderline is None:
        borderline = 1.0 - random
    low, high = _LEASE_BOUNDS
    found = ReviewSpec(
        budget=budget or 1.0,
        per=read.choice(review, where, "per", REVIEW_PER) or "day",
        random=random,
        borderline=borderline,
        outliers=read.number(
            review, where, "outliers", low=0.0, high=1.0, high_open=True, default=0.0
        ),
        abstain=_abstain(read, review, where, task, capture),
        lease=read.duration(
            review, where, "lease", positive=False, default=600.0, most=high, least=low
        ),
        seed=read.integer(review, where, "seed", low=0, high=MAX_SEED) or 0,
    )
    return found if budget is not None else None


def _abstain(
    read: _Reader,
    review: Mapping[str, object],
    path: str,
    task: Task | None,
    capture: CaptureSpec,
) -> AbstainSpec | None:
    """`review.abstain`: a classifier's score band and explore share, and what it answers."""
    where = fieldpath.child(path, "abstain")
    abstain = read.open(review, path, "abstain", _ABSTAIN_FIELDS)
    if abstain is None:
        return None
    if task == "regression":
        read.fail(where, "only for a classifier: a regression model has no score to abstain on")
    if capture.batch is not None:
        read.fail(where, "only without spec.capture.batch: the sidecar answers for a whole "
                  "response, and a batch holds many records")  # fmt: skip
    elif capture.row_based:
        read.fail(where, f"only for a single-row capture: spec.capture.protocol "
                  f"{capture.protocol} holds many records in a response")  # fmt: skip
    band_path = fieldpath.child(where, "band")
    band = read.open(abstain, where, "band", _BAND_FIELDS, required=True)
    low = high = None
    if band is not None:
        for key in _BAND_FIELDS:
            if key not in band:
                read.fail(fieldpath.child(band_path, key), "required")
        low = read.number(band, band_path, "low", low=0.0, high=1.0)
        high = read.number(band, band_path, "high", low=0.0, high=1.0)
        if low is not None and high is not None and low > high:
            read.fail(fieldpath.child(band_path, "high"), f"must be at least low ({low:g}), got "
                      f"{high:g}")  # fmt: skip
    explore = read.number(abstain, where, "explore", low=0.0, high=1.0, high_open=True, default=0.0)
    response = _abstain_response(read, abstain, where)
    if low is None or high is None:
        return None
    return AbstainSpec(low=low, high=high, explore=explore, response=response)


def _abstain_response(read: _Reader, abstain: Mapping[str, object], path: str) -> AbstainResponse:
    """`abstain.response`: its status, its body rendered once as compact JSON, its headers."""
    where = fieldpath.child(path, "response")
    response = read.open(abstain, path, "response", _RESPONSE_FIELDS)
    if response is None:
        return AbstainResponse()
    status = read.integer(response, where, "status", low=200, high=599) or 200
    body = AbstainResponse().body
    if "body" in response:
        body_path = fieldpath.child(where, "body")
        try:
            text = json.dumps(
                response["body"], ensure_ascii=False, separators=(",", ":"), allow_nan=False
            )
        except (TypeError, ValueError, RecursionError) as e:
            read.fail(body_path, f"expected JSON: {e}")
        else:
            size = len(text.encode())
            if size > MAX_ABSTAIN_BODY:
                read.fail(body_path, f"must be at most {MAX_ABSTAIN_BODY} bytes as JSON, got "
                          f"{size}")  # fmt: skip
            else:
                body = text
    return AbstainResponse(status=status, body=body, headers=_headers(read, response, where))


def _headers(
    read: _Reader, response: Mapping[str, object], path: str
) -> tuple[tuple[str, str], ...]:
    """`response.headers`: at most `MAX_ABSTAIN_HEADERS`, HTTP names (each once, in any case),
    none of `RESERVED_HEADERS`, printable values."""
    where = fieldpath.child(path, "headers")
    headers = read.open(response, path, "headers", None)
    if headers is None:
        return ()
    if len(headers) > MAX_ABSTAIN_HEADERS:
        read.fail(where, f"must have at most {MAX_ABSTAIN_HEADERS} headers, got {len(headers)}")
    found: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for name, value in headers.items():
        at = fieldpath.child(where, name)
        checked = read.check_text(value, at, _HEADER_VALUE)
        if read.check_text(name, at, _HEADER) is None:
            continue
        if name.lower() in RESERVED_HEADERS:
            read.fail(at, f"{name} is set by the sidecar; the response may not set "
                      f"{', '.join(RESERVED_HEADERS)}")  # fmt: skip
        elif read.unique(seen, name.lower(), at, at, "names this header") and checked is not None:
            found.append((name, checked))
    return tuple(found)


# -- typed reading with every error collected ------------------------------------------------------


def _show(value: object) -> str:
    """A value as it appears in a message: JSON-like, short."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return _show(str(value))


def _integral(value: object) -> int | None:
    """An integer, or a float with an integral value (JSON does not tell 2 from 2.0)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


class _Reader:
    """Reads a JSON-like tree field by field, collecting a FieldError for every problem.

    A declared field that is `null` counts as absent (the apiserver prunes such nulls before it
    applies defaults); in a free-form map (`matchLabels`) a null is a value, and an error. Getters
    return None when the value is absent or invalid, or the given default.
    """

    __slots__ = ("bounded", "errors")

    def __init__(self, bounded: bool = True) -> None:
        self.errors: list[FieldError] = []
        self.bounded = bounded

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def mapping(
        self, value: object, path: str, fields: tuple[str, ...] | None
    ) -> dict[str, object] | None:
        """`value` as a mapping; keys not in `fields` are errors (`None`: any key is fine)."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object, got {_show(value)}")
            return None
        found: dict[str, object] = {}
        for key, item in value.items():
            if fields is not None and key not in fields:
                self.fail(
                    fieldpath.child(path, str(key)),
                    f"unknown field; expected one of: {', '.join(fields)}",
                )
            elif not isinstance(key, str):
                self.fail(fieldpath.child(path, str(key)), f"expected a string key, got {key!r}")
            elif item is not None or fields is None:
                found[key] = item
        return found

    def field(
        self, obj: Mapping[str, object], path: str, key: str, *, required: bool = False
    ) -> object | None:
        value = obj.get(key)
        if value is None and required:
            self.fail(fieldpath.child(path, key), "required")
        return value

    def open(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        fields: tuple[str, ...] | None,
        *,
        required: bool = False,
    ) -> dict[str, object] | None:
        value = self.field(obj, path, key, required=required)
        return None if value is None else self.mapping(value, fieldpath.child(path, key), fields)

    def items(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        *,
        min_items: int = 0,
        max_items: int | None = None,
    ) -> list[tuple[str, object]]:
        """The list at `key` as (path, item) pairs; `[]` when absent or not a list."""
        value = obj.get(key)
        where = fieldpath.child(path, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_show(value)}")
            return []
        if len(value) < min_items:
            self.fail(where, f"must have at least {min_items} item{'s' * (min_items > 1)}")
        if max_items is not None and len(value) > max_items:
            self.fail(where, f"must have at most {max_items} items, got {len(value)}")
        return [(fieldpath.item(where, i), item) for i, item in enumerate(value)]

    def objects(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        fields: tuple[str, ...],
        *,
        max_items: int | None = None,
    ) -> Iterator[tuple[str, dict[str, object]]]:
        """The list of objects at `key` as (path, object) pairs, each read as the caller gets to
        it (its errors in item order): an item that is not an object is an error and left out."""
        for where, item in self.items(obj, path, key, max_items=max_items):
            mapping = self.mapping(item, where, fields)
            if mapping is not None:
                yield where, mapping

    def unique(
        self, seen: dict[_K, str], key: _K | None, where: str, path: str, says: str
    ) -> _K | None:
        """`key` the first time a list names it (remembering the item's path `where`); after
        that an error at `path` naming the first item (`duplicate: <first> <says>`) and None."""
        if key is None:
            return None
        if key in seen:
            self.fail(path, f"duplicate: {seen[key]} {says}")
            return None
        seen[key] = where
        return key

    @staticmethod
    def given(obj: Mapping[str, object], key: str) -> bool:
        """True when `key` holds something other than null or an empty list."""
        return obj.get(key) not in (None, [])

    def check_text(self, value: object, path: str, rule: _Text) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_show(value)}")
            return None
        if len(value) < rule.min_length:
            self.fail(path, "must not be empty")
        elif len(value) > rule.max_length:
            self.fail(path, f"must be at most {rule.max_length} characters, got {len(value)}")
        elif _has_control(value, rule.multiline):
            self.fail(path, f"must not contain control characters, got {_show(value)}")
        elif rule.pattern is not None and not rule.pattern.fullmatch(value):
            self.fail(path, f"expected {rule.expected}, got {_show(value)}")
        else:
            return value
        return None

    def text(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        rule: _Text,
        *,
        required: bool = False,
    ) -> str | None:
        value = self.field(obj, path, key, required=required)
        return None if value is None else self.check_text(value, fieldpath.child(path, key), rule)

    def pointer(
        self, obj: Mapping[str, object], path: str, key: str, *, required: bool = False
    ) -> str | None:
        value = self.field(obj, path, key, required=required)
        where = fieldpath.child(path, key)
        text = None if value is None else self.check_text(value, where, _Text(_POINTER_MAX))
        if text is None:
            return None
        try:
            pointer.parse(text)
        except pointer.PointerError as e:
            self.fail(where, f"not a JSON pointer (RFC 6901): {e}")
            return None
        return text

    def choice(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        options: tuple[_T, ...],
        *,
        required: bool = False,
    ) -> _T | None:
        value = self.field(obj, path, key, required=required)
        if value is None:
            return None
        if value not in options or not isinstance(value, str):
            self.fail(
                fieldpath.child(path, key),
                f"expected one of: {', '.join(map(str, options))}; got {_show(value)}",
            )
            return None
        return options[options.index(value)]

    def timestamp(
        self, obj: Mapping[str, object], path: str, key: str, *, required: bool = False
    ) -> float | None:
        """An RFC 3339 timestamp with its offset, as epoch seconds."""
        text = self.text(obj, path, key, _TIMESTAMP, required=required)
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError as e:
            self.fail(fieldpath.child(path, key), f"not a date and time: {e}")
            return None

    def boolean(self, obj: Mapping[str, object], path: str, key: str, *, default: bool) -> bool:
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(fieldpath.child(path, key), f"expected true or false, got {_show(value)}")
            return default
        return value

    @overload
    def number(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        *,
        low: float | None = ...,
        high: float | None = ...,
        low_open: bool = ...,
        high_open: bool = ...,
        default: float,
    ) -> float: ...

    @overload
    def number(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        *,
        low: float | None = ...,
        high: float | None = ...,
        low_open: bool = ...,
        high_open: bool = ...,
        default: None = ...,
    ) -> float | None: ...

    def number(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
        default: float | None = None,
    ) -> float | None:
        value = obj.get(key)
        if value is None:
            return default
        where = fieldpath.child(path, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"expected a number, got {_show(value)}")
            return default
        if not math.isfinite(value):
            self.fail(where, f"expected a finite number, got {_show(value)}")
            return default
        if low is not None and high is not None:
            if low_open and not low < value <= high:
                self.fail(where, f"must be > {low:g} and <= {high:g}, got {_show(value)}")
                return default
            if high_open and not low <= value < high:
                self.fail(where, f"must be >= {low:g} and < {high:g}, got {_show(value)}")
                return default
            if not low <= value <= high:
                self.fail(where, f"must be between {low:g} and {high:g}, got {_show(value)}")
                return default
        return float(value)

    def integer(
        self, obj: Mapping[str, object], path: str, key: str, *, low: int, high: int | None = None
    ) -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        where = fieldpath.child(path, key)
        number = _integral(value)
        if number is None:
            self.fail(where, f"expected an integer, got {_show(value)}")
        elif number < low:
            self.fail(where, f"must be at least {low}, got {_show(value)}")
        elif high is not None and number > high:
            self.fail(where, f"must be at most {high}, got {_show(value)}")
        else:
            return number
        return None

    def duration(
        self,
        obj: Mapping[str, object],
        path: str,
        key: str,
        *,
        positive: bool,
        default: float,
        most: float,
        least: float = 0.0,
    ) -> float:
        value = obj.get(key)
        if value is None:
            return default
        where = fieldpath.child(path, key)
        if not isinstance(value, str):
            self.fail(where, f"expected {_DURATION_EXAMPLE}, got {_show(value)}")
            return default
        if len(value) > _DURATION_MAX:
            self.fail(where, f"must be at most {_DURATION_MAX} characters, got {len(value)}")
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            self.fail(where, str(e))
            return default
        if positive and seconds == 0:
            self.fail(where, "must be longer than 0s")
            return default
        if seconds < least:
            self.fail(where, f"must be at least {format_duration(least)}, got {value}")
            return default
        if self.bounded and seconds > most:
            self.fail(where, f"must be at most {format_duration(most)}, got {value}")
            return default
        return seconds
