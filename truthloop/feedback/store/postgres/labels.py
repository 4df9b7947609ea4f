"""Labels, written optimistically: a batch reads each label's version and writes only over it.

The join reads records with their labels and each label's version (`xmin`), then COPYs the labels
of records that had none (another writer's label for one is a unique violation) and replaces the
others only where the version is unchanged (the `UPDATE` counts them). A batch that finds a label
moved under it reruns *alone* (`optimistically`): its monitors' *labels* advisory lock, which
writers hold shared, taken exclusive, so it reads after every writer before it committed and
nobody writes beside it; it then moves the aggregates by the difference from the label the other
left: no lost update. Locking the records instead (`FOR UPDATE`) costs every batch a heap write
per record and two statements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from truthloop.core import join
from truthloop.core.join import Row
from truthloop.core.records import Actual
from truthloop.feedback.store import codec
from truthloop.feedback.store.codec import ROW_COLUMNS, to_json
from truthloop.feedback.store.interface import Registered
from truthloop.feedback.store.postgres import connection, locks, sql

T = TypeVar("T")

LABELED = "predictions LEFT JOIN labels ON prediction_ref = id"
"""Records with their labels (a label's columns are NULL while it has none)."""

VERSIONED_ROW = f"{ROW_COLUMNS}, labels.xmin::text"
"""A record as the join reads it, and its label's version (the xid that wrote it; NULL without a
label): a relabel applies only while the label is still that version."""

FIND = f"""
SELECT u.i, {VERSIONED_ROW} FROM ({sql.rows(1, "int", "int", "text")}) AS u(i, mid, pid)
JOIN ({LABELED}) ON monitor_id = u.mid AND prediction_id = u.pid
UNION ALL
SELECT u.i, {VERSIONED_ROW}
FROM ({sql.rows(2, "int", "int", "text", "text", "float8", "float8")})
    AS u(i, mid, entity, wanted_tag, lo, hi)
JOIN ({LABELED}) ON monitor_id = u.mid AND entity_id = u.entity
    AND ts >= u.lo AND ts <= u.hi AND tag IS NOT DISTINCT FROM u.wanted_tag
"""
"""(actual index, record with its label) of every record an actual could label: by id, or
entity in span."""

COLUMNS = ("prediction_ref", "actual", "vote", "assumed", "reviewer", "correct", "labeled_at")

RELABEL = f"""
UPDATE labels SET actual = n.actual, vote = n.vote, assumed = n.assumed, reviewer = n.reviewer,
    correct = n.correct, labeled_at = n.labeled_at
FROM ({sql.rows(1, "bigint", "text", "text", "text", "bool", "text", "bool", "float8")})
    AS n(ref, version, actual, vote, assumed, reviewer, correct, labeled_at)
WHERE prediction_ref = n.ref AND labels.xmin = n.version::xid
"""
"""Replace labels that are still the version the join read (one another writer changed is
skipped: the caller counts)."""

Versioned = tuple[Row, str | None]
"""A record as the join read it, and its label's version (None: it had no label)."""


class Relabeled(Exception):
    """A label changed between the join's read and its write (the join reruns alone)."""


async def optimistically(db: connection.Database, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`fn(conn, *args, alone)` in a transaction: beside the monitors' other label writers
    (`alone` False), and once more `alone` when one of them wrote a label it was writing."""
    try:
        return await db.transaction(fn, *args, False)
    except (asyncpg.UniqueViolationError, Relabeled):
        return await db.transaction(fn, *args, True)


async def hold(conn: connection.Conn, key: int, monitor_ids: Sequence[int], alone: bool) -> None:
    """Hold the monitors' labels lock `key` (in id order) until commit: shared beside the other
    writers, or exclusive, to write `alone`."""
    await locks.hold_monitors(conn, key, monitor_ids, shared=not alone)


async def find(
    conn: connection.Conn,
    actuals: Sequence[Actual],
    indices: Iterable[int],
    monitors: Mapping[str, Registered],
) -> tuple[dict[int, list[int]], dict[int, Versioned]]:
    """The ids of the records each of these actuals could label (by id, or by entity within its
    span), and those records."""
    by_id: list[tuple[int, int, str]] = []
    by_entity: list[tuple[int, int, str, str | None, float, float]] = []
    for i in indices:
        actual = actuals[i]
        registered = monitors[actual.monitor]
        if actual.prediction_id is not None:
            by_id.append((i, registered.id, actual.prediction_id))
        else:
            assert actual.entity_id is not None
            lo, hi = join.entity_span(actual, registered.monitor.spec)
            by_entity.append((i, registered.id, actual.entity_id, actual.tag, lo, hi))
    found: dict[int, list[int]] = {}
    rows: dict[int, Versioned] = {}
    for i, *columns, version in await conn.fetch(FIND, to_json(by_id), to_json(by_entity)):
        found.setdefault(i, []).append(columns[0])
        rows[columns[0]] = (codec.row(*columns), version)
    return found, rows


async def write(
    conn: connection.Conn,
    labels: Mapping[int, tuple[Row, bool | None]],
    now: float,
    versions: Mapping[int, str],
    refs: Mapping[int, int] | None,
) -> None:
    """Store a plan's labels (`refs` maps its refs to record ids where they differ): COPYed for
    records that had none (a record another writer labeled meanwhile fails it:
    `UniqueViolationError`), replacing the version in `versions` for the ones that had one
    (`Relabeled` when another writer changed it)."""
    if not labels:
        return
    columns: dict[join.Label, tuple[str | None, str | None, bool, str | None]] = {}
    fresh, changed = [], []
    by_id = sorted(
        ((ref if refs is None else refs[ref], *labeled) for ref, labeled in labels.items()),
        key=lambda labeled: labeled[0],
    )
    for ref, row, correct in by_id:  # one order for every writer
        label = row.label
        assert label is not None
        encoded = columns.get(label)
        if encoded is None:
            encoded = columns[label] = codec.label_columns(label)
        version = versions.get(ref)
        if version is None:
            fresh.append((ref, *encoded, correct, now))
        else:
            changed.append((ref, version, *encoded, correct, now))
    if fresh:
        await conn.copy_records_to_table("labels", records=fresh, columns=COLUMNS)
    if changed and sql.count(await conn.execute(RELABEL, to_json(changed))) < len(changed):
        raise Relabeled
