"""The report on an alert that fired: what the monitor's window held at that moment, and why.

`build(inputs)` turns what the engine read when the alert fired (the window evaluated, the drift
report, the segments and versions, a sample of wrong predictions, the sidecars' minute counters)
into a `Report`, every list bounded so that one report stays well under `MAX_HTML` bytes;
`render(report)` writes it as one self-contained HTML page: inline CSS, a little inline script
(sortable tables), histograms as inline SVG, and a Content-Security-Policy that lets it load
nothing, so it opens the same offline, attached to a ticket or years later.

The "why" (`causes`) weighs each kind of likely cause on one scale, a `score` where 1 is "stands
out" (at its threshold) and more is stronger:

- `drift`: the most drifted feature's statistic over its threshold (a test's threshold over its
  p-value), when features drifted;
- `outliers`: the window's share of outlier records (any feature outside the reference) over
  `OUTLIER_SHARE`;
- `data_quality`: the largest rise of a feature's missing share over the reference's, or its
  share of values of the wrong type, over `QUALITY_EXCESS`;
- `segment` / `version`: how far the worst value of a segment (the worst version) is below the
  whole window on the metric that ranks it, in half-widths of its own interval (only with
  `min_samples` behind it and at least two values);
- `sidecar`: the rise of the sidecars' error rate over the hour before, over `SIDECAR_ERRORS`,
  or their p99 latency's ratio to the hour before over `SIDECAR_SLOWER`.

Causes are ranked by score; those at 1 or more are the likely ones, and without any the verdict
is "no clear cause" (the weaker candidates are still listed with their numbers).
"""

from __future__ import annotations

import datetime
import html
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from truthloop.core import drift, evaluation, metrics, segment_metrics, sidecar_stats
from truthloop.core.drift import ColumnDrift, DriftReport
from truthloop.core.evaluation import Evaluated
from truthloop.core.profile import Reference
from truthloop.core.segment_metrics import Ranked, Ranking
from truthloop.core.spec import DRIFT_METRICS, MonitorSpec
from truthloop.core.tasks import Task
from truthloop.core.wire import Scalar

MAX_HTML = 1_000_000
"""The most bytes a rendered report may take (the bounds below keep it far under)."""
MAX_DRIFT_ROWS = 100
"""Features in the drift table (drifted first, then by distance over threshold)..."""
MAX_HISTOGRAMS = 30
"""... of which the first ones carry their histogram."""
MAX_CELLS = 60
"""Cells of one histogram (a profile has at most 22 numeric or 51 categorical)."""
MAX_LABEL = 64
"""Characters of a category, class, segment value or version shown."""
MAX_WRONG = 50
"""Wrong predictions in the sample."""
MAX_INPUTS = 1000
"""Characters of one wrong prediction's inputs (its features as JSON), cut beyond."""
MAX_SEGMENTS = 5
MAX_SEGMENT_VALUES = 10
MAX_VERSIONS = 20
MAX_CLASSES = 20
"""Classes of the confusion matrix (the most frequent; the rest summed as `other`)."""
MAX_METRICS = 40

OUTLIER_SHARE = 0.05
"""The share of outlier records that stands out (a reference's own records have none)."""
QUALITY_EXCESS = 0.05
"""The rise of a feature's missing (or wrong-type) share over the reference's that stands out."""
SIDECAR_ERRORS = 0.02
"""The rise of the sidecars' error rate over the hour before that stands out..."""
SIDECAR_SLOWER = 2.0
"""... and the ratio of their p99 latency to the hour before's."""
NO_SPREAD = 0.05
"""The half-width assumed for a segment value or version whose metric has no interval."""

CauseKind = Literal["drift", "outliers", "data_quality", "segment", "version", "sidecar"]
Evidence = dict[str, float | str | None]


# -- what the engine hands in ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wrong:
    """A wrong prediction of the window, as the store gave it."""

    prediction_id: str
    ts: float
    version: str
    features: Any
    prediction: Scalar
    actual: Any
    score: float | None


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a report is built from: the alert that fired (`alert`, its transition's `reason`,
    `at`), the window (`seconds`, [`start`, `end`) in Unix seconds) and what it held."""

    monitor: str
    alert: str
    reason: str
    at: float
    task: Task
    seconds: float
    start: float
    end: float
    by: Ranking
    """The metric versions are compared on (the alert's when it reads a model metric)."""
    min_samples: int
    model: Evaluated | None
    counters: metrics.Counters = field(default_factory=dict)
    """The model's window counters (every version), for the confusion matrix."""
    versions: Mapping[str, Evaluated] = field(default_factory=dict)
    segments: Mapping[str, tuple[Ranking, Sequence[Ranked]]] = field(default_factory=dict)
    """Each segment's values, worst first, and what ranks them."""
    drift: DriftReport | None = None
    reference_missing: Mapping[str, float] = field(default_factory=dict)
    """Each feature's share of missing values in the reference."""
    wrong: Sequence[Wrong] = ()
    wrong_seen: int = 0
    """Wrong predictions read (`wrong` is the newest of them)."""
    sidecar: tuple[Mapping[str, float], Mapping[str, float]] | None = None
    """The sidecars' counters (`wire.SidecarMinute` keys) summed over the hour before the
    firing and over the hour before that; None when none were received."""


# -- the report --------------------------------------------------------------------------------


class MetricRow(msgspec.Struct, frozen=True):
    """One metric from one source (`realized`, `estimated`, `reviewed`) with its interval."""

    name: str
    source: str
    value: float | None
    lower: float | None
    upper: float | None


class Confusion(msgspec.Struct, frozen=True):
    """Counts by actual (rows) and predicted (columns) class."""

    labels: tuple[str, ...]
    cells: tuple[tuple[float, ...], ...]


class Histogram(msgspec.Struct, frozen=True):
    """Proportions per cell of the reference and the window; `labels` name the cells."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


class DriftRow(msgspec.Struct, frozen=True, kw_only=True):
    """A feature's test in the window, as GET .../drift answers it (`drift.ColumnDrift`)."""

    feature: str
    method: str
    statistic: float | None
    """The method's statistic: the distance, or the KS / chi-square statistic of a test."""
    p_value: float | None
    """A test's (`ks`, `chisquare`) p-value; None for a distance."""
    threshold: float
    """What decides `drifted`: a distance at or above it, a test's p-value below it."""
    drifted: bool
    distance: float | None
    """The feature's distance (`distance_method`) at every window size: what `feature_drift`
    alerts (with their own thresholds) and the charts read."""
    distance_method: str | None
    samples: int
    missing: float | None
    reference_missing: float | None
    wrong_type: float | None
    out_of_range: float | None
    new_category: float | None
    histogram: Histogram | None = None


class SegmentRow(msgspec.Struct, frozen=True):
    segment: str
    value: str
    metric: str
    score: float | None
    samples: int


class VersionRow(msgspec.Struct, frozen=True):
    version: str
    samples: int
    labeled: int
    metric: str
    value: float | None
    lower: float | None
    upper: float | None


class WrongRow(msgspec.Struct, frozen=True):
    prediction_id: str
    ts: float
    version: str
    inputs: str
    """The features as JSON, cut at `MAX_INPUTS` characters."""
    prediction: Scalar
    actual: Any
    score: float | None


class SidecarPeriod(msgspec.Struct, frozen=True):
    """The sidecars over an hour: requests, errors (the 10 commonest reasons), the error rate,
    the share the fallback answered, the proxy's latency quantiles (seconds), and the
    connections passed to the model uncaptured by protocol (gRPC's `h2c`...), as
    `sidecar_stats.stats` reads them (GET .../sidecar's figures)."""

    requests: int
    errors: int
    error_rate: float | None
    fallback_share: float | None
    p50: float | None
    p99: float | None
    reasons: dict[str, int] = {}
    passthrough: dict[str, int] = {}


class SidecarHealth(msgspec.Struct, frozen=True):
    now: SidecarPeriod
    before: SidecarPeriod


class Cause(msgspec.Struct, frozen=True):
    """A likely cause: its kind, how strongly it stands out (1: at its threshold), the numbers
    behind it and a sentence."""

    kind: CauseKind
    score: float
    likely: bool
    sentence: str
    evidence: Evidence


class Report(msgspec.Struct, frozen=True, kw_only=True):
    monitor: str
    alert: str
    reason: str
    at: float
    window: dict[str, float]
    """`seconds`, `start`, `end`."""
    summary: str
    """One line: the alert, and the likeliest cause or "no clear cause"."""
    samples: int
    labeled: int
    metrics: tuple[MetricRow, ...]
    confusion: Confusion | None
    drift_status: str
    drift: tuple[DriftRow, ...]
    drift_share: float | None
    outliers: float | None
    segments: tuple[SegmentRow, ...]
    versions: tuple[VersionRow, ...]
    wrong: tuple[WrongRow, ...]
    wrong_seen: int
    sidecar: SidecarHealth | None
    why: tuple[Cause, ...]
    truncated: dict[str, int] = {}
    """Rows left out of a bounded list, by list."""


def ranking(spec: MonitorSpec, alert: str) -> Ranking:
    """What versions are compared on: the model metric `alert` reads (without its segment),
    else the task's headline metric (a drift alert's)."""
    for found in spec.alerts:
        if found.name == alert and found.metric not in DRIFT_METRICS:
            return Ranking(segment_metrics.inner_key(found), found.below is not None)
    return segment_metrics.headline(spec.task)


def reference_missing(reference: Reference | None) -> dict[str, float]:
    """Each column's share of missing values in a reference."""
    if reference is None or not reference.profile.rows:
        return {}
    rows = reference.profile.rows
    return {c.name: c.missing / rows for c in reference.profile.columns}


# -- build -------------------------------------------------------------------------------------


def build(inputs: Inputs) -> Report:
    """The report of `inputs`, every list bounded."""
    truncated: dict[str, int] = {}
    model = inputs.model
    drift_rows = _drift_rows(inputs, truncated)
    segments = _segment_rows(inputs, truncated)
    versions = _version_rows(inputs, truncated)
    sidecar = _sidecar(inputs.sidecar)
    why = causes(inputs, sidecar)
    likely = [c for c in why if c.likely]
    verdict = likely[0].sentence if likely else "no clear cause: nothing stands out"
    report = inputs.drift
    return Report(
        monitor=inputs.monitor,
        alert=inputs.alert,
        reason=inputs.reason,
        at=inputs.at,
        window={"seconds": inputs.seconds, "start": inputs.start, "end": inputs.end},
        summary=f"{inputs.alert} fired: {verdict}",
        samples=model.samples if model else 0,
        labeled=model.labeled if model else 0,
        metrics=_metric_rows(model),
        confusion=confusion(inputs.task, inputs.counters),
        drift_status=report.status if report else "no_reference",
        drift=drift_rows,
        drift_share=report.dataset.share if report and report.dataset else None,
        outliers=report.outliers.ratio if report and report.outliers else None,
        segments=segments,
        versions=versions,
        wrong=tuple(_wrong_row(w) for w in inputs.wrong[:MAX_WRONG]),
        wrong_seen=max(inputs.wrong_seen, len(inputs.wrong)),
        sidecar=sidecar,
        why=why,
        truncated={k: v for k, v in truncated.items() if v > 0},
    )


def _cut(text: str, most: int = MAX_LABEL) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _metric_rows(model: Evaluated | None) -> tuple[MetricRow, ...]:
    if model is None:
        return ()
    rows = [MetricRow(n, "realized", e.value, e.lower, e.upper) for n, e in model.metrics.items()]
    for source, found in model.estimates():
        rows.extend(MetricRow(n, source, e.value, e.lower, e.upper) for n, e in found.items())
    return tuple(rows[:MAX_METRICS])


def confusion(task: Task, counters: metrics.Counters) -> Confusion | None:
    """The window's confusion matrix: binary from tp/fp/tn/fn, multiclass from its cells (the
    `MAX_CLASSES` most frequent classes, the rest as `other`); none for a regression or a window
    without labels."""
    if task == "binary":
        tp, fp, tn, fn = (float(counters.get(k, 0)) for k in ("tp", "fp", "tn", "fn"))
        if not tp + fp + tn + fn:
            return None
        return Confusion(("1", "0"), ((tp, fn), (fp, tn)))
    if task != "multiclass":
        return None
    cells = list(metrics.confusion_cells(counters))
    if not cells:
        return None
    totals: dict[str, float] = {}
    for a, p, n in cells:
        totals[a] = totals.get(a, 0) + n
        totals[p] = totals.get(p, 0) + n
    ranked = sorted(totals, key=lambda c: (-totals[c], c))
    kept = ranked[:MAX_CLASSES]
    labels = [_cut(c) for c in kept] + (["other"] if len(ranked) > MAX_CLASSES else [])
    index = {c: i for i, c in enumerate(kept)}
    other = len(kept)
    grid = [[0.0] * len(labels) for _ in labels]
    for a, p, n in cells:
        grid[index.get(a, other)][index.get(p, other)] += n
    return Confusion(tuple(labels), tuple(tuple(row) for row in grid))


def _over(column: ColumnDrift) -> float:
    """How far a column's test is past its threshold (1: at it): a distance over its threshold,
    a test's threshold over its p-value (a test drifts below it)."""
    if column.method in drift.P_VALUE_METHODS:
        p = column.p_value
        return 0.0 if p is None else column.threshold / max(p, 1e-12)
    value = column.statistic
    return 0.0 if value is None or column.threshold <= 0 else value / column.threshold


def _drift_rows(inputs: Inputs, truncated: dict[str, int]) -> tuple[DriftRow, ...]:
    report = inputs.drift
    if report is None or report.status != "ok":
        return ()
    columns = sorted(
        report.features,
        key=lambda c: (not c.drifted, -_over(c), c.name),
    )
    truncated["drift"] = len(columns) - MAX_DRIFT_ROWS
    rows = []
    for i, c in enumerate(columns[:MAX_DRIFT_ROWS]):
        rows.append(
            DriftRow(
                feature=_cut(c.name),
                method=c.method,
                statistic=_finite(c.statistic),
                p_value=_finite(c.p_value),
                threshold=c.threshold,
                drifted=c.drifted,
                distance=_finite(c.distance),
                distance_method=c.distance_method,
                samples=c.samples,
                missing=_finite(c.missing_ratio),
                reference_missing=inputs.reference_missing.get(c.name),
                wrong_type=_finite(c.wrong_type_ratio),
                out_of_range=_finite(c.out_of_range_ratio),
                new_category=_finite(c.new_category_ratio),
                histogram=_histogram(c.histogram) if i < MAX_HISTOGRAMS else None,
            )
        )
    return tuple(rows)


def _decided(method: str, statistic: float | None, p_value: float | None, threshold: float) -> str:
    """What decided a column's drift, in words: `ks p-value 0.00291 < 0.05`,
    `wasserstein 0.355 >= 0.1` (the comparison as it came out)."""
    if method in drift.P_VALUE_METHODS:
        below = p_value is not None and p_value < threshold
        return f"{method} p-value {_n(p_value)} {'<' if below else '>='} {_n(threshold)}"
    above = statistic is not None and statistic >= threshold
    return f"{method} {_n(statistic)} {'>=' if above else '<'} {_n(threshold)}"


def _histogram(h: drift.Histogram) -> Histogram:
    if h.categories is not None:
        labels = [_cut(c) for c in h.categories]
    elif h.edges is not None:
        edges = [f"{e:.3g}" for e in h.edges]
        labels = [f"< {edges[0]}"] if edges else []
        labels += [f"{a}–{b}" for a, b in itertools.pairwise(edges)]
        labels += [f"≥ {edges[-1]}"] if edges else []
    else:
        labels = [str(i) for i in range(len(h.reference))]
    n = min(len(labels), len(h.reference), len(h.current), MAX_CELLS)
    return Histogram(tuple(labels[:n]), tuple(h.reference[:n]), tuple(h.current[:n]))


def _segment_rows(inputs: Inputs, truncated: dict[str, int]) -> tuple[SegmentRow, ...]:
    rows: list[SegmentRow] = []
    names = sorted(inputs.segments)
    truncated["segments"] = len(names) - MAX_SEGMENTS
    for name in names[:MAX_SEGMENTS]:
        by, ranked = inputs.segments[name]
        truncated["segment_values"] = truncated.get("segment_values", 0) + max(
            0, len(ranked) - MAX_SEGMENT_VALUES
        )
        rows.extend(
            SegmentRow(_cut(name), _cut(r.value), by.key, _finite(r.metric), r.samples)
            for r in ranked[:MAX_SEGMENT_VALUES]
        )
    return tuple(rows)


def interval(evaluated: Evaluated, key: str) -> tuple[float | None, float | None, float | None]:
    """A window's value and interval of an alert key (`accuracy`, `estimated:accuracy`,
    `reviewed:...`, `auto:...` as `evaluation.alert_values` reads it)."""
    source, _, name = key.rpartition(":")
    if source == "auto":
        source = "estimated" if name not in evaluated.metrics else "realized"
    found: Any = {
        "": evaluated.metrics,
        "realized": evaluated.metrics,
        "estimated": evaluated.estimated,
        "reviewed": evaluated.reviewed,
    }.get(source, {})
    e = found.get(name)
    if e is None:
        return None, None, None
    return _finite(e.value), _finite(e.lower), _finite(e.upper)


def _version_rows(inputs: Inputs, truncated: dict[str, int]) -> tuple[VersionRow, ...]:
    names = sorted(inputs.versions, key=lambda v: (-inputs.versions[v].samples, v))
    truncated["versions"] = len(names) - MAX_VERSIONS
    rows = []
    for name in names[:MAX_VERSIONS]:
        evaluated = inputs.versions[name]
        value, lower, upper = interval(evaluated, inputs.by.key)
        rows.append(
            VersionRow(
                _cut(name),
                evaluated.samples,
                evaluated.labeled,
                inputs.by.key,
                value,
                lower,
                upper,
            )
        )
    return tuple(rows)


def _wrong_row(w: Wrong) -> WrongRow:
    try:
        text = json.dumps(w.features, ensure_ascii=False, default=str, separators=(",", ":"))
    except ValueError:
        text = str(w.features)
    return WrongRow(
        _cut(w.prediction_id, 200),
        w.ts,
        _cut(w.version),
        _cut(text, MAX_INPUTS),
        _cut(w.prediction, 200) if isinstance(w.prediction, str) else w.prediction,
        _cut(w.actual, 200) if isinstance(w.actual, str) else w.actual,
        _finite(w.score),
    )


# -- the sidecars --------------------------------------------------------------------------------


def _period(counts: Mapping[str, float]) -> SidecarPeriod:
    step = sidecar_stats.stats(counts)
    return SidecarPeriod(
        requests=step.requests,
        errors=sum(step.errors.values()),
        error_rate=step.error_rate,
        fallback_share=step.fallback_share,
        p50=step.latency.p50,
        p99=step.latency.p99,
        reasons=dict(sorted(step.errors.items(), key=lambda kv: -kv[1])[:10]),
        passthrough=step.passthrough,
    )


def _sidecar(found: tuple[Mapping[str, float], Mapping[str, float]] | None) -> SidecarHealth | None:
    if found is None:
        return None
    now, before = found
    return SidecarHealth(_period(now), _period(before))


# -- why -----------------------------------------------------------------------------------------


def causes(inputs: Inputs, sidecar: SidecarHealth | None) -> tuple[Cause, ...]:
    """Every kind of cause the inputs have numbers for, strongest first (see the module)."""
    found = [
        *_drift_cause(inputs.drift),
        *_outlier_cause(inputs.drift),
        *_quality_cause(inputs),
        *_segment_causes(inputs),
        *_version_cause(inputs),
        *_sidecar_cause(sidecar),
    ]
    return tuple(sorted(found, key=lambda c: -c.score))


def _cause(kind: CauseKind, score: float, sentence: str, evidence: Evidence) -> Cause:
    score = round(min(score, 1e6), 4) if math.isfinite(score) else 1e6
    return Cause(kind, score, score >= 1, sentence, evidence)


def _n(x: float | None) -> str:
    """A number in a sentence: 3 significant digits, `?` when unknown."""
    return "?" if x is None else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.1f}%"


def _drift_cause(report: DriftReport | None) -> list[Cause]:
    if report is None or report.status != "ok":
        return []
    drifted = [c for c in report.features if c.drifted]
    if not drifted:
        return []
    top = max(drifted, key=_over)
    score = _over(top)
    dataset = report.dataset
    share = dataset.share if dataset else None
    named = ", ".join(_cut(c.name) for c in drifted[:5]) + (" …" if len(drifted) > 5 else "")
    return [
        _cause(
            "drift",
            score,
            f"{len(drifted)} of {dataset.tested if dataset else '?'} features drifted from the "
            f"reference ({named}); most: {_cut(top.name)} "
            f"({_decided(top.method, top.statistic, top.p_value, top.threshold)})",
            {
                "drifted": len(drifted),
                "tested": dataset.tested if dataset else None,
                "share": share,
                "feature": _cut(top.name),
                "method": top.method,
                "statistic": _finite(top.statistic),
                "p_value": _finite(top.p_value),
                "threshold": top.threshold,
                "distance": _finite(top.distance),
            },
        )
    ]


def _outlier_cause(report: DriftReport | None) -> list[Cause]:
    if report is None or report.status != "ok" or report.outliers is None:
        return []
    ratio = report.outliers.ratio
    if ratio is None or ratio <= 0:
        return []
    return [
        _cause(
            "outliers",
            ratio / OUTLIER_SHARE,
            f"{_pct(ratio)} of the window's records are outliers (a feature outside the "
            f"reference), {report.outliers.count} of {report.samples}",
            {
                "ratio": ratio,
                "count": report.outliers.count,
                "records": report.samples,
                "threshold": OUTLIER_SHARE,
            },
        )
    ]


def _quality_cause(inputs: Inputs) -> list[Cause]:
    report = inputs.drift
    if report is None or report.status != "ok":
        return []
    worst: tuple[float, str, str, float, float] | None = None
    for c in report.features:
        ref = inputs.reference_missing.get(c.name, 0.0)
        checks: tuple[tuple[str, float | None, float], ...] = (
            ("missing", c.missing_ratio, ref),
            ("wrong_type", c.wrong_type_ratio, 0.0),
        )
        for what, share, base in checks:
            if share is None or not math.isfinite(share):
                continue
            excess = share - base
            if worst is None or excess > worst[0]:
                worst = (excess, c.name, what, share, base)
    if worst is None or worst[0] <= 0:
        return []
    excess, name, what, share, base = worst
    said = "missing" if what == "missing" else "of the wrong type"
    return [
        _cause(
            "data_quality",
            excess / QUALITY_EXCESS,
            f"{_pct(share)} of {_cut(name)}'s values are {said} (the reference: {_pct(base)})",
            {"feature": _cut(name), "problem": what, "share": share, "reference": base},
        )
    ]


def _gap(
    overall: Evaluated | None, evaluated: Evaluated, by: Ranking
) -> tuple[float, float | None, float | None] | None:
    """How far `evaluated` is worse than the whole window on `by`, in half-widths of its own
    interval; with both values. None when either has no value."""
    if overall is None:
        return None
    whole, _, _ = interval(overall, by.key)
    value, lower, upper = interval(evaluated, by.key)
    if whole is None or value is None:
        return None
    worse = whole - value if by.worse_below else value - whole
    spread = (upper - lower) / 2 if lower is not None and upper is not None else NO_SPREAD
    return worse / max(spread, 1e-9), value, whole


def _segment_causes(inputs: Inputs) -> list[Cause]:
    found = []
    for name in sorted(inputs.segments)[:MAX_SEGMENTS]:
        by, ranked = inputs.segments[name]
        seen = [r for r in ranked if r.metric is not None and r.samples >= inputs.min_samples]
        if len(seen) < 2:
            continue
        worst = seen[0]
        gap = _gap(inputs.model, worst.evaluated, by)
        if gap is None or gap[0] <= 0:
            continue
        score, value, whole = gap
        total = sum(r.samples for r in ranked) or 1
        found.append(
            _cause(
                "segment",
                score,
                f"{_cut(name)}={_cut(worst.value)} has {by.key} {_n(value)} against "
                f"{_n(whole)} for the whole window ({worst.samples} samples, "
                f"{_pct(worst.samples / total)} of the segment's)",
                {
                    "segment": _cut(name),
                    "value": _cut(worst.value),
                    "metric": by.key,
                    "segment_value": value,
                    "overall": whole,
                    "samples": worst.samples,
                    "share": worst.samples / total,
                },
            )
        )
    return found


def _version_cause(inputs: Inputs) -> list[Cause]:
    by = inputs.by
    seen = []
    for name, evaluated in inputs.versions.items():
        value, samples = evaluation.alert_values(evaluated, inputs.min_samples).get(
            by.key, (None, 0)
        )
        if value is not None and math.isfinite(value) and samples >= inputs.min_samples:
            seen.append((value if by.worse_below else -value, name, evaluated, samples))
    if len(seen) < 2:
        return []
    _, name, evaluated, samples = min(seen)
    gap = _gap(inputs.model, evaluated, by)
    if gap is None or gap[0] <= 0:
        return []
    score, value, whole = gap
    total = inputs.model.samples if inputs.model and inputs.model.samples else 1
    return [
        _cause(
            "version",
            score,
            f"model version {_cut(name)} has {by.key} {_n(value)} against {_n(whole)} for "
            f"every version ({evaluated.samples} of {total} predictions)",
            {
                "version": _cut(name),
                "metric": by.key,
                "version_value": value,
                "overall": whole,
                "samples": samples,
                "share": evaluated.samples / total,
            },
        )
    ]


def _sidecar_cause(sidecar: SidecarHealth | None) -> list[Cause]:
    if sidecar is None or not sidecar.now.requests:
        return []
    now, before = sidecar.now, sidecar.before
    rate, was = now.error_rate or 0.0, before.error_rate or 0.0
    errors = (rate - was) / SIDECAR_ERRORS
    slower = 0.0
    if now.p99 is not None and before.p99:
        slower = (now.p99 / before.p99) / SIDECAR_SLOWER
    top = next(iter(now.reasons), None)
    evidence: Evidence = {
        "requests": now.requests,
        "error_rate": now.error_rate,
        "error_rate_before": before.error_rate,
        "p99": now.p99,
        "p99_before": before.p99,
        "top_error": top,
    }
    if errors >= slower:
        why = f", mostly {top}" if top else ""
        sentence = (
            f"the sidecars' error rate was {_pct(now.error_rate)} over the last hour against "
            f"{_pct(before.error_rate)} the hour before ({now.errors:.0f} of "
            f"{now.requests:.0f} requests{why})"
        )
        return [_cause("sidecar", errors, sentence, evidence)]
    sentence = (
        f"the sidecars' p99 latency was {_n(now.p99)} s over the last hour against "
        f"{_n(before.p99)} s the hour before"
    )
    return [_cause("sidecar", slower, sentence, evidence)]


# -- render --------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], klass: str = "") -> str:
    """A sortable table; `rows` hold HTML already escaped."""
    cls = f' class="{klass}"' if klass else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<table{cls} data-sortable="1"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'
    )


def _bars(h: Histogram) -> str:
    """The reference (grey) and the window (blue) proportions per cell as an inline SVG."""
    n = len(h.labels)
    if not n:
        return ""
    width, height, pad = 320, 90, 14
    top = max([*h.reference, *h.current, 1e-9])
    slot = width / n
    bar = max(slot / 2 - 0.5, 0.5)
    parts = []
    for i, (label, ref, cur) in enumerate(zip(h.labels, h.reference, h.current, strict=False)):
        x = i * slot
        for j, (share, klass) in enumerate(((ref, "ref"), (cur, "cur"))):
            tall = (height - pad) * share / top
            parts.append(
                f'<rect class="{klass}" x="{x + j * bar:.1f}" y="{height - pad - tall:.1f}" '
                f'width="{bar:.1f}" height="{tall:.1f}"><title>{_e(label)}: '
                f"{'reference' if j == 0 else 'window'} {_pct(share)}</title></rect>"
            )
    return (
        f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="reference vs window">{"".join(parts)}'
        f'<line x1="0" y1="{height - pad}" x2="{width}" y2="{height - pad}" class="axis"/></svg>'
    )


def _interval_text(value: float | None, lower: float | None, upper: float | None) -> str:
    if lower is None or upper is None:
        return _num(value)
    return f"{_num(value)} <span class=dim>[{_num(lower)}, {_num(upper)}]</span>"


def _why_html(report: Report) -> str:
    if not any(c.likely for c in report.why):
        lead = '<p class="verdict none">No clear cause: nothing stands out.</p>'
    else:
        lead = ""
    items = []
    for c in report.why:
        evidence = ", ".join(
            f"{_e(k)} {_e(_num(v) if isinstance(v, float) else v)}" for k, v in c.evidence.items()
        )
        items.append(
            f'<li class="cause {"likely" if c.likely else "weak"}" data-kind="{_e(c.kind)}">'
            f'<span class="kind">{_e(c.kind)}</span> <span class="score">score '
            f"{_num(c.score)}</span> {_e(c.sentence)}<div class=dim>{evidence}</div></li>"
        )
    listed = f"<ol>{''.join(items)}</ol>" if items else "<p>No numbers to weigh a cause with.</p>"
    return f'<section id="why"><h2>Why</h2>{lead}{listed}</section>'


def _confusion_html(c: Confusion | None) -> str:
    if c is None:
        return ""
    head = "<th>actual \\ predicted</th>" + "".join(f"<th>{_e(label)}</th>" for label in c.labels)
    rows = "".join(
        f"<tr><th>{_e(label)}</th>"
        + "".join(
            f'<td class="{"diag" if i == j else "off"}">{n:.0f}</td>' for j, n in enumerate(row)
        )
        + "</tr>"
        for i, (label, row) in enumerate(zip(c.labels, c.cells, strict=True))
    )
    return (
        '<section id="confusion"><h2>Confusion matrix</h2><table class="cm">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _drift_html(report: Report) -> str:
    if not report.drift:
        said = {"no_reference": "no reference to compare with", "no_data": "no record sketched"}
        why = said.get(report.drift_status, report.drift_status)
        return f'<section id="drift"><h2>Drift</h2><p>No drift table: {_e(why)}.</p></section>'
    rows = [
        [
            _e(r.feature),
            _e(r.method),
            _num(r.statistic),
            _num(r.p_value),
            _threshold_text(r.method, r.threshold),
            '<b class="bad">yes</b>' if r.drifted else "no",
            f"{_num(r.distance)} <span class=dim>{_e(r.distance_method or '')}</span>",
            str(r.samples),
            f"{_pct(r.missing)} <span class=dim>(ref {_pct(r.reference_missing)})</span>",
            _pct(r.wrong_type),
            _pct(r.out_of_range if r.out_of_range is not None else r.new_category),
            _bars(r.histogram) if r.histogram else "",
        ]
        for r in report.drift
    ]
    head = [
        "feature",
        "method",
        "statistic",
        "p-value",
        "threshold",
        "drifted",
        "distance",
        "samples",
        "missing",
        "wrong type",
        "out of range / new",
        "reference vs window",
    ]
    share = f"share of drifted features {_num(report.drift_share)}; "
    outliers = f"outlier records {_pct(report.outliers)}"
    columns = (
        "<p class=dim><b>statistic</b>: the method's (a distance, or the KS or chi-square "
        "statistic of a test); <b>p-value</b>: a test's (ks, chisquare), none for a distance; "
        "<b>threshold</b>: what decides <b>drifted</b>, a distance at or above it, a test's "
        "p-value below it; <b>distance</b>: the feature's distance at every window size, what "
        "feature_drift alerts compare with their own thresholds.</p>"
    )
    legend = (
        '<p class=dim><span class="key ref"></span> reference '
        '<span class="key cur"></span> window</p>'
    )
    return (
        f'<section id="drift"><h2>Drift</h2><p>{share}{outliers}</p>{columns}{legend}'
        f"{_table(head, rows, 'drift')}{_more(report, 'drift')}</section>"
    )


def _threshold_text(method: str, threshold: float) -> str:
    """A threshold as the comparison that drifts: `p < 0.05` (a test), `≥ 0.1` (a distance)."""
    return f"{'p &lt;' if method in drift.P_VALUE_METHODS else '≥'} {_num(threshold)}"


def _more(report: Report, name: str) -> str:
    n = report.truncated.get(name, 0)
    return f"<p class=dim>… and {n} more not shown.</p>" if n else ""


def _sidecar_html(s: SidecarHealth | None) -> str:
    if s is None:
        return '<section id="sidecar"><h2>Sidecar</h2><p>No sidecar stats received.</p></section>'
    rows = [
        [
            name,
            f"{p.requests:.0f}",
            f"{p.errors:.0f}",
            _pct(p.error_rate),
            _pct(p.fallback_share),
            _num(p.p50),
            _num(p.p99),
            _e(", ".join(f"{k} {v:.0f}" for k, v in p.reasons.items())),
            _e(", ".join(f"{k} {v:.0f}" for k, v in p.passthrough.items())),
        ]
        for name, p in (("last hour", s.now), ("hour before", s.before))
    ]
    head = [
        "period", "requests", "errors", "error rate", "fallback", "p50 s", "p99 s", "errors by",
        "uncaptured connections",
    ]  # fmt: skip
    return f'<section id="sidecar"><h2>Sidecar</h2>{_table(head, rows)}</section>'


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#1b1f24}h1{font-size:1.4em;margin:.2em 0}
h2{font-size:1.15em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:pointer}.dim{color:#656d76;font-size:.9em}
.bad{color:#cf222e}.verdict{font-size:1.1em;font-weight:600}
.cause .kind{background:#d0d7de;border-radius:3px;padding:0 .4em;font-size:.85em}
.cause.likely .kind{background:#cf222e;color:#fff}
.cause{margin:.4em 0}.score{font-weight:600}
.cm td.diag{background:#dafbe1}.cm td.off{background:#ffebe9}
svg.hist rect.ref{fill:#8c959f}svg.hist rect.cur{fill:#0969da}svg.hist .axis{stroke:#656d76}
.key{display:inline-block;width:.8em;height:.8em}.key.ref{background:#8c959f}.key.cur{background:#0969da}
code{font-size:.85em;word-break:break-all}
"""

SCRIPT = """
document.querySelectorAll('table[data-sortable] th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var up = th.dataset.up !== '1'; th.dataset.up = up ? '1' : '0';
    var key = function (row) {
      var text = row.children[i] ? row.children[i].textContent : '';
      var n = parseFloat(text); return isNaN(n) ? text : n;
    };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
document.documentElement.dataset.ready = '1';
"""

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)
"""The page may load nothing: what it shows is inside it."""


def page(title: str, body: str, testid: str, style: str = "") -> str:
    """One self-contained HTML page: `body` (HTML) in the reports' frame (`STYLE` and `style`,
    the sortable tables' `SCRIPT`, the `CSP` that lets it load nothing). The backtest's page
    (`backtestpage`) is framed alike."""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}{style}</style></head>"
        f'<body data-testid="{_e(testid)}">{body}<script>{SCRIPT}</script></body></html>\n'
    )


def render(report: Report) -> str:
    """`report` as one self-contained HTML page."""
    w = report.window
    metrics_rows = [
        [_e(m.name), _e(m.source), _interval_text(m.value, m.lower, m.upper)]
        for m in report.metrics
    ]
    segments_rows = [
        [_e(s.segment), _e(s.value), _e(s.metric), _num(s.score), str(s.samples)]
        for s in report.segments
    ]
    version_rows = [
        [
            _e(v.version),
            str(v.samples),
            str(v.labeled),
            _e(v.metric),
            _interval_text(v.value, v.lower, v.upper),
        ]
        for v in report.versions
    ]
    wrong_rows = [
        [
            _e(_time(r.ts)),
            _e(r.prediction_id),
            _e(r.version),
            _e(r.prediction),
            _e(r.actual),
            _num(r.score),
            f"<code>{_e(r.inputs)}</code>",
        ]
        for r in report.wrong
    ]
    sections = [
        f"<header><h1>{_e(report.monitor)}: {_e(report.alert)} fired</h1>"
        f'<p class="verdict">{_e(report.summary)}</p>'
        f"<p>{_e(report.reason)}</p>"
        f"<p class=dim>fired at {_e(_time(report.at))}; window {_e(_duration(w['seconds']))} "
        f"from {_e(_time(w['start']))} to {_e(_time(w['end']))}; {report.samples} predictions, "
        f"{report.labeled} labeled</p></header>",
        _why_html(report),
        '<section id="metrics"><h2>Metrics</h2>'
        + (
            _table(["metric", "source", "value [95% interval]"], metrics_rows)
            if metrics_rows
            else "<p>No metric: no labeled prediction in the window.</p>"
        )
        + "</section>",
        _confusion_html(report.confusion),
        _drift_html(report),
        '<section id="segments"><h2>Worst segments</h2>'
        + (
            _table(["segment", "value", "metric", "value of it", "samples"], segments_rows)
            if segments_rows
            else "<p>No segment.</p>"
        )
        + _more(report, "segment_values")
        + "</section>",
        '<section id="versions"><h2>Versions</h2>'
        + (
            _table(["version", "predictions", "labeled", "metric", "value"], version_rows)
            if version_rows
            else "<p>No model version in the window.</p>"
        )
        + "</section>",
        _sidecar_html(report.sidecar),
        f'<section id="wrong"><h2>Wrong predictions</h2><p class=dim>the newest '
        f"{len(report.wrong)} of {report.wrong_seen} read</p>"
        + _table(["time", "id", "version", "prediction", "actual", "score", "inputs"], wrong_rows)
        + "</section>",
    ]
    title = f"{report.monitor}: {report.alert} at {_time(report.at)}"
    return page(title, "".join(sections), "report")
