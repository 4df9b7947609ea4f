"""A monitor's history as periods: when its fallback was engaged, each alert firing, each phase.

The alert machine's transitions (`alerts.Transition`, stored by the leader) are the events; a
chart wants the spans between them. `periods` pairs them up over a range that starts at `start`
and runs to now: a period open when the range starts (a `fallback_disengaged` or
`alert_resolved` with no engagement or firing before it in the range) is clipped to `start`, and
one still open at the last transition has no end (None). Where the range holds no transition that
opened it, the current state says what is open now (the fallback engaged since `fallback_since`,
an alert firing since its `since`, clipped too), so a quiet range agrees with the monitor's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from truthloop.core.alerts import MonitorState, Transition
from truthloop.core.wire import Phase

Period = tuple[float, float | None]
"""`[start, end]`; `end` None: still open."""


class Periods(msgspec.Struct, frozen=True):
    """The history's periods, each list oldest first: the fallback engaged, each alert firing
    (by name, alerts since removed from the spec included), and the phases in turn."""

    fallback: tuple[Period, ...]
    alerts: dict[str, tuple[Period, ...]]
    phases: tuple[tuple[float, float | None, Phase], ...]


def periods(transitions: Sequence[Transition], state: MonitorState, start: float) -> Periods:
    """The periods of `transitions` (oldest first, all at or after `start`) up to `state`, the
    machine's state now."""
    fallback = _spans(
        [(t.kind == "fallback_engaged", t.at) for t in transitions if t.kind in _FALLBACK],
        start,
        state.fallback_since if state.fallback_active else None,
        active=state.fallback_active,
    )
    firing = {a.name: a.since for a in state.alerts if a.status == "firing"}
    names = sorted({t.alert for t in transitions if t.alert is not None} | set(firing))
    alerts: dict[str, tuple[Period, ...]] = {}
    for name in names:
        events = [
            (t.kind == "alert_firing", t.at)
            for t in transitions
            if t.alert == name and t.kind in _FIRING
        ]
        spans = _spans(events, start, firing.get(name), active=name in firing)
        if spans:
            alerts[name] = spans
    return Periods(fallback, alerts, _phases(transitions, state, start))


_FALLBACK = frozenset({"fallback_engaged", "fallback_disengaged"})
_FIRING = frozenset({"alert_firing", "alert_resolved"})


def _spans(
    events: Sequence[tuple[bool, float]], start: float, since: float | None, *, active: bool
) -> tuple[Period, ...]:
    """Pair openings (True) with closings (False), in time order: a closing with nothing open
    before it in the range closes a period open at `start`; a period still open, or none open
    while `active` (open since `since`, not before `start` nor the last closing), has no end."""
    out: list[Period] = []
    begun: float | None = None
    for opens, at in events:
        if opens:
            begun = at if begun is None else begun
        elif begun is not None or not out:
            out.append((start if begun is None else begun, at))
            begun = None
    if begun is not None:
        out.append((begun, None))
    elif active:
        floor = max(start, out[-1][1] or start) if out else start
        out.append((max(floor, since) if since is not None else floor, None))
    return tuple(out)


def _phases(
    transitions: Sequence[Transition], state: MonitorState, start: float
) -> tuple[tuple[float, float | None, Phase], ...]:
    """Each phase in turn from `start` (the first change's previous phase, or the current one
    when the range holds no change), zero-length ones left out; the last is the current one."""
    changes = [t for t in transitions if t.kind == "phase_changed" and t.current is not None]
    out: list[tuple[float, float | None, Phase]] = []
    begun = start
    phase: Phase = (changes[0].previous or state.phase) if changes else state.phase
    for t in changes:
        if t.at > begun:
            out.append((begun, t.at, phase))
        begun, phase = t.at, t.current or phase
    out.append((begun, None, state.phase))
    return tuple(out)
