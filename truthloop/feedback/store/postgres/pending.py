"""Pending actuals: those that labeled no record yet wait here, for a batch that brings one.

A batch takes the pending actuals it joins `FOR UPDATE`, so two batches never both join one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from truthloop.core import plan
from truthloop.core.records import PredictionRecord
from truthloop.feedback.store import codec
from truthloop.feedback.store.codec import PENDING_COLUMNS, to_json
from truthloop.feedback.store.interface import Registered
from truthloop.feedback.store.postgres import connection, sql

JOIN = f"""
SELECT {PENDING_COLUMNS} FROM pending
WHERE monitor_id = $1
    AND (prediction_id = ANY({sql.array(2, "text")}) OR entity_id = ANY({sql.array(3, "text")}))
    AND (EXISTS (SELECT FROM pending WHERE monitor_id = $1 AND prediction_id IS NOT NULL)
        OR EXISTS (SELECT FROM pending WHERE monitor_id = $1 AND entity_id IS NOT NULL))
ORDER BY id FOR UPDATE
"""
"""The pending actuals of monitor $1 that name one of the ids $2 or entities $3, locked.

The `EXISTS` gate (every pending actual has an id or an entity) is a one-time filter: while
none waits for the monitor, the usual case, the server neither builds the batch's arrays nor
probes the indexes with them (sorting them by the collation first)."""

INSERT = f"""
INSERT INTO pending (monitor_id, prediction_id, entity_id, tag, ts, actual, vote, expires)
{sql.rows(1, "int", "text", "text", "text", "float8", "text", "text", "float8")}
"""

LABELED = f"""
UPDATE pending SET labeled = u.labeled FROM ({sql.rows(1, "bigint", "text")}) AS u(id, labeled)
WHERE pending.id = u.id
"""
"""Note what pending actuals that wait on labeled so far."""

EXPIRE = """
WITH gone AS (DELETE FROM pending WHERE expires <= $1 RETURNING monitor_id, labeled)
SELECT monitor_id, count(*) FROM gone WHERE labeled IS NULL GROUP BY monitor_id
"""
"""Delete the pending actuals expired at $1; per monitor, how many of them labeled nothing."""


async def waiting(
    conn: connection.Conn,
    batch: Sequence[PredictionRecord],
    monitors: Mapping[str, Registered],
) -> dict[int, list[plan.Waiting]]:
    """Per monitor id, the pending actuals that name a record of `batch`, locked, oldest first
    (monitors none waits for are left out)."""
    found = {}
    for key, part in plan.by_monitor(batch).items():
        registered = monitors[key]
        rows = await conn.fetch(
            JOIN,
            registered.id,
            to_json([r.prediction_id for r in part]),
            to_json(sorted({r.entity_id for r in part if r.entity_id is not None})),
        )
        if rows:
            found[registered.id] = [codec.waiting(registered.monitor.key, *w) for w in rows]
    return found


async def write(conn: connection.Conn, result: plan.Plan) -> None:
    """Store a plan's pending actuals: the new ones, the finished ones gone, and what the ones
    that wait on labeled."""
    if result.waiting:
        await conn.execute(INSERT, to_json([codec.pending_values(p) for p in result.waiting]))
    if result.done:
        await conn.execute("DELETE FROM pending WHERE id = ANY($1::bigint[])", result.done)
    if result.partly:
        await conn.execute(
            LABELED, to_json([(ref, to_json(labeled)) for ref, labeled in result.partly])
        )


async def expire(conn: connection.Conn, now: float) -> dict[int, int]:
    """Delete the pending actuals expired at `now`; per monitor id, how many never labeled."""
    return {mid: n for mid, n in await conn.fetch(EXPIRE, now)}
