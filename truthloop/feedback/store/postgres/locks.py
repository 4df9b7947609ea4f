"""Advisory locks: how the replicas of one deployment take turns on its schema.

The keys, and the NOTIFY channel, are derived from the schema's name: several deployments can
share a database in different schemas without contending. What each lock guards is said where
it is taken; the transaction-scoped ones are released at commit or rollback.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from truthloop.feedback.store.postgres import connection


@dataclass(frozen=True, slots=True)
class Keys:
    """Advisory-lock keys and the NOTIFY channel of one schema (deployments do not contend)."""

    channel: str
    migrate: int
    leader: int
    registry: int
    state: int
    intake: int
    labels: int
    fold: int

    @classmethod
    def of(cls, schema: str) -> Keys:
        def key(purpose: str) -> int:
            value = zlib.crc32(f"truthloop/{schema}/{purpose}".encode())
            return value - 2**32 if value >= 2**31 else value  # a signed int4

        return cls(
            channel=f"truthloop_{zlib.crc32(schema.encode()):08x}",
            migrate=key("migrate"),
            leader=key("leader"),
            registry=key("registry"),
            state=key("state"),
            intake=key("intake"),
            labels=key("labels"),
            fold=key("fold"),
        )


async def hold(conn: connection.Conn, key: int) -> None:
    """Hold the schema-wide lock `key` until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", key)


async def hold_monitors(
    conn: connection.Conn, key: int, monitor_ids: Sequence[int], *, shared: bool = False
) -> None:
    """Hold lock `key` of each monitor, in the order given (callers sort), until the transaction
    ends: `shared` beside other holders of the shared lock, else alone."""
    kind = "_shared" if shared else ""
    await conn.execute(
        f"SELECT pg_advisory_xact_lock{kind}($1, m) FROM unnest($2::int[]) AS m", key, monitor_ids
    )
