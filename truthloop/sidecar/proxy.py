"""The sidecar's data path: a lean HTTP/1.1 reverse proxy in front of the model.

`start_proxy(settings, tap)` listens and forwards every request to the model over a keep-alive
pool, reporting each finished exchange to `tap` (see `exchange.Tap`). It is built on
`asyncio.Protocol` and httptools (llhttp) rather than aiohttp because it sits in front of every
prediction: no coroutine, task or stream object per request, headers copied once, one send per
read in each direction. Run it under uvloop (`uvloop.run`); asyncio's own loop works too.

The behaviour per request is described in `downstream`; model connections in `upstream`.
Errors of the model become 502 (`model_unreachable`, `model_closed`, `bad_response`) or 504
(`model_timeout`) with a JSON body, counted in `stats.upstream_errors`. Clients are held to the
settings' head limits (414, 431), head, keep-alive and body timeouts (408, closed), send timeout
(cut) and connection cap, counted in `stats.connections_closed`; a refused request never reaches
the model. At start the process's file-descriptor limit is fitted to the cap (`descriptors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from dataclasses import dataclass

from truthloop.sidecar import descriptors, downstream
from truthloop.sidecar.context import Context
from truthloop.sidecar.exchange import Tap
from truthloop.sidecar.stats import ProxyStats
from truthloop.sidecar.upstream import Pool

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ProxySettings:
    listen_host: str = "0.0.0.0"
    """Address the proxy listens on."""
    listen_port: int = 8080
    """Port the proxy listens on; 0 lets the OS choose (see `Proxy.port`)."""
    model_host: str = "127.0.0.1"
    """The model's address (in the pod: localhost)."""
    model_port: int = 9000
    """The model's port."""
    model_timeout: float | None = None
    """Seconds the model has for a whole response, from the request being forwarded; None: no
    limit. Past it the client gets 504 (or, if the head was already sent, a cut connection)."""
    capture_max_bytes: int = 1 * MiB
    """Largest request or response body kept for the tap; a larger one still passes through and
    is reported with bodies None and skip_reason `body_too_large`."""
    pool_size: int = 64
    """Idle keep-alive connections to the model kept open (busy ones are not capped)."""
    shadow_concurrency: int = 8
    """Shadow calls to the model in flight at most; beyond, they are skipped and counted."""
    backlog: int = 1024
    """Listen backlog."""
    max_url_bytes: int = 8 * KiB
    """Longest request target (the URL) taken; a longer one is answered 414 (`url_too_long`)."""
    max_header_bytes: int = 32 * KiB
    """Largest request header section taken, each field counted as `Name: value` and CRLF; a
    larger one is answered 431 (`headers_too_large`). Bounds a chunked request's trailers too."""
    max_header_fields: int = 100
    """Most header fields a request may have; more is answered 431 (`too_many_headers`)."""
    header_timeout: float = 60.0
    """Seconds a client has to send a whole request head, from connecting or from the first byte
    after an idle keep-alive wait; then it gets 408 (or, if it sent nothing, is closed)."""
    keepalive_timeout: float = 75.0
    """Seconds a keep-alive connection may wait idle for its next request before it is closed."""
    body_timeout: float = 60.0
    """Seconds a client may send no byte of a request body it has begun (between two reads, not
    for the whole body); then it gets 408 (`body_timeout`), or, if the answer began, is cut.
    Not counted while the proxy holds the body back or the client waits for `100 Continue`."""
    send_timeout: float = 60.0
    """Seconds a client may read nothing of what the proxy has for it (between two reads, not for
    the whole answer) once its writes are paused; then it is cut (`send_timeout`)."""
    max_connections: int = 1024
    """Client connections open at once; at the limit the longest-idle keep-alive connection is
    closed to make room, and if none is idle the new connection is closed at once. Fewer, if the
    process may not open about twice as many file descriptors (see `descriptors`)."""

    def __post_init__(self) -> None:
        for name in ("max_url_bytes", "max_header_bytes", "max_header_fields", "max_connections"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: expected 1 or more, got {getattr(self, name)}")
        for name in ("header_timeout", "keepalive_timeout", "body_timeout", "send_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise SettingsError(f"{name}: expected seconds above 0, got {getattr(self, name)}")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the field."""


def model_address(url: str) -> tuple[str, int]:
    """(host, port) of a model URL like `http://127.0.0.1:9000`, or SettingsError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http":
        raise SettingsError(f"model: only http:// is supported, got {url!r}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise SettingsError(f"model: a URL without a path is expected, got {url!r}")
    try:
        port = parsed.port or 80
    except ValueError as e:
        raise SettingsError(f"model: bad port in {url!r}") from e
    if not parsed.hostname:
        raise SettingsError(f"model: no host in {url!r}")
    return parsed.hostname, port


class Proxy:
    """A running proxy. `stats` are its counters; `close()` stops it."""

    def __init__(self, server: asyncio.Server, ctx: Context[downstream.Downstream]) -> None:
        self._server = server
        self._ctx = ctx
        self.stats: ProxyStats = ctx.stats
        self.port: int = server.sockets[0].getsockname()[1]
        """The port it listens on (the OS's choice when settings asked for 0)."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes the proxy holds in write buffers towards clients and the model right now; flow
        control keeps this near a read's worth per connection however slow either side is."""
        total = 0
        for conn in self._ctx.connections:
            total += conn.transport.get_write_buffer_size() if conn.transport else 0
            up = conn.queue[0].up if conn.queue else None
            if up is not None and up.transport is not None:
                total += up.transport.get_write_buffer_size()
        return total

    @property
    def paused(self) -> int:
        """Connections (either side) not being read now because the other side is behind."""
        count = 0
        for conn in self._ctx.connections:
            count += conn.reading_paused
            up = conn.queue[0].up if conn.queue else None
            count += up is not None and up.reading_paused
        return count

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish for up to `grace` seconds, then cut
        what is left; idle keep-alive connections are closed at once, busy ones after their
        response (which says `Connection: close`)."""
        ctx = self._ctx
        ctx.closing = True
        ctx.drained = asyncio.Event()
        self._server.close()
        for conn in list(ctx.connections):
            if not conn.queue:
                conn.close_soon()
        if ctx.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.drained.wait(), grace)
        for conn in list(ctx.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for shadow in list(ctx.shadows):
            shadow.drop_call()
        ctx.shadows.clear()
        ctx.pool.close()
        ctx.stop_sweeping()
        await self._server.wait_closed()


async def start_proxy(settings: ProxySettings, tap: Tap) -> Proxy:
    """Listen per `settings` and forward to the model, reporting to `tap`."""
    loop = asyncio.get_running_loop()
    stats = ProxyStats()
    stats.connection_limit = descriptors.fit_process(
        settings.max_connections, settings.pool_size, settings.shadow_concurrency
    )
    pool = Pool(loop, settings.model_host, settings.model_port, settings.pool_size, stats)
    ctx: Context[downstream.Downstream] = Context(
        loop,
        tap,
        pool,
        stats,
        capture_max=settings.capture_max_bytes,
        model_timeout=settings.model_timeout,
        shadow_limit=settings.shadow_concurrency,
        max_url_bytes=settings.max_url_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_header_fields=settings.max_header_fields,
        header_timeout=settings.header_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        body_timeout=settings.body_timeout,
        send_timeout=settings.send_timeout,
        max_connections=stats.connection_limit,
        refusals=downstream.refusal_responses(
            settings.max_url_bytes,
            settings.max_header_bytes,
            settings.max_header_fields,
            settings.header_timeout,
            settings.body_timeout,
        ),
    )
    server = await loop.create_server(
        lambda: downstream.Downstream(ctx),
        settings.listen_host,
        settings.listen_port,
        backlog=settings.backlog,
        reuse_address=True,
    )
    ctx.start_sweeping()
    return Proxy(server, ctx)
