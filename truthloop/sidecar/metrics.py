"""The sidecar's Prometheus metrics, in its own registry (`truthloop_sidecar_*`).

Latency histograms are observed per request by `Latency`. Everything else is read from the parts'
own counters and sizes when Prometheus scrapes (`PartsCollector`), so the request path only bumps
plain integers.

- the proxy's counters: requests by who answered, model errors (502/504) by reason, client
  connections open, how many may be, and closed for its limits (by reason), and more;
- `truthloop_sidecar_passthrough_connections_total{protocol}`: client connections tunnelled to the
  model uncaptured: `h2c` (gRPC), `websocket`, `connect`, `other`;
- `truthloop_sidecar_request_seconds{served_by}`: time to answer the client (model or fallback;
  a tunnel's lifetime is not a request's latency, so tunnels are left out).
- `truthloop_sidecar_model_seconds{served_by}`: time the model took; `served_by="fallback"` for the
  shadow calls made while the fallback answered.
- minutes of these counters posted to the feedback service (`minutes`), and dropped (by reason);
- queue and spool sizes and bounds; records captured, shipped, retried, dropped and rejected (by
  reason); capture skips and errors (by reason); fallback answers, requests passed to the model
  (by reason) and whether the fallback is engaged; abstained responses (by reason: `band`,
  `explore`), responses decided, and responses passed undecided (by reason: the proxy's
  `too_large`, `not_json`, ... and the decision's); state-poll and spec-reload errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from truthloop.core import sidecar_stats
from truthloop.sidecar.abstain import Abstain
from truthloop.sidecar.capture import Capture
from truthloop.sidecar.exchange import Exchange
from truthloop.sidecar.fallback import Fallback
from truthloop.sidecar.follower import Follower
from truthloop.sidecar.live import Live
from truthloop.sidecar.minutes import MinuteStats
from truthloop.sidecar.shipper import Shipper
from truthloop.sidecar.stats import ProxyStats

BUCKETS = sidecar_stats.LATENCY_BOUNDS


class Latency:
    """Observes each exchange's latencies into the registry's histograms."""

    __slots__ = ("_histograms", "_model", "_request")

    def __init__(self, registry: CollectorRegistry) -> None:
        request = Histogram(
            "truthloop_sidecar_request_seconds",
            "Seconds to answer the client, by who answered.",
            ["served_by"],
            buckets=BUCKETS,
            registry=registry,
        )
        model = Histogram(
            "truthloop_sidecar_model_seconds",
            "Seconds the model took; served_by=fallback for shadow calls made while the fallback"
            " answered.",
            ["served_by"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._request = {by: request.labels(by) for by in ("model", "fallback")}
        self._model = {by: model.labels(by) for by in ("model", "fallback")}
        self._histograms = ((sidecar_stats.LATENCY, request), (sidecar_stats.MODEL_LATENCY, model))

    def cumulative(self) -> dict[str, float]:
        """Both histograms now, each summed over `served_by`, as `core.sidecar_stats` keys
        (`latency_le:<bound>`, `latency_sum`, `model_latency_...`): read once a minute, off the
        request path."""
        counts: dict[str, float] = {}
        for name, histogram in self._histograms:
            for family in histogram.collect():
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        key = sidecar_stats.bucket_key(name, float(sample.labels["le"]))
                    elif sample.name.endswith("_sum"):
                        key = f"{name}_sum"
                    else:
                        continue
                    counts[key] = counts.get(key, 0.0) + sample.value
        return counts

    def observe(self, exchange: Exchange) -> None:
        if exchange.skip_reason == "upgrade":  # a tunnel lasts as long as its connection
            return
        if exchange.shadow:
            if exchange.model_seconds is not None:
                self._model["fallback"].observe(exchange.model_seconds)
            return
        self._request[exchange.served_by].observe(exchange.total_seconds)
        if exchange.model_seconds is not None:
            self._model[exchange.served_by].observe(exchange.model_seconds)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the collector reads at scrape time."""

    live: Live
    shipper: Shipper
    capture: Capture
    fallback: Fallback
    abstain: Abstain
    follower: Follower
    proxy: ProxyStats
    minutes: MinuteStats


class PartsCollector(Collector):
    """The parts' counters and sizes, read at scrape time; register it once the proxy runs."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._proxy(self.parts.proxy)
        p = self.parts
        shipper, buffer, spool = p.shipper, p.shipper.buffer, p.shipper.spool
        ship = shipper.stats
        yield _gauge("queue_bytes", "Encoded records waiting in memory, in bytes.", buffer.bytes)
        yield _gauge("queue_records", "Records waiting in memory.", len(buffer))
        yield _gauge("queue_limit_bytes", "Bound on the in-memory queue.", buffer.max_bytes)
        yield _gauge("spool_bytes", "Batches waiting on disk, in bytes.", spool.bytes)
        yield _gauge("spool_records", "Records waiting on disk.", spool.records)
        yield _gauge("spool_limit_bytes", "Bound on the disk spool.", spool.max_bytes)
        yield _gauge(
            "feedback_up", "1 unless the last attempt to ship failed.", 0 if shipper.down else 1
        )
        refused = GaugeMetricFamily(
            _name("capture_refused"),
            "1 while the feedback service refuses capture (records spooled), by reason.",
            labels=["reason"],
        )
        if shipper.refused is not None:
            refused.add_metric([shipper.refused.reason], 1)
        yield refused
        yield _counter("records_captured", "Capture records queued.", p.capture.stats.captured)
        yield _counter("records_shipped", "Records the feedback service accepted.", ship.shipped)
        yield _counter(
            "records_retried", "Records in failed attempts, kept to retry.", ship.retried
        )
        yield _counter_by("records_dropped", "Records lost, by reason.", "reason", ship.dropped)
        yield _counter_by(
            "records_rejected",
            "Records the service refused, by its reason.",
            "reason",
            ship.rejected,
        )
        yield _counter_by(
            "capture_skipped",
            "Exchanges not captured, by reason.",
            "reason",
            p.capture.stats.skipped,
        )
        yield _counter_by(
            "capture_errors", "Exchanges whose extraction failed, by reason.", "reason",
            p.capture.stats.errors,
        )  # fmt: skip
        yield _counter_by(
            "segment_values_dropped",
            "Segment values left out of captured records (not a scalar, too long, ...), by reason.",
            "reason", p.capture.stats.dropped,
        )  # fmt: skip
        current = p.live.current
        yield _gauge("fallback_active", "1 while the rules answer.", int(current.fallback_active))
        yield _counter(
            "fallback_answered", "Requests the rules answered.", p.fallback.stats.answered
        )
        yield _counter_by(
            "fallback_passed", "Requests the rules could not answer, sent to the model, by reason.",
            "reason", p.fallback.stats.passed,
        )  # fmt: skip
        yield _counter_by(
            "abstained", "Model responses answered \"I don't know\" instead, by reason.",
            "reason", p.abstain.stats.abstained,
        )  # fmt: skip
        yield _counter(
            "abstain_checked", "Model responses the abstain decided on.", p.abstain.stats.checked
        )
        yield _counter_by(
            "abstain_passed",
            "Model responses sent undecided while the abstain is on, by reason.",
            "reason", p.proxy.verdict_passed + p.abstain.stats.passed,
        )  # fmt: skip
        monitor = current.monitor
        yield _gauge(
            "spec_generation", "Generation of the spec in force (0: none).",
            monitor.generation if monitor else 0,
        )  # fmt: skip
        follow = p.follower.stats
        yield _counter_by(
            "state_poll_errors", "Failed state polls, by reason.", "reason", follow.poll_errors
        )
        yield _counter_by(
            "spec_reload_errors", "Spec reloads that failed, by reason.", "reason",
            follow.reload_errors,
        )  # fmt: skip
        yield _counter(
            "minutes_posted", "Minutes of counters the feedback service took.", p.minutes.posted
        )
        yield _counter_by(
            "minutes_dropped", "Minutes of counters not posted, by reason.", "reason",
            p.minutes.dropped,
        )  # fmt: skip

    @staticmethod
    def _proxy(stats: ProxyStats) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield _counter_by(
            "requests", "Finished requests, by who answered (model, fallback, shadow, tunnel).",
            "served_by", stats.requests,
        )  # fmt: skip
        yield _counter_by(
            "model_errors", "Requests the model failed (502/504), by reason.", "reason",
            stats.upstream_errors,
        )  # fmt: skip
        yield _counter_by(
            "passthrough_connections",
            "Client connections tunnelled to the model uncaptured, by protocol (h2c: HTTP/2"
            " cleartext, as gRPC speaks; websocket; connect; other).",
            "protocol", stats.passthrough,
        )  # fmt: skip
        yield _gauge("client_connections", "Client connections open.", stats.open_connections)
        yield _gauge(
            "client_connections_limit",
            "Client connections served at once (max_connections, or fewer if the "
            "file-descriptor limit allows fewer).",
            stats.connection_limit,
        )
        yield _counter_by(
            "client_connections_closed",
            "Client connections closed for the proxy's limits (414, 431, 408, idle, not reading),"
            " by reason.",
            "reason", stats.connections_closed,
        )  # fmt: skip
        for name, doc, value in (
            ("client_disconnects", "Clients gone mid-request.", stats.client_disconnects),
            ("bad_requests", "Requests that were not HTTP/1.x (400).", stats.bad_requests),
            ("model_retries", "Requests resent after a reused connection closed.", stats.retries),
            ("model_connects", "Connections opened to the model.", stats.upstream_connects),
            ("observe_errors", "Exceptions raised reporting an exchange.", stats.observe_errors),
            ("local_errors", "Fallback exceptions (model asked).", stats.local_errors),
            ("local_too_large", "Bodies too large for the fallback (model asked).",
             stats.local_too_large),
            ("shadow_skipped", "Shadow calls skipped at the concurrency limit.",
             stats.shadow_skipped),
            ("shadow_failed", "Shadow calls the model failed.", stats.shadow_failed),
        ):  # fmt: skip
            yield _counter(name, doc, value)


def _name(name: str) -> str:
    return f"truthloop_sidecar_{name}"


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_name(name), doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_name(name), doc, value=value)


def _counter_by(name: str, doc: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(_name(name), doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
