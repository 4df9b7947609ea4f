"""The admin port's HTTP, spoken byte by byte over real connections on 127.0.0.1: what it answers
to each path and method, and that no client can make it hold or wait on it without bound (heads
and bodies, time, unread answers, connections)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from tests.support import http1
from tests.support.waiting import eventually
from truthloop.sidecar import admin, server

DEFAULTS = server.Limits()
QUICK = server.Limits(header_timeout=0.2, body_timeout=0.2, keepalive_timeout=0.2, send_timeout=0.2)
"""Limits whose time runs out within a test."""


@contextlib.asynccontextmanager
async def serving(
    routes: Mapping[bytes, server.Handler], limits: server.Limits = DEFAULTS
) -> AsyncIterator[server.Server]:
    running = await server.start(routes, "127.0.0.1", 0, limits)
    try:
        yield running
    finally:
        await running.close()


@contextlib.asynccontextmanager
async def connection(
    running: server.Server,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer(reader: asyncio.StreamReader, *, head: bool = False) -> http1.Message:
    async with asyncio.timeout(10):
        message = await http1.read_message(reader, request=False, bodyless=head)
    assert message is not None, "closed before answering"
    return message


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (what it sent before is read and dropped)."""
    async with asyncio.timeout(10):
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
    return True


def reason(message: http1.Message) -> str:
    body = json.loads(message.body)
    assert set(body) == {"error", "details"}
    return str(body["details"][0]["reason"])


def admin_routes() -> dict[bytes, server.Handler]:
    registry = CollectorRegistry()
    Counter("truthloop_sidecar_example", "An example.", registry=registry).inc(3)
    probe = admin.ModelProbe("127.0.0.1", 9, ttl=60.0)
    return admin.routes(registry, probe, lambda: {"refused": None})


async def test_each_path_and_method_is_answered_in_order_over_one_kept_alive_connection() -> None:
    requests = [
        http1.request("GET", "/healthz"),
        http1.request("GET", "/metrics?name[]=x"),
        http1.request("HEAD", "/metrics"),
        http1.request("GET", "/readyz"),
        http1.request("GET", "/nowhere"),
        http1.request("POST", "/metrics", body=b'{"a": 1}'),
        http1.request("GET", "/healthz"),
    ]
    async with serving(admin_routes()) as running, connection(running) as (reader, writer):
        writer.write(b"".join(requests))  # pipelined: answered one after the other
        health, metrics = await answer(reader), await answer(reader)
        head, ready = await answer(reader, head=True), await answer(reader)
        missing, refused, again = await answer(reader), await answer(reader), await answer(reader)
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
    assert health.header("Content-Type") == b"application/json"
    assert metrics.status == 200
    assert metrics.header("Content-Type") == CONTENT_TYPE_LATEST.encode()
    assert b"truthloop_sidecar_example_total 3.0" in metrics.body
    assert head.status == 200
    assert head.header("Content-Length") == metrics.header("Content-Length")
    assert head.body == b""
    assert ready.status == 503  # nothing listens on the model's port
    assert json.loads(ready.body)["capture"] == {"refused": None}
    assert (missing.status, reason(missing)) == (404, "not_found")
    assert (refused.status, reason(refused)) == (405, "method_not_allowed")
    assert refused.header("Allow") == b"GET, HEAD"
    assert (again.status, again.has("Connection")) == (200, False)


@pytest.mark.parametrize(
    "request_bytes",
    [
        http1.request("GET", "/healthz", version="1.0"),
        http1.request("GET", "/healthz", [(b"Connection", b"close")]),
    ],
    ids=["HTTP/1.0", "Connection: close"],
)
async def test_a_client_that_does_not_keep_the_connection_is_answered_then_closed(
    request_bytes: bytes,
) -> None:
    async with serving(admin_routes()) as running, connection(running) as (reader, writer):
        writer.write(request_bytes)
        health = await answer(reader)
        assert await closed(reader)
    assert health.status == 200
    assert health.header("Connection") == b"close"


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer() -> None:
    async with serving(admin_routes()) as running, connection(running) as (reader, writer):
        writer.write(http1.request("GET", "/readyz"))  # the probe takes a moment
        writer.write_eof()
        ready = await answer(reader)
        assert await closed(reader)
    assert ready.status == 503


async def test_a_failing_handler_is_a_500_and_the_connection_serves_on() -> None:
    async def broken() -> server.Answer:
        raise RuntimeError("a collector failed")

    routes = {**admin_routes(), b"/broken": broken}
    async with serving(routes) as running, connection(running) as (reader, writer):
        writer.write(http1.request("GET", "/broken") + http1.request("GET", "/healthz"))
        failed, health = await answer(reader), await answer(reader)
    assert failed.status == 500
    assert json.loads(failed.body) == {"error": "internal error", "details": []}
    assert health.status == 200


def field(name: bytes, size: int) -> tuple[bytes, bytes]:
    return name, b"x" * size


@pytest.mark.parametrize(
    ("request_bytes", "status", "why"),
    [
        (http1.request("GET", "/" + "a" * 9000), 414, "url_too_long"),
        (http1.request("GET", "/healthz", [field(b"X-%d" % i, 1) for i in range(101)]), 431,
         "too_many_headers"),
        (http1.request("GET", "/healthz", [field(b"X-%d" % i, 4000) for i in range(9)]), 431,
         "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\nX-Endless: " + b"x" * 200_000, 431, "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Endless: "
         + b"x" * 200_000, 431, "headers_too_large"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 400, "bad_request"),
        (http1.request("GET", "/healthz", body=b"x" * 70_000), 413, "body_too_large"),
        (http1.request("GET", "/healthz", chunks=[b"x" * 30_000] * 3), 413, "body_too_large"),
    ],
    ids=[
        "url", "fields", "header bytes", "endless field", "endless trailer", "not http", "body",
        "chunked body",
    ],
)  # fmt: skip
async def test_a_request_over_a_limit_is_refused_with_its_reason_and_the_connection_closed(
    request_bytes: bytes, status: int, why: str
) -> None:
    async with serving(admin_routes()) as running, connection(running) as (reader, writer):
        writer.write(http1.request("GET", "/healthz") + request_bytes)
        health, refused = await answer(reader), await answer(reader)
        assert await closed(reader)
    assert health.status == 200  # the request before is answered first
    assert (refused.status, reason(refused)) == (status, why)
    assert refused.header("Connection") == b"close"


@pytest.mark.parametrize(
    ("started", "why"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", "header_timeout"),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", "body_timeout"),
    ],
    ids=["head", "body"],
)
async def test_a_request_that_stops_coming_is_refused_408(started: bytes, why: str) -> None:
    async with serving(admin_routes(), QUICK) as running, connection(running) as (reader, writer):
        writer.write(started)
        refused = await answer(reader)
        assert await closed(reader)
    assert (refused.status, reason(refused)) == (408, why)


async def test_a_connection_without_a_request_is_closed_silently_new_or_kept_alive() -> None:
    async with serving(admin_routes(), QUICK) as running:
        async with connection(running) as (reader, _):
            assert await reader.read() == b""
        async with connection(running) as (reader, writer):
            writer.write(http1.request("GET", "/healthz"))
            assert (await answer(reader)).status == 200
            assert await reader.read() == b""
        await eventually(lambda: not running.connections, "every connection gone")


async def test_past_the_connection_limit_the_one_waiting_longest_makes_room() -> None:
    limits = server.Limits(max_connections=2)
    async with (
        serving(admin_routes(), limits) as running,
        connection(running) as (first, _),
        connection(running) as (second, second_writer),
    ):
        await eventually(lambda: len(running.connections) == 2, "two connections")
        async with connection(running) as (third, writer):
            writer.write(http1.request("GET", "/healthz"))
            assert (await answer(third)).status == 200
            assert await closed(first)
            second_writer.write(http1.request("GET", "/healthz"))
            assert (await answer(second)).status == 200


async def test_answers_a_client_does_not_read_are_not_piled_up_and_it_is_cut() -> None:
    made: list[int] = []

    async def big() -> server.Answer:
        made.append(1)
        return server.Answer(200, b"x" * 1024 * 1024, "text/plain")

    limits = replace(QUICK, keepalive_timeout=60.0)
    async with serving({b"/big": big}, limits) as running, connection(running) as (_, writer):
        writer.write(http1.request("GET", "/big") * 100)  # and never read
        await eventually(lambda: not running.connections, "the connection cut", within=30)
    assert 0 < len(made) < 100
