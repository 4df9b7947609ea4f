"""The periods a history shows, from the alert machine's transitions and its state now."""

from __future__ import annotations

from dataclasses import replace

from truthloop.core import periods
from truthloop.core.alerts import MonitorState, Transition
from truthloop.core.wire import AlertState, Phase

START = 1000.0

QUIET = MonitorState(
    phase="Healthy",
    alerts=(AlertState("low", "ok", START, 0.9, 50),),
    fallback_active=False,
    fallback_since=None,
    fallback_causes=(),
    clear_since=START,
    mode="auto",
)


def firing(name: str, since: float) -> MonitorState:
    return replace(QUIET, phase="Degraded", alerts=(AlertState(name, "firing", since, 0.5, 50),))


def engaged(since: float) -> MonitorState:
    return replace(QUIET, phase="FallbackActive", fallback_active=True, fallback_since=since)


def phase(at: float, previous: Phase, current: Phase) -> Transition:
    return Transition("phase_changed", at, None, "why", previous, current)


def test_an_alert_that_fired_and_resolved_in_the_range_is_one_closed_period() -> None:
    history = [
        Transition("alert_pending", 1100.0, "low", "why"),
        Transition("alert_firing", 1200.0, "low", "why"),
        phase(1200.0, "Healthy", "Degraded"),
        Transition("alert_resolved", 1500.0, "low", "why"),
        phase(1500.0, "Degraded", "Healthy"),
    ]
    found = periods.periods(history, QUIET, START)
    assert found.alerts == {"low": ((1200.0, 1500.0),)}
    assert found.fallback == ()
    assert found.phases == (
        (START, 1200.0, "Healthy"),
        (1200.0, 1500.0, "Degraded"),
        (1500.0, None, "Healthy"),
    )


def test_a_period_open_at_the_start_is_clipped_to_it_and_one_open_now_has_no_end() -> None:
    history = [
        Transition("fallback_disengaged", 1100.0, None, "why"),
        phase(1100.0, "FallbackActive", "Degraded"),
        Transition("alert_resolved", 1150.0, "low", "why"),
        Transition("fallback_engaged", 1300.0, None, "why"),
        Transition("alert_firing", 1300.0, "low", "why"),
        phase(1300.0, "Degraded", "FallbackActive"),
    ]
    now = replace(engaged(1300.0), alerts=firing("low", 1300.0).alerts)
    found = periods.periods(history, now, START)
    assert found.fallback == ((START, 1100.0), (1300.0, None))
    assert found.alerts == {"low": ((START, 1150.0), (1300.0, None))}
    assert found.phases[0] == (START, 1100.0, "FallbackActive")
    assert found.phases[-1] == (1300.0, None, "FallbackActive")


def test_without_transitions_the_state_now_says_what_is_open() -> None:
    assert periods.periods([], QUIET, START) == periods.Periods((), {}, ((START, None, "Healthy"),))
    found = periods.periods([], replace(engaged(1200.0), alerts=firing("low", 400.0).alerts), START)
    assert found.fallback == ((1200.0, None),)  # engaged within the range: since then
    assert found.alerts == {"low": ((START, None),)}  # fired before it: clipped
    assert found.phases == ((START, None, "FallbackActive"),)


def test_a_removed_alert_keeps_its_periods_and_steps_at_one_time_make_no_empty_phase() -> None:
    history = [
        Transition("alert_firing", 1200.0, "gone", "why"),
        phase(1200.0, "Healthy", "Degraded"),
        phase(1200.0, "Degraded", "FallbackActive"),
        Transition("alert_resolved", 1300.0, "gone", "removed from the spec"),
        phase(1300.0, "FallbackActive", "Healthy"),
    ]
    found = periods.periods(history, QUIET, START)
    assert found.alerts == {"gone": ((1200.0, 1300.0),)}
    assert found.phases == (
        (START, 1200.0, "Healthy"),
        (1200.0, 1300.0, "FallbackActive"),
        (1300.0, None, "Healthy"),
    )
