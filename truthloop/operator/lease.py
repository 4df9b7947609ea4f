"""Leader election on a coordination.k8s.io/v1 Lease: the decisions, with no I/O and no clock.

Replicas of the operator share one Lease in its namespace; the holder handles monitors, the others
only serve webhooks. Every `retry_period` each replica reads the Lease and `decide`s:

- `create` it when there is none; `renew` it when it holds it; `acquire` it when it is free
  (released on a clean shutdown) or expired; else `wait`, and look again when it could expire.
- Expiry is judged on this replica's own clock, client-go's way: a Lease is expired when it has
  not *changed* (any write bumps its resourceVersion) for `leaseDurationSeconds` since this replica
  saw it change. The holder's `renewTime` is never compared with the local clock, so clocks that
  disagree (skew) do not matter; only their rates must roughly agree.
- A holder leads until `renew_deadline` after the start of its last successful write
  (`lead_until`), shorter than the duration others wait, so the old leader stops before anyone
  else can take over. Writes are guarded by resourceVersion: a conflict means another took it.

`claim` and `release` give the spec to write; the shell (`election.py`) does the requests.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from truthloop.operator.settings import LeaseSettings

Action = Literal["create", "acquire", "renew", "wait"]
Reason = Literal["absent", "ours", "released", "expired", "held"]


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a Lease the decision reads."""

    holder: str = ""
    """spec.holderIdentity; empty when released."""
    duration: int = 0
    """spec.leaseDurationSeconds."""
    acquired: str = ""
    renewed: str = ""
    """spec.acquireTime and spec.renewTime as written (read by people, never by the decision)."""
    transitions: int = 0
    version: str = ""
    """metadata.resourceVersion: every write changes it."""

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Record:
        spec = body.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or 0),
            acquired=str(spec.get("acquireTime") or ""),
            renewed=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
        )


@dataclass(frozen=True, slots=True)
class Seen:
    """The Lease as this replica last saw it, and when it first saw it so (its own clock)."""

    record: Record | None
    at: float


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    seen: Seen
    """What to remember for the next decision."""
    look_again: float
    """Seconds until the next read."""


def observe(previous: Seen | None, current: Record | None, now: float) -> Seen:
    """`previous` while the Lease is unchanged, else the new record seen `now`."""
    if previous is not None and previous.record == current:
        return previous
    return Seen(current, now)


def decide(
    previous: Seen | None,
    current: Record | None,
    me: str,
    now: float,
    settings: LeaseSettings,
) -> Decision:
    """What to do with the Lease `current` (None: there is none), read by replica `me` at `now`
    (a monotonic clock); `previous` is the last decision's `seen` (None at start)."""
    seen = observe(previous, current, now)
    retry = settings.retry_period
    if current is None:
        return Decision("create", "absent", seen, retry)
    if current.holder == me:
        return Decision("renew", "ours", seen, retry)
    if not current.holder:
        return Decision("acquire", "released", seen, retry)
    expires = seen.at + current.duration
    if now >= expires:
        return Decision("acquire", "expired", seen, retry)
    return Decision("wait", "held", seen, min(retry, expires - now))


def lead_until(started: float, settings: LeaseSettings) -> float:
    """When leadership ends unless renewed, after a write that started at `started`."""
    return started + settings.renew_deadline


def claim(current: Record | None, me: str, wall: float, settings: LeaseSettings) -> dict[str, Any]:
    """The spec that makes `me` the holder at wall-clock time `wall`: a renewal keeps the
    acquireTime, a takeover counts a transition."""
    stamp = micro_time(wall)
    if current is None:
        acquired, transitions = stamp, 0
    elif current.holder == me:
        acquired, transitions = current.acquired or stamp, current.transitions
    else:
        acquired, transitions = stamp, current.transitions + 1
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": settings.duration,
        "acquireTime": acquired,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


def release(current: Record, wall: float) -> dict[str, Any]:
    """The spec of a released Lease: no holder, so the next reader acquires it at once."""
    stamp = micro_time(wall)
    return {
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": current.transitions,
    }


def micro_time(wall: float) -> str:
    """Kubernetes' MicroTime (RFC 3339 with microseconds, UTC)."""
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
