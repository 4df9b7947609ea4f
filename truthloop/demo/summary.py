"""The demo's closing numbers, from the feedback service's metrics API, and how they are told.

Pure: the CLI fetches `metrics?window=` (the whole run) and its `series=1m` for each `served_by`,
and `summarize` turns them, with the client's counts and the phase changes seen, into a `Summary`.
The fallback is compared with the model on one minute of service time in which the world was
drifted and the fallback answered: there every request has a fallback record and a shadow record
of the model's answer, so both are measured on the same customers.

Drift is told against the accuracy alert, from what the watcher saw as it happened: when the
service first flagged dataset drift (`GET .../drift`, no label needed) and when accuracy fell
(the first phase change to `Degraded`, the alert pending). The outlier burst is the drift reading
with the most outliers before the world drifted, with the features that drifted in that window.

The demo's segment (`metrics?segment=`) is told worst first, its values with `minSamples` labeled
at least; the model's versions (`versions`) by their share of the model's records, and the second
against the first (`compare?a=&b=`) by accuracy's difference, its interval and verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from truthloop.core import metrics
from truthloop.core.backtest import Backtest
from truthloop.core.rulehistory import RulesVsModel
from truthloop.demo.reviewer import Reviews
from truthloop.demo.traffic import Counts
from truthloop.demo.watch import (
    DriftChange,
    DriftReading,
    Estimate,
    PhaseChange,
    Reading,
    estimate,
    reviewed,
)

BUCKET = 60.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Predictions, labeled ones and accuracy of one `served_by` (an API answer or a point);
    for the whole run, also the accuracy estimated from the scores and from the reviews."""

    samples: int
    labeled: int
    accuracy: Estimate | None
    estimated: Estimate | None = None
    reviewed: Estimate | None = None
    reviews: int = 0

    @classmethod
    def of(cls, part: Mapping[str, Any]) -> Figures:
        return cls(int(part["samples"]), int(part["labeled"]), estimate(part["metrics"]))

    @classmethod
    def whole(cls, part: Mapping[str, Any]) -> Figures:
        """`of` with the estimated and reviewed accuracies."""
        return cls(
            int(part["samples"]),
            int(part["labeled"]),
            estimate(part["metrics"]),
            estimate(part.get("estimated") or {}),
            *reviewed(part),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "samples": self.samples,
            "labeled": self.labeled,
            "accuracy": triple(self.accuracy),
        }
        if self.estimated is not None or self.reviewed is not None:
            out.update(
                estimated=triple(self.estimated),
                reviewed=triple(self.reviewed),
                reviews=self.reviews,
            )
        return out


def triple(a: Estimate | None) -> list[float | None] | None:
    """An estimate as the result line writes it, `[value, lower, upper]`."""
    return None if a is None else [a.value, a.lower, a.upper]


@dataclass(frozen=True, slots=True)
class Slice:
    """A segment's value, or a model version (`share`: of the model's records), with its
    figures."""

    name: str
    figures: Figures
    share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, **self.figures.to_dict()}
        if self.share is not None:
            out["share"] = self.share
        return out


@dataclass(frozen=True, slots=True)
class Segment:
    """The segment's values worst first, as the metrics API ranked them."""

    name: str
    values: tuple[Slice, ...]

    @classmethod
    def of(cls, answer: Mapping[str, Any]) -> Segment:
        """From a metrics-API answer with `segment=`."""
        found = answer["segment"]
        return cls(found["name"], tuple(Slice(v["value"], Figures.of(v)) for v in found["values"]))


def versions_of(answer: Mapping[str, Any]) -> tuple[Slice, ...]:
    """The versions API's answer as slices, largest share first."""
    found = [Slice(v["version"], Figures.of(v), float(v["share"])) for v in answer["versions"]]
    return tuple(sorted(found, key=lambda v: -(v.share or 0.0)))


@dataclass(frozen=True, slots=True)
class Comparison:
    """Version `b` against `a` (the compare API): accuracy's difference b − a with its 95%
    interval, verdict and (when it cannot tell) the labels per version that would; and each
    metric's verdict."""

    a: str
    b: str
    accuracy: Mapping[str, Any]
    verdicts: Mapping[str, str]

    @classmethod
    def of(cls, answer: Mapping[str, Any]) -> Comparison:
        metrics = answer["metrics"]
        return cls(
            answer["a"]["version"],
            answer["b"]["version"],
            metrics["accuracy"],
            {name: m["verdict"] for name, m in sorted(metrics.items())},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "accuracy": dict(self.accuracy),
            "verdicts": dict(self.verdicts),
        }


@dataclass(frozen=True, slots=True)
class Abstain:
    """The demo monitor's abstain band and explored share (`spec.review.abstain`)."""

    low: float
    high: float
    explore: float


@dataclass(frozen=True, slots=True)
class Minute:
    start: float
    """The bucket's start, epoch seconds of service time."""
    model: Figures
    fallback: Figures
    drifted: bool
    """Whether the world was drifted for the whole minute."""


@dataclass(frozen=True, slots=True)
class Period:
    """The fallback engaged at `engaged` until `released` (None: still), service seconds in."""

    engaged: float
    released: float | None


@dataclass(frozen=True, slots=True)
class DriftPeriod:
    """Dataset drift flagged at `start` until `end` (None: still), service seconds in;
    `features` drifted when it was flagged, of `tested`."""

    start: float
    end: float | None
    features: tuple[str, ...]
    tested: int


@dataclass(frozen=True, slots=True)
class DriftStory:
    """The drift period that came with the accuracy alert (None: never flagged) and when accuracy
    fell (`alert`, service seconds in; None: never)."""

    period: DriftPeriod | None
    alert: float | None

    @property
    def lead(self) -> float | None:
        """Service seconds from the drift being flagged to accuracy falling (negative: after)."""
        if self.period is None or self.alert is None:
            return None
        return self.alert - self.period.start


def drift_periods(changes: Sequence[DriftChange]) -> tuple[DriftPeriod, ...]:
    """When dataset drift was flagged, from the drift changes."""
    periods: list[DriftPeriod] = []
    for change in changes:
        r = change.reading
        if change.what == "drift":
            periods.append(DriftPeriod(r.at, None, r.drifted, r.tested))
        elif change.what == "drift_cleared" and periods:
            last = periods[-1]
            periods[-1] = DriftPeriod(last.start, r.at, last.features, last.tested)
    return tuple(periods)


def accuracy_fell(changes: Sequence[PhaseChange]) -> float | None:
    """When the accuracy alert first held (pending, or firing at once), service seconds in."""
    for change in changes:
        if change.current in ("Degraded", "FallbackActive"):
            return change.at
    return None


def drift_story(drift_changes: Sequence[DriftChange], changes: Sequence[PhaseChange]) -> DriftStory:
    """The drift period flagged last at or before accuracy fell, else the first one after."""
    periods = drift_periods(drift_changes)
    alert = accuracy_fell(changes)
    before = [p for p in periods if alert is None or p.start <= alert]
    after = [p for p in periods if alert is not None and p.start > alert]
    period = before[-1] if before else after[0] if after else None
    return DriftStory(period, alert)


@dataclass(frozen=True, slots=True)
class EstimateStory:
    """The estimated accuracy against the realized one. `fell`: the first reading in the drift
    whose estimate was below the alert's bound (None: none was), with how many labels of the
    drifted world had been sent by then (`drifted_labels`, at least what the service had).
    `turned`: the last reading of the concept shift's phase, where churn followed the price."""

    threshold: float
    min_samples: int
    fell: Reading | None
    drifted_labels: int
    turned: Reading | None

    def to_dict(self) -> dict[str, Any]:
        def pair(r: Reading | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {
                "at": r.at,
                "estimated": None if r.estimated is None else r.estimated.value,
                "realized": None if r.accuracy is None else r.accuracy.value,
                "labeled": r.labeled,
                "reviewed": None if r.reviewed is None else r.reviewed.value,
                "reviews": r.reviews,
            }

        return {
            "threshold": self.threshold,
            "min_samples": self.min_samples,
            "fell": pair(self.fell),
            "drifted_labels": self.drifted_labels,
            "turned": pair(self.turned),
        }


def estimate_story(
    readings: Sequence[Reading],
    *,
    threshold: float,
    min_samples: int,
    drift: tuple[float, float, float],
    drifted_labels: Sequence[tuple[float, int]],
) -> EstimateStory:
    """`drift` is (drift, turn, back) in service seconds since the start; `drifted_labels` the
    traffic's (service seconds, labels of the drifted world sent by then), in order."""
    start, turn, back = drift
    fell = next(
        (
            r
            for r in readings
            if start <= r.at < back and r.estimated is not None and r.estimated.value < threshold
        ),
        None,
    )
    sent = 0
    if fell is not None:
        sent = max((n for at, n in drifted_labels if at <= fell.at), default=0)
    turned = [r for r in readings if turn <= r.at < back and r.estimated is not None]
    return EstimateStory(threshold, min_samples, fell, sent, turned[-1] if turned else None)


def outlier_burst(readings: Sequence[DriftReading], until: float) -> DriftReading | None:
    """The reading with the most outliers (the earliest of equals) before `until` (service
    seconds in); None when none had any."""
    candidates = [r for r in readings if r.at < until and r.outliers > 0]
    return max(candidates, key=lambda r: (r.outliers, -r.at)) if candidates else None


@dataclass(frozen=True, slots=True)
class Replay:
    """The run's own history replayed with its monitor (`POST .../backtest`, what `truthloop
    backtest` asks): the fallback's episodes (service seconds in) with the model's predictions
    in each, the model's predictions in all, and the rules against the model on the episodes'
    labeled records."""

    episodes: tuple[tuple[Period, int], ...]
    predictions: int
    rules: RulesVsModel | None


def replay_of(answer: Mapping[str, Any], start: float) -> Replay:
    """A backtest answer told from `start` (epoch seconds of service time)."""
    found = msgspec.convert(answer, Backtest)
    episodes = tuple(
        (
            Period(e.period.start - start, None if e.period.open else e.period.end - start),
            e.predictions,
        )
        for e in found.result.episodes
    )
    return Replay(episodes, found.result.predictions, found.rules)


@dataclass(frozen=True, slots=True)
class Summary:
    counts: Counts
    window: str
    """The metrics API window the figures are over (covers the whole run)."""
    model: Figures
    fallback: Figures
    minute: Minute | None
    changes: tuple[PhaseChange, ...]
    start: float
    """Service time at the start, epoch seconds."""
    drift: DriftStory = DriftStory(None, None)
    burst: DriftReading | None = None
    """The outlier burst as the drift reading with the most outliers showed it."""
    estimated: EstimateStory | None = None
    reviews: Reviews | None = None
    """What the reviewer did (None: no reviewer ran)."""
    abstain: Abstain | None = None
    segment: Segment | None = None
    versions: tuple[Slice, ...] = ()
    comparison: Comparison | None = None
    min_samples: int = 0
    """Labeled predictions a segment's value needs to be told."""
    replay: Replay | None = None

    @property
    def periods(self) -> tuple[Period, ...]:
        return fallback_periods(self.changes)

    def to_dict(self) -> dict[str, Any]:
        """The machine-checkable result line."""
        c = self.counts
        minute = self.minute
        return {
            "requests": c.requests,
            "answered": c.answered,
            "served_by_fallback": c.by_fallback,
            "actuals": c.actuals,
            "window": self.window,
            "model": self.model.to_dict(),
            "fallback": self.fallback.to_dict(),
            "minute": None
            if minute is None
            else {
                "start": minute.start,
                "drifted": minute.drifted,
                "model": minute.model.to_dict(),
                "fallback": minute.fallback.to_dict(),
            },
            "phases": [change.current for change in self.changes],
            "drift": drift_dict(self.drift),
            "outliers": None if self.burst is None else burst_dict(self.burst, c.broken),
            "estimate": None if self.estimated is None else self.estimated.to_dict(),
            "abstained": c.abstained,
            "reviews": None if self.reviews is None else reviews_dict(self.reviews),
            "segment": None
            if self.segment is None
            else {
                "name": self.segment.name,
                "values": [v.to_dict() for v in self.segment.values],
            },
            "canary": c.canary,
            "versions": [v.to_dict() for v in self.versions],
            "compare": None if self.comparison is None else self.comparison.to_dict(),
            "backtest": None if self.replay is None else replay_dict(self.replay),
        }


def replay_dict(replay: Replay) -> dict[str, Any]:
    rules = replay.rules
    return {
        "episodes": [[p.engaged, p.released, n] for p, n in replay.episodes],
        "predictions": replay.predictions,
        "rules": None if rules is None else msgspec.to_builtins(rules),
    }


def reviews_dict(reviews: Reviews) -> dict[str, Any]:
    return {
        "leased": reviews.leased,
        "labeled": reviews.labeled,
        "reasons": dict(sorted(reviews.reasons.items())),
    }


def drift_dict(story: DriftStory) -> dict[str, Any]:
    period = story.period
    return {
        "flagged": None if period is None else period.start,
        "cleared": None if period is None else period.end,
        "features": [] if period is None else list(period.features),
        "tested": 0 if period is None else period.tested,
        "accuracy_fell": story.alert,
    }


def burst_dict(reading: DriftReading, broken: int) -> dict[str, Any]:
    return {
        "at": reading.at,
        "count": reading.outliers,
        "ratio": reading.outlier_ratio,
        "broken": broken,
        "drifted": list(reading.drifted),
        "tested": reading.tested,
        "dataset_drift": reading.flagged,
    }


def fallback_periods(changes: Sequence[PhaseChange]) -> tuple[Period, ...]:
    """When the fallback answered, from the phase changes."""
    periods: list[Period] = []
    for change in changes:
        if change.current == "FallbackActive":
            periods.append(Period(change.at, None))
        elif change.previous == "FallbackActive" and periods:
            periods[-1] = Period(periods[-1].engaged, change.at)
    return tuple(periods)


def pick_minute(
    model_series: Sequence[Mapping[str, Any]],
    fallback_series: Sequence[Mapping[str, Any]],
    drifted: tuple[float, float],
) -> Minute | None:
    """The minute to compare the fallback with the model in; None when the fallback never
    answered. Preferred, in order: a minute wholly inside `drifted` (epoch seconds of service
    time), one in which the fallback answered every request (so the model's records there are
    its shadow answers to the same customers), the most labeled, the earliest."""
    model = {point["start"]: point for point in model_series}
    candidates = [
        point for point in fallback_series if point["labeled"] > 0 and point["start"] in model
    ]
    if not candidates:
        return None
    start, end = drifted

    def inside(point: Mapping[str, Any]) -> bool:
        began: float = point["start"]
        return start <= began and began + BUCKET <= end

    def rank(point: Mapping[str, Any]) -> tuple[bool, bool, int, float]:
        every = point["samples"] == model[point["start"]]["samples"]
        return (inside(point), every, point["labeled"], -point["start"])

    best = max(candidates, key=rank)
    return Minute(
        best["start"], Figures.of(model[best["start"]]), Figures.of(best), drifted=inside(best)
    )


def summarize(
    counts: Counts,
    window: str,
    overall: Mapping[str, Any],
    model_series: Sequence[Mapping[str, Any]],
    fallback_series: Sequence[Mapping[str, Any]],
    *,
    changes: Sequence[PhaseChange],
    start: float,
    drifted: tuple[float, float],
    drift_changes: Sequence[DriftChange] = (),
    drift_readings: Sequence[DriftReading] = (),
    estimated: EstimateStory | None = None,
    calm_until: float | None = None,
    reviews: Reviews | None = None,
    abstain: Abstain | None = None,
    segment: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    compare: Mapping[str, Any] | None = None,
    min_samples: int = 0,
    backtest: Mapping[str, Any] | None = None,
) -> Summary:
    """`overall` is the metrics API's answer over `window`; the series are its `series=1m`
    points for `served_by=model` and `served_by=fallback`; the drift changes and readings are
    the watcher's; the burst is looked for before `calm_until` (epoch seconds of service time,
    when the world first drifted; default the start of `drifted`). `segment`, `versions` and
    `compare` are the metrics API's answer with `segment=`, the versions and compare APIs';
    `backtest` the backtest API's of the run."""
    return Summary(
        counts=counts,
        window=window,
        model=Figures.whole(overall["served_by"]["model"]),
        fallback=Figures.of(overall["served_by"]["fallback"]),
        minute=pick_minute(model_series, fallback_series, drifted),
        changes=tuple(changes),
        start=start,
        drift=drift_story(drift_changes, changes),
        burst=outlier_burst(
            drift_readings, (drifted[0] if calm_until is None else calm_until) - start
        ),
        estimated=estimated,
        reviews=reviews,
        abstain=abstain,
        segment=None if segment is None else Segment.of(segment),
        versions=() if versions is None else versions_of(versions),
        comparison=None if compare is None else Comparison.of(compare),
        min_samples=min_samples,
        replay=None if backtest is None else replay_of(backtest, start),
    )


def records(n: int) -> str:
    """`1 record`, `12 records`."""
    return f"{n} record{'' if n == 1 else 's'}"


def clock(seconds: float) -> str:
    """Service seconds since the start as `mm:ss`."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def accuracy(figures: Figures) -> str:
    """`0.95 [0.90–0.98] on 148 labeled`, or `- on 0 labeled`."""
    a = figures.accuracy
    return f"{'-' if a is None else a.text()} on {figures.labeled} labeled"


def lines(summary: Summary, metrics_url: str, label_delay: float) -> list[str]:
    """The summary as text; `metrics_url` is the query its figures came from."""
    c, model, fallback = summary.counts, summary.model, summary.fallback
    phases = " → ".join(f"{clock(ch.at)} {ch.current}" for ch in summary.changes)
    out = [
        f"summary (GET {metrics_url}, by served_by; times are service time)",
        f"  requests  {c.requests} sent, {c.answered} answered:"
        f" {c.answered - c.by_fallback} by the model, {c.by_fallback} by the fallback"
        " (X-Served-By: fallback)",
        f"  captured  {model.samples} model records (its answers, and its shadow answers while"
        f" the fallback served), {fallback.samples} fallback records",
        f"  labeled   {model.labeled} model, {fallback.labeled} fallback, by {c.actuals} actuals"
        f" sent by entity ID {label_delay:g}s after each prediction",
        f"  phases    {phases}",
    ]
    for period in summary.periods:
        released = (
            "still engaged at the end"
            if period.released is None
            else f"released {clock(period.released)}"
            f" ({clock(period.released - period.engaged)} later)"
        )
        out.append(f"  fallback  engaged {clock(period.engaged)}, {released}")
    out += drift_lines(summary.drift)
    if summary.burst is not None:
        out += burst_lines(summary.burst, c.broken)
    if summary.estimated is not None:
        out += estimate_lines(summary.estimated, summary.drift.alert)
    out.append(f"  accuracy  model {accuracy(model)} over the whole run")
    out += reviewed_lines(model, summary.reviews)
    out += abstained_lines(c.abstained, summary.abstain)
    out += segment_lines(summary.segment, summary.min_samples)
    out += version_lines(summary.versions, summary.comparison)
    minute = summary.minute
    if minute is not None:
        at = minute.start - summary.start
        out += [
            f"  minute    {clock(at)}–{clock(at + BUCKET)}"
            f"{', world drifted' if minute.drifted else ''}, fallback answering:",
            f"            fallback {accuracy(minute.fallback)}",
            f"            model    {accuracy(minute.model)} (shadow answers included)",
        ]
    if summary.replay is not None:
        out += replay_lines(summary.replay)
    return out


def interval(e: metrics.Estimate | None) -> str:
    """A metric's value and interval as `0.95 [0.90–0.98]`."""
    if e is None or e.value is None:
        return "-"
    if e.lower is None or e.upper is None:
        return f"{e.value:.2f}"
    return f"{e.value:.2f} [{e.lower:.2f}–{e.upper:.2f}]"


def replay_lines(replay: Replay) -> list[str]:
    """The backtest of the run: its episodes, and the rules against the model in them."""
    out = [
        "  backtest  the run's history replayed minute by minute with its monitor (POST"
        " .../backtest, as `truthloop backtest` asks; docs/backtest.md):"
    ]
    if not replay.episodes:
        out.append("            the fallback would not have engaged")
    for period, predictions in replay.episodes:
        released = (
            "still engaged at the end"
            if period.released is None
            else f"released {clock(period.released)}"
            f" ({clock(period.released - period.engaged)} later)"
        )
        out.append(
            f"            episode  engaged {clock(period.engaged)}, {released}:"
            f" {predictions} of the model's {replay.predictions} predictions"
        )
    rules = replay.rules
    d = None if rules is None else rules.difference
    if rules is None or d is None or d.difference is None:
        return out
    metric = rules.metric
    bounds = "" if d.lower is None else f" [{d.lower:+.3f} to {d.upper:+.3f}]"
    out.append(
        f"            rules    {metric} {interval(rules.rules.get(metric))}, the model's"
        f" {interval(rules.model.get(metric))} on the same {rules.compared} labeled records:"
        f" rules − model {d.difference:+.3f}{bounds}, {VERDICTS.get(d.verdict, d.verdict)}"
    )
    out += [f"            left out {records(s.records)}: {s.detail}" for s in rules.skipped]
    return out


def drift_lines(story: DriftStory) -> list[str]:
    """When drift was flagged, against when accuracy fell, in words."""
    period, alert, lead = story.period, story.alert, story.lead
    if period is None:
        return ["  drift     never flagged"]
    if alert is None or lead is None:
        when = f"flagged {clock(period.start)}; accuracy never fell"
    elif lead >= 0:
        when = (
            f"flagged {clock(period.start)}, {clock(lead)} before accuracy fell"
            f" ({clock(alert)} Degraded): from the inputs, no label needed"
        )
    else:
        when = f"flagged {clock(period.start)}, {clock(-lead)} after accuracy fell ({clock(alert)})"
    cleared = "still flagged at the end" if period.end is None else f"cleared {clock(period.end)}"
    return [
        f"  drift     {when}",
        f"            {len(period.features)} of {period.tested} features drifted"
        f" ({', '.join(period.features)}); {cleared}",
    ]


def burst_lines(reading: DriftReading, broken: int) -> list[str]:
    """The outlier burst in words: outliers, yet no dataset drift (or, if it came, said so)."""
    ratio = "-" if reading.outlier_ratio is None else f"{reading.outlier_ratio:.1%}"
    drifted = f"{len(reading.drifted)} of {reading.tested} features drifted"
    verdict = (
        f"with dataset drift all the same ({drifted})"
        if reading.flagged
        else f"without dataset drift ({drifted}): odd records, not a shift"
    )
    return [
        f"  outliers  {clock(reading.at)} {records(reading.outliers)} outside the reference"
        f" ({ratio} of the window; the meter broke for {broken})",
        f"            {verdict}",
    ]


def estimate_lines(story: EstimateStory, alert: float | None) -> list[str]:
    """The estimate against the labels, in words: what it saw first, and what it cannot see."""
    fell, turned = story.fell, story.turned
    if fell is None or fell.estimated is None:
        out = [f"  estimate  never below {story.threshold:g} while the world was drifted"]
    else:
        realized = "none yet" if fell.accuracy is None else f"{fell.accuracy.value:.2f}"
        later = "" if alert is None else f"; accuracy fell {clock(alert)}"
        out = [
            f"  estimate  accuracy≈{fell.estimated.value:.2f} at {clock(fell.at)}, below"
            f" {story.threshold:g} from the scores with {story.drifted_labels} labels of the"
            f" drifted world (minSamples {story.min_samples})",
            f"            (the window's labeled accuracy then {realized}{later}): the newcomers"
            " were a covariate shift, which the estimate sees",
        ]
    if turned is not None and turned.estimated is not None:
        realized = "-" if turned.accuracy is None else f"{turned.accuracy.value:.2f}"
        reviewed = (
            ""
            if turned.reviewed is None
            else f"; the reviews, which see the truth, {turned.reviewed.value:.2f}"
            f" from {turned.reviews}"
        )
        out.append(
            f"            churn following the price is a concept shift, which it cannot see:"
            f" at {clock(turned.at)} accuracy≈{turned.estimated.value:.2f}, labeled"
            f" {realized}{reviewed}"
        )
    return out


REASONS = (
    ("abstain", "in the band"),
    ("explore", "explored"),
    ("outlier", "outliers"),
    ("random", "at random"),
    ("borderline", "borderline"),
)
"""Why an item was queued (`core.review.REASONS`), as the summary tells them."""


def reviewed_lines(model: Figures, reviews: Reviews | None) -> list[str]:
    """The accuracy the reviews estimate against the labeled one, and what the reviewer did."""
    if reviews is None:
        return []
    a, r = model.reviewed, model.accuracy
    if a is None or a.lower is None or a.upper is None:
        out = [f"  reviewed  - from {model.reviews} reviews"]
    else:
        scores = (
            "" if model.estimated is None else f"; ≈{model.estimated.value:.2f} from the scores"
        )
        if r is None:
            verdict = ""
        elif a.lower <= r.value <= a.upper:
            verdict = f", which holds the labeled {r.value:.2f}"
        else:
            verdict = f", which misses the labeled {r.value:.2f}"
        out = [
            f"  reviewed  accuracy {a.text()} from {model.reviews} reviews{verdict}{scores}",
        ]
    told = ", ".join(f"{reviews.reasons[k]} {text}" for k, text in REASONS if reviews.reasons[k])
    out += [
        f"  reviews   {reviews.labeled} labeled by the reviewer from the queue (GET .../review),"
        " each weighed by its chance of being queued",
        f"            queued as {told or 'nothing'}",
    ]
    return out


def abstained_lines(abstained: int, abstain: Abstain | None) -> list[str]:
    """How often the sidecar answered "I don't know", and why."""
    if abstain is None:
        return []
    return [
        f'  abstained {abstained} answers "I don\'t know" (X-Truthloop-Abstain: true): scores in'
        f" [{abstain.low:g}, {abstain.high:g}], and {abstain.explore:.0%} of the others at random,"
        " each queued for review"
    ]


def segment_lines(segment: Segment | None, min_samples: int) -> list[str]:
    """The segment's values worst first, those with `min_samples` labeled."""
    if segment is None:
        return []
    told = [v for v in segment.values if v.figures.labeled >= min_samples]
    width = max((len(v.name) for v in told), default=0)
    return [
        f"  segment   accuracy by {segment.name}, worst first"
        f" (GET .../metrics?segment={segment.name}; values with {min_samples} labeled or more):",
        *(f"            {v.name:<{width}}  {accuracy(v.figures)}" for v in told),
    ]


VERDICTS = {"better": "better", "worse": "worse", "cant_tell": "can't tell yet"}


def version_lines(versions: Sequence[Slice], comparison: Comparison | None) -> list[str]:
    """Each version's share and accuracy; the second against the first."""
    if not versions:
        return []
    out = [
        f"  {'versions' if i == 0 else '':<8}  {v.name} {v.share or 0.0:.0%} of the model's"
        f" records, accuracy {accuracy(v.figures)}"
        for i, v in enumerate(versions)
    ]
    if comparison is None:
        return out
    m = comparison.accuracy
    interval = "" if m["lower"] is None else f" [{m['lower']:+.3f} to {m['upper']:+.3f}]"
    verdict = VERDICTS.get(m["verdict"], m["verdict"])
    if m["verdict"] == "cant_tell" and m.get("more_labels"):
        verdict += f": about {m['more_labels']} more labels a version would tell"
    counts: dict[str, int] = {}
    for v in comparison.verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    told = ", ".join(f"{n} {VERDICTS.get(v, v)}" for v, n in sorted(counts.items()))
    out += [
        f"  compare   {comparison.b} − {comparison.a} accuracy {m['difference']:+.3f}{interval}"
        f" (95%): {verdict} (GET .../compare?a={comparison.a}&b={comparison.b})",
        f"            of {len(comparison.verdicts)} metrics: {told}",
    ]
    return out
