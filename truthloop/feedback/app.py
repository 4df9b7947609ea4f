"""The aiohttp application: routes, the error and auth middlewares, and resource lifetimes.

`build(settings)` returns an app whose cleanup context opens the store, starts the engine (which
loads monitors and state) and its tick task, and closes everything in reverse on shutdown. The
store backend is chosen by `settings.store` (`truthloop.feedback.store.open_store`). Serve it
with `Runner`, so that requests aiohttp refuses before the app sees them (an unknown method, a
head too long, a content coding it cannot decode) are answered in the same JSON error shape.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.typedefs import Middleware

from truthloop.core import scopes
from truthloop.core.records import Reason
from truthloop.feedback import api, exporter, refusals, ui
from truthloop.feedback.engine import Engine
from truthloop.feedback.errors import (
    ClientError,
    Forbidden,
    Unauthorized,
    UnsupportedEncoding,
    body,
    detail,
    refused,
)
from truthloop.feedback.settings import Settings
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import StoreUnavailable

log = logging.getLogger("truthloop.feedback")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

MONITOR_HEADER = "X-Truthloop-Monitor"
"""The monitor a sidecar's capture batch is for."""
PREDICTIONS_PATH = "/v1/predictions"

RETRY_AFTER = 1
"""Seconds a client is told to wait (`Retry-After`) while the store is unavailable."""


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers JSON `{"error", "details"}`; only bugs are 500 (and logged).

    What the engine refuses is answered as `errors.refused` says. A store that is away is 503
    with `Retry-After`: nothing of the request was stored (sidecars spool and retry).
    """
    try:
        return await handler(request)
    except StoreUnavailable as e:
        log.warning("store unavailable serving %s %s: %s", request.method, request.path, e)
        details = [detail("store", str(e), "store_unavailable")]
        response = api.json(body("the store is unavailable", details), status=503)
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    except ClientError as e:
        return api.json(e.body(), status=e.status, headers=e.headers)
    except refusals.Refused as e:
        answer = refused(e)
        return api.json(answer.body(), status=answer.status, headers=answer.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        details = [detail("request", e.text or e.reason, "http")]
        return api.json(body(e.reason, details), status=e.status)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return api.json(body("internal error", []), status=500)


def _auth(token: str | None) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        """With an admin token configured, every write needs `Authorization: Bearer <token>`
        (KServe's logger: Basic credentials, `_token`):
        the admin token, or a registered namespace token where its scope allows
        (`core.scopes`: capture, feedback, reference uploads, the review queue and backtests of its
        namespace's monitors, else 403). Reads need none, but those that lease review items.
        Without an admin token the service is open (every request is the admin's).

        A capture batch refused for its token names its monitor (`X-Truthloop-Monitor`): the
        monitor's state then says its capture is refused, which the operator shows as a
        condition.
        """
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        if token is None or not scopes.needs_token(request.method, route):
            request[api.SCOPE] = scopes.ADMIN
            return await handler(request)
        engine = request.app[api.ENGINE]
        given = _token(request)
        scope = None if given is None else await engine.scope(given)
        if scope is None:
            monitor = request.headers.get(MONITOR_HEADER)
            if monitor is not None and request.path == PREDICTIONS_PATH:
                engine.capture_refused(monitor, "unauthorized")
            raise Unauthorized(
                "writes need a bearer token",
                [detail("Authorization", "missing or wrong bearer token", "unauthorized")],
            )
        namespace = request.match_info.get("namespace")
        refusal = scopes.route_refusal(scope, request.method, route, namespace)
        if refusal is not None:
            raise Forbidden("this token may not do that", [refusal])
        request[api.SCOPE] = scope
        return await handler(request)

    return auth


CLOUDEVENTS_PATH = "/v1/cloudevents"


def _token(request: web.Request) -> str | None:
    """The request's token: `Authorization: Bearer <token>`, or on `POST /v1/cloudevents` also
    Basic credentials whose password is the token. KServe's logger sends no header of its own
    choosing, but Go's HTTP client sends the user and password of its URL as Basic credentials
    (`http://truthloop:<token>@truthloop-feedback...`)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return given.strip()
    if scheme.lower() == "basic" and request.path == CLOUDEVENTS_PATH:
        with contextlib.suppress(ValueError):
            return base64.b64decode(given.strip(), validate=True).decode().partition(":")[2]
    return None


_PROTOCOL_ERRORS: tuple[tuple[type[Exception], str, Reason], ...] = (
    (http_exceptions.ContentEncodingError, "Content-Encoding", "unsupported"),
    (http_exceptions.BadHttpMethod, "method", "bad_method"),
    (http_exceptions.LineTooLong, "head", "too_long"),
    (http_exceptions.InvalidURLError, "target", "bad_target"),
    (http_exceptions.BadStatusLine, "request line", "bad_request_line"),
    (http_exceptions.InvalidHeader, "headers", "bad_header"),
    (http_exceptions.TransferEncodingError, "Transfer-Encoding", "bad_framing"),
    (http_exceptions.ContentLengthError, "Content-Length", "bad_framing"),
)
"""aiohttp's parser errors, most specific first: the part of the request named, the reason."""


def _protocol_error(status: int, exc: BaseException | None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) for a request aiohttp refused before the app saw it."""
    if not isinstance(exc, http_exceptions.HttpProcessingError):
        return status, {}, body("internal error", [])
    unknown: tuple[str, Reason] = ("request", "bad_request")
    field, reason = next(
        ((f, r) for kind, f, r in _PROTOCOL_ERRORS if isinstance(exc, kind)), unknown
    )
    message = exc.message.split("\n", 1)[0].rstrip(": ") or "bad request"
    if isinstance(exc, http_exceptions.ContentEncodingError):
        error = UnsupportedEncoding("content coding not accepted", [detail(field, message, reason)])
        return error.status, dict(error.headers), error.body()
    return status, {}, body("bad HTTP request", [detail(field, message, reason)])


_CLIENT_FAILURES = (http_exceptions.HttpProcessingError, web.RequestPayloadError)
"""What aiohttp raises for a request it cannot parse, or a body that does not decode."""


class _Protocol(web.RequestHandler):
    """aiohttp's connection handler, answering its own refusals in the service's JSON shape.

    Those and the failures of a body that does not decode are the client's doing, so they are
    logged at debug level: a client sending garbage must not fill the logs.
    """

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info"), _CLIENT_FAILURES):
            self.logger.debug(*args, **kwargs)
        else:
            super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        self.log_exception("error serving %s %s", request.method, request.path, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response had begun: no error answer can follow")
        status, headers, answer = _protocol_error(status, exc)
        response = api.json(answer, status=status, headers=headers)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        # aiohttp has no public hook for the connection handler's class.
        return _Protocol(self, loop=self._loop, **self._kwargs)


STOP_TIMEOUT = 20.0
"""Seconds the requests in flight get to finish when the service stops: well inside Kubernetes'
default grace period of 30 s, so the store is closed before a SIGKILL could come."""


class Runner(web.AppRunner):
    """An AppRunner whose connections answer refused requests as JSON (`_Protocol`), and whose
    stop waits for no long-poll: a rolling update is not held for its grace period."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("shutdown_timeout", STOP_TIMEOUT)
        super().__init__(app, **kwargs)

    async def shutdown(self) -> None:
        """Answer the state long-polls at once and log what stopping waits for. aiohttp calls
        this once the sites stopped listening and idle connections are closed, before it waits
        for the requests in flight."""
        answered = self.app[api.ENGINE].end_long_polls()
        # aiohttp has no public word for a connection serving a request now.
        busy = (
            sum(1 for c in self.server.connections if c._request_in_progress) if self.server else 0
        )
        others = max(0, busy - answered)
        waits = (
            f"waiting up to {self._shutdown_timeout:g}s for {others} request(s) in flight"
            if others
            else "no other request in flight, nothing to wait for"
        )
        log.info("stopping: answered %d state long-poll(s) at once; %s", answered, waits)
        await super().shutdown()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def build(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors, _auth(settings.token)],
        client_max_size=settings.http.max_body_bytes,
        handler_args={"keepalive_timeout": settings.http.idle_timeout},
    )
    engine = Engine(open_store(settings.store), settings)
    app[api.SETTINGS] = settings
    app[api.ENGINE] = engine
    app[api.BACKTESTS] = asyncio.Semaphore(1)
    app[exporter.REGISTRY] = exporter.registry(engine)
    app.add_routes(api.routes())
    app.router.add_get("/metrics", exporter.handler)
    app.add_routes(ui.routes(ui.load()))
    app.cleanup_ctx.append(_lifetime)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    engine = app[api.ENGINE]
    store = engine.store
    await store.open()
    try:
        await engine.start()
        ticker = asyncio.create_task(engine.run(), name="truthloop-feedback-tick")
        try:
            yield
        finally:
            engine.stop()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    finally:
        await store.close()
