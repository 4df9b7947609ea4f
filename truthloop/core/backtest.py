"""Backtest: a monitor's alerts and fallback replayed on the stored minute counters of a period.

`truthloop backtest` answers "with these thresholds, over the last 30 days, when would the
fallback have engaged, for how long, and how good was the model then?" before a spec acts on
traffic. The replay reads nothing the live engine does not: every minute's window (the `window`
minutes ending with it, summed) is evaluated and read by the same functions the engine's tick
uses (`evaluation.alert_values`; for a segment alert `segment_metrics.rank` and `worst`; for a
drift alert `drift.evaluate` against the reference and `drift.alert_values`), and the same
machine (`alerts.step`) is stepped on them, so the transitions are the ones the engine would
have made on the same buckets ticking once a minute (the tests hold them to the live engine's).
An alert given no input (a segment's drift alert) is named `unread`.

Times are epoch seconds; a period is half-open `[start, end)`; minutes are epoch minutes
(`windows.bucket_of`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from truthloop.core import (
    alerts,
    drift,
    estimate,
    evaluation,
    metrics,
    segment_metrics,
    segments,
    sketch,
    sweep,
    timeline,
)
from truthloop.core.alerts import Transition, WindowMetric
from truthloop.core.evaluation import Estimator, Evaluated, Group
from truthloop.core.join import PREDICTIONS_KEY
from truthloop.core.profile import Reference
from truthloop.core.rulehistory import RulesVsModel
from truthloop.core.spec import (
    DRIFT_METRICS,
    AlertSpec,
    FieldError,
    MonitorSpec,
    SpecError,
    counts_labels,
)
from truthloop.core.timeline import Line
from truthloop.core.windows import BUCKET_SECONDS, BucketRange, bucket_start

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Minutes = Mapping[int, Mapping[Group, metrics.Counters]]
"""The counters of each minute bucket by (version, served_by), as `Store.series` at 1-minute
steps reads them (`minute_counters`), keyed by epoch minute."""

CHUNK_CELLS = 4_000_000
"""At most this many counters (minutes x keys) held dense at once while summing windows."""


@dataclass(frozen=True, slots=True)
class Period:
    """`[start, end)` in epoch seconds; `open` when it still ran at the backtest's end (`end` is
    then the backtest's end, not an end the replay saw)."""

    start: float
    end: float
    open: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Figure:
    """A metric's value with its interval and the samples behind it (labeled predictions for a
    realized metric, predictions for an estimate); None where the counters give none."""

    value: float | None
    lower: float | None
    upper: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class Around:
    """One metric around an episode: its window's figure at the tick that engaged the fallback,
    over the episode's own minutes (their counters summed, not a window), and its window's at
    the tick that released it (None for an episode still open at the end)."""

    before: Figure | None
    during: Figure | None
    after: Figure | None


@dataclass(frozen=True, slots=True)
class Episode:
    """One engagement of the fallback: when, what engaged it (`alerts.Transition.reason` of
    the engagement), the model's predictions in the period (the traffic the fallback would have
    answered), and the realized and estimated metrics around it by metric key (`accuracy`,
    `estimated:accuracy`, ...)."""

    period: Period
    reason: str
    predictions: int
    metrics: Mapping[str, Around] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertReplay:
    """One alert of the spec under test: its firing periods and how many times it went pending
    (a pending that never fired is a near miss)."""

    name: str
    key: str
    firing: tuple[Period, ...]
    pendings: int
    firing_omitted: int = 0
    """Firing periods left out of `firing` (`bounded`)."""


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """A spec's replay over `period`: every transition the machine made, in order (the same
    `alerts.Transition`s the engine logs and persists), each alert's firing periods, the
    fallback's episodes, the share of the model's predictions that fell in an episode (the
    traffic the fallback would have answered; None without predictions), and the fallback's
    engagements a day (flapping)."""

    monitor: str
    period: Period
    window: float
    """The monitor's window in seconds (each minute's alert inputs are the window ending there)."""
    minutes: int
    """Minutes stepped."""
    predictions: int
    """The model's predictions in the period."""
    transitions: tuple[Transition, ...]
    alerts: tuple[AlertReplay, ...]
    episodes: tuple[Episode, ...]
    fallback_share: float | None
    engagements_per_day: float
    unread: tuple[str, ...] = ()
    """The alerts the replay gives no input (a segment's drift alerts; drift alerts without a
    reference or beyond the period the shell reads sketches for): insufficient throughout,
    they never fire in a backtest."""
    transitions_omitted: int = 0
    episodes_omitted: int = 0
    """Transitions and episodes left out of the lists (`bounded`); the figures count them."""
    omitted_seconds: float = 0.0
    """The time in fallback of the episodes left out."""

    @property
    def fallback_seconds(self) -> float:
        """Time in fallback over the period."""
        return sum(e.period.seconds for e in self.episodes) + self.omitted_seconds


@dataclass(frozen=True, slots=True)
class Score:
    """How one candidate spec did against the realized metric (the first alert's metric of the
    sweep, `Sweep.metric`, realized: labeled predictions):

    - `degradations`: periods where the realized metric's window interval lay wholly beyond the
      target (upper bound below a `below` threshold, lower bound above an `above` one);
    - `false_engagements`: episodes during which the model was never shown degraded (no minute
      of a degradation: its realized metric stayed within the target as far as it is known);
      `detected` of them the fallback engaged during, `mean_delay` the mean seconds from a
      detected degradation's start to the engagement (or, already engaged at its start, 0);
      `missed` = `degradations - detected`;
    - `fallback_seconds`: time in fallback."""

    false_engagements: int
    degradations: int
    detected: int
    mean_delay: float | None
    fallback_seconds: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """One point of a sweep's grid: the values set (`alerts[name].field` → value, in the order
    the sweeps were given), its replay's score, whether it is on the Pareto front (no other
    candidate is at least as good on false engagements, missed degradations, mean detection
    delay and time in fallback, and better on one)."""

    values: Mapping[str, float]
    score: Score
    pareto: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A threshold proposed for an alert from the metric's historical spread at the window's
    sample size, and why (the figures behind it, in words)."""

    alert: str
    field: str
    value: float
    why: str


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Every candidate of a sweep's grid, in grid order (the last sweep varying fastest), and
    the realized metric the scores are measured on."""

    metric: str
    target: float
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Backtest:
    """What `POST .../backtest` and `truthloop backtest` answer: the replay of the spec as given,
    the sweep's candidates when sweeps were asked for, and the suggested thresholds when
    `suggest` was."""

    result: BacktestResult
    sweep: SweepResult | None = None
    suggestions: tuple[Suggestion, ...] = ()
    lines: tuple[Line, ...] = ()
    """The metrics the alerts read over the period, thinned for the timeline chart."""
    rules: RulesVsModel | None = None
    """The fallback's rules against the model on the episodes' labeled records, which the shell
    reads from the store (`feedback.rulereplay`); None without rules."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a replay reads of each minute of `span`, computed once and shared by every candidate
    of a sweep (a candidate differs in thresholds, `for` and `recoverAfter`, never in what the
    alerts read): the window ending with the minute read as the engine reads it
    (`evaluation.alert_values` of the model's all-versions group), each value an alert reads by
    its key (NaN: no value) with the samples behind it, the realized and estimated metrics'
    intervals (for the scores and the episodes), and the minute's own model predictions (the
    traffic)."""

    spec: MonitorSpec
    span: BucketRange
    values: Mapping[str, Floats]
    samples: Mapping[str, Ints]
    lower: Mapping[str, Floats]
    upper: Mapping[str, Floats]
    predictions: Ints
    model: Mapping[int, metrics.Counters]
    """Each minute's model counters (every version summed), what an episode's own figures sum."""
    estimator: Estimator | None = None
    ranked: Mapping[str, Sequence[Ranking]] = field(default_factory=dict)
    """Each segment alert's ranking of its segment's values at every minute, by its key."""

    def at(
        self, i: int, keys: Sequence[str], segmented: Sequence[AlertSpec] = ()
    ) -> dict[str, WindowMetric]:
        """The machine's input at the `i`-th minute: the values of `keys` (`read_keys`), and
        what each alert of `segmented` reads of its ranking (`segment_metrics.worst`: the
        values that breach its threshold, worst first)."""
        found = {
            key: WindowMetric(_number(float(self.values[key][i])), int(self.samples[key][i]))
            for key in keys
        }
        min_samples = self.spec.metrics.min_samples
        for alert in segmented:
            if alert.key in self.ranked:
                ranking = self.ranked[alert.key][i]
                found[alert.key] = segment_metrics.worst(alert, ranking, min_samples)
        return found

    def figure(self, key: str, i: int) -> Figure:
        """The window's figure of `key` at the `i`-th minute."""
        return Figure(
            _number(float(self.values[key][i])),
            _number(float(self.lower[key][i])),
            _number(float(self.upper[key][i])),
            int(self.samples[key][i]),
        )


def window_minutes(spec: MonitorSpec) -> int:
    """The minute buckets of the monitor's window (`windows.window`'s count)."""
    return max(1, math.ceil(spec.metrics.window / BUCKET_SECONDS))


def tick(span: BucketRange, i: int) -> float:
    """When the replay steps the `i`-th minute: its last second, the window then ending with it."""
    return bucket_start(span.start + i) + BUCKET_SECONDS - 1


def read_keys(spec: MonitorSpec) -> tuple[str, ...]:
    """The model's values a replay reads: each alert's on a model metric (not a drift alert's;
    a segment alert's is read from its segment, `segment_alerts`), the realized metric behind
    it (the scores' and the labeled count's), and the task's headline metric (so the phase
    counts labels without such alerts)."""
    keys = {"mae" if spec.task == "regression" else "accuracy"}
    for alert in spec.alerts:
        if alert.segment is None and alert.metric not in DRIFT_METRICS:
            keys |= {alert.key, alert.metric}
    return tuple(sorted(keys))


def machine_keys(spec: MonitorSpec, inputs_: Inputs) -> tuple[str, ...]:
    """The values the machine is given at each step: `read_keys` and the drift alerts' that
    `inputs_` has."""
    found = {*read_keys(spec), *(a.key for a in spec.alerts if a.segment is None)}
    return tuple(sorted(k for k in found if k in inputs_.values))


def segment_alerts(spec: MonitorSpec) -> tuple[AlertSpec, ...]:
    """The alerts on a model metric of one segment's values (drift segment alerts are not
    replayed)."""
    return tuple(a for a in spec.alerts if a.segment is not None and a.metric not in DRIFT_METRICS)


def unread(spec: MonitorSpec, inputs_: Inputs) -> tuple[str, ...]:
    """The alerts a replay gives no input (drift alerts without a reference or on a segment,
    segment alerts without their segment's counters): insufficient throughout, they never fire
    in a backtest."""
    return tuple(a.name for a in spec.alerts if a.key not in inputs_.values)


def inputs(
    spec: MonitorSpec,
    minutes: Minutes,
    span: BucketRange,
    estimator: Estimator | None = None,
    segments: Mapping[str, Minutes] | None = None,
    sketches: Minutes | None = None,
    reference: Reference | None = None,
) -> Inputs:
    """Every minute of `span` read as the engine's tick reads its window: the minutes' model
    counters summed over the window as a sliding sum (`_windows`; `minutes` holds the
    `window_minutes - 1` before `span` too), each distinct window (by its sums) evaluated once
    (`evaluation.evaluate`, estimated through `estimator` in batches) and read by
    `evaluation.alert_values`. Only the counters the read keys need are summed: the score
    histogram only for `roc_auc`, the estimation counters only for an estimate.

    `segments`: each segment's minute counters (a segment read of the model's records, its
    counters under their prefix), for the segment alerts: each window split by value
    (`segments.split`), evaluated (`segment_metrics.evaluate`) and ranked for each alert
    (`segment_metrics.rank`), the ranking kept for `worst` to read at each step.

    `sketches`: the minutes' feature sketches, for the drift alerts (not a segment's): each
    window against the monitor's default `reference` (`drift.evaluate`, read by
    `drift.alert_values`), as the engine measures the window's drift."""
    width = window_minutes(spec)
    keys = read_keys(spec)
    estimating = estimator is not None and any(k.startswith(("estimated:", "auto:")) for k in keys)
    auc = any(k.endswith("roc_auc") for k in keys)
    model = _model(minutes, span, width)
    realized = [k for k in keys if ":" not in k]
    figures = realized + ([f"estimated:{k}" for k in realized] if estimating else [])
    read = sorted({*keys, *figures})
    names = {key.rpartition(":")[2] for key in read}
    n = len(span)
    values = {k: np.full(n, np.nan) for k in read}
    samples = {k: np.zeros(n, np.int64) for k in read}
    lower = {k: np.full(n, np.nan) for k in figures}
    upper = {k: np.full(n, np.nan) for k in figures}
    seen: dict[bytes, list[float]] = {}
    """Each distinct window's read, by its sums: a window seen before is not evaluated again."""
    min_samples = spec.metrics.min_samples
    kept = functools.partial(_summed, auc=auc, estimating=estimating)
    for at, sums, fresh, inverse in _windows(model, span, width, kept):
        evaluations = _evaluate(
            spec, list(fresh.values()), estimator if estimating else None, names
        )
        for window, evaluated in zip(fresh, evaluations, strict=True):
            seen[window] = _read(evaluated, read, figures, min_samples)
        expanded = np.array([seen[window] for window in sums])[inverse]
        for j, key in enumerate(read):
            values[key][at] = expanded[:, j]
            samples[key][at] = expanded[:, len(read) + j]
        for j, key in enumerate(figures):
            lower[key][at] = expanded[:, 2 * len(read) + j]
            upper[key][at] = expanded[:, 2 * len(read) + len(figures) + j]
    if sketches is not None and reference is not None:
        drifting = [a.key for a in spec.alerts if a.segment is None and a.metric in DRIFT_METRICS]
        if drifting:
            drifted = _drift(spec, drifting, sketches, reference, span, width)
            for key, (value, behind) in zip(drifting, drifted, strict=True):
                values[key], samples[key] = value, behind
    ranked: dict[str, list[Ranking]] = {}
    for name, found in (segments or {}).items():
        mine = [a for a in segment_alerts(spec) if a.segment == name]
        if mine:
            read_segment = _segment(spec, name, mine, found, span, width, estimator, kept)
            for alert, (ranking, value, behind) in zip(mine, read_segment, strict=True):
                ranked[alert.key], values[alert.key], samples[alert.key] = ranking, value, behind
    predictions = np.array(
        [model.get(span.start + i, {}).get(PREDICTIONS_KEY, 0) for i in range(n)], np.int64
    )
    return Inputs(spec, span, values, samples, lower, upper, predictions, model, estimator, ranked)


Ranking = tuple["Seen", ...]
"""A segment's values worst first at one minute, as an alert on it ranks them."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One value of a segment as a ranking saw it (`segment_metrics.Read`), without its
    evaluation: what `segment_metrics.worst` reads."""

    value: str
    metric: float | None
    samples: int


def _segment(
    spec: MonitorSpec,
    name: str,
    mine: Sequence[AlertSpec],
    minutes: Minutes,
    span: BucketRange,
    width: int,
    estimator: Estimator | None,
    kept: Callable[[str], bool],
) -> list[tuple[list[Ranking], Floats, Ints]]:
    """Each segment alert's rankings and the worst value's figure at every minute of `span`,
    from the segment's minute counters."""
    n = len(span)
    empty: Ranking = ()
    found: list[tuple[list[Ranking], Floats, Ints]] = [
        ([empty] * n, np.full(n, np.nan), np.zeros(n, np.int64)) for _ in mine
    ]
    rankings: list[Ranking] = []
    seen: dict[bytes, int] = {}
    min_samples = spec.metrics.min_samples
    for at, sums, fresh, inverse in _windows(_model(minutes, span, width), span, width, kept):
        for key, counters in fresh.items():
            split = segments.split(counters, name)
            evaluated = segment_metrics.evaluate(spec.task, split, spec.metrics.cost, estimator)
            seen[key] = len(rankings)
            for alert in mine:
                by = segment_metrics.Ranking(
                    segment_metrics.inner_key(alert), alert.below is not None
                )
                ranking = segment_metrics.rank(evaluated, by, min_samples)
                rankings.append(tuple(Seen(r.value, r.metric, r.samples) for r in ranking))
        rows = [seen[key] for key in sums]
        for j, (kept_rankings, value, behind) in enumerate(found):
            here = [rankings[rows[k] + j] for k in inverse]
            kept_rankings[at] = here
            for i, ranking in enumerate(here):
                worst = segment_metrics.worst(mine[j], ranking, min_samples)
                value[at.start + i] = np.nan if worst.value is None else worst.value
                behind[at.start + i] = worst.samples
    return found


def _drift(
    spec: MonitorSpec,
    keys: Sequence[str],
    sketches: Minutes,
    reference: Reference,
    span: BucketRange,
    width: int,
) -> list[tuple[Floats, Ints]]:
    """Each drift key's value and samples at every minute of `span`: each distinct window's
    sketches against `reference`."""
    n = len(span)
    found = [(np.full(n, np.nan), np.zeros(n, np.int64)) for _ in keys]
    seen: dict[bytes, list[float]] = {}
    model = _model(sketches, span, width)
    for at, sums, fresh, inverse in _windows(model, span, width, sketch.is_sketch):
        for window, counters in fresh.items():
            read = drift.alert_values(drift.evaluate(reference, counters, spec))
            pairs = [read.get(key, (math.nan, 0)) for key in keys]
            seen[window] = [v for v, _ in pairs] + [float(s) for _, s in pairs]
        expanded = np.array([seen[window] for window in sums])[inverse]
        for j, (value, behind) in enumerate(found):
            value[at] = expanded[:, j]
            behind[at] = expanded[:, len(keys) + j]
    return found


def _model(minutes: Minutes, span: BucketRange, width: int) -> dict[int, metrics.Counters]:
    """The model's counters of each minute the windows of `span` sum (every version's)."""
    model: dict[int, metrics.Counters] = {}
    for minute, groups in minutes.items():
        if span.start - width < minute < span.end:
            found = metrics.total(c for (_, served), c in groups.items() if served == "model")
            if found:
                model[minute] = found
    return model


def _windows(
    model: Mapping[int, metrics.Counters],
    span: BucketRange,
    width: int,
    kept: Callable[[str], bool],
) -> Iterator[tuple[slice, list[bytes], dict[bytes, metrics.Counters], Ints]]:
    """The windows ending with each minute of `span` as sliding sums (the entering minute
    added, the leaving one subtracted), `CHUNK_CELLS` at a time: per chunk, its minutes, the
    sums of its distinct windows, the counters of those not seen in an earlier chunk, and each
    minute's distinct window."""
    columns = sorted(k for k in {k for c in model.values() for k in c} if kept(k))
    index = {k: j for j, k in enumerate(columns)}
    chunk = max(1, CHUNK_CELLS // max(1, len(columns)))
    running = _dense(model, index, span.start - width + 1, span.start).sum(axis=0)
    seen: set[bytes] = set()
    for first in range(0, len(span), chunk):
        stop = min(len(span), first + chunk)
        entering = _dense(model, index, span.start + first, span.start + stop)
        leaving = _dense(model, index, span.start + first - width, span.start + stop - width)
        rows = running + np.cumsum(entering - leaving, axis=0)
        running = rows[-1]
        order: dict[bytes, int] = {}
        inverse = np.array([order.setdefault(row.tobytes(), len(order)) for row in rows], np.int64)
        sums = list(order)
        firsts = np.unique(inverse, return_index=True)[1]
        fresh: dict[bytes, metrics.Counters] = {
            key: _counters(columns, rows[i])
            for key, i in zip(sums, firsts, strict=True)
            if key not in seen
        }
        seen.update(fresh)
        yield slice(first, stop), sums, fresh, inverse


def _read(
    evaluated: Evaluated | None, read: Sequence[str], figures: Sequence[str], min_samples: int
) -> list[float]:
    """One window as a row of `inputs`' arrays: each read key's value
    (`evaluation.alert_values`; NaN: none) and samples, each figure's lower and upper bound.
    A window without model counters reads nothing, as the engine's tick does."""
    if evaluated is None:
        return [math.nan] * len(read) + [0.0] * len(read) + [math.nan] * 2 * len(figures)
    found = evaluation.alert_values(evaluated, min_samples)
    row = [math.nan if (v := found.get(k, (None, 0))[0]) is None else v for k in read]
    row += [float(found.get(k, (None, 0))[1]) for k in read]
    bounds = []
    for key in figures:
        source, _, name = key.rpartition(":")
        estimate_ = (evaluated.estimated if source else evaluated.metrics).get(name)
        bounds.append((estimate_.lower, estimate_.upper) if estimate_ else (None, None))
    row += [math.nan if lo is None else lo for lo, _ in bounds]
    row += [math.nan if up is None else up for _, up in bounds]
    return row


def _summed(key: str, *, auc: bool, estimating: bool) -> bool:
    """Whether the window sums counter `key`: not a feature sketch's (the drift's), a score
    histogram's cell only for an AUC and an estimation counter only for an estimate."""
    if metrics.is_histogram(key):
        return auc
    if estimate.is_counter(key):
        return estimating
    return not sketch.is_sketch(key)


def _dense(
    model: Mapping[int, metrics.Counters], index: Mapping[str, int], start: int, end: int
) -> Floats:
    """Minutes `start <= m < end` as rows of the summed columns (a minute without counters: 0)."""
    rows = np.zeros((max(0, end - start), len(index)))
    for minute in range(start, end):
        found = model.get(minute)
        if found:
            row = rows[minute - start]
            for key, value in found.items():
                j = index.get(key)
                if j is not None:
                    row[j] = value
    return rows


def _counters(columns: Sequence[str], row: Floats) -> dict[str, float]:
    return {columns[int(j)]: float(row[j]) for j in np.flatnonzero(row)}


def _evaluate(
    spec: MonitorSpec,
    windows: Sequence[metrics.Counters],
    estimator: Estimator | None,
    names: Collection[str] | None = None,
) -> list[Evaluated | None]:
    """Each window's model group evaluated as `evaluation.evaluate_groups` does (None for an
    empty window: no model group), all in one batch (only the metrics `names`, when given)."""
    present = [i for i, c in enumerate(windows) if c]
    found: list[Evaluated | None] = [None] * len(windows)
    cost = spec.metrics.cost
    batch = evaluation.evaluate_many(spec.task, [windows[i] for i in present], cost, names)
    for i, one in zip(present, batch, strict=True):
        found[i] = one
    if estimator is None:
        return found
    estimates = estimator(evaluation.ALL_VERSIONS, [windows[i] for i in present])
    for i, estimated in zip(present, estimates, strict=True):
        evaluated = found[i]
        if estimated and evaluated is not None:
            found[i] = replace(evaluated, estimated=estimated)
    return found


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


Stepped = list[tuple[int, Transition]]
"""Each transition with the index of the minute it happened at."""


def step_every_minute(spec: MonitorSpec, inputs: Inputs) -> Stepped:
    """The machine stepped at every minute of the period, as the engine ticking once a minute
    would: the reference `step_at_changes` must agree with."""
    state = alerts.initial_state(spec)
    found: Stepped = []
    keys, segmented = machine_keys(spec, inputs), segment_alerts(spec)
    for i in range(len(inputs.span)):
        metrics_ = inputs.at(i, keys, segmented)
        state, transitions = alerts.step(state, spec, tick(inputs.span, i), metrics_)
        found += [(i, t) for t in transitions]
    return found


def step_at_changes(spec: MonitorSpec, inputs: Inputs) -> Stepped:
    """The machine stepped only where what it decides on changes: at the minutes where an
    alert's (enough data, breached) or the window's `minSamples` labeled (the most samples behind
    a value that counts labels, as the machine's phase reads them) change, and at the
    deadlines inside a run (a pending alert's `since + for`, the fallback's `clear_since +
    recoverAfter`, at the first minute's tick at or after them). Between those its inputs decide
    the same at every minute and no deadline falls, so every step there changes nothing but the
    values shown: the transitions are `step_every_minute`'s."""
    n = len(inputs.span)
    if n == 0:
        return []
    changes = _changes(spec, inputs)
    state = alerts.initial_state(spec)
    found: Stepped = []
    i, c = 0, 0
    keys, segmented = machine_keys(spec, inputs), segment_alerts(spec)
    while i < n:
        metrics_ = inputs.at(i, keys, segmented)
        state, transitions = alerts.step(state, spec, tick(inputs.span, i), metrics_)
        found += [(i, t) for t in transitions]
        while c < len(changes) and changes[c] <= i:
            c += 1
        following = int(changes[c]) if c < len(changes) else n
        deadline = _deadline(state, spec)
        if deadline is not None:
            following = min(following, _first_tick(inputs.span, deadline, i + 1))
        i = following
    return found


def _changes(spec: MonitorSpec, inputs: Inputs) -> Ints:
    """The minutes (after the first) where an input the machine decides on differs from the
    minute before."""
    min_samples = spec.metrics.min_samples
    labeled = [s for k, s in inputs.samples.items() if counts_labels(k)]
    rows = [np.max(labeled, axis=0) >= min_samples] if labeled else []
    for alert in spec.alerts:
        values = inputs.values.get(alert.key)
        if values is None:
            continue
        with np.errstate(invalid="ignore"):
            enough = np.isfinite(values) & (inputs.samples[alert.key] >= min_samples)
            if alert.below is not None:
                breached = values < alert.below
            elif alert.above is not None:
                breached = values > alert.above
            else:
                breached = np.zeros(len(values), bool)
        rows += [enough, enough & breached]
    if not rows:
        return np.zeros(0, np.int64)
    stacked = np.vstack(rows)
    return np.flatnonzero(np.any(stacked[:, 1:] != stacked[:, :-1], axis=0)) + 1


def _deadline(state: alerts.MonitorState, spec: MonitorSpec) -> float | None:
    """The earliest time a step with the same inputs would decide otherwise: a pending alert's
    firing, or the release of an auto fallback clear of engaging alerts."""
    specs = {a.name: a for a in spec.alerts}
    times = [
        a.since + specs[a.name].for_
        for a in state.alerts
        if a.status == "pending" and a.since is not None and a.name in specs
    ]
    if state.fallback_active and state.mode == "auto" and state.clear_since is not None:
        times.append(state.clear_since + spec.fallback.recover_after)
    return min(times, default=None)


def _first_tick(span: BucketRange, at: float, least: int) -> int:
    """The first minute index from `least` whose tick is at or after `at`."""
    i = max(least, math.ceil((at - tick(span, 0)) / BUCKET_SECONDS))
    while i > least and tick(span, i - 1) >= at:
        i -= 1
    while tick(span, i) < at:
        i += 1
    return i


def replay(monitor: str, spec: MonitorSpec, inputs: Inputs) -> BacktestResult:
    """`spec`'s alerts and fallback replayed on `inputs` (`step_at_changes`), told as periods."""
    return result(monitor, spec, inputs, step_at_changes(spec, inputs))


def result(
    monitor: str, spec: MonitorSpec, inputs: Inputs, stepped: Stepped, *, around: bool = True
) -> BacktestResult:
    """The replay's transitions told as each alert's firing periods and the fallback's episodes
    (an alert or fallback still on at the end: an open period up to it). The fallback answers
    the minutes after the tick that engaged it up to the one that released it. `around=False`
    leaves the episodes' metrics out (a sweep's candidates)."""
    span = inputs.span
    end = bucket_start(span.end)
    served = np.concatenate(([0], np.cumsum(inputs.predictions)))
    replays = []
    for alert in spec.alerts:
        mine = [(i, t) for i, t in stepped if t.alert == alert.name]
        periods = _periods(mine, "alert_firing", "alert_resolved", end)
        pendings = sum(1 for _, t in mine if t.kind == "alert_pending")
        replays.append(
            AlertReplay(alert.name, alert.key, tuple(p for _, _, p in periods), pendings)
        )
    fallback = [(i, t) for i, t in stepped if t.kind.startswith("fallback_")]
    reasons = {i: t.reason for i, t in fallback if t.kind == "fallback_engaged"}
    episodes = []
    for first, last, period in _periods(fallback, "fallback_engaged", "fallback_disengaged", end):
        stop = len(span) - 1 if last is None else last
        episodes.append(
            Episode(
                period,
                reasons[first],
                int(served[stop + 1] - served[first + 1]),
                _around(inputs, first, last) if around else {},
            )
        )
    total = int(served[-1])
    days = len(span) * BUCKET_SECONDS / 86400
    return BacktestResult(
        monitor=monitor,
        period=Period(bucket_start(span.start), end),
        window=spec.metrics.window,
        minutes=len(span),
        predictions=total,
        transitions=tuple(t for _, t in stepped),
        alerts=tuple(replays),
        episodes=tuple(episodes),
        fallback_share=sum(e.predictions for e in episodes) / total if total else None,
        engagements_per_day=len(episodes) / days if days else 0.0,
        unread=unread(spec, inputs),
    )


MAX_LISTED = 1000
"""The most transitions, episodes and firing periods (each alert's) a result lists."""


def bounded(found: BacktestResult, most: int = MAX_LISTED) -> BacktestResult:
    """`found` with its lists cut to their first `most` (what an answer can carry: a flapping
    spec makes thousands), each count of those left out kept; the figures cover them all."""
    return replace(
        found,
        transitions=found.transitions[:most],
        transitions_omitted=found.transitions_omitted + max(0, len(found.transitions) - most),
        episodes=found.episodes[:most],
        episodes_omitted=found.episodes_omitted + max(0, len(found.episodes) - most),
        omitted_seconds=found.omitted_seconds
        + sum(e.period.seconds for e in found.episodes[most:]),
        alerts=tuple(
            replace(
                a,
                firing=a.firing[:most],
                firing_omitted=a.firing_omitted + max(0, len(a.firing) - most),
            )
            for a in found.alerts
        ),
    )


def _periods(
    stepped: Stepped, on: str, off: str, end: float
) -> list[tuple[int, int | None, Period]]:
    """The periods between each `on` transition and the next `off` (open at `end` without one),
    with the minute indexes of both."""
    found: list[tuple[int, int | None, Period]] = []
    began: tuple[int, float] | None = None
    for i, t in stepped:
        if t.kind == on and began is None:
            began = (i, t.at)
        elif t.kind == off and began is not None:
            found.append((began[0], i, Period(began[1], t.at)))
            began = None
    if began is not None:
        found.append((began[0], None, Period(began[1], end, open=True)))
    return found


def _around(inputs: Inputs, first: int, last: int | None) -> dict[str, Around]:
    """Each figure around an episode engaged at minute `first` and released at `last`: the
    window at each end, and the episode's own minutes summed and evaluated."""
    spec = inputs.spec
    stop = len(inputs.span) - 1 if last is None else last
    minutes = range(inputs.span.start + first + 1, inputs.span.start + stop + 1)
    summed = metrics.total(inputs.model[m] for m in minutes if m in inputs.model)
    (during,) = _evaluate(spec, [summed], inputs.estimator)
    found = {}
    for key in inputs.lower:
        source, _, name = key.rpartition(":")
        own = None
        if during is not None:
            estimate_ = (during.estimated if source else during.metrics).get(name)
            if estimate_ is not None:
                behind = during.samples if source else during.labeled
                own = Figure(estimate_.value, estimate_.lower, estimate_.upper, behind)
        after = None if last is None else inputs.figure(key, last)
        found[key] = Around(inputs.figure(key, first), own, after)
    return found


@dataclass(frozen=True, slots=True)
class Target:
    """What a sweep's candidates are scored against: a realized metric and the threshold the
    spec under test gives it (`below`: worse when lower)."""

    metric: str
    threshold: float
    below: bool


def target(spec: MonitorSpec, sweeps: Sequence[sweep.Sweep] = ()) -> Target | None:
    """The first swept alert on a model metric, else the first engaging one, else the first
    one (not a segment's): its realized metric and threshold as the spec gives them."""
    model = [a for a in spec.alerts if a.segment is None and a.metric not in DRIFT_METRICS]
    swept = {s.alert for s in sweeps}
    engaging = set(spec.fallback.engage_on)
    ordered = (
        [a for a in model if a.name in swept] + [a for a in model if a.name in engaging] + model
    )
    for alert in ordered:
        threshold = alert.below if alert.below is not None else alert.above
        if threshold is not None:
            return Target(alert.metric, threshold, alert.below is not None)
    return None


def score(inputs: Inputs, replayed: BacktestResult, goal: Target) -> Score:
    """A replay's score against `goal` (`Score`): the realized metric's window value and
    interval at every minute against the episodes' ticks."""
    n = len(inputs.span)
    bound = inputs.upper[goal.metric] if goal.below else inputs.lower[goal.metric]
    with np.errstate(invalid="ignore"):
        degraded = bound < goal.threshold if goal.below else bound > goal.threshold
    engaged = np.zeros(n, bool)
    false = 0
    start = replayed.period.start
    for episode in replayed.episodes:
        first = _index(episode.period.start, start)
        last = n if episode.period.open else _index(episode.period.end, start)
        engaged[first:last] = True
        if not degraded[first : max(first + 1, last)].any():
            false += 1
    runs = _runs(degraded)
    delays = []
    for a, b in runs:
        hit = np.flatnonzero(engaged[a:b])
        if len(hit):
            delays.append(float(hit[0]) * BUCKET_SECONDS)
    return Score(
        false_engagements=false,
        degradations=len(runs),
        detected=len(delays),
        mean_delay=sum(delays) / len(delays) if delays else None,
        fallback_seconds=replayed.fallback_seconds,
    )


def _index(at: float, start: float) -> int:
    return int((at - start) // BUCKET_SECONDS)


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The maximal runs of True as `[start, end)` index pairs."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))


def pareto(scores: Sequence[Score]) -> list[bool]:
    """Whether each score is on the Pareto front over (false engagements, missed
    degradations, mean detection delay, time in fallback), all lower is better (a candidate
    that detects nothing has an infinite delay): no other is at least as good on all four and
    better on one."""
    if not scores:
        return []
    points = np.array(
        [
            (
                s.false_engagements,
                s.degradations - s.detected,
                math.inf if s.mean_delay is None else s.mean_delay,
                s.fallback_seconds,
            )
            for s in scores
        ]
    )
    front = []
    for p in points:
        dominated = np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1))
        front.append(not bool(dominated))
    return front


def run_sweep(
    monitor: str,
    spec: MonitorSpec,
    inputs_: Inputs,
    sweeps: Sequence[sweep.Sweep],
    goal: Target,
) -> SweepResult:
    """Every candidate of the sweeps' grid replayed on the same `inputs_` (a candidate changes
    thresholds and durations, never what the alerts read) and scored against `goal`. A
    candidate is scored on its fallback's episodes, which only the alerts of `engageOn` decide
    (the others change the phase, never the fallback), so it is stepped with those alone: the
    steps the other alerts' changes would add change nothing it is scored on."""
    replays = []
    for values in sweep.grid(sweeps):
        candidate = sweep.apply(spec, sweeps, values)
        engaging = tuple(a for a in candidate.alerts if a.name in candidate.fallback.engage_on)
        candidate = replace(candidate, alerts=engaging)
        stepped = step_at_changes(candidate, inputs_)
        replays.append((values, result(monitor, candidate, inputs_, stepped, around=False)))
    scores = [score(inputs_, r, goal) for _, r in replays]
    front = pareto(scores)
    return SweepResult(
        goal.metric,
        goal.threshold,
        tuple(
            Candidate(values, s, on)
            for (values, r), s, on in zip(replays, scores, front, strict=True)
        ),
    )


Z_LOW = 2.326
"""The standard normal's 1st percentile (below it, 1 window in 100 of a steady model)."""


def suggest(spec: MonitorSpec, inputs_: Inputs) -> tuple[Suggestion, ...]:
    """A threshold for each alert on a realized model metric, from the metric's spread over the
    period's windows that had `minSamples` and were not degraded against the alert's current
    threshold (interval wholly beyond it): their 1st percentile (99th for an `above` alert), at
    the window's sample size as it was; the normal approximation `mean - 2.33 sd` is given
    alongside in the reason."""
    found = []
    for alert in spec.alerts:
        if alert.segment is not None or alert.metric in DRIFT_METRICS:
            continue
        if alert.source not in ("realized", "auto") or alert.metric not in inputs_.values:
            continue
        below = alert.below is not None
        threshold = alert.below if below else alert.above
        value = inputs_.values[alert.metric]
        behind = inputs_.samples[alert.metric]
        bound = inputs_.upper[alert.metric] if below else inputs_.lower[alert.metric]
        with np.errstate(invalid="ignore"):
            degraded = bound < threshold if below else bound > threshold  # type: ignore[operator]
            kept = np.isfinite(value) & (behind >= spec.metrics.min_samples) & ~degraded
        healthy = value[kept]
        if len(healthy) < 2:
            continue
        q = float(np.quantile(healthy, 0.01 if below else 0.99))
        mean, sd = float(healthy.mean()), float(healthy.std(ddof=1))
        normal = mean - Z_LOW * sd if below else mean + Z_LOW * sd
        typical = int(np.median(behind[kept]))
        field_ = "below" if below else "above"
        why = (
            f"{'1st' if below else '99th'} percentile of {alert.metric} over {len(healthy)} "
            f"healthy windows with >= {spec.metrics.min_samples} labeled (median {typical} a "
            f"window): {q:.4g}; mean {mean:.4g} {'-' if below else '+'} 2.33 sd {sd:.3g} = "
            f"{normal:.4g}; now {threshold:.4g}"
        )
        found.append(Suggestion(alert.name, field_, round(q, 4), why))
    return tuple(found)


def backtest(
    monitor: str,
    spec: MonitorSpec,
    inputs_: Inputs,
    sweeps: Sequence[sweep.Sweep] = (),
    *,
    suggesting: bool = False,
) -> Backtest:
    """The replay of `spec` on `inputs_`, with its sweep's candidates scored when `sweeps` are
    given (SpecError naming `sweep` when no alert on a model metric gives a target) and
    suggested thresholds when `suggesting`."""
    found = replay(monitor, spec, inputs_)
    swept = None
    if sweeps:
        goal = target(spec, sweeps)
        if goal is None:
            raise SpecError([FieldError("sweep", "no alert on a model metric to score against")])
        swept = run_sweep(monitor, spec, inputs_, sweeps, goal)
    suggested = suggest(spec, inputs_) if suggesting else ()
    times = [tick(inputs_.span, i) for i in range(len(inputs_.span))]
    return Backtest(found, swept, suggested, timeline.lines(spec, times, inputs_.values))
