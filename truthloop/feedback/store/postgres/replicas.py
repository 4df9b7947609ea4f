"""Replicas on one database: one leads, one at a time changes a monitor's state, all hear it.

Exactly one replica leads (`Leader`): it holds a session-level advisory lock on a connection of
its own, checked on every tick; when that connection or its process dies the lock is released
and the next replica to tick takes it. `hold_state` serializes read-modify-write of a monitor's
state across replicas (a session advisory lock per monitor). Every write of monitors or state
sends `pg_notify` in its transaction (`notify`); each replica LISTENs on a connection of
its own (re-opened when lost, after which it tells its watchers to reread everything) and tells
its watchers what the others changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from truthloop.feedback.store import codec
from truthloop.feedback.store.interface import StoredState, StoreError
from truthloop.feedback.store.postgres import connection

log = logging.getLogger("truthloop.feedback.store")

LEAD_CHECK_TIMEOUT = 2.0
"""A leader whose connection does not answer this fast gives up leading."""
RELISTEN_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Seconds between attempts to re-open the LISTEN connection (the last one repeats)."""
_LOST: tuple[type[BaseException], ...] = (StoreError, *connection.UNAVAILABLE)
"""What makes a leader give up leading: its connection refused, lost or silent."""


class Leader:
    """This replica's claim to lead: the `key` session lock, held on a connection of its own."""

    def __init__(self, db: connection.Database, key: int) -> None:
        self._db = db
        self._key = key
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self.leading = False
        """Whether this replica led at its last `try_lead`."""

    async def try_lead(self) -> bool:
        async with self._lock:
            return await self._try_lead()

    async def _try_lead(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self.leading = False
                # The server drops a silent leader's session (and lock) within ~10 s.
                self._conn = await self._db.connect(
                    tcp_keepalives_idle="5", tcp_keepalives_interval="2", tcp_keepalives_count="3"
                )
            if self.leading:
                await self._conn.execute("SELECT 1", timeout=LEAD_CHECK_TIMEOUT)
            else:
                self.leading = bool(
                    await self._conn.fetchval(
                        "SELECT pg_try_advisory_lock($1, 0)", self._key, timeout=LEAD_CHECK_TIMEOUT
                    )
                )
        except _LOST:
            if self._conn is not None:
                self._conn.terminate()
            self._conn, self.leading = None, False
        return self.leading

    async def close(self) -> None:
        if self._conn is not None:
            await connection.close(self._conn)
        self._conn, self.leading = None, False


class Listener:
    """Hears the other replicas' changes on `channel` (LISTEN, on a connection of its own) and
    calls `heard`; a notification marked `replica` is this one's own (`notify`)."""

    def __init__(
        self, db: connection.Database, channel: str, replica: str, heard: Callable[[], None]
    ) -> None:
        self._db = db
        self._channel = channel
        self._replica = replica
        self._heard = heard
        self._conn: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False

    async def open(self) -> None:
        conn = await self._db.connect()
        try:
            await conn.add_listener(self._channel, self._notified)
        except connection.UNAVAILABLE as e:
            conn.terminate()
            raise connection.unavailable(e) from e
        conn.add_termination_listener(self._lost)
        self._conn = conn

    async def close(self) -> None:
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
        if self._conn is not None:
            await connection.close(self._conn)
        self._conn = None

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if payload != self._replica:
            self._heard()

    def _lost(self, conn: Any) -> None:
        if not self._closing and self._relisten is None:
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Re-open the LISTEN connection; what was said meanwhile is lost, so reread it all."""
        try:
            for attempt in itertools.count():
                try:
                    await self.open()
                    break
                except StoreError as e:
                    log.warning("cannot LISTEN for other replicas' changes yet: %s", e)
                    await asyncio.sleep(RELISTEN_DELAYS[min(attempt, len(RELISTEN_DELAYS) - 1)])
        finally:
            self._relisten = None
        self._heard()


async def notify(conn: connection.Conn, channel: str, replica: str) -> None:
    """Tell the other replicas (at commit) that monitors or their state changed; `replica`
    marks it as this replica's, which its own listener ignores."""
    await conn.execute("SELECT pg_notify($1, $2)", channel, replica)


@contextlib.asynccontextmanager
async def hold_state(
    db: connection.Database, key: int, monitor_id: int
) -> AsyncIterator[StoredState | None]:
    """A monitor's stored state, no other replica holding it meanwhile (session lock `key` of
    the monitor, on a pooled connection: it releases the lock itself)."""
    try:
        async with db.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", key, monitor_id)
            try:
                found = await conn.fetchrow(
                    "SELECT version, state, external, override FROM states WHERE monitor_id = $1",
                    monitor_id,
                )
                yield None if found is None else stored_state(*found)
            finally:
                if not conn.is_closed():  # (a pooled connection holds no other)
                    await conn.execute("SELECT pg_advisory_unlock_all()")
    except connection.UNAVAILABLE as e:
        raise connection.unavailable(e) from e


def stored_state(version: int, state: str, external: str, override: str | None) -> StoredState:
    return StoredState(version, codec.decode(state), tuple(codec.decode(external)), override)
