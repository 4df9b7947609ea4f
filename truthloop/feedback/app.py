"""The aiohttp application: routes, the error and auth middlewares, and resource lifetimes.

`build(settings)` returns an app whose cleanup context opens the store, starts the engine (which
loads monitors and state) and its tick task, and closes everything in reverse on shutdown. The
store backend is chosen by `settings.store` (`truthloop.feedback.store.open_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from truthloop.feedback import api, exporter
from truthloop.feedback.engine import Engine
from truthloop.feedback.errors import ClientError, Unauthorized, detail
from truthloop.feedback.settings import Settings
from truthloop.feedback.store import open_store
from truthloop.feedback.store.interface import StoreUnavailable

log = logging.getLogger("truthloop.feedback")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})

RETRY_AFTER = 1
"""Seconds a client is told to wait (`Retry-After`) while the store is unavailable."""


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers JSON `{"error", "details"}`; only bugs are 500 (and logged).

    A store that is away is 503 with `Retry-After`: nothing of the request was stored (sidecars
    spool and retry).
    """
    try:
        return await handler(request)
    except StoreUnavailable as e:
        log.warning("store unavailable serving %s %s: %s", request.method, request.path, e)
        body = {
            "error": "the store is unavailable",
            "details": [detail("store", str(e), "store_unavailable").to_dict()],
        }
        response = api.json(body, status=503)
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    except ClientError as e:
        response = api.json(e.body(), status=e.status)
        if isinstance(e, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="truthloop"'
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise
        body = {
            "error": e.reason,
            "details": [detail("request", e.text or e.reason, "http").to_dict()],
        }
        return api.json(body, status=e.status)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return api.json({"error": "internal error", "details": []}, status=500)


def _auth(token: str | None) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = token.encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        """With a token configured, every write needs `Authorization: Bearer <token>`."""
        if expected is not None and request.method in WRITE_METHODS:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected
            ):
                raise Unauthorized(
                    "writes need a bearer token",
                    [detail("Authorization", "missing or wrong bearer token", "unauthorized")],
                )
        return await handler(request)

    return auth


def build(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors, _auth(settings.token)],
        client_max_size=settings.http.max_body_bytes,
    )
    engine = Engine(open_store(settings.store), settings)
    app[api.SETTINGS] = settings
    app[api.ENGINE] = engine
    app[exporter.REGISTRY] = exporter.registry(engine)
    app.add_routes(api.routes())
    app.router.add_get("/metrics", exporter.handler)
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
