"""Backtest: a monitor's alerts and fallback replayed on the stored minute counters of a period.

`truthloop backtest` answers "with these thresholds, over the last 30 days, when would the
fallback have engaged, for how long, and how good was the model then?" before a spec acts on
traffic. The replay reads nothing the live engine does not: every minute's window (the `window`
minutes ending with it, summed) is evaluated and read by the same functions the engine's tick
uses (`evaluation.alert_values`, `drift.alert_values`, `segment_metrics.alert_metrics`), and
the same machine (`alerts.step`) is stepped on them, so the transitions are the ones the engine
would have made on the same buckets ticking once a minute.

Times are epoch seconds; a period is half-open `[start, end)`; minutes are epoch minutes
(`windows.bucket_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from truthloop.core.alerts import Transition


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
    """One metric around an episode: its window value at the minute before the fallback engaged,
    over the episode's own minutes (their counters summed, not a window), and its window value
    at the minute it disengaged (None for an episode still open at the end)."""

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

    @property
    def fallback_seconds(self) -> float:
        """Time in fallback over the period."""
        return sum(e.period.seconds for e in self.episodes)


@dataclass(frozen=True, slots=True)
class Score:
    """How one candidate spec did against the realized metric (the first alert's metric of the
    sweep, `Sweep.metric`, realized: labeled predictions):

    - `false_engagements`: episodes that began while the realized metric's window value was
      within its target (the alert's threshold not breached);
    - `degradations`: periods where the realized metric's window interval lay wholly beyond the
      target (upper bound below a `below` threshold, lower bound above an `above` one);
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
    delay and time in fallback, and better on one), and its episodes."""

    values: Mapping[str, float]
    score: Score
    pareto: bool
    episodes: tuple[Episode, ...]


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
