"""The demo's closing numbers, from the feedback service's metrics API, and how they are told.

Pure: the CLI fetches `metrics?window=` (the whole run) and its `series=1m` for each `served_by`,
and `summarize` turns them, with the client's counts and the phase changes seen, into a `Summary`.
The fallback is compared with the model on one minute of service time in which the world was
drifted and the fallback answered: there every request has a fallback record and a shadow record
of the model's answer, so both are measured on the same customers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from truthloop.demo.traffic import Counts
from truthloop.demo.watch import Estimate, PhaseChange, estimate

BUCKET = 60.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Predictions, labeled ones and accuracy of one `served_by` (an API answer or a point)."""

    samples: int
    labeled: int
    accuracy: Estimate | None

    @classmethod
    def of(cls, part: Mapping[str, Any]) -> Figures:
        return cls(int(part["samples"]), int(part["labeled"]), estimate(part["metrics"]))

    def to_dict(self) -> dict[str, Any]:
        a = self.accuracy
        return {
            "samples": self.samples,
            "labeled": self.labeled,
            "accuracy": None if a is None else [a.value, a.lower, a.upper],
        }


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
) -> Summary:
    """`overall` is the metrics API's answer over `window`; the series are its `series=1m`
    points for `served_by=model` and `served_by=fallback`."""
    return Summary(
        counts=counts,
        window=window,
        model=Figures.of(overall["served_by"]["model"]),
        fallback=Figures.of(overall["served_by"]["fallback"]),
        minute=pick_minute(model_series, fallback_series, drifted),
        changes=tuple(changes),
        start=start,
    )


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
    out.append(f"  accuracy  model {accuracy(model)} over the whole run")
    minute = summary.minute
    if minute is not None:
        at = minute.start - summary.start
        out += [
            f"  minute    {clock(at)}–{clock(at + BUCKET)}"
            f"{', world drifted' if minute.drifted else ''}, fallback answering:",
            f"            fallback {accuracy(minute.fallback)}",
            f"            model    {accuracy(minute.model)} (shadow answers included)",
        ]
    return out
