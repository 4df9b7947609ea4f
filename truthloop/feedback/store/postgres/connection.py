"""Connections to the database, and what losing one means.

Every write is one transaction (`Database.transaction`); a deadlock or serialization failure
reruns it (a few times, then `StoreUnavailable`). A call that cannot reach the database raises
`StoreUnavailable` (the service answers 503 with Retry-After). A transaction that broke before
its commit was sent is retried once on a fresh connection; one that broke during the commit is
not (its outcome is unknown; a client's retry is a duplicate or the same label again). The pool
replaces dead connections by itself, so the service recovers as soon as the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from truthloop.feedback.store.interface import StoreError, StoreUnavailable

T = TypeVar("T")

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection: one of its own (`connect`) or one the pool lends (a proxy with its methods)."""

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a new connection before calling the database unavailable."""
ATTEMPTS = 4
"""Runs of a transaction that keeps meeting deadlocks or serialization failures."""

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection lost mid-call
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, restart, cancel
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.InterfaceError,  # a connection that is closed or was never opened
)
"""Errors that mean "the database is away", not "this request is wrong"."""
RETRY: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


class Database:
    """A DSN's pool of connections for requests, and the single connections a replica keeps to
    itself (migrating, leading, listening)."""

    def __init__(self, dsn: str, pool_size: int) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def connect(self, **settings: str) -> asyncpg.Connection:
        """A connection of its own, outside the pool, with these server settings."""
        try:
            return await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT, server_settings=settings or None
            )
        except UNAVAILABLE as e:
            raise unavailable(e) from e
        except asyncpg.PostgresError as e:  # refused: credentials, database, settings
            raise StoreError(f"the database refused the connection: {e}") from e

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            timeout=CONNECT_TIMEOUT,
            reset=_stateless,
        )

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), CONNECT_TIMEOUT)
            except UNAVAILABLE:  # TimeoutError among them
                self._pool.terminate()
            self._pool = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; the driver tripping over its loss mid-call is a lost connection.

        A connection that fails to reset on release is terminated by the pool, which opens a new
        one when needed: that is not the caller's failure (its work is done).
        """
        conn = await self.pool.acquire()
        try:
            yield conn
        except asyncpg.exceptions.InternalClientError as e:
            if conn.is_closed():
                raise ConnectionResetError(str(e)) from e
            raise
        finally:
            with contextlib.suppress(asyncpg.exceptions.InternalClientError, *UNAVAILABLE):
                await self.pool.release(conn)

    async def transaction(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(conn, *args)` in one transaction, rerun on deadlock or a connection lost early."""
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                async with self.connection() as conn, conn.transaction():
                    result = await fn(conn, *args)
                    committing = True
                return result
            except RETRY as e:
                if attempt >= ATTEMPTS:
                    raise StoreUnavailable(f"the database kept aborting the write: {e}") from e
            except UNAVAILABLE as e:
                if committing or attempt > 1:
                    raise unavailable(e) from e

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(conn, *args)` on a pooled connection, tried twice (a pooled one may have died)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.connection() as conn:
                    return await fn(conn, *args)
            except UNAVAILABLE as e:
                if attempt > 1:
                    raise unavailable(e) from e

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """The rows of one read statement."""
        return await self.read(_fetch, sql, *args)


def unavailable(error: BaseException) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    return StoreUnavailable(f"the database is unavailable: {str(error) or type(error).__name__}")


async def close(conn: asyncpg.Connection) -> None:
    """Close a connection of its own; one that does not answer is cut."""
    try:
        await conn.close(timeout=CONNECT_TIMEOUT)
    except UNAVAILABLE:  # TimeoutError among them
        conn.terminate()


async def _stateless(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release: nothing beyond the driver's own rollback.

    Pooled connections keep no session state (no settings, cursors, LISTENs; `hold_state`
    releases its lock itself), so the server-side reset would only cost a round trip.
    """


async def _fetch(conn: Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
    return await conn.fetch(sql, *args)
