"""The alert and fallback state machine: `step(state, spec, now, metrics)` → (state, transitions).

One pure function, ticked by the feedback service on each monitor's window metrics. It reads no
clock (`now` is epoch seconds, passed in) and mutates nothing; the state is a frozen value that
`to_dict`/`from_dict` carry through JSON, so a restarted service resumes where it stopped.

Alerts (one `AlertState` per `spec.alerts` entry, matched by name across spec changes):
- An alert's *condition* holds at a step when its metric has a value, at least
  `spec.metrics.min_samples` samples behind it, and `AlertSpec.breached(value)`. An alert reads
  its metric by `AlertSpec.key` (`accuracy`, `drift_share`, `feature_drift:tenure`,
  `estimated:accuracy`, `segment:country:accuracy`); a model metric's samples are labeled
  predictions, a drift metric's (`spec.is_drift_key`) the records compared with the reference,
  an estimate's the window's predictions (`auto:accuracy`: the realized metric's labeled ones
  once there are `minSamples`, else the estimate's predictions).
- A segment alert (`AlertSpec.segment`) reads the worst of the segment's values that have
  `minSamples` (`core.segment_metrics`); its state names the values that breach, worst first
  (`AlertState.values`, kept while a firing alert lacks data).
- It is `pending` while the condition has held for less than `for`, and `firing` at the first step
  where it has held for `for` seconds continuously (at once with `for: 0`). A step without enough
  data breaks the run: the condition is not known to have held.
- Without enough data (fewer samples than `minSamples`, or no value, or a non-finite one) an alert
  is `insufficient`: no traffic is never a breach. A *firing* alert stays firing, because no
  traffic is never a recovery either; only a step with enough data and the condition not holding
  resolves it (`ok`).

The fallback:
- `engaged` mode: always active; `disengaged`: never active; `auto` decides from the alerts.
- In `auto` it engages when an alert named in `engageOn` is firing or an external (Alertmanager)
  alert is firing, and only if the spec has fallback rules: without rules there is nothing to
  serve (the sidecar would pass every request to the model), so auto never engages it and the
  phase stays `Degraded`, which tells the truth.
- It disengages once no engaging alert has been pending or firing and no external alert firing
  for `recoverAfter` seconds continuously (`clear_since`). An `insufficient` alert does not hold
  the fallback: one that had fired is still `firing` until data shows it clear, and one that never
  fired has no breach to recover from (a monitor with no labels yet must not keep an Alertmanager
  engagement forever).
- `clear_since` is tracked in every mode, so switching from a manual mode to `auto` re-evaluates
  at once from the current alerts: engaged while they fire, released at once if they have been
  clear for `recoverAfter` already, else once they have.

Phase: `FallbackActive` if the fallback is active; else `Degraded` if an alert is pending or
firing; else `Collecting` while the window holds fewer labeled samples than `minSamples` (the most
samples behind any model metric passed in, so a monitor without alerts collects too; drift metrics
and estimates count records, not labels, and do not end collecting, `spec.counts_labels`); else
`Healthy`.
`Pending` and `Invalid` are the shells' (a monitor not yet registered, a spec that does not parse).

Transitions are emitted exactly when something happens: `alert_pending` when an alert becomes
pending, `alert_firing` when it fires, `alert_resolved` when a firing alert clears (or is removed
from the spec), `fallback_engaged`/`fallback_disengaged` when the fallback's activity flips, and
`phase_changed` when the phase does. A pending alert that stops holding, or an alert that loses or
regains enough data, changes only the state (and, through it, the phase). Each transition's
`reason` is the text an Event or a log line shows: `accuracy-low: accuracy 0.62 < 0.8 for 2m`.

What engaged the fallback is data, `fallback_causes` (`wire.Cause`: an alert of the spec, an
Alertmanager alert, or `manual`), set when the fallback engages (or returns to `auto` from a
manual mode) and kept while it stays engaged. The state is persisted with the causes and, for the
release before them, their `wire.causes_text` as `fallback_reason`; a state stored by that release
(the text only) restores its causes from the text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from truthloop.core.spec import (
    FALLBACK_MODES,
    AlertSpec,
    FallbackMode,
    MonitorSpec,
    counts_labels,
    format_duration,
)
from truthloop.core.wire import (
    ALERT_STATUSES,
    CAUSE_KINDS,
    MANUAL,
    PHASES,
    AlertState,
    AlertStatus,
    Cause,
    Phase,
    causes_text,
)

TransitionKind = Literal[
    "alert_pending",
    "alert_firing",
    "alert_resolved",
    "fallback_engaged",
    "fallback_disengaged",
    "phase_changed",
]

_BREACHING: frozenset[AlertStatus] = frozenset({"pending", "firing"})


@dataclass(frozen=True, slots=True)
class WindowMetric:
    """A metric's value over the monitor's window and the samples behind it: labeled predictions
    for a model metric, records compared with the reference for a drift metric."""

    value: float | None
    samples: int
    values: tuple[str, ...] = ()
    """A segment alert's values that breach (with enough samples), worst first; `value` and
    `samples` are then the worst one's."""


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Everything `step` remembers between ticks; JSON-safe through `to_dict`/`from_dict`."""

    phase: Phase
    alerts: tuple[AlertState, ...]
    fallback_active: bool
    fallback_since: float | None
    fallback_causes: tuple[Cause, ...]
    """What engaged the fallback (empty while it is not engaged)."""
    clear_since: float | None
    """Since when no engaging alert is pending or firing, nor an external one (recoverAfter)."""
    mode: FallbackMode
    """The mode in effect at the last step (the manual override, else the spec's)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe. Each alert as on the wire (`wire.AlertState`: its status under `state`)."""
        return {
            "phase": self.phase,
            "alerts": msgspec.to_builtins(list(self.alerts)),
            "fallback_active": self.fallback_active,
            "fallback_since": self.fallback_since,
            "fallback_causes": msgspec.to_builtins(list(self.fallback_causes)),
            "fallback_reason": causes_text(self.fallback_causes),
            "clear_since": self.clear_since,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: Any) -> MonitorState:
        """The inverse of `to_dict` (also of the previous release's, which stored the causes as
        text only); raises ValueError naming the first malformed field."""
        top = _Reader(data, "state")
        alerts = []
        for i, item in enumerate(top.array("alerts")):
            alert = _Reader(item, f"state.alerts[{i}]")
            alerts.append(
                AlertState(
                    alert.text("name"),
                    alert.choice("state", ALERT_STATUSES),
                    alert.number("since"),
                    alert.number("value"),
                    alert.integer("samples"),
                    alert.texts("values"),
                )
            )
        return cls(
            phase=top.choice("phase", PHASES),
            alerts=tuple(alerts),
            fallback_active=top.flag("fallback_active"),
            fallback_since=top.number("fallback_since"),
            fallback_causes=_causes(top),
            clear_since=top.number("clear_since"),
            mode=top.choice("mode", FALLBACK_MODES),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """Something that happened at `at`; `reason` is human-readable (an Event's message).

    `alert` names the alert of `alert_*` kinds; `previous`/`current` are set for `phase_changed`.
    """

    kind: TransitionKind
    at: float
    alert: str | None
    reason: str
    previous: Phase | None = None
    current: Phase | None = None


def initial_state(spec: MonitorSpec) -> MonitorState:
    """A new monitor: every alert insufficient, fallback active only if the spec pins it engaged.

    With no clock here, an engaged fallback's `since` is stamped by the first `step`.
    """
    active = spec.fallback.mode == "engaged"
    return MonitorState(
        phase="FallbackActive" if active else "Collecting",
        alerts=tuple(_fresh(alert.name) for alert in spec.alerts),
        fallback_active=active,
        fallback_since=None,
        fallback_causes=(MANUAL,) if active else (),
        clear_since=None,
        mode=spec.fallback.mode,
    )


def step(
    state: MonitorState,
    spec: MonitorSpec,
    now: float,
    metrics: Mapping[str, WindowMetric],
    *,
    external_firing: frozenset[str] = frozenset(),
    mode: FallbackMode | None = None,
) -> tuple[MonitorState, tuple[Transition, ...]]:
    """Advance `state` to `now` given the window's `metrics` (by metric name).

    `external_firing`: Alertmanager alerts firing for this monitor. `mode`: the manual override
    (None: the spec's own mode). Returns the new state and what happened, in order: alert
    transitions in spec order, then the fallback's, then the phase's.
    """
    effective = mode or spec.fallback.mode
    min_samples = spec.metrics.min_samples
    specs = {alert.name: alert for alert in spec.alerts}
    alerts, transitions = _step_alerts(state.alerts, spec, now, metrics)

    engaging = [a for a in alerts if a.name in spec.fallback.engage_on]
    serves = bool(spec.fallback.rules)
    external = sorted(external_firing) if serves else []
    blocked = bool(external) or any(a.status in _BREACHING for a in engaging)
    clear_since = None if blocked else (now if state.clear_since is None else state.clear_since)
    firing = [a for a in engaging if a.status == "firing"]
    found = tuple(Cause("alert", a.name) for a in firing)
    found += tuple(Cause("alertmanager", name) for name in external)

    causes = state.fallback_causes
    if effective == "engaged":
        active, causes = True, (MANUAL,)
    elif effective == "disengaged" or not serves:
        active = False
    elif found:
        active = True
        if not state.fallback_active or state.mode != "auto":
            causes = found
    else:
        recovered = clear_since is not None and now - clear_since >= spec.fallback.recover_after
        active = state.fallback_active and not recovered

    engaged_text = causes_text(causes) or MANUAL.text()
    if active and not state.fallback_active:
        if effective == "auto":
            by_name = {a.name: a for a in firing}
            engaged_text = _causes_text(causes, by_name, specs, min_samples)
        transitions.append(Transition("fallback_engaged", now, None, engaged_text))
    elif state.fallback_active and not active:
        why = _release_text(effective, serves, clear_since, now, spec.fallback.recover_after)
        transitions.append(Transition("fallback_disengaged", now, None, why))
    if not active:
        fallback_since, causes = None, ()
    elif state.fallback_active and state.fallback_since is not None:
        fallback_since = state.fallback_since
    else:
        fallback_since = now

    labeled = max((m.samples for k, m in metrics.items() if counts_labels(k)), default=0)
    breaching = [a for a in alerts if a.status in _BREACHING]
    phase: Phase
    if active:
        phase, why = "FallbackActive", engaged_text
    elif breaching:
        phase = "Degraded"
        why = "; ".join(_describe(a, specs[a.name], min_samples) for a in breaching)
    elif labeled < min_samples:
        phase, why = "Collecting", f"{labeled} labeled in the window, minSamples {min_samples}"
    else:
        phase, why = "Healthy", f"no alert pending or firing, {labeled} labeled in the window"
    if phase != state.phase:
        transitions.append(Transition("phase_changed", now, None, why, state.phase, phase))

    new_state = MonitorState(
        phase=phase,
        alerts=alerts,
        fallback_active=active,
        fallback_since=fallback_since,
        fallback_causes=causes,
        clear_since=clear_since,
        mode=effective,
    )
    return new_state, tuple(transitions)


def _step_alerts(
    previous: tuple[AlertState, ...],
    spec: MonitorSpec,
    now: float,
    metrics: Mapping[str, WindowMetric],
) -> tuple[tuple[AlertState, ...], list[Transition]]:
    """Each of the spec's alerts stepped (matched to its previous state by name), in spec order."""
    before = {a.name: a for a in previous}
    alerts = []
    transitions = []
    for alert in spec.alerts:
        old = before.pop(alert.name, None) or _fresh(alert.name)
        new = _step_alert(old, alert, spec.metrics.min_samples, now, metrics.get(alert.key))
        alerts.append(new)
        transitions.extend(_alert_transitions(old, new, alert, spec.metrics.min_samples, now))
    for name, removed in before.items():
        if removed.status == "firing":
            why = f"{name}: removed from the spec"
            transitions.append(Transition("alert_resolved", now, name, why))
    return tuple(alerts), transitions


def _fresh(name: str) -> AlertState:
    return AlertState(name, "insufficient", None, None, 0)


def _step_alert(
    old: AlertState, alert: AlertSpec, min_samples: int, now: float, metric: WindowMetric | None
) -> AlertState:
    value = metric.value if metric is not None else None
    if value is not None and not math.isfinite(value):
        value = None
    samples = metric.samples if metric is not None else 0
    values = metric.values if metric is not None else ()
    status: AlertStatus
    if value is None or samples < min_samples:
        status = "firing" if old.status == "firing" else "insufficient"
        values = old.values if status == "firing" else ()  # the last values seen breaching
    elif not alert.breached(value):
        status, values = "ok", ()
    elif old.status == "firing":
        status = "firing"
    else:
        began = old.since if old.status == "pending" and old.since is not None else now
        if now - began >= alert.for_:
            status = "firing"
        else:
            return AlertState(alert.name, "pending", began, value, samples, values)
    since = old.since if status == old.status and old.since is not None else now
    return AlertState(alert.name, status, since, value, samples, values)


def _alert_transitions(
    old: AlertState, new: AlertState, alert: AlertSpec, min_samples: int, now: float
) -> list[Transition]:
    if new.status == old.status:
        return []
    text = _describe(new, alert, min_samples)
    if new.status == "pending":
        return [Transition("alert_pending", now, alert.name, text)]
    if new.status == "firing":
        return [Transition("alert_firing", now, alert.name, text)]
    if old.status == "firing":
        return [Transition("alert_resolved", now, alert.name, text)]
    return []


def _describe(state: AlertState, alert: AlertSpec, min_samples: int) -> str:
    """`accuracy-low: accuracy 0.62 < 0.8 for 2m` (firing), `..., firing after 2m` (pending),
    `accuracy-low: accuracy 0.85 >= 0.8` (clear), or why the data does not tell
    (`tenure-drift: feature_drift:tenure no value on 0 records (minSamples 50), insufficient`)."""
    head = f"{alert.name}: {alert.key}"
    if state.value is None or state.samples < min_samples:
        seen = "no value" if state.value is None else _number(state.value)
        counted = "labeled" if counts_labels(alert.key) else "records"
        return (
            f"{head} {seen} on {state.samples} {counted} (minSamples {min_samples}), {state.status}"
        )
    threshold: float | None
    if alert.below is not None:
        breach, clear, threshold = "<", ">=", alert.below
    else:
        breach, clear, threshold = ">", "<=", alert.above
    if state.status == "ok":
        return f"{head} {_number(state.value)} {clear} {_number(threshold)}"
    comparison = f"{head} {_number(state.value)} {breach} {_number(threshold)}"
    if state.values:
        comparison += f" in {alert.segment} " + ", ".join(state.values)
    if state.status == "pending":
        return f"{comparison}, firing after {format_duration(alert.for_)}"
    return f"{comparison} for {format_duration(alert.for_)}"


def _causes_text(
    causes: tuple[Cause, ...],
    alerts: Mapping[str, AlertState],
    specs: Mapping[str, AlertSpec],
    min_samples: int,
) -> str:
    """The causes told in full: each alert with its comparison, `alertmanager: LatencyHigh`."""
    return "; ".join(
        _describe(alerts[c.name], specs[c.name], min_samples)
        if c.kind == "alert" and c.name is not None and c.name in alerts
        else c.text()
        for c in causes
    )


def _release_text(
    mode: FallbackMode, serves: bool, clear_since: float | None, now: float, recover_after: float
) -> str:
    if mode == "disengaged":
        return MANUAL.text()
    if not serves:
        return "no fallback rules to serve"
    held = now - clear_since if clear_since is not None else 0.0
    return (
        f"no engaging alert pending or firing for {format_duration(held)}"
        f" (recoverAfter {format_duration(recover_after)})"
    )


def _number(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def _causes(top: _Reader) -> tuple[Cause, ...]:
    """The stored causes; from a state the previous release stored, read back from its text
    (`accuracy-low, alertmanager: LatencyHigh` or `manual`: an alert of the spec has no `, ` in
    its name, an Alertmanager alert could, and would then read as two)."""
    if "fallback_causes" not in top.data:
        reason = top.optional_text("fallback_reason")
        return tuple(_legacy_cause(text) for text in reason.split(", ")) if reason else ()
    causes = []
    for i, item in enumerate(top.array("fallback_causes")):
        cause = _Reader(item, f"{top.path}.fallback_causes[{i}]")
        causes.append(Cause(cause.choice("kind", CAUSE_KINDS), cause.optional_text("name")))
    return tuple(causes)


def _legacy_cause(text: str) -> Cause:
    if text == MANUAL.text():
        return MANUAL
    if text.startswith("alertmanager: "):
        return Cause("alertmanager", text.removeprefix("alertmanager: "))
    return Cause("alert", text)


class _Reader:
    """Typed access to one JSON object of a persisted state, errors naming the field's path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object")
        self.data = data
        self.path = path

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise ValueError(f"{self.path}.{key}: missing")
        return self.data[key]

    def _fail(self, key: str, expected: str) -> ValueError:
        return ValueError(f"{self.path}.{key}: expected {expected}, got {self.data[key]!r}")

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean")
        return value

    def integer(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """An optional array of strings (absent: empty)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.path}.{key}: expected an array of strings, got {value!r}")
        return tuple(value)

    def number(self, key: str) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number or null")
        return float(value)

    def array(self, key: str) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self._fail(key, "an array")
        return value

    def choice(self, key: str, allowed: tuple[Any, ...]) -> Any:
        value = self.get(key)
        if value not in allowed:
            raise self._fail(key, "one of " + ", ".join(allowed))
        return value
