"""A repeated failure speaks once per interval per reason, and says how often it was held back."""

from __future__ import annotations

from truthloop.core.throttle import Throttle


def test_a_reason_speaks_once_per_interval_then_counts_what_it_held_back() -> None:
    throttle = Throttle(interval=60.0)
    assert throttle.allow("spool_full", 0.0) == 0
    assert [throttle.allow("spool_full", t) for t in (1.0, 30.0, 59.9)] == [None, None, None]
    assert throttle.allow("spool_full", 60.0) == 3
    assert throttle.allow("spool_full", 61.0) is None
    assert throttle.allow("spool_full", 200.0) == 1


def test_reasons_are_throttled_apart() -> None:
    throttle = Throttle(interval=60.0)
    assert throttle.allow("spool_full", 0.0) == 0
    assert throttle.allow("unauthorized", 1.0) == 0
    assert throttle.allow("spool_full", 2.0) is None


def test_memory_stays_bounded_by_forgetting_the_oldest_reason() -> None:
    throttle = Throttle(interval=60.0, max_reasons=2)
    throttle.allow("a", 0.0)
    throttle.allow("b", 0.0)
    throttle.allow("c", 0.0)
    assert throttle.allow("a", 1.0) == 0  # forgotten: speaks again
    assert throttle.allow("c", 1.0) is None
