"""A PostgreSQL server for the tests: a fresh schema per test, and ways to take the database away.

The server is `TRUTHLOOP_TEST_PG` (default `postgresql://postgres@127.0.0.1:5432/test`). Where
none is reachable the PostgreSQL tests skip, saying how to point them at one; with `CI` set they
fail instead, because CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("TRUTHLOOP_TEST_PG", DEFAULT_URL)


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def admin() -> asyncpg.Connection:
    """A connection to the test server, or skip (fail in CI) when there is none."""
    url = server_url()
    try:
        return await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        message = (
            f"no PostgreSQL server at {url} ({str(e) or type(e).__name__}); point the tests at one"
            " with TRUTHLOOP_TEST_PG=postgresql://user@host:port/db"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A store URL whose tables live in a new schema of their own, dropped afterwards.

    The URL also names the test's connections (`application_name`), so a test can kill them.
    """
    conn = await admin()
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield with_query(server_url(), search_path=schema, application_name=schema)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def kill_connections(application_name: str) -> int:
    """`pg_terminate_backend` every server process of the store's connections; how many."""
    conn = await admin()
    try:
        return await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application_name,
        )
    finally:
        await conn.close()


class Outage:
    """A TCP relay in front of the server that can refuse connections: the database "away".

    `cut()` drops every relayed connection and refuses new ones until `restore()`.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
