"""The stored monitors, parsed once per body: rereading every monitor after another replica's
change must not compile each one's fallback rules again."""

from __future__ import annotations

import json

import pytest

from tests.support.feedback import monitor_body
from truthloop.core.spec import SpecError, parse_monitor
from truthloop.feedback.store import codec


def test_an_unchanged_body_is_not_parsed_again_and_a_changed_one_is() -> None:
    parsed = codec.Parsed()
    churn, other = json.dumps(monitor_body()), json.dumps(monitor_body(name="other"))
    first = parsed.registered([(1, churn, 10.0, None), (2, other, 11.0, None)])
    again = parsed.registered([(1, churn, 10.0, 99.0), (2, other, 11.0, None)])
    assert again[0].monitor is first[0].monitor
    assert again[1].monitor is first[1].monitor
    assert (again[0].deleted, again[0].created) == (99.0, 10.0), "the row's columns are fresh"

    changed = json.dumps(monitor_body(fallback={"recoverAfter": "5m"}))
    after = parsed.registered([(1, changed, 10.0, None)])
    assert after[0].monitor is not first[0].monitor
    assert after[0].monitor.spec.fallback != first[0].monitor.spec.fallback


def test_a_monitor_gone_from_the_rows_is_forgotten() -> None:
    parsed = codec.Parsed()
    body = json.dumps(monitor_body())
    first = parsed.registered([(1, body, 10.0, None)])
    parsed.registered([])
    assert parsed.registered([(1, body, 10.0, None)])[0].monitor is not first[0].monitor


def test_a_monitor_stored_before_durations_were_bounded_is_still_read() -> None:
    """A service holding such a monitor still starts; only a new or changed one must fit."""
    held = monitor_body(metrics={"window": "100d", "minSamples": 5})
    held["spec"]["alerts"][0]["for"] = "8d"
    (found,) = codec.Parsed().registered([(1, json.dumps(held), 10.0, None)])
    assert (found.monitor.spec.metrics.window, found.monitor.spec.alerts[0].for_) == (
        100 * 86400,
        8 * 86400,
    )
    with pytest.raises(SpecError, match=r"spec\.metrics\.window: must be at most 90d"):
        parse_monitor(held)
