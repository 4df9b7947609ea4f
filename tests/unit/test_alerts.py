"""The alert and fallback state machine: scenarios as tables, then invariants over random runs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import alerts, wire
from truthloop.core.alerts import MonitorState, Transition, WindowMetric
from truthloop.core.rules import FallbackRule
from truthloop.core.spec import (
    AlertSpec,
    CaptureSpec,
    FallbackMode,
    FallbackSpec,
    MetricsSpec,
    ModelRef,
    MonitorSpec,
    Selector,
    Source,
)
from truthloop.core.wire import Cause

ACCURACY_LOW = AlertSpec("accuracy-low", "accuracy", below=0.7)


def monitor(
    *specs: AlertSpec,
    min_samples: int = 5,
    engage_on: Sequence[str] | None = None,
    recover_after: float = 120.0,
    rules: bool = True,
    mode: FallbackMode = "auto",
) -> MonitorSpec:
    """A spec as the parser leaves it: `engageOn` defaults to every alert."""
    names = tuple(a.name for a in specs) if engage_on is None else tuple(engage_on)
    return MonitorSpec(
        selector=Selector(),
        model=ModelRef("churn"),
        capture=CaptureSpec(prediction=Source(pointer="/prediction")),
        metrics=MetricsSpec(window=300.0, min_samples=min_samples),
        alerts=specs,
        fallback=FallbackSpec(
            mode=mode,
            engage_on=names,
            recover_after=recover_after,
            rules=(FallbackRule("0"),) if rules else (),
        ),
    )


@dataclass(frozen=True)
class Tick:
    """One step's input and what must hold after it (None: not checked)."""

    at: float
    metrics: Mapping[str, tuple[float | None, int]] = field(default_factory=dict)
    external: frozenset[str] = frozenset()
    mode: FallbackMode | None = None
    phase: wire.Phase | None = None
    active: bool | None = None
    statuses: tuple[wire.AlertStatus, ...] | None = None
    kinds: tuple[str, ...] | None = None


Metric = tuple[float | None, int]


def acc(value: float | None, samples: int = 5) -> dict[str, tuple[float | None, int]]:
    return {"accuracy": (value, samples)}


def window(metrics: Mapping[str, tuple[float | None, int]]) -> dict[str, WindowMetric]:
    return {name: WindowMetric(v, n) for name, (v, n) in metrics.items()}


def run(
    spec: MonitorSpec, ticks: Sequence[Tick], state: MonitorState | None = None
) -> list[tuple[MonitorState, tuple[Transition, ...]]]:
    """Step through `ticks`, checking each one's expectations; returns every step's output."""
    state = alerts.initial_state(spec) if state is None else state
    out = []
    for i, tick in enumerate(ticks):
        state, transitions = alerts.step(
            state,
            spec,
            tick.at,
            window(tick.metrics),
            external_firing=tick.external,
            mode=tick.mode,
        )
        where = f"tick {i} at {tick.at}"
        if tick.phase is not None:
            assert state.phase == tick.phase, where
        if tick.active is not None:
            assert state.fallback_active is tick.active, where
        if tick.statuses is not None:
            assert tuple(a.status for a in state.alerts) == tick.statuses, where
        if tick.kinds is not None:
            assert tuple(t.kind for t in transitions) == tick.kinds, where
        out.append((state, transitions))
    return out


ENGAGE = ("alert_firing", "fallback_engaged", "phase_changed")
RELEASE = ("fallback_disengaged", "phase_changed")

SCENARIOS: dict[str, tuple[MonitorSpec, list[Tick]]] = {
    # The /feedback → Prometheus tutorial (issue 4): four phases of five labels, each in its own
    # window; accuracy below 0.7, for 0s, minSamples 5, recoverAfter 2m.
    "tutorial phases": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, {}, phase="Collecting", active=False, statuses=("insufficient",), kinds=()),
            Tick(60, acc(1.0), phase="Healthy", statuses=("ok",), kinds=("phase_changed",)),
            Tick(360, acc(0.6), phase="FallbackActive", statuses=("firing",), kinds=ENGAGE),
            Tick(660, acc(0.2), phase="FallbackActive", statuses=("firing",), kinds=()),
            Tick(960, acc(1.0), active=True, statuses=("ok",), kinds=("alert_resolved",)),
            Tick(1079, acc(1.0), active=True, kinds=()),
            Tick(1080, acc(1.0), phase="Healthy", active=False, kinds=RELEASE),
        ],
    ),
    "for: pending until the condition has held long enough": (
        monitor(AlertSpec("accuracy-low", "accuracy", below=0.7, for_=120)),
        [
            Tick(0, acc(0.5), phase="Degraded", statuses=("pending",)),
            Tick(60, acc(0.5), phase="Degraded", statuses=("pending",), kinds=()),
            Tick(119, acc(0.5), statuses=("pending",), kinds=()),
            Tick(120, acc(0.5), phase="FallbackActive", statuses=("firing",), kinds=ENGAGE),
        ],
    ),
    "for: a clear step restarts the clock": (
        monitor(AlertSpec("accuracy-low", "accuracy", below=0.7, for_=120)),
        [
            Tick(0, acc(0.5), statuses=("pending",), kinds=("alert_pending", "phase_changed")),
            Tick(60, acc(0.9), phase="Healthy", statuses=("ok",), kinds=("phase_changed",)),
            Tick(120, acc(0.5), statuses=("pending",)),
            Tick(200, acc(0.5), statuses=("pending",)),
            Tick(240, acc(0.5), statuses=("firing",), active=True),
        ],
    ),
    "for: a step without enough data restarts the clock too": (
        monitor(AlertSpec("accuracy-low", "accuracy", below=0.7, for_=120)),
        [
            Tick(0, acc(0.5), statuses=("pending",)),
            Tick(60, acc(0.5, samples=4), statuses=("insufficient",), phase="Collecting"),
            Tick(120, acc(0.5), statuses=("pending",), kinds=("alert_pending", "phase_changed")),
            Tick(200, acc(0.5), statuses=("pending",)),
            Tick(240, acc(0.5), statuses=("firing",)),
        ],
    ),
    "minSamples: a breach on too few labels is no breach": (
        monitor(ACCURACY_LOW),
        [
            Tick(t, acc(0.0, samples=4), phase="Collecting", statuses=("insufficient",), kinds=())
            for t in (0, 60, 600, 6000)
        ],
    ),
    "no value is insufficient, whatever the samples": (
        monitor(AlertSpec("precision-low", "precision", below=0.7)),
        [
            Tick(0, {"precision": (None, 50)}, phase="Healthy", statuses=("insufficient",)),
            Tick(60, {"precision": (math.nan, 50)}, phase="Healthy", statuses=("insufficient",)),
            Tick(120, {"precision": (0.1, 50)}, phase="FallbackActive", statuses=("firing",)),
        ],
    ),
    "no traffic is never a recovery: a firing alert keeps firing without data": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.2), statuses=("firing",), active=True),
            Tick(60, {}, statuses=("firing",), active=True, kinds=()),
            Tick(3600, acc(0.9, samples=2), statuses=("firing",), active=True, kinds=()),
            Tick(7200, acc(None, samples=9), statuses=("firing",), active=True, kinds=()),
            Tick(7260, acc(0.9), statuses=("ok",), active=True, kinds=("alert_resolved",)),
            Tick(7380, acc(0.9), phase="Healthy", active=False, kinds=RELEASE),
        ],
    ),
    "recoverAfter: a relapse restarts the hysteresis": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.2), active=True),
            Tick(60, acc(0.9), statuses=("ok",), active=True),
            Tick(120, acc(0.5), statuses=("firing",), active=True, kinds=("alert_firing",)),
            Tick(180, acc(0.9), statuses=("ok",), active=True),
            Tick(240, acc(0.9), active=True, kinds=()),  # 120 s after the first clear
            Tick(299, acc(0.9), active=True),
            Tick(300, acc(0.9), active=False, kinds=RELEASE),
        ],
    ),
    "recoverAfter: a pending alert holds the fallback, being a breach already": (
        monitor(AlertSpec("accuracy-low", "accuracy", below=0.7, for_=300)),
        [
            Tick(0, acc(0.2), statuses=("pending",)),
            Tick(300, acc(0.2), statuses=("firing",), active=True),
            Tick(360, acc(0.9), statuses=("ok",), active=True),
            Tick(420, acc(0.2), statuses=("pending",), active=True, kinds=("alert_pending",)),
            Tick(480, acc(0.9), statuses=("ok",), active=True),
            Tick(599, acc(0.9), active=True),
            Tick(600, acc(0.9), active=False, phase="Healthy", kinds=RELEASE),
        ],
    ),
    "recoverAfter: losing the data after a resolve does not hold the fallback": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.2), active=True),
            Tick(60, acc(0.9), statuses=("ok",), active=True),
            Tick(120, acc(0.9, samples=1), statuses=("insufficient",), active=True),
            Tick(180, acc(None, samples=0), active=False, phase="Collecting", kinds=RELEASE),
        ],
    ),
    "engageOn: only the named alerts engage; the others degrade": (
        monitor(
            ACCURACY_LOW,
            AlertSpec("recall-low", "recall", below=0.5),
            engage_on=["accuracy-low"],
        ),
        [
            Tick(
                0,
                {"accuracy": (0.9, 9), "recall": (0.1, 9)},
                phase="Degraded",
                active=False,
                statuses=("ok", "firing"),
                kinds=("alert_firing", "phase_changed"),
            ),
            Tick(60, {"accuracy": (0.1, 9), "recall": (0.1, 9)}, active=True, kinds=ENGAGE),
            Tick(120, {"accuracy": (0.9, 9), "recall": (0.1, 9)}, active=True),
            Tick(180, {"accuracy": (0.9, 9), "recall": (0.1, 9)}, active=True),
            Tick(240, {"accuracy": (0.9, 9), "recall": (0.1, 9)}, phase="Degraded", kinds=RELEASE),
        ],
    ),
    "alertmanager: an external alert engages while firing, then recoverAfter": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, {}, phase="Collecting", active=False),
            Tick(
                10,
                {},
                external=frozenset({"LatencyHigh"}),
                phase="FallbackActive",
                statuses=("insufficient",),
                kinds=("fallback_engaged", "phase_changed"),
            ),
            Tick(20, {}, external=frozenset({"LatencyHigh"}), active=True, kinds=()),
            Tick(30, {}, active=True, kinds=()),
            Tick(150, {}, phase="Collecting", active=False, kinds=RELEASE),
        ],
    ),
    "alertmanager: without fallback rules nothing engages, in any case": (
        monitor(ACCURACY_LOW, rules=False),
        [
            Tick(0, acc(0.2), external=frozenset({"LatencyHigh"}), phase="Degraded", active=False),
            Tick(60, acc(0.9), external=frozenset({"LatencyHigh"}), phase="Healthy"),
        ],
    ),
    "alertmanager: a manual disengage wins": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.9), external=frozenset({"X"}), mode="disengaged", active=False),
            Tick(60, acc(0.9), external=frozenset({"X"}), mode="auto", active=True),
        ],
    ),
    "manual modes override the alerts; back to auto re-evaluates at once": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.9), mode="engaged", phase="FallbackActive", kinds=ENGAGE[1:]),
            Tick(60, acc(0.2), mode="disengaged", phase="Degraded", statuses=("firing",)),
            Tick(120, acc(0.2), mode="auto", phase="FallbackActive", kinds=ENGAGE[1:]),
            Tick(180, acc(0.9), mode="engaged", statuses=("ok",), active=True),
            Tick(500, acc(0.9), mode="engaged", active=True, kinds=()),
            Tick(510, acc(0.9), mode="auto", phase="Healthy", kinds=RELEASE),
        ],
    ),
    "back to auto from engaged waits out what is left of recoverAfter": (
        monitor(ACCURACY_LOW),
        [
            Tick(0, acc(0.2), mode="engaged", statuses=("firing",), active=True),
            Tick(60, acc(0.9), mode="engaged", statuses=("ok",), active=True),
            Tick(120, acc(0.9), mode="auto", active=True, kinds=()),
            Tick(179, acc(0.9), active=True),
            Tick(180, acc(0.9), active=False, kinds=RELEASE),
        ],
    ),
    "no alerts: Collecting below minSamples, Healthy from it": (
        monitor(),
        [
            Tick(0, {"accuracy": (0.1, 4)}, phase="Collecting", kinds=()),
            Tick(60, {"accuracy": (0.1, 4), "f1": (0.1, 5)}, phase="Healthy"),
            Tick(120, {}, phase="Collecting", kinds=("phase_changed",)),
        ],
    ),
    "for: 0 with above: the first breaching step fires": (
        monitor(AlertSpec("mae-high", "mae", above=10.0), min_samples=1),
        [
            Tick(0, {"mae": (10.0, 3)}, phase="Healthy", statuses=("ok",)),
            Tick(60, {"mae": (10.5, 3)}, statuses=("firing",), kinds=ENGAGE),
        ],
    ),
}


TENURE_DRIFT = AlertSpec("tenure-drift", "feature_drift", above=0.1, feature="tenure")


def drift(value: float | None, records: int = 5, labeled: int = 0) -> dict[str, Metric]:
    """A window with the tenure feature's drift statistic and, with labels, an accuracy."""
    shown: dict[str, Metric] = {"feature_drift:tenure": (value, records)}
    if labeled:
        shown["accuracy"] = (0.9, labeled)
    return shown


SCENARIOS["a drift alert fires and engages the fallback, with no label in the window"] = (
    monitor(TENURE_DRIFT),
    [
        Tick(0, drift(None, 0), phase="Collecting", statuses=("insufficient",), kinds=()),
        Tick(60, drift(0.02, 4), phase="Collecting", statuses=("insufficient",), kinds=()),
        Tick(120, drift(0.02), phase="Collecting", statuses=("ok",), kinds=()),
        Tick(180, drift(0.3), phase="FallbackActive", statuses=("firing",), kinds=ENGAGE),
        Tick(240, drift(0.3, 2), active=True, statuses=("firing",), kinds=()),
        Tick(300, drift(0.05), active=True, statuses=("ok",), kinds=("alert_resolved",)),
        Tick(420, drift(0.05), phase="Collecting", active=False, kinds=RELEASE),
    ],
)
SCENARIOS["records compared with the reference are not labels: collecting ends on labels"] = (
    monitor(TENURE_DRIFT, ACCURACY_LOW),
    [
        Tick(0, drift(0.01, 10_000), phase="Collecting", statuses=("ok", "insufficient")),
        Tick(60, drift(0.01, 10_000, labeled=4), phase="Collecting", kinds=()),
        Tick(120, drift(0.01, 10_000, labeled=5), phase="Healthy", statuses=("ok", "ok")),
    ],
)
SCENARIOS["a drift alert left out of engageOn degrades without engaging"] = (
    monitor(TENURE_DRIFT, ACCURACY_LOW, engage_on=["accuracy-low"]),
    [
        Tick(
            0,
            drift(0.5, 50, labeled=5),
            phase="Degraded",
            active=False,
            kinds=("alert_firing", "phase_changed"),
        ),
    ],
)


ESTIMATED_LOW = AlertSpec("estimated-low", "accuracy", below=0.8, source="estimated")
SCENARIOS[
    "an estimate fires and engages the fallback before labels and does not end collecting"
] = (
    monitor(ESTIMATED_LOW),
    [
        Tick(0, {"estimated:accuracy": (0.9, 400)}, phase="Collecting", statuses=("ok",)),
        Tick(60, {"estimated:accuracy": (0.7, 400)}, phase="FallbackActive", kinds=ENGAGE),
        Tick(
            120,
            {"estimated:accuracy": (0.9, 400), "accuracy": (None, 0)},
            active=True,
            statuses=("ok",),
            kinds=("alert_resolved",),
        ),
        Tick(240, {"estimated:accuracy": (0.9, 400)}, phase="Collecting", kinds=RELEASE),
    ],
)


def test_an_estimated_alert_says_it_counts_records() -> None:
    spec = monitor(ESTIMATED_LOW, min_samples=50)
    ((few, _),) = run(spec, [Tick(0, {"estimated:accuracy": (0.5, 49)})])
    assert few.alerts == (wire.AlertState("estimated-low", "insufficient", 0, 0.5, 49),)
    _, said = alerts.step(few, spec, 60, {"estimated:accuracy": WindowMetric(0.5, 50)})
    assert said[0].reason == "estimated-low: estimated:accuracy 0.5 < 0.8 for 0s"


def test_a_drift_alert_tells_its_feature_and_counts_records_for_min_samples() -> None:
    spec = monitor(TENURE_DRIFT, min_samples=50)
    (few, quiet), (fired, said) = run(spec, [Tick(0, drift(0.3, 49)), Tick(60, drift(0.3, 50))])
    assert (few.alerts, quiet) == (
        (wire.AlertState("tenure-drift", "insufficient", 0, 0.3, 49),),
        (),
    )
    assert fired.alerts == (wire.AlertState("tenure-drift", "firing", 60, 0.3, 50),)
    assert [(t.kind, t.reason) for t in said] == [
        (kind, "tenure-drift: feature_drift:tenure 0.3 > 0.1 for 0s") for kind in ENGAGE
    ]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    spec, ticks = SCENARIOS[name]
    run(spec, ticks)


def test_transitions_read_like_events() -> None:
    spec = monitor(AlertSpec("accuracy-low", "accuracy", below=0.80, for_=120))
    steps = run(spec, [Tick(0, acc(0.62)), Tick(120, acc(0.62)), Tick(180, acc(0.85))])
    (_, pending), (fired, firing), (_, resolved) = steps
    assert [(t.kind, t.alert, t.reason) for t in pending] == [
        ("alert_pending", "accuracy-low", "accuracy-low: accuracy 0.62 < 0.8, firing after 2m"),
        ("phase_changed", None, "accuracy-low: accuracy 0.62 < 0.8, firing after 2m"),
    ]
    assert firing == (
        Transition("alert_firing", 120, "accuracy-low", "accuracy-low: accuracy 0.62 < 0.8 for 2m"),
        Transition("fallback_engaged", 120, None, "accuracy-low: accuracy 0.62 < 0.8 for 2m"),
        Transition(
            "phase_changed",
            120,
            None,
            "accuracy-low: accuracy 0.62 < 0.8 for 2m",
            previous="Degraded",
            current="FallbackActive",
        ),
    )
    assert (fired.fallback_since, fired.fallback_causes) == (120, (Cause("alert", "accuracy-low"),))
    assert resolved == (
        Transition("alert_resolved", 180, "accuracy-low", "accuracy-low: accuracy 0.85 >= 0.8"),
    )


def test_durations_in_transitions_are_told_as_the_spec_writes_them() -> None:
    spec = monitor(AlertSpec("accuracy-low", "accuracy", below=0.8, for_=90), recover_after=5400)
    steps = run(spec, [Tick(0, acc(0.62)), Tick(90, acc(0.62)), Tick(100, acc(0.9))])
    steps += run(spec, [Tick(5600, acc(0.9))], steps[-1][0])
    (_, pending), (_, firing), _, (_, released) = steps
    assert pending[0].reason == "accuracy-low: accuracy 0.62 < 0.8, firing after 1m30s"
    assert firing[0].reason == "accuracy-low: accuracy 0.62 < 0.8 for 1m30s"
    assert released[0] == Transition(
        "fallback_disengaged",
        5600,
        None,
        "no engaging alert pending or firing for 1h31m40s (recoverAfter 1h30m)",
    )


def test_the_fallback_names_every_cause() -> None:
    spec = monitor(ACCURACY_LOW, AlertSpec("latency-high", "latency", above=0.5))
    ticks = [Tick(0, {"accuracy": (0.1, 9), "latency": (0.9, 9)}, external=frozenset({"Down"}))]
    [(state, transitions)] = run(spec, ticks)
    assert state.fallback_causes == (
        Cause("alert", "accuracy-low"),
        Cause("alert", "latency-high"),
        Cause("alertmanager", "Down"),
    )
    assert wire.causes_text(state.fallback_causes) == (
        "accuracy-low, latency-high, alertmanager: Down"
    )
    engaged = next(t for t in transitions if t.kind == "fallback_engaged")
    assert engaged.reason == (
        "accuracy-low: accuracy 0.1 < 0.7 for 0s; latency-high: latency 0.9 > 0.5 for 0s; "
        "alertmanager: Down"
    )
    later = alerts.step(state, spec, 60, window(acc(0.1, 9)))[0]
    assert later.fallback_causes == state.fallback_causes, "the cause of the engagement stays"


def test_manual_engagement_and_its_release_say_manual() -> None:
    spec = monitor(ACCURACY_LOW)
    (on, engaged), (off, released) = run(
        spec, [Tick(5, acc(0.9), mode="engaged"), Tick(9, acc(0.9), mode="disengaged")]
    )
    assert (on.fallback_causes, on.fallback_since, on.mode) == ((Cause("manual"),), 5, "engaged")
    assert engaged[0] == Transition("fallback_engaged", 5, None, "manual")
    assert (off.fallback_causes, off.fallback_since, off.mode) == ((), None, "disengaged")
    assert released[0] == Transition("fallback_disengaged", 9, None, "manual")


def test_a_spec_pinned_engaged_starts_active_and_the_first_step_stamps_since() -> None:
    spec = monitor(ACCURACY_LOW, mode="engaged")
    start = alerts.initial_state(spec)
    assert (start.phase, start.fallback_active, start.fallback_causes) == (
        "FallbackActive",
        True,
        (Cause("manual"),),
    )
    assert start.fallback_since is None
    state, transitions = alerts.step(start, spec, 42.0, {})
    assert (state.fallback_active, state.fallback_since, transitions) == (True, 42.0, ())


def test_a_spec_change_keeps_alerts_by_name_and_resolves_removed_ones() -> None:
    old = monitor(ACCURACY_LOW, AlertSpec("f1-low", "f1", below=0.5))
    state, _ = alerts.step(
        alerts.initial_state(old), old, 0, window({"accuracy": (0.1, 9), "f1": (0.1, 9)})
    )
    assert [a.status for a in state.alerts] == ["firing", "firing"]
    new = monitor(AlertSpec("f1-low", "f1", below=0.5), AlertSpec("mae-high", "mae", above=1.0))
    state, transitions = alerts.step(state, new, 60, window({"f1": (0.1, 9)}))
    assert [(a.name, a.status, a.since) for a in state.alerts] == [
        ("f1-low", "firing", 0),
        ("mae-high", "insufficient", 60),
    ]
    assert transitions == (
        Transition("alert_resolved", 60, "accuracy-low", "accuracy-low: removed from the spec"),
    )


def test_the_state_round_trips_through_json() -> None:
    spec = monitor(ACCURACY_LOW, AlertSpec("f1-low", "f1", below=0.5, for_=60))
    steps = run(
        spec,
        [Tick(0, {"accuracy": (0.1, 9), "f1": (0.2, 9)}, external=frozenset({"X"}))],
    )
    state = steps[-1][0]
    data = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    assert data["alerts"] == [
        {"name": "accuracy-low", "state": "firing", "since": 0, "value": 0.1, "samples": 9},
        {"name": "f1-low", "state": "pending", "since": 0, "value": 0.2, "samples": 9},
    ]
    assert data["fallback_causes"] == [
        {"kind": "alert", "name": "accuracy-low"},
        {"kind": "alertmanager", "name": "X"},
    ]
    assert data["fallback_reason"] == "accuracy-low, alertmanager: X", "for the previous release"
    assert MonitorState.from_dict(data) == state


@pytest.mark.parametrize(
    ("reason", "causes"),
    [
        (None, ()),
        ("manual", (Cause("manual"),)),
        ("accuracy-low", (Cause("alert", "accuracy-low"),)),
        (
            "accuracy-low, f1-low, alertmanager: LatencyHigh, alertmanager: Down",
            (
                Cause("alert", "accuracy-low"),
                Cause("alert", "f1-low"),
                Cause("alertmanager", "LatencyHigh"),
                Cause("alertmanager", "Down"),
            ),
        ),
    ],
)
def test_a_state_stored_with_a_prose_reason_restores_its_causes(
    reason: str | None, causes: tuple[Cause, ...]
) -> None:
    stored = {  # as the release before structured causes stored it
        "phase": "FallbackActive" if reason else "Healthy",
        "alerts": [
            {"name": "accuracy-low", "state": "firing", "since": 60.0, "value": 0.5, "samples": 9}
        ],
        "fallback_active": reason is not None,
        "fallback_since": 60.0 if reason else None,
        "fallback_reason": reason,
        "clear_since": None,
        "mode": "auto",
    }
    restored = MonitorState.from_dict(stored)
    assert restored.fallback_causes == causes
    assert restored.alerts == (wire.AlertState("accuracy-low", "firing", 60.0, 0.5, 9),)
    again = MonitorState.from_dict(json.loads(json.dumps(restored.to_dict())))
    assert again == restored


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("mode"), "state.mode: missing"),
        (lambda d: d.update(phase="Broken"), "state.phase: expected one of Pending"),
        (lambda d: d.update(alerts={}), "state.alerts: expected an array"),
        (lambda d: d["alerts"][0].update(state="on"), "state.alerts[0].state: expected one of"),
        (lambda d: d["alerts"][0].update(samples=1.5), "state.alerts[0].samples: expected an int"),
        (lambda d: d["alerts"][0].update(since="x"), "state.alerts[0].since: expected a number"),
        (lambda d: d.update(fallback_active=1), "state.fallback_active: expected a boolean"),
        (
            lambda d: (d.pop("fallback_causes"), d.update(fallback_reason=3)),
            "state.fallback_reason: expected a string",
        ),
        (lambda d: d.update(fallback_causes={}), "state.fallback_causes: expected an array"),
        (
            lambda d: d.update(fallback_causes=[{"kind": "hunch"}]),
            "state.fallback_causes[0].kind: expected one of alert",
        ),
        (
            lambda d: d.update(fallback_causes=[{"kind": "alert", "name": 1}]),
            "state.fallback_causes[0].name: expected a string",
        ),
    ],
)
def test_a_malformed_stored_state_is_refused_naming_the_field(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = alerts.initial_state(monitor(ACCURACY_LOW)).to_dict()
    change(data)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        MonitorState.from_dict(data)
    with pytest.raises(ValueError, match=r"^state: expected an object"):
        MonitorState.from_dict([])


# -- invariants over random runs -------------------------------------------------------------

METRICS = ("accuracy", "f1", "drift_share", "feature_drift:tenure")
"""Alerts read values by key: model metrics (labeled samples) and drift metrics (records)."""
THRESHOLDS = (0.3, 0.5, 0.7)
VALUES = (None, math.nan, 0.1, 0.3, 0.5, 0.6, 0.7, 0.9)
EXTERNALS = ("LatencyHigh", "ErrorsHigh")


@st.composite
def specs(draw: st.DrawFn) -> MonitorSpec:
    count = draw(st.integers(0, 3))
    alert_specs = []
    for i in range(count):
        threshold = draw(st.sampled_from(THRESHOLDS))
        below = draw(st.booleans())
        alert_specs.append(
            AlertSpec(
                f"alert-{i}",
                (key := draw(st.sampled_from(METRICS))).partition(":")[0],
                feature=key.partition(":")[2] or None,
                below=threshold if below else None,
                above=None if below else threshold,
                for_=draw(st.sampled_from((0.0, 30.0, 60.0, 150.0))),
            )
        )
    names = [a.name for a in alert_specs]
    return monitor(
        *alert_specs,
        min_samples=draw(st.sampled_from((0, 1, 5))),
        engage_on=draw(st.lists(st.sampled_from(names), unique=True)) if names else [],
        recover_after=draw(st.sampled_from((0.0, 60.0, 120.0))),
        rules=draw(st.booleans()),
        mode=draw(st.sampled_from(("auto", "auto", "engaged", "disengaged"))),
    )


@dataclass(frozen=True)
class Input:
    at: float
    metrics: dict[str, WindowMetric]
    external: frozenset[str]
    mode: FallbackMode | None


NO_EXTERNAL: frozenset[str] = frozenset()
# Mostly plain ticks with enough data; the rarer draws (no data, externals, manual modes) are the
# ones that must not disturb the alerts' own course.
inputs = st.lists(
    st.tuples(
        st.sampled_from((0.0, 10.0, 30.0, 60.0, 90.0)),
        st.fixed_dictionaries(
            {},
            optional={
                metric: st.builds(
                    WindowMetric, st.sampled_from(VALUES), st.sampled_from((0, 3, 5, 8, 8, 8))
                )
                for metric in METRICS
            },
        ),
        st.sampled_from((NO_EXTERNAL,) * 6 + (frozenset(EXTERNALS[:1]), frozenset(EXTERNALS))),
        st.sampled_from((None,) * 6 + ("auto", "engaged", "disengaged")),
    ),
    max_size=30,
)


Drawn = tuple[float, dict[str, WindowMetric], frozenset[str], FallbackMode | None]


def timeline(steps: list[Drawn]) -> list[Input]:
    """Absolute times from the drawn time steps."""
    now = 1_000.0
    out = []
    for dt, metrics, external, mode in steps:
        now += dt
        out.append(Input(now, metrics, external, mode))
    return out


def holds(alert: AlertSpec, spec: MonitorSpec, metrics: Mapping[str, WindowMetric]) -> bool | None:
    """The condition on this window: True/False, or None when the data cannot tell."""
    metric = metrics.get(alert.key)
    if metric is None or metric.value is None or math.isnan(metric.value):
        return None
    if metric.samples < spec.metrics.min_samples:
        return None
    return alert.breached(metric.value)


def expected_status(alert: AlertSpec, spec: MonitorSpec, history: list[Input]) -> str:
    """The alert's status after `history`, from the whole history (an oracle, not the machine).

    Firing iff at some step the condition had held over a run of steps spanning `for`, and no
    later step showed it clear; otherwise the latest observation decides.
    """
    observed = [holds(alert, spec, i.metrics) for i in history]
    firing = False
    run_start: float | None = None
    for step, seen in zip(history, observed, strict=True):
        if seen:
            run_start = step.at if run_start is None else run_start
            if step.at - run_start >= alert.for_:
                firing = True
        else:
            run_start = None
            if seen is False:
                firing = False
    if firing:
        return "firing"
    return {None: "insufficient", True: "pending", False: "ok"}[observed[-1]]


@settings(max_examples=300, deadline=None)
@given(specs(), inputs)
def test_invariants_over_random_runs(spec: MonitorSpec, drawn: list[Drawn]) -> None:
    history = timeline(drawn)
    state = alerts.initial_state(spec)
    assert state.phase == ("FallbackActive" if state.fallback_active else "Collecting")
    engaging = set(spec.fallback.engage_on)
    serves = bool(spec.fallback.rules)
    clear_run_start: float | None = None  # first step of the current run with nothing engaging
    for i, now in enumerate(history):
        before = state
        after, transitions = alerts.step(
            before, spec, now.at, now.metrics, external_firing=now.external, mode=now.mode
        )
        mode = now.mode or spec.fallback.mode
        kinds = [t.kind for t in transitions]

        # Pure and deterministic; a restart (the state through JSON) resumes the same run.
        assert alerts.step(
            before, spec, now.at, now.metrics, external_firing=now.external, mode=now.mode
        ) == (after, transitions)
        restored = MonitorState.from_dict(json.loads(json.dumps(before.to_dict())))
        assert restored == before
        assert alerts.step(
            restored, spec, now.at, now.metrics, external_firing=now.external, mode=now.mode
        ) == (after, transitions)

        # Alerts: each one's status follows from the history alone.
        for alert, got, was in zip(spec.alerts, after.alerts, before.alerts, strict=True):
            assert got.status == expected_status(alert, spec, history[: i + 1]), alert
            if got.status == "firing" and was.status != "firing":
                assert holds(alert, spec, now.metrics) is True, "never fires without data"
            happened = {t.kind for t in transitions if t.alert == alert.name}
            assert happened == {
                kind
                for kind, now_in, was_in in (
                    ("alert_pending", {"pending"}, {"ok", "insufficient"}),
                    ("alert_firing", {"firing"}, {"ok", "insufficient", "pending"}),
                    ("alert_resolved", {"ok"}, {"firing"}),
                )
                if got.status in now_in and was.status in was_in
            }

        # Fallback.
        assert after.mode == mode
        if mode == "disengaged":
            assert not after.fallback_active
        if mode == "engaged":
            assert after.fallback_active
            assert after.fallback_causes == (Cause("manual"),)
        blocked = any(
            a.status in ("pending", "firing") for a in after.alerts if a.name in engaging
        ) or bool(serves and now.external)
        clear_run_start = (
            None if blocked else (now.at if clear_run_start is None else clear_run_start)
        )
        if mode == "auto":
            causes = any(a.status == "firing" for a in after.alerts if a.name in engaging) or bool(
                now.external
            )
            if not serves:
                assert not after.fallback_active
            elif causes:
                assert after.fallback_active
            elif before.fallback_active:
                long_clear = (
                    clear_run_start is not None
                    and now.at - clear_run_start >= spec.fallback.recover_after
                )
                assert after.fallback_active is not long_clear, "recoverAfter, no sooner or later"
        if after.fallback_active:
            assert after.fallback_since == (
                before.fallback_since
                if before.fallback_active and before.fallback_since is not None
                else now.at
            )
            assert after.fallback_causes
        else:
            assert (after.fallback_since, after.fallback_causes) == (None, ())

        # Phase, and transitions exactly on changes.
        assert (after.phase == "FallbackActive") is after.fallback_active
        if not after.fallback_active:
            degraded = any(a.status in ("pending", "firing") for a in after.alerts)
            assert (after.phase == "Degraded") is degraded
            labeled = max(
                (m.samples for k, m in now.metrics.items() if k in ("accuracy", "f1")), default=0
            )
            collecting = not degraded and labeled < spec.metrics.min_samples
            assert (after.phase == "Collecting") is collecting
        assert ("fallback_engaged" in kinds) is (
            after.fallback_active and not before.fallback_active
        )
        assert ("fallback_disengaged" in kinds) is (
            before.fallback_active and not after.fallback_active
        )
        changed = [t for t in transitions if t.kind == "phase_changed"]
        assert [(t.previous, t.current) for t in changed] == (
            [(before.phase, after.phase)] if after.phase != before.phase else []
        )
        assert all(t.at == now.at and t.reason for t in transitions)
        state = after
