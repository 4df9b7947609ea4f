"""Leader election's decisions (operator/lease.py): a table of Leases, identities and moments."""

from __future__ import annotations

import pytest

from truthloop.operator import lease
from truthloop.operator.lease import Record, Seen
from truthloop.operator.settings import LeaseSettings

SETTINGS = LeaseSettings(duration=15, renew_deadline=10.0, retry_period=2.0)
ME = "operator-a"


def held(
    by: str = "operator-b", version: str = "7", renewed: str = "2026-12-06T15:00:00Z"
) -> Record:
    return Record(holder=by, duration=15, renewed=renewed, transitions=3, version=version)


@pytest.mark.parametrize(
    ("previous", "current", "now", "action", "reason", "look_again"),
    [
        # no Lease yet: create it
        (None, None, 100.0, "create", "absent", 2.0),
        # ours: renew every retry period
        (None, held(ME), 100.0, "renew", "ours", 2.0),
        (Seen(held(ME), 50.0), held(ME), 100.0, "renew", "ours", 2.0),
        # released (no holder): take it at once
        (None, held(""), 100.0, "acquire", "released", 2.0),
        # another's, first seen now: wait a whole duration, looking every retry period
        (None, held(), 100.0, "wait", "held", 2.0),
        # another's, unchanged since 110: expires at 125
        (Seen(held(), 110.0), held(), 124.0, "wait", "held", 1.0),
        (Seen(held(), 110.0), held(), 124.9, "wait", "held", pytest.approx(0.1)),
        (Seen(held(), 110.0), held(), 125.0, "acquire", "expired", 2.0),
        (Seen(held(), 110.0), held(), 500.0, "acquire", "expired", 2.0),
        # renewed since (a new resourceVersion): the wait starts again
        (Seen(held(version="7"), 110.0), held(version="8"), 130.0, "wait", "held", 2.0),
        # a new holder took it: the wait starts again
        (Seen(held("operator-b"), 110.0), held("operator-c"), 130.0, "wait", "held", 2.0),
        # it was deleted and made again by another
        (Seen(None, 110.0), held(), 130.0, "wait", "held", 2.0),
    ],
)
def test_decisions(
    previous: Seen | None,
    current: Record | None,
    now: float,
    action: str,
    reason: str,
    look_again: float,
) -> None:
    decision = lease.decide(previous, current, ME, now, SETTINGS)
    assert (decision.action, decision.reason, decision.look_again) == (action, reason, look_again)
    assert decision.seen.record == current


def test_an_unchanged_lease_keeps_the_moment_it_was_first_seen() -> None:
    first = lease.decide(None, held(), ME, 100.0, SETTINGS)
    later = lease.decide(first.seen, held(), ME, 110.0, SETTINGS)
    assert later.seen == Seen(held(), 100.0)
    renewed = lease.decide(later.seen, held(version="8"), ME, 112.0, SETTINGS)
    assert renewed.seen == Seen(held(version="8"), 112.0)


@pytest.mark.parametrize(
    "renewed",
    ["2026-12-06T14:00:00.000000Z", "2026-12-06T16:00:00.000000Z", "garbage", ""],
)
def test_the_holders_clock_does_not_matter(renewed: str) -> None:
    """A renewTime an hour behind or ahead of this replica's clock (or unreadable) neither
    expires a Lease that keeps changing nor keeps alive one that stopped."""
    now = 1_000.0
    seen = lease.decide(None, held(renewed=renewed), ME, now, SETTINGS).seen
    assert lease.decide(seen, held(renewed=renewed), ME, now + 14.9, SETTINGS).action == "wait"
    assert lease.decide(seen, held(renewed=renewed), ME, now + 15.0, SETTINGS).action == "acquire"


def test_the_holder_stops_leading_before_another_may_take_over() -> None:
    """The holder's deadline runs from the start of its write; others' wait from when they saw
    the result, later: the gap is duration - renew_deadline at the least."""
    started = 100.0
    others_seen = started + 0.001
    assert lease.lead_until(started, SETTINGS) == 110.0
    assert lease.lead_until(started, SETTINGS) < others_seen + SETTINGS.duration
    # and the default proportions keep the gap
    for duration in (1, 2, 15, 60):
        scaled = LeaseSettings.lasting(duration)
        assert scaled.retry_period < scaled.renew_deadline < scaled.duration


def test_claims() -> None:
    wall = 1_796_000_000.5
    stamp = lease.micro_time(wall)
    assert stamp.startswith("2026-")
    assert stamp.endswith(".500000Z")
    created = lease.claim(None, ME, wall, SETTINGS)
    assert created == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": 0,
    }
    mine = Record(ME, 15, "2026-01-01T00:00:00.000000Z", "x", 4, "9")
    renewal = lease.claim(mine, ME, wall, SETTINGS)
    assert renewal["acquireTime"] == "2026-01-01T00:00:00.000000Z"
    assert (renewal["renewTime"], renewal["leaseTransitions"]) == (stamp, 4)
    takeover = lease.claim(held(), ME, wall, SETTINGS)
    assert (takeover["acquireTime"], takeover["leaseTransitions"]) == (stamp, 4)
    released = lease.release(mine, wall)
    assert "holderIdentity" not in released
    assert (released["leaseDurationSeconds"], released["leaseTransitions"]) == (1, 4)


def test_a_lease_is_read_from_its_object() -> None:
    body = {
        "metadata": {"name": "truthloop-operator", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": "operator-b",
            "leaseDurationSeconds": 15,
            "acquireTime": "a",
            "renewTime": "r",
            "leaseTransitions": 2,
        },
    }
    assert Record.parse(body) == Record("operator-b", 15, "a", "r", 2, "42")
    assert Record.parse({"metadata": {"resourceVersion": "1"}, "spec": {}}) == Record(version="1")
