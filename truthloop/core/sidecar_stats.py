"""The sidecars' minute counters: the keys a sidecar may post (`wire.SidecarMinutes`), the checks
of a posted body, and what the counters of a step say (requests, errors, latency quantiles).

A sidecar keeps cumulative counters (`sidecar.stats.ProxyStats`, its latency histograms, its
shipper's dropped records); once a minute it posts what they grew by since the last post, and the
service adds them up over pods per minute bucket. Only what the service knows how to add is
taken, so the keys are a fixed vocabulary:

- `requests:model`, `requests:fallback`: finished requests by who answered;
- `errors:<reason>`: requests the model failed (502/504), by reason;
- `latency_le:<bound>`: requests answered within `bound` seconds, cumulative over the
  `LATENCY_BOUNDS` and `+Inf` (the proxy's histogram); `latency_sum`: their seconds;
- `model_latency_le:<bound>`, `model_latency_sum`: the model's own time, the same way (shadow calls
  made while the fallback answered included);
- `records_dropped:<reason>`: capture records the sidecar lost, by reason;
- `passthrough:<protocol>`: client connections the sidecar tunnelled to the model uncaptured, by
  protocol (`h2c`: HTTP/2 cleartext, as gRPC speaks; `websocket`, `connect`, `other`).

A reason is a short snake_case word, so a newer sidecar's new reason is taken; a bound is one of
`LATENCY_BOUNDS`, so buckets of different pods always add up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import msgspec

from truthloop.core.records import Problems
from truthloop.core.wire import Passthrough, SidecarMinutes

LATENCY_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency buckets, the sidecar's Prometheus histograms' too."""

MAX_MINUTES = 60
"""Minutes one post may carry: a sidecar holds no more while the service is away."""
MAX_KEYS = 200
"""Keys one minute may carry (a sidecar sends about 40)."""
MAX_BODY = 1024 * 1024
"""Bytes of one post (60 minutes of 200 keys are about 500 KB)."""
MAX_POD = 253
"""Longest pod name (a Kubernetes object name)."""
MAX_START = 2.0**40
"""Epoch seconds past any real minute."""

REQUESTS, ERRORS, DROPPED = "requests:", "errors:", "records_dropped:"
PASSTHROUGH = "passthrough:"
LATENCY, MODEL_LATENCY = "latency", "model_latency"
SERVED = ("model", "fallback")


def bound_text(bound: float) -> str:
    """A bound as keys name it: `0.0005`, `1.0`, `+Inf` (as Prometheus' `le` label)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


_BOUNDS = {bound_text(b): b for b in (*LATENCY_BOUNDS, math.inf)}
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")


def bucket_key(histogram: str, bound: float) -> str:
    """The key of a latency bucket: `latency_le:0.005`, `model_latency_le:+Inf`."""
    return f"{histogram}_le:{bound_text(bound)}"


def known(key: str) -> bool:
    """Whether `key` is one of the vocabulary's (see the module docstring)."""
    kind, colon, rest = key.partition(":")
    if not colon:
        return key in (f"{LATENCY}_sum", f"{MODEL_LATENCY}_sum")
    if kind == "requests":
        return rest in SERVED
    if kind in ("errors", "records_dropped", "passthrough"):
        return _REASON.fullmatch(rest) is not None
    if kind in (f"{LATENCY}_le", f"{MODEL_LATENCY}_le"):
        return rest in _BOUNDS
    return False


def check(posted: SidecarMinutes) -> Problems:
    """The problems of a post (none: it can be stored): the first `records.MAX_ERRORS` kept,
    the others counted."""
    problems = Problems()
    if len(posted.pod) > MAX_POD:
        problems.add(None, "pod", f"longer than {MAX_POD} characters", "too_long")
    if len(posted.minutes) > MAX_MINUTES:
        problems.add(None, "minutes", f"at most {MAX_MINUTES} minutes a post", "too_many_items")
        return problems
    for i, minute in enumerate(posted.minutes):
        at = f"minutes[{i}]"
        if not 0 <= minute.start < MAX_START:
            problems.add(None, f"{at}.start", "expected epoch seconds", "out_of_range")
        if len(minute.counts) > MAX_KEYS:
            problems.add(None, f"{at}.counts", f"at most {MAX_KEYS} keys", "too_many_items")
            continue
        for key, value in minute.counts.items():
            if not known(key):
                shown = key if len(key) <= 80 else key[:77] + "..."
                problems.add(
                    None,
                    f"{at}.counts.{shown}",
                    f"unknown key {shown!r}: expected requests:model, requests:fallback,"
                    " errors:<reason>, latency_le:<bound>, latency_sum, model_latency_le:<bound>,"
                    " model_latency_sum, records_dropped:<reason> or passthrough:<protocol>",
                    "unknown_key",
                )
            elif not 0 <= value < math.inf:
                problems.add(None, f"{at}.counts.{key}", "expected a count >= 0", "out_of_range")
    return problems


def growth(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """What cumulative counters grew by from `before` to `after` (keys that did not, left out)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def add(into: dict[str, float], counts: Mapping[str, float]) -> None:
    """Add `counts` to `into`, key by key."""
    for key, value in counts.items():
        into[key] = into.get(key, 0.0) + value


def quantile(cumulative: Mapping[float, float], q: float) -> float | None:
    """The `q` quantile (0 < q < 1) of observations counted in cumulative buckets (upper bound
    → observations at most it), interpolated linearly inside its bucket as Prometheus'
    `histogram_quantile` does; in the `+Inf` bucket, the largest finite bound. None when the
    buckets hold no observation."""
    total = max(cumulative.values(), default=0.0)
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in sorted(cumulative):
        count = max(cumulative[bound], below)
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Quantiles and mean (seconds) of one histogram over a step; None without observations."""

    p50: float | None = None
    p99: float | None = None
    mean: float | None = None


class StepStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a step's counters say: requests (by who answered), the model's errors by reason and
    their rate, the fallback's share, latency to the client and the model's, records lost,
    connections passed through uncaptured."""

    requests: int = 0
    served_by: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    error_rate: float | None = None
    """Errors over requests (None without requests)."""
    fallback_share: float | None = None
    latency: Latency = msgspec.field(default_factory=Latency)
    model_latency: Latency = msgspec.field(default_factory=Latency)
    records_dropped: dict[str, int] = msgspec.field(default_factory=dict)
    passthrough: dict[str, int] = msgspec.field(default_factory=dict)
    """Client connections tunnelled to the model uncaptured, by protocol."""


def passthrough(counts: Mapping[str, float]) -> dict[str, int]:
    """The connections passed through uncaptured in summed counters, by protocol."""
    return _by_reason(counts, PASSTHROUGH)


def passed_through(
    previous: Passthrough | None, minutes: Iterable[tuple[float, Mapping[str, float]]]
) -> Passthrough | None:
    """What the sidecars passed through uncaptured in `minutes` (an hour's, as (start, counters),
    in time order), None if nothing; `since` is kept from `previous` while its last minute is
    in them (no hour went by without one)."""
    seen = [(start, by) for start, counts in minutes if (by := passthrough(counts))]
    if not seen:
        return None
    first, last = seen[0][0], seen[-1][0]
    connections: dict[str, int] = {}
    for _, by in seen:
        for protocol, n in by.items():
            connections[protocol] = connections.get(protocol, 0) + n
    since = previous.since if previous is not None and first <= previous.last else first
    return Passthrough(connections=dict(sorted(connections.items())), since=since, last=last)


def stats(counts: Mapping[str, float]) -> StepStats:
    """The `StepStats` of summed counters (one step's, or a whole window's)."""
    served = {by: round(counts.get(REQUESTS + by, 0.0)) for by in SERVED}
    requests = sum(served.values())
    errors = _by_reason(counts, ERRORS)
    failed = sum(errors.values())
    return StepStats(
        requests=requests,
        served_by=served,
        errors=errors,
        error_rate=failed / max(requests, failed) if failed or requests else None,
        fallback_share=served["fallback"] / requests if requests else None,
        latency=_latency(counts, LATENCY),
        model_latency=_latency(counts, MODEL_LATENCY),
        records_dropped=_by_reason(counts, DROPPED),
        passthrough=passthrough(counts),
    )


def total(steps: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The counters of several steps, summed."""
    summed: dict[str, float] = {}
    for counts in steps:
        add(summed, counts)
    return summed


def _by_reason(counts: Mapping[str, float], prefix: str) -> dict[str, int]:
    return {
        k[len(prefix) :]: round(v) for k, v in sorted(counts.items()) if k.startswith(prefix) and v
    }


def _latency(counts: Mapping[str, float], histogram: str) -> Latency:
    prefix = f"{histogram}_le:"
    buckets = {
        bound: v
        for k, v in counts.items()
        if k.startswith(prefix) and (bound := _BOUNDS.get(k[len(prefix) :])) is not None
    }
    observed = max(buckets.values(), default=0.0)
    seconds = counts.get(f"{histogram}_sum")
    return Latency(
        p50=quantile(buckets, 0.5),
        p99=quantile(buckets, 0.99),
        mean=seconds / observed if seconds is not None and observed else None,
    )
