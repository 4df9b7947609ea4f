"""What the proxy counts, for the admin port to export. Latencies are the tap's, from Exchange."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ERROR_STATUS = {
    "model_unreachable": 502,
    "model_closed": 502,
    "bad_response": 502,
    "model_timeout": 504,
}
"""The status the client gets for each upstream error reason (when no head was sent yet)."""


@dataclass(slots=True)
class ProxyStats:
    """Counters, only ever incremented (but the gauges `open_connections` and
    `connection_limit`), read by the admin port at scrape time."""

    requests: Counter[str] = field(default_factory=Counter)
    """Finished requests by who answered: `model`, `fallback`, `tunnel` (Upgrade/CONNECT)."""
    passthrough: Counter[str] = field(default_factory=Counter)
    """Client connections tunnelled to the model uncaptured, by protocol, as they start: `h2c`
    (HTTP/2 cleartext, as gRPC speaks: with prior knowledge, or by `Upgrade: h2c`),
    `websocket`, `connect` (CONNECT), `other` (another Upgrade)."""
    upstream_errors: Counter[str] = field(default_factory=Counter)
    """Requests the model failed, by reason (a key of ERROR_STATUS)."""
    client_disconnects: int = 0
    """Clients that went away with a request in flight (its model request was dropped)."""
    bad_requests: int = 0
    """Requests that did not parse as HTTP/1.x (answered 400, connection closed)."""
    connections_closed: Counter[str] = field(default_factory=Counter)
    """Client connections the proxy closed for its limits, by reason: `url_too_long` (414),
    `headers_too_large`, `too_many_headers` (431), `header_timeout` (408, or closed without an
    answer if no byte came), `body_timeout` (408, or cut once the answer began), `send_timeout`
    (cut), `keepalive_timeout`, `max_connections`."""
    open_connections: int = 0
    """Client connections open now (a gauge)."""
    connection_limit: int = 0
    """Client connections served at once: `max_connections`, or fewer if the file-descriptor
    limit allows fewer (a gauge, set at start)."""
    retries: int = 0
    """Requests sent again because a reused keep-alive connection closed before any answer."""
    upstream_connects: int = 0
    """Connections opened to the model (keep-alive reuse keeps this low)."""
    observe_errors: int = 0
    """Exceptions raised by `Tap.observe` (swallowed: monitoring never fails a request)."""
    local_errors: int = 0
    """Exceptions raised by `Tap.local_response` (the model answered instead)."""
    local_too_large: int = 0
    """Requests the model answered because their body was too large to answer locally."""
    verdict_passed: Counter[str] = field(default_factory=Counter)
    """Model responses sent as they came although the tap wanted a verdict, by reason:
    `status_4xx` (the class of a non-2xx status), `no_body` (HEAD, 204, 304), `not_json` (a
    Content-Type other than JSON), `unframed` (a body the model ends by closing),
    `too_large` (over `capture_max`, or the request's body was), `error` (`verdict` raised)."""
    shadow_skipped: int = 0
    """Shadow requests not sent because `shadow_concurrency` were already in flight."""
    shadow_failed: int = 0
    """Shadow requests the model failed (not reported to the tap)."""
