"""The values the proxy hands to whoever watches it, and the `Tap` it hands them to.

The proxy knows nothing about specs, capture or the fallback. It reports every finished exchange
to a `Tap`; while `tap.wants_local` is set, it asks the tap whether it answers a request itself;
while `tap.wants_verdict` is set, it holds the model's response and asks the tap whether to send
another in its place (the abstain of human review). Capture, the fallback and the abstain sit
behind this one interface.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

Headers = tuple[tuple[bytes, bytes], ...]
"""Header fields in wire order, names as sent (compare them case-insensitively)."""


class Exchange(NamedTuple):
    """One finished request/response pair, reported after the response was fully written.

    A NamedTuple, immutable like a frozen dataclass, because one is built per request: a frozen
    dataclass's `__init__` pays an `object.__setattr__` call per field, a tuple none.
    """

    prediction_id: str
    """UUIDv7; also sent to the client as `X-Prediction-ID` on 2xx responses."""
    method: str
    path: str
    """The request target as the client sent it, query included."""
    request_headers: Headers
    """The header fields as the client sent them."""
    request_body: bytes | None
    """None when not kept (see `skip_reason`)."""
    status: int
    response_headers: Headers
    """The header fields as the proxy sent them to the client."""
    response_body: bytes | None
    """None when not kept (see `skip_reason`)."""
    served_by: str
    """"model" or "fallback"."""
    shadow: bool
    """True: the model's answer, computed off the request path while the fallback answered."""
    started: float
    """Wall-clock Unix seconds when the request head arrived."""
    model_seconds: float | None
    """From forwarding the request to the model's last response byte; None if not asked."""
    total_seconds: float
    """From the request head arriving to the last response byte written."""
    skip_reason: str | None
    """Why the bodies were not kept: `body_too_large`, `upgrade`; None when both were kept."""
    abstained: bool
    """The tap's `verdict` answered the client in the model's place; `status`, the response
    headers and body are still the model's (its prediction, which a reviewer needs)."""


class LocalResponse(NamedTuple):
    """A response the tap makes without the model (the fallback's answer); one per local answer,
    hence a NamedTuple (see `Exchange`)."""

    status: int
    headers: Headers
    """Sent as given, after which the proxy adds Content-Length and its own headers."""
    body: bytes


class Tap(Protocol):
    """What the proxy reports to and asks; every member is used on the request path, so cheap."""

    @property
    def wants_local(self) -> bool:
        """Read per request: True makes the proxy read the body whole and call `local_response`."""
        ...

    @property
    def shadow(self) -> bool:
        """True: after a local answer, also send the request to the model off the request path and
        report that exchange too (`served_by="model"`, `shadow=True`, the same prediction_id)."""
        ...

    def local_response(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        """The answer to send instead of asking the model, or None to ask the model."""
        ...

    @property
    def wants_verdict(self) -> bool:
        """Read per request the model answers (never for a shadow call or a tunnel): True makes
        the proxy hold the model's response — only a 2xx one with a JSON (or no) Content-Type
        and a body delimited by Content-Length or chunking that fits `capture_max`; any other is
        sent as it comes, the reason counted in `ProxyStats.verdict_passed` — and call `verdict`
        once it is whole, before any byte of it reaches the client."""
        ...

    def verdict(
        self, prediction_id: str, status: int, headers: Headers, body: bytes
    ) -> LocalResponse | None:
        """The answer to send instead of the model's whole response, or None to send it. The
        proxy adds Content-Length, `X-Prediction-ID` (whatever the status) and its own fields;
        an exception sends the model's response (counted as `verdict_passed{reason="error"}`)."""
        ...

    def observe(self, exchange: Exchange) -> None:
        """Take a finished exchange; must not block. Exceptions are swallowed and counted."""
        ...
