"""Prometheus exposition: a Collector over the engine's last tick, on the service's own registry.

Nothing is pushed into gauges on writes: at scrape time `FeedbackCollector.collect` turns the
engine's in-memory snapshots (window metrics with intervals, lifetime counters, alert and
fallback state, the window's drift) into metric families, so a scrape never touches the
database. Names: prefix `truthloop_`, labels `namespace`, `monitor`, `model`, `version` (`*` is the
sum over every version), plus `served_by` where model and fallback are told apart.

`truthloop_model_metric{metric, bound}` holds the realized metrics and, for the model's groups
of a monitor whose reference estimates them (`core.estimate`), the estimates with
`source="estimated"`, and for a monitor with `spec.review` what the reviewed labels estimate
(`core.review`) with `source="reviewed"`. The realized series keep the labels they always had
(no `source`), so their history and the queries on them go on; a query that must not see
estimates says `source=""`.

Drift (the monitor's window against its reference, `version="*"`: the model's records of every
version compared with the default reference; `version="v2"`: a version with a reference of its
own, its records against it): `truthloop_feature_drift{feature,method}` (the
feature's distance, `method` its distance method: wasserstein or jensenshannon unless an override
names psi; at every window size, also below the 1,000 values where a test decides `drifted`, so
a series keeps one scale and one label set), `truthloop_feature_missing_ratio{feature}`,
`truthloop_drift_share`, `truthloop_prediction_drift{method}`, `truthloop_outlier_ratio`. A value
that does not exist (no reference, no record in the window, a feature without values) is left
out, never NaN. At most `MAX_FEATURES` features a monitor (the profile holds no more), so the
series stay bounded.

Model versions: `truthloop_version_first_seen_timestamp_seconds{version}`, when each of the newest
20 versions seen (`core.versions`) had its first record, for dashboard annotations.
Segments (`spec.segments`), only those marked `export: true` (their cardinality is the user's
choice): `truthloop_segment_metric{segment, value, metric, bound, source}` (the model's records
of every version in the window, per kept value: `source` realized, estimated or reviewed) and
`truthloop_segment_predictions{segment, value}` (the window's predictions of each value). A
segment has at most `maxValues` + 2 values at a time (`other`, `missing`), or its buckets + 1.

Human review (`spec.review`): `truthloop_review_queue_depth`, `truthloop_review_oldest_age_seconds`
and `truthloop_review_expected_per_day` from the tick's queue read and design, and
`truthloop_reviews_total{reviewer, outcome}` from the lifetime totals, bounded to the
`MAX_REVIEWERS` busiest reviewers of a monitor plus `other`.

`truthloop_ignored_segment_values_total{reason}`: values of stored records left out since the
replica started (`reason="unknown_segment"`: a segment the monitor no longer declares, the
records of a sidecar that captured under an older spec), in memory like the rejected actuals.
`truthloop_report_failures_total`: reports on alerts that fired that this replica could not make
since it started (docs/reports.md), in memory too.

KServe's payload logger (`POST /v1/cloudevents`): `truthloop_cloudevents_unpaired_total{reason}`,
halves that expired alone (`no_response`, `no_request`), from the lifetime totals like the
actuals' outcomes; `truthloop_cloudevents_refused_total{reason}`, events this replica refused
since it started (`too_many_waiting`, `core.extract`'s reason for a pair the capture spec
found nothing in, `invalid_records` for records the ingest refused: a fixed set), in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from truthloop.core import metrics
from truthloop.core.drift import DriftReport
from truthloop.core.evaluation import Evaluated
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.profile import MAX_FEATURES
from truthloop.core.records import Reason
from truthloop.core.wire import ReviewSummary
from truthloop.feedback.engine import OUTCOMES, Engine
from truthloop.feedback.store.codec import UNPAIRED_KEYS

REGISTRY = web.AppKey("registry", CollectorRegistry)
IGNORED_REASONS: tuple[Reason, ...] = ("unknown_segment",)
"""The reasons a stored record's value is left out: each monitor has a series of each."""

PHASES = ("Pending", "Collecting", "Healthy", "Degraded", "FallbackActive")
MONITOR_LABELS = ["namespace", "monitor", "model"]
GROUP_LABELS = [*MONITOR_LABELS, "version", "served_by"]
VERSION_LABELS = [*MONITOR_LABELS, "version"]
SEGMENT_LABELS = [*MONITOR_LABELS, "segment", "value"]
ALL_VERSIONS_LABEL = "*"
REVIEWS_PREFIX = "@review/"
"""Lifetime totals `@review/<outcome>/<reviewer>`: each reviewer's answers by outcome."""
MAX_REVIEWERS = 50
"""Reviewers a monitor's `truthloop_reviews_total` names (the busiest); the others are summed
as `reviewer="other"`, so a team of any size keeps the series bounded."""
OTHER_REVIEWERS = "other"


class FeedbackCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        predictions = CounterMetricFamily(
            "truthloop_predictions", "Captured predictions.", labels=GROUP_LABELS
        )
        labeled = CounterMetricFamily(
            "truthloop_labeled", "Predictions joined with an actual.", labels=GROUP_LABELS
        )
        actuals = CounterMetricFamily(
            "truthloop_actuals",
            "Actuals by outcome: matched a prediction, waited for one, expired waiting, rejected.",
            labels=[*MONITOR_LABELS, "outcome"],
        )
        ignored = CounterMetricFamily(
            "truthloop_ignored_segment_values",
            "Values left out of stored records: segments the monitor does not declare.",
            labels=[*MONITOR_LABELS, "reason"],
        )
        report_failures = CounterMetricFamily(
            "truthloop_report_failures",
            "Reports on alerts that fired that could not be made (logged) since start.",
            labels=MONITOR_LABELS,
        )
        unpaired = CounterMetricFamily(
            "truthloop_cloudevents_unpaired",
            "CloudEvents halves (KServe's payload logger) that expired without their other"
            " half: no_response (the model did not answer 200), no_request.",
            labels=[*MONITOR_LABELS, "reason"],
        )
        events_refused = CounterMetricFamily(
            "truthloop_cloudevents_refused",
            "CloudEvents refused since start: too_many_waiting, the capture spec's reason"
            " for a pair it found no record in, or invalid_records.",
            labels=[*MONITOR_LABELS, "reason"],
        )
        confusion = CounterMetricFamily(
            "truthloop_confusion", "Binary confusion cells.", labels=[*GROUP_LABELS, "cell"]
        )
        metric_labels = [*GROUP_LABELS, "metric"]
        metric = GaugeMetricFamily(
            "truthloop_model_metric",
            "Windowed model metric with its confidence interval (source=estimated: estimated"
            " before labels; source=reviewed: from the reviewed labels).",
            labels=[*metric_labels, "bound"],
        )
        samples = GaugeMetricFamily(
            "truthloop_window_samples", "Predictions in the metrics window.", labels=GROUP_LABELS
        )
        window_labeled = GaugeMetricFamily(
            "truthloop_window_labeled",
            "Labeled predictions in the metrics window.",
            labels=GROUP_LABELS,
        )
        fallback = GaugeMetricFamily(
            "truthloop_fallback_active", "1 while the fallback answers.", labels=MONITOR_LABELS
        )
        firing = GaugeMetricFamily(
            "truthloop_alert_firing", "1 while the alert fires.", labels=[*MONITOR_LABELS, "alert"]
        )
        followers = GaugeMetricFamily(
            "truthloop_state_followers",
            "Long-polls waiting on the monitor's state: its sidecars and the operator.",
            labels=MONITOR_LABELS,
        )
        phase = GaugeMetricFamily(
            "truthloop_monitor_phase",
            "1 for the monitor's current phase.",
            labels=[*MONITOR_LABELS, "phase"],
        )
        first_seen = GaugeMetricFamily(
            "truthloop_version_first_seen_timestamp_seconds",
            "When the model version's first record was seen (the start of its minute): an"
            " annotation for dashboards. The newest 20 versions a monitor.",
            labels=VERSION_LABELS,
        )
        drift = _DriftFamilies()
        queue = _ReviewFamilies()
        segmented = _SegmentFamilies()
        now = self.engine.settings.clock()
        for snapshot in self.engine.snapshots.values():
            monitor = snapshot.monitor
            base = [monitor.namespace, monitor.name, monitor.spec.model.name]
            for (version, served_by), counters in snapshot.totals.items():
                if not version and not served_by:
                    for outcome, key in OUTCOMES.items():
                        actuals.add_metric([*base, outcome], counters.get(key, 0.0))
                    queue.add_reviews(base, counters)
                    continue
                group = [*base, version, served_by]
                predictions.add_metric(group, counters.get(PREDICTIONS_KEY, 0.0))
                label_counters = {k: v for k, v in counters.items() if not k.startswith("@")}
                labeled.add_metric(group, metrics.samples(label_counters))
                if monitor.spec.task == "binary":
                    for cell in metrics.CONFUSION_CELLS:
                        confusion.add_metric([*group, cell], label_counters.get(cell, 0.0))
            actuals.add_metric([*base, "rejected"], self.engine.rejected.get(monitor.key, 0))
            general = snapshot.totals.get(("", ""), {})
            for key in UNPAIRED_KEYS.values():
                unpaired.add_metric([*base, key.rpartition("/")[2]], general.get(key, 0.0))
            report_failures.add_metric(base, self.engine.reports_failed.get(monitor.key, 0))
            for (key, reason), n in sorted(self.engine.cloudevents_refused.items()):
                if key == monitor.key:
                    events_refused.add_metric([*base, reason], n)
            for reason in IGNORED_REASONS:
                ignored.add_metric(
                    [*base, reason], self.engine.ignored.get((monitor.key, reason), 0)
                )
            for (version, served_by), evaluated in sorted(snapshot.window.items()):
                group = [*base, version, served_by]
                samples.add_metric(group, evaluated.samples)
                window_labeled.add_metric(group, evaluated.labeled)
                for name, estimate in evaluated.metrics.items():
                    for bound in ("value", "lower", "upper"):
                        value = getattr(estimate, bound)
                        if value is not None:
                            metric.add_metric([*group, name, bound], value)
                for source, found in evaluated.estimates():
                    for name, interval in found.items():
                        labels = dict(zip(metric_labels, [*group, name], strict=True))
                        for bound in ("value", "lower", "upper"):
                            value = getattr(interval, bound)
                            if value is not None:
                                metric.samples.append(
                                    Sample(
                                        metric.name,
                                        {**labels, "bound": bound, "source": source},
                                        value,
                                    )
                                )
            state = snapshot.state
            fallback.add_metric(base, 1.0 if state.fallback_active else 0.0)
            for alert in state.to_dict()["alerts"]:
                firing.add_metric(
                    [*base, alert["name"]], 1.0 if alert["state"] == "firing" else 0.0
                )
            for name in PHASES:
                phase.add_metric([*base, name], 1.0 if state.phase == name else 0.0)
            queue.add(base, snapshot.review, now)
            for seen in snapshot.versions:
                first_seen.add_metric([*base, seen.version], seen.first_seen)
            for spec in monitor.spec.segments:
                window = snapshot.segments.get(spec.name)
                if spec.export and window is not None:
                    segmented.add([*base, spec.name], window.values)
            if snapshot.drift is not None:
                drift.add([*base, ALL_VERSIONS_LABEL], snapshot.drift)
            for version, report in sorted(snapshot.drift_versions.items()):
                drift.add([*base, version], report)
        for registered in self.engine.monitors():
            monitor = registered.monitor
            base = [monitor.namespace, monitor.name, monitor.spec.model.name]
            followers.add_metric(base, self.engine.followers(monitor.key))
        unattributed = self.engine.rejected.get("", 0)
        if unattributed:
            actuals.add_metric(["", "", "", "rejected"], unattributed)
        yield from (
            predictions,
            labeled,
            actuals,
            ignored,
            report_failures,
            unpaired,
            events_refused,
            confusion,
            metric,
            samples,
            window_labeled,
            fallback,
            followers,
            firing,
            phase,
            first_seen,
            *drift.families(),
            *queue.families(),
            *segmented.families(),
        )


class _SegmentFamilies:
    """The exported segments' gauges: each value's window metrics and predictions."""

    def __init__(self) -> None:
        self.metric = GaugeMetricFamily(
            "truthloop_segment_metric",
            "Windowed model metric of one value of a segment, with its confidence interval"
            " (source: realized, estimated before labels, or from the reviewed labels).",
            labels=[*SEGMENT_LABELS, "metric", "bound", "source"],
        )
        self.predictions = GaugeMetricFamily(
            "truthloop_segment_predictions",
            "Predictions of one value of a segment in the metrics window.",
            labels=SEGMENT_LABELS,
        )

    def add(self, segment: list[str], values: Mapping[str, Evaluated]) -> None:
        for value, evaluated in sorted(values.items()):
            labels = [*segment, value]
            self.predictions.add_metric(labels, evaluated.samples)
            for source, found in (("realized", evaluated.metrics), *evaluated.estimates()):
                for name, interval in found.items():
                    for bound in ("value", "lower", "upper"):
                        number = getattr(interval, bound)
                        if number is not None:
                            self.metric.add_metric([*labels, name, bound, source], number)

    def families(self) -> tuple[Metric, ...]:
        return (self.metric, self.predictions)


class _ReviewFamilies:
    """The review queue's gauges (monitors with `spec.review`) and each reviewer's answers."""

    def __init__(self) -> None:
        self.depth = GaugeMetricFamily(
            "truthloop_review_queue_depth",
            "Items waiting for a reviewer (leased ones included).",
            labels=MONITOR_LABELS,
        )
        self.oldest = GaugeMetricFamily(
            "truthloop_review_oldest_age_seconds",
            "Seconds the oldest item waiting for a reviewer has waited.",
            labels=MONITOR_LABELS,
        )
        self.expected = GaugeMetricFamily(
            "truthloop_review_expected_per_day",
            "Items a day the review design queues at the recent traffic.",
            labels=MONITOR_LABELS,
        )
        self.reviews = CounterMetricFamily(
            "truthloop_reviews",
            f"Reviewers' answers by outcome (the {MAX_REVIEWERS} busiest reviewers of a monitor,"
            f" the others as reviewer={OTHER_REVIEWERS!r}).",
            labels=[*MONITOR_LABELS, "reviewer", "outcome"],
        )

    def add(self, base: list[str], summary: ReviewSummary, now: float) -> None:
        if not summary.enabled:
            return
        self.depth.add_metric(base, summary.depth)
        if summary.oldest is not None:
            self.oldest.add_metric(base, max(0.0, now - summary.oldest))
        if summary.expected_per_day is not None:
            self.expected.add_metric(base, summary.expected_per_day)

    def add_reviews(self, base: list[str], totals: Mapping[str, float]) -> None:
        for (reviewer, outcome), count in sorted(reviews_by(totals).items()):
            self.reviews.add_metric([*base, reviewer, outcome], count)

    def families(self) -> tuple[Metric, ...]:
        return (self.depth, self.oldest, self.expected, self.reviews)


def reviews_by(totals: Mapping[str, float]) -> dict[tuple[str, str], float]:
    """(reviewer, outcome) -> answers, from a monitor's lifetime totals: the `MAX_REVIEWERS`
    reviewers with the most answers by name, the others summed per outcome as `other`."""
    found: dict[tuple[str, str], float] = {}
    for key, count in totals.items():
        if key.startswith(REVIEWS_PREFIX):
            outcome, _, reviewer = key[len(REVIEWS_PREFIX) :].partition("/")
            found[reviewer, outcome] = found.get((reviewer, outcome), 0.0) + count
    answered: dict[str, float] = {}
    for (reviewer, _), count in found.items():
        answered[reviewer] = answered.get(reviewer, 0.0) + count
    busiest = set(sorted(answered, key=lambda r: (-answered[r], r))[:MAX_REVIEWERS])
    shown: dict[tuple[str, str], float] = {}
    for (reviewer, outcome), count in found.items():
        name = reviewer if reviewer in busiest else OTHER_REVIEWERS
        shown[name, outcome] = shown.get((name, outcome), 0.0) + count
    return shown


class _DriftFamilies:
    """The drift gauges, filled from each monitor's window report."""

    def __init__(self) -> None:
        self.feature = GaugeMetricFamily(
            "truthloop_feature_drift",
            "A feature's drift distance in the window against the reference, by its method.",
            labels=[*VERSION_LABELS, "feature", "method"],
        )
        self.missing = GaugeMetricFamily(
            "truthloop_feature_missing_ratio",
            "Share of the window's records without a value for the feature.",
            labels=[*VERSION_LABELS, "feature"],
        )
        self.share = GaugeMetricFamily(
            "truthloop_drift_share",
            "Share of the profiled features that drifted in the window.",
            labels=VERSION_LABELS,
        )
        self.prediction = GaugeMetricFamily(
            "truthloop_prediction_drift",
            "Drift distance of the score (when profiled) or the prediction, by its method.",
            labels=[*VERSION_LABELS, "method"],
        )
        self.outliers = GaugeMetricFamily(
            "truthloop_outlier_ratio",
            "Share of the window's records flagged as outliers against the reference.",
            labels=VERSION_LABELS,
        )

    def add(self, group: list[str], report: DriftReport) -> None:
        if report.status != "ok":
            return
        for column in report.features[:MAX_FEATURES]:
            if column.distance is not None and column.distance_method is not None:
                labels = [*group, column.name, column.distance_method]
                self.feature.add_metric(labels, column.distance)
            if column.missing_ratio is not None:
                self.missing.add_metric([*group, column.name], column.missing_ratio)
        if report.dataset is not None and report.dataset.share is not None:
            self.share.add_metric(group, report.dataset.share)
        prediction = report.prediction_drift
        if (
            prediction is not None
            and prediction.distance is not None
            and prediction.distance_method is not None
        ):
            self.prediction.add_metric([*group, prediction.distance_method], prediction.distance)
        if report.outliers is not None and report.outliers.ratio is not None:
            self.outliers.add_metric(group, report.outliers.ratio)

    def families(self) -> tuple[Metric, ...]:
        return (self.feature, self.missing, self.share, self.prediction, self.outliers)


def registry(engine: Engine) -> CollectorRegistry:
    """The service's own registry (never the global one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FeedbackCollector(engine))
    return reg


async def handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
