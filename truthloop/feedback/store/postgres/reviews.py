"""The review queue: items queued with their records, answered under a row lock, leased once.

Leasing takes the items `FOR UPDATE SKIP LOCKED`: two replicas leasing at once each skip what
the other is taking, and one that waited on a row rechecks the lease on the row as committed,
so an item is never handed to two reviewers. The items a request's reviewers answer are read
`FOR UPDATE` (in id order, one order for every writer): two answers on one item apply one
after the other, neither losing the other's vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from truthloop.core import queue
from truthloop.core.records import Actual
from truthloop.feedback.store import codec
from truthloop.feedback.store.codec import ITEM_STATE_COLUMNS, to_json
from truthloop.feedback.store.interface import QueueStats, Registered, ReviewItem
from truthloop.feedback.store.postgres import connection, sql

QUEUE = f"""
INSERT INTO review_items (monitor_id, prediction_id, model_version, ts, queued, expires, reason,
                          pi)
{sql.rows(1, "int", "text", "text", "float8", "float8", "float8", "text", "float8")}
ON CONFLICT (monitor_id, prediction_id) DO NOTHING
"""
"""Queue the items in $1 (`codec.item_values`), skipping prediction ids queued already."""

NAMED = f"""
SELECT monitor_id, prediction_id, {ITEM_STATE_COLUMNS} FROM review_items
JOIN ({sql.rows(1, "int", "text")}) AS u(mid, pid) ON monitor_id = u.mid AND prediction_id = u.pid
ORDER BY id FOR UPDATE OF review_items
"""
"""The items named in $1 ([monitor id, prediction id]), locked."""

ANSWER = f"""
UPDATE review_items SET state = a.state, lease_until = a.lease_until, leased_to = a.leased_to,
    passed = a.passed, votes = a.votes
FROM ({sql.rows(1, "text", "float8", "text", "text", "text", "bigint")})
    AS a(state, lease_until, leased_to, passed, votes, id)
WHERE review_items.id = a.id
"""
"""Store the answered items in $1 (`codec.answered_values`)."""

LEASE = f"""
WITH picked AS (
    SELECT id FROM review_items
    WHERE {codec.LEASABLE.format("$1", "$3")} AND NOT (passed::jsonb ? $2)
    ORDER BY {codec.lease_order("review_items")} LIMIT $4
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE review_items SET lease_until = $5, leased_to = $2 FROM picked
    WHERE review_items.id = picked.id
    RETURNING review_items.*
)
{codec.leased("leased")} ORDER BY {codec.lease_order("r")}
"""
"""Lease up to $4 of monitor $1's open items to reviewer $2 at $3 until $5, with their records."""

EXPIRE = codec.EXPIRE_REVIEWS.format("$1", "$2")
STATS = codec.REVIEW_STATS.format("$1::float8", "$2::float8", "")
MONITOR_STATS = codec.REVIEW_STATS.format("$1::float8", "$2::float8", "monitor_id = $3 AND ")
UNQUEUE_GONE = codec.UNQUEUE_GONE.format("$1", "$2")


async def enqueue(conn: connection.Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """Queue a batch's selected records (`codec.queued_values`)."""
    if rows:
        await conn.execute(QUEUE, to_json(rows))


async def named(
    conn: connection.Conn, actuals: Sequence[Actual], monitors: Mapping[str, Registered]
) -> dict[tuple[int, str], queue.Item]:
    """The review items the reviewers' actuals name, locked, by (monitor id, prediction id)."""
    wanted = codec.named_items(actuals, monitors)
    if not wanted:
        return {}
    found = await conn.fetch(NAMED, to_json(wanted))
    return {(mid, pid): codec.item(*rest) for mid, pid, *rest in found}


async def answer(conn: connection.Conn, answered: Sequence[queue.Item]) -> None:
    """Store what the reviewers' answers left of their items."""
    if answered:
        await conn.execute(ANSWER, to_json([codec.answered_values(i) for i in answered]))


async def lease(
    conn: connection.Conn,
    monitor_id: int,
    reviewer: str,
    limit: int,
    now: float,
    lease_seconds: float,
) -> list[ReviewItem]:
    found = await conn.fetch(LEASE, monitor_id, reviewer, now, limit, now + lease_seconds)
    return [codec.review_item(*r) for r in found]


async def expire(conn: connection.Conn, now: float, limit: int) -> dict[int, int]:
    return codec.expired_by_monitor(await conn.fetch(EXPIRE, now, limit))


async def stats(
    conn: connection.Conn, now: float, monitor_id: int | None = None
) -> dict[int, QueueStats]:
    query = STATS if monitor_id is None else MONITOR_STATS
    return codec.queue_stats(await conn.fetch(query, *codec.stats_arguments(now, monitor_id)))
