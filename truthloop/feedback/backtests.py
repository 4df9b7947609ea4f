"""A backtest run against a store: the shell around `core.backtest` that both the service's
`POST /v1/monitors/{ns}/{name}/backtest` and `truthloop backtest --store` run.

`request(body, now)` reads what to test from JSON (the ModelMonitor under test, validated as a
PUT validates it; the period; the sweeps; `suggest`), every problem a `FieldError` naming the
body's field. `run` reads the period's minute counters (plus the window's minutes before it,
so the first window is whole), and those of each segment a segment alert watches, a week at a
time (`Store.series` at 1-minute steps: a week is 10,080 points), and computes the backtest in
a worker thread: a 30-day replay is a CPU-bound second or two that must not stall the
service's event loop. The fallback's rules are then replayed on the episodes' labeled records
(`rulereplay`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from truthloop.core import backtest, sweep
from truthloop.core.backtest import Backtest
from truthloop.core.evaluation import Estimator
from truthloop.core.profile import Reference
from truthloop.core.spec import (
    DRIFT_METRICS,
    MAX_WINDOW,
    FieldError,
    Monitor,
    MonitorSpec,
    SpecError,
    parse_duration,
    parse_update,
)
from truthloop.core.windows import BucketRange, Steps, bucket_of
from truthloop.feedback.bodies import timestamp
from truthloop.feedback.engine import estimator, reference_of
from truthloop.feedback.rulereplay import rules_on_history
from truthloop.feedback.store.interface import Groups, Only, Registered, Store

DEFAULT_PERIOD = 30 * 86400.0
MAX_PERIOD = MAX_WINDOW
"""The longest period a backtest replays (90 days: 129,600 minutes)."""
MAX_SWEEPS = 10
READ_MINUTES = 7 * 1440
"""Minutes of counters one store read holds."""
MAX_DRIFT_MINUTES = 7 * 1440
"""The longest period whose drift alerts are replayed: a minute's feature sketches are hundreds
of counters, each window's drift a full evaluation; beyond it they are `unread`."""
FIELDS = ("monitor", "from", "to", "sweeps", "suggest")


@dataclass(frozen=True, slots=True)
class Request:
    """What to backtest: the monitor under test (None: the registered one), the period
    `[start, end)` in epoch seconds, the sweeps as written, and whether to suggest thresholds."""

    monitor: Monitor | None
    start: float
    end: float
    sweeps: tuple[str, ...] = ()
    suggest: bool = False


def request(body: object, now: float, key: str, old: Mapping[str, Any] | None = None) -> Request:
    """The request of a JSON body: `monitor` (a ModelMonitor object, parsed as PUT parses one
    replacing `old`, its metadata's name and namespace defaulting to `key`'s; absent: the
    registered spec), `from` (RFC 3339, epoch seconds, or a
    duration before `to`: `30d`, the default), `to` (a time; default `now`), `sweeps` (at most
    `MAX_SWEEPS` strings, `core.sweep`), `suggest` (a boolean). Raises SpecError with every
    problem, each at its field (`monitor.spec.alerts[0].below`, `from`, `sweeps[1]`)."""
    if not isinstance(body, dict):
        raise SpecError([FieldError("", "expected a JSON object")])
    errors = [
        FieldError(str(k), f"unknown field; expected one of {', '.join(FIELDS)}")
        for k in body
        if k not in FIELDS
    ]
    monitor = None
    if body.get("monitor") is not None:
        try:
            monitor = parse_update(_named(body["monitor"], key), old)
        except SpecError as e:
            errors += [FieldError(_under("monitor", x.path), x.message) for x in e.errors]
    end = _time(body, "to", now, errors)
    start = _start(body, end, errors)
    sweeps = body.get("sweeps", [])
    if not isinstance(sweeps, list) or not all(isinstance(s, str) for s in sweeps):
        errors.append(FieldError("sweeps", "expected an array of strings"))
        sweeps = []
    elif len(sweeps) > MAX_SWEEPS:
        errors.append(FieldError("sweeps", f"{len(sweeps)} sweeps, at most {MAX_SWEEPS}"))
    suggest = body.get("suggest", False)
    if not isinstance(suggest, bool):
        errors.append(FieldError("suggest", "expected true or false"))
    if errors:
        raise SpecError(errors)
    return Request(monitor, start, end, tuple(sweeps), bool(suggest))


def _named(obj: object, key: str) -> object:
    """A ModelMonitor object with its metadata's namespace and name defaulting to `key`'s."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
        return obj
    namespace, _, name = key.partition("/")
    metadata = {"namespace": namespace, "name": name, **(obj.get("metadata") or {})}
    return {**obj, "metadata": metadata}


def _under(parent: str, path: str) -> str:
    return f"{parent}.{path}" if path else parent


def _time(body: Mapping[str, Any], name: str, default: float, errors: list[FieldError]) -> float:
    value = body.get(name)
    if value is None:
        return default
    try:
        return timestamp(str(value)) if isinstance(value, str | int | float) else timestamp("x")
    except ValueError:
        errors.append(FieldError(name, f"expected RFC 3339 or epoch seconds, got {value!r}"))
        return default


def _start(body: Mapping[str, Any], end: float, errors: list[FieldError]) -> float:
    """`from`: a time, or a duration before `end`; the period between 1 minute and 90 days."""
    value = body.get("from")
    if value is None:
        return end - DEFAULT_PERIOD
    start: float | None = None
    if isinstance(value, str) and value[:1].isdigit() and value[-1:] in "smhd":
        try:
            start = end - parse_duration(value)
        except ValueError:
            start = None
    if start is None:
        start = _time(body, "from", math.nan, errors)
        if math.isnan(start):
            why = f"expected a duration (30d), RFC 3339 or epoch seconds, got {value!r}"
            errors[-1] = FieldError("from", why)
            return end - DEFAULT_PERIOD
    if not 60 <= end - start <= MAX_PERIOD:
        errors.append(FieldError("from", "the period from `from` to `to` is 1m to 90d"))
    return start


def span(start: float, end: float) -> BucketRange:
    """The minutes a period steps: those that began at or after `start` and ended by `end`."""
    return BucketRange(bucket_of(start + 59), bucket_of(end))


async def minute_counters(
    store: Store, monitor_id: int, minutes: BucketRange, only: Only
) -> dict[int, Groups]:
    """Each minute bucket's counters of `minutes`, read `READ_MINUTES` at a time, by epoch
    minute."""
    found: dict[int, Groups] = {}
    for first in range(minutes.start, minutes.end, READ_MINUTES):
        count = min(READ_MINUTES, minutes.end - first)
        points = await store.series(monitor_id, Steps(first, 1, count, "minute"), only)
        found.update({first + point: groups for point, groups in points.items()})
    return found


async def run(store: Store, registered: Registered, asked: Request) -> Backtest:
    """The backtest `asked` on `registered`'s stored history (with the monitor under test in
    place of the registered one's spec, and the registered references for its estimates).
    Raises SpecError naming `sweeps[i]` for a sweep the spec under test cannot take."""
    tested = replace(registered, monitor=asked.monitor) if asked.monitor else registered
    spec = tested.monitor.spec
    sweeps = sweep.parse(asked.sweeps, spec, "sweeps")
    stepped = span(asked.start, asked.end)
    width = backtest.window_minutes(spec)
    reads = BucketRange(stepped.start - width + 1, stepped.end)
    keys = backtest.read_keys(spec)
    estimating = any(k.startswith(("estimated:", "auto:")) for k in keys)
    only = Only(sketches=False, estimates=estimating)
    minutes = await minute_counters(store, registered.id, reads, only)
    segmented = {}
    for name in sorted({a.segment for a in backtest.segment_alerts(spec) if a.segment}):
        only = Only(None, "model", sketches=False, estimates=estimating, segment=name)
        segmented[name] = await minute_counters(store, registered.id, reads, only)
    reference = reference_of(tested, None)
    sketches = None
    drifting = any(a.segment is None and a.metric in DRIFT_METRICS for a in spec.alerts)
    if drifting and reference is not None and len(stepped) <= MAX_DRIFT_MINUTES:
        sketches = await minute_counters(store, registered.id, reads, Only(sketches=True))
    estimate = estimator(tested) if estimating else None
    found = await asyncio.to_thread(
        _compute,
        tested.monitor.key,
        spec,
        minutes,
        segmented,
        stepped,
        estimate,
        sweeps,
        asked.suggest,
        sketches,
        reference,
    )
    rules = await rules_on_history(store, registered.id, spec, found.result.episodes)
    return replace(found, result=backtest.bounded(found.result), rules=rules)


def _compute(
    key: str,
    spec: MonitorSpec,
    minutes: Mapping[int, Groups],
    segmented: Mapping[str, Mapping[int, Groups]],
    stepped: BucketRange,
    estimate: Estimator | None,
    sweeps: Sequence[sweep.Sweep],
    suggest: bool,
    sketches: Mapping[int, Groups] | None,
    reference: Reference | None,
) -> Backtest:
    found = backtest.inputs(spec, minutes, stepped, estimate, segmented, sketches, reference)
    return backtest.backtest(key, spec, found, sweeps, suggesting=suggest)
