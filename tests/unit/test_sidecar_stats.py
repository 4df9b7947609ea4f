"""The sidecars' minute counters, pure: the key vocabulary, a post's checks, growth between two
readings, quantiles from cumulative buckets and what a step's counters say."""

from __future__ import annotations

import math
import random

import pytest

from truthloop.core import sidecar_stats
from truthloop.core.sidecar_stats import quantile, stats
from truthloop.core.throttle import Throttle
from truthloop.core.wire import SidecarMinute, SidecarMinutes


@pytest.mark.parametrize(
    "key",
    [
        "requests:model",
        "requests:fallback",
        "errors:model_timeout",
        "errors:a_reason_of_a_newer_sidecar2",
        "records_dropped:queue_full",
        "passthrough:h2c",
        "passthrough:websocket",
        "latency_le:0.0005",
        "latency_le:1.0",
        "latency_le:30.0",
        "latency_le:+Inf",
        "latency_sum",
        "model_latency_le:0.25",
        "model_latency_sum",
    ],
)
def test_the_vocabulary_takes_its_keys(key: str) -> None:
    assert sidecar_stats.known(key)


@pytest.mark.parametrize(
    "key",
    [
        "requests:tunnel",
        "requests",
        "errors:",
        "errors:Model",
        "errors:x" + "y" * 64,
        "passthrough:",
        "passthrough:H2C",
        "latency_le:1",
        "latency_le:0.003",
        "latency_le:inf",
        "latency_count",
        "model_latency",
        "bytes",
        "",
    ],
)
def test_the_vocabulary_refuses_other_keys(key: str) -> None:
    assert not sidecar_stats.known(key)


def test_bucket_keys_name_bounds_as_prometheus_le_labels() -> None:
    assert sidecar_stats.bucket_key("latency", 0.0005) == "latency_le:0.0005"
    assert sidecar_stats.bucket_key("model_latency", 1.0) == "model_latency_le:1.0"
    assert sidecar_stats.bucket_key("latency", math.inf) == "latency_le:+Inf"


def test_check_names_each_problem_and_bounds_their_number() -> None:
    minutes = tuple(
        SidecarMinute(start=60.0 * i, counts={"requests:model": 1, f"nope{i}": 1})
        for i in range(sidecar_stats.MAX_MINUTES)
    )
    problems = sidecar_stats.check(SidecarMinutes(monitor="ml/churn", minutes=minutes))
    assert problems.count == sidecar_stats.MAX_MINUTES
    assert len(problems.kept) + problems.omitted == problems.count
    first = problems.kept[0]
    assert (first.field, first.reason) == ("minutes[0].counts.nope0", "unknown_key")
    assert "nope0" in first.message


def test_check_passes_a_good_post_and_shortens_a_long_key_it_names() -> None:
    good = SidecarMinute(start=1e9, counts={"requests:model": 3, "latency_sum": 0.1})
    assert not sidecar_stats.check(SidecarMinutes(monitor="m/n", minutes=(good,))).count
    long = SidecarMinute(start=1e9, counts={"k" * 1000: 1})
    (problem,) = sidecar_stats.check(SidecarMinutes(monitor="m/n", minutes=(long,))).kept
    assert len(problem.field) < 120


def test_growth_keeps_what_grew() -> None:
    before = {"requests:model": 5.0, "latency_le:+Inf": 5.0, "errors:model_timeout": 1.0}
    after = {"requests:model": 9.0, "latency_le:+Inf": 9.0, "errors:model_timeout": 1.0,
             "errors:bad_response": 2.0}  # fmt: skip
    assert sidecar_stats.growth(before, after) == {
        "requests:model": 4.0,
        "latency_le:+Inf": 4.0,
        "errors:bad_response": 2.0,
    }
    assert sidecar_stats.growth(after, after) == {}


def test_quantile_interpolates_inside_its_bucket_as_prometheus_does() -> None:
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.25) == pytest.approx(0.05)  # from 0 to the first bound
    assert quantile(buckets, 0.7) == pytest.approx(0.1 + 0.1 * 20 / 40)
    assert quantile(buckets, 0.99) == pytest.approx(0.2 + 0.3 * 9 / 10)


def test_quantile_in_the_open_bucket_is_the_largest_bound_and_none_without_data() -> None:
    assert quantile({0.1: 1.0, 1.0: 2.0, math.inf: 10.0}, 0.5) == 1.0
    assert quantile({math.inf: 3.0}, 0.5) == 0.0
    assert quantile({}, 0.5) is None
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.99) is None


def test_quantile_of_many_observations_lands_in_the_true_quantile_s_bucket() -> None:
    rng = random.Random(3)
    seen = sorted(rng.lognormvariate(-4, 1) for _ in range(10_000))
    bounds = (*sidecar_stats.LATENCY_BOUNDS, math.inf)
    buckets = {b: float(sum(1 for s in seen if s <= b)) for b in bounds}
    for q in (0.5, 0.9, 0.99):
        true = seen[math.ceil(q * len(seen)) - 1]
        upper = min(b for b in bounds if b >= true)
        lower = max((b for b in bounds if b < true), default=0.0)
        got = quantile(buckets, q)
        assert got is not None
        assert lower <= got <= upper


def test_a_step_s_stats() -> None:
    counts = {
        "requests:model": 95.0,
        "requests:fallback": 5.0,
        "errors:model_timeout": 3.0,
        "errors:model_unreachable": 1.0,
        "latency_le:0.01": 60.0,
        "latency_le:0.1": 100.0,
        "latency_le:+Inf": 100.0,
        "latency_sum": 3.0,
        "records_dropped:spool_full": 7.0,
        "passthrough:h2c": 4.0,
    }
    found = stats(counts)
    assert found.requests == 100
    assert found.served_by == {"model": 95, "fallback": 5}
    assert found.errors == {"model_timeout": 3, "model_unreachable": 1}
    assert found.error_rate == pytest.approx(0.04)
    assert found.fallback_share == pytest.approx(0.05)
    assert found.latency.p50 == pytest.approx(0.01 * 50 / 60)
    assert found.latency.p99 == pytest.approx(0.01 + 0.09 * 39 / 40)
    assert found.latency.mean == pytest.approx(0.03)
    assert found.model_latency == sidecar_stats.Latency()
    assert found.records_dropped == {"spool_full": 7}
    assert found.passthrough == {"h2c": 4}


def test_no_requests_leave_the_rates_undefined_and_errors_alone_are_all_errors() -> None:
    empty = stats({})
    assert (empty.requests, empty.error_rate, empty.fallback_share) == (0, None, None)
    assert stats({"errors:model_closed": 2.0}).error_rate == 1.0


def test_total_adds_steps_up() -> None:
    steps = [{"requests:model": 1.0}, {}, {"requests:model": 2.0, "latency_sum": 0.5}]
    assert sidecar_stats.total(steps) == {"requests:model": 3.0, "latency_sum": 0.5}


def test_throttle_note_says_the_first_and_then_how_many_it_held_back() -> None:
    throttle = Throttle(interval=60.0)
    assert throttle.note("away", 0.0, "down: %s", "refused") == ("down: %s", "refused")
    assert throttle.note("away", 1.0, "down: %s", "refused") is None
    assert throttle.note("away", 61.0, "down: %s", "refused") == (
        "down: %s (and %d more times in the last minute)",
        "refused",
        1,
    )
