"""Capture records: a batch COPYed, or upserted when it holds a known key; retention.

A batch is COPYed into the table, the cheapest way in for the server; a known key fails the COPY,
and the caller reruns the batch as one multi-row `INSERT … SELECT … ON CONFLICT DO NOTHING
RETURNING` (a known key is a duplicate). The ids of COPYed records are looked up only when the
batch labels some (a pending actual names one, or a late record gets the assumed label). A
record's label is a row of its own (`labels`), so labeling never rewrites a record and its
features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from truthloop.core.records import PredictionRecord
from truthloop.feedback.store.codec import PREDICTION_COLUMNS, to_json
from truthloop.feedback.store.postgres import connection, sql

_LISTED = ", ".join(PREDICTION_COLUMNS)
_BATCH = sql.rows(
    1,
    "int",
    "int",
    *("text",) * 5,
    "float8",
    "text",
    "float8",
    "text",
    "float8",
    "float8",
    "float8",
    "text",
    "text",
    "bool",
    "text",
    "text",
)
"""A batch of predictions: its index, then the table's `PREDICTION_COLUMNS` (prediction and
features as JSON text)."""

UPSERT = f"""
WITH batch AS ({_BATCH}
), added AS (
    INSERT INTO predictions ({_LISTED})
    SELECT {_LISTED} FROM batch AS b(i, {_LISTED})
    ON CONFLICT (monitor_id, prediction_id, served_by) DO NOTHING
    RETURNING id, monitor_id, prediction_id, served_by
)
SELECT b.i, added.id FROM added
JOIN batch AS b(i, monitor_id, prediction_id, served_by)
    ON (b.monitor_id, b.prediction_id, b.served_by)
        = (added.monitor_id, added.prediction_id, added.served_by)
ORDER BY b.i
"""
"""Insert a batch (its rows led by their index); (index, id) of the rows that were new, in
request order (a known key is a duplicate)."""

REFS = f"""
SELECT u.i, p.id FROM ({sql.rows(1, "int", "int", "text", "text")}) AS u(i, mid, pid, sb)
JOIN predictions p ON p.monitor_id = u.mid AND p.prediction_id = u.pid AND p.served_by = u.sb
"""
"""(index, id) of the records in $1 (index, monitor_id, prediction_id, served_by)."""

DELETE = """
WITH gone AS (
    DELETE FROM predictions WHERE id = ANY(ARRAY(
        SELECT id FROM predictions WHERE monitor_id = $1 AND ts < $2 ORDER BY ts LIMIT $3))
    RETURNING id
), unlabeled AS (
    DELETE FROM labels WHERE prediction_ref IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone
"""
"""Up to $3 of a monitor's oldest records before $2, with their labels; how many records."""


async def insert(
    conn: connection.Conn, rows: Sequence[tuple[Any, ...]], copy: bool
) -> tuple[Sequence[int], dict[int, int] | None]:
    """Store a batch's rows (`codec.prediction_values`): the indexes of those stored, and batch
    index -> id of each (None: not looked up).

    With `copy` by COPY, which stores all or fails on a known key (`UniqueViolationError`: the
    caller reruns the batch without `copy`), else by the upsert, which skips known keys.
    """
    if copy:
        await conn.copy_records_to_table("predictions", records=rows, columns=PREDICTION_COLUMNS)
        return range(len(rows)), None
    stored = await conn.fetch(UPSERT, to_json([(i, *row) for i, row in enumerate(rows)]))
    ids = {index: record_id for index, record_id in stored}
    return list(ids), ids


async def refs(
    conn: connection.Conn, records: Sequence[PredictionRecord], mids: Sequence[int]
) -> dict[int, int]:
    """Batch index -> id of the batch's records (just COPYed: each is stored)."""
    keys = [
        (i, mid, r.prediction_id, r.served_by)
        for i, (r, mid) in enumerate(zip(records, mids, strict=True))
    ]
    return {index: record_id for index, record_id in await conn.fetch(REFS, to_json(keys))}


async def delete(conn: connection.Conn, monitor_id: int, before: float, limit: int) -> int:
    """Delete up to `limit` of a monitor's oldest records from before `before`, with their
    labels, oldest first (a chunk touches only the rows it removes); how many records."""
    deleted: int = await conn.fetchval(DELETE, monitor_id, before, limit)
    return deleted
