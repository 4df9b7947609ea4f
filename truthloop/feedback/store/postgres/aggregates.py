"""Counters: every write appends deltas, the leader folds them, every read is exact meanwhile.

Writes append their counter deltas to `agg_delta`, which takes no lock another writer could wait
for (updating the few hundred hot aggregate rows in place would serialize all writers); a delta
row is one group's counters of one minute (or its lifetime-only ones: bucket NULL) as one `jsonb`
object, not a row per counter. The leader's `compact` takes delta rows out, sums them in Python,
writes the minute, hour and day rows they belong to back whole and adds to the totals, holding
the *fold* lock: folds take turns. Every read takes the aggregate rows and the unfolded deltas in
one statement (one snapshot) and sums them in Python: no delta is seen twice or missed.

Segment counters (`interface.by_segment`) go apart: a delta row per group and segment
(`agg_delta.segment`, `''` for the others), and per segment aggregate rows in `seg_<level>`, so
an ordinary read never reads them and a segment's read reads only its own rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from truthloop.core import join
from truthloop.core.evaluation import Group
from truthloop.core.plan import Lifetime
from truthloop.core.windows import LEVEL_MINUTES, BucketRange, Steps, decompose
from truthloop.feedback.store import codec
from truthloop.feedback.store.codec import to_json
from truthloop.feedback.store.interface import Counters, Only, by_segment, rollup
from truthloop.feedback.store.postgres import connection, locks, sql

FOLD_CHUNK = 1_000
"""Most delta rows (a group's counters of one minute, about a hundred for a scored binary
monitor) one fold transaction moves."""
FOLD_BUDGET = 1.0
"""Seconds after which `compact` stops starting new folds (the tick it runs in waits for it)."""

ADD_DELTAS = """
INSERT INTO agg_delta (monitor_id, bucket, version, served_by, counters, segment)
SELECT (r->>0)::int, (r->>1)::bigint, r->>2, r->>3, r->4, r->>5
FROM jsonb_array_elements($1::jsonb) AS r
"""
"""Counter deltas, one row per group and segment: of a minute bucket, or (bucket NULL) of the
lifetime totals only. Append-only."""


def _counters(source: str) -> str:
    """The delta rows of `source` one row per counter: monitor_id, bucket, version, served_by,
    key, value."""
    return (
        "SELECT monitor_id, bucket, version, served_by, c.key, c.value::float8 AS value"
        f" FROM {source} CROSS JOIN LATERAL jsonb_each_text({source}.counters) AS c"
    )


DELTAS = f"({_counters('agg_delta')}) AS agg_delta"
"""The unfolded deltas, a counter a row (conditions on the group columns reach the index)."""

MOVE_DELTAS = """
DELETE FROM agg_delta WHERE ctid = ANY(ARRAY(SELECT ctid FROM agg_delta LIMIT $1))
RETURNING monitor_id, bucket, version, served_by, counters
"""
"""Take up to $1 delta rows out, to fold them."""


def _read_aggregates(level: str) -> str:
    """The `level` aggregate rows of the groups and buckets in parameter 1, and the segment
    rows of the groups, buckets and segments in parameter 2."""
    groups = sql.rows(1, "int", "text", "text", "bigint")
    segmented = sql.rows(2, "int", "text", "text", "bigint", "text")
    return f"""
SELECT monitor_id, version, served_by, bucket, '' AS segment, counters FROM agg_{level}
JOIN ({groups}) AS k(monitor_id, version, served_by, bucket)
USING (monitor_id, bucket, version, served_by)
UNION ALL
SELECT monitor_id, version, served_by, bucket, segment, counters FROM seg_{level}
JOIN ({segmented}) AS k(monitor_id, version, served_by, bucket, segment)
USING (monitor_id, segment, bucket, version, served_by)
"""


def _write_aggregates(level: str) -> str:
    """Put the `level` aggregate rows in parameter 1 (a JSON array of [monitor_id, version,
    served_by, bucket, counters]) and the segment rows in parameter 2 (the same, then the
    segment), replacing the ones that exist."""
    return f"""
WITH plain AS (
    INSERT INTO agg_{level} (monitor_id, version, served_by, bucket, counters)
    SELECT (r->>0)::int, r->>1, r->>2, (r->>3)::bigint, r->4
    FROM jsonb_array_elements($1::jsonb) AS r
    ON CONFLICT (monitor_id, bucket, version, served_by) DO UPDATE SET counters = excluded.counters
)
INSERT INTO seg_{level} (monitor_id, version, served_by, bucket, counters, segment)
SELECT (r->>0)::int, r->>1, r->>2, (r->>3)::bigint, r->4, r->>5
FROM jsonb_array_elements($2::jsonb) AS r
ON CONFLICT (monitor_id, segment, bucket, version, served_by)
DO UPDATE SET counters = excluded.counters
"""


ADD_TOTALS = """
INSERT INTO totals AS a
SELECT (r->>0)::int, r->>1, r->>2, c.key, c.value::float8
FROM jsonb_array_elements($1::jsonb) AS r CROSS JOIN LATERAL jsonb_each_text(r->3) AS c
ON CONFLICT (monitor_id, version, served_by, key) DO UPDATE SET value = a.value + excluded.value
"""
"""Add the lifetime counters in parameter 1 (a JSON array of [monitor_id, version, served_by,
counters]) to the totals."""

LIFETIME_DELTAS = (
    f"SELECT monitor_id, version, served_by, key, value FROM {DELTAS}"
    " WHERE bucket IS NULL OR strpos(key, ':') = 0"
)


# -- writes ------------------------------------------------------------------------------------


async def add(
    conn: connection.Conn,
    deltas: Mapping[join.GroupKey, Mapping[str, float]],
    totals: Mapping[Lifetime, Mapping[str, float]],
) -> None:
    """Append counter deltas of minute buckets, and `totals` kept only in the lifetime totals.

    Appending takes no lock another writer waits for; `compact` folds the deltas into the
    aggregates, and reads add the ones not yet folded.
    """
    groups: list[tuple[int, int | None, str, str, Mapping[str, float]]] = [
        (mid, bucket, version, served_by, counters)
        for (mid, version, served_by, bucket), counters in deltas.items()
    ]
    groups += [(mid, None, v, s, counters) for (mid, v, s), counters in totals.items()]
    values = []
    for *group, counters in groups:
        for segment, part in by_segment(counters).items():
            values.append((*group, part, segment))
    if values:
        await conn.execute(ADD_DELTAS, to_json(values))


async def compact(db: connection.Database, lock: int) -> int:
    """Fold the counter deltas writers appended into the aggregates, in transactions of
    `FOLD_CHUNK` rows for up to about `FOLD_BUDGET` seconds (a backlog takes several ticks;
    reads are exact meanwhile); how many delta rows were folded. `lock`: the fold key."""
    folded = 0
    deadline = time.monotonic() + FOLD_BUDGET
    while True:
        moved = await db.transaction(fold, lock, FOLD_CHUNK)
        folded += moved
        if moved < FOLD_CHUNK or time.monotonic() > deadline:
            return folded


async def fold(conn: connection.Conn, lock: int, limit: int) -> int:
    """Move up to `limit` delta rows into the minute buckets, their hour and day rollups and
    the lifetime totals; how many it moved. Aggregate rows are summed here and written
    whole, so folds take turns (the *fold* `lock`): two leaders for a moment, say."""
    await locks.hold(conn, lock)
    moved = await conn.fetch(MOVE_DELTAS, limit)
    minutes: dict[join.GroupKey, dict[str, float]] = {}
    lifetime_only: dict[Lifetime, dict[str, float]] = {}
    for mid, bucket, version, served_by, counters in moved:
        if bucket is None:
            join.add(lifetime_only, (mid, version, served_by), codec.decode(counters))
        else:
            join.add(minutes, (mid, version, served_by, bucket), codec.decode(counters))
    levels, lifetime = rollup(minutes)
    for group, counters in lifetime_only.items():
        join.add(lifetime, group, counters)
    for level, groups in levels.items():
        if groups:
            await _add_to_aggregate(conn, level, groups)
    totals = [(*group, counters) for group, counters in lifetime.items() if counters]
    if totals:
        await conn.execute(ADD_TOTALS, to_json(totals))
    return len(moved)


async def _add_to_aggregate(
    conn: connection.Conn, level: str, groups: Mapping[join.GroupKey, Mapping[str, float]]
) -> None:
    """Add summed counters to the `level` aggregate's rows of their groups and buckets (the
    segment counters to their segments' rows)."""
    parts: dict[tuple[int, str, str, int, str], dict[str, float]] = {}
    for (mid, v, s, bucket), counters in groups.items():
        for segment, part in by_segment(counters).items():
            parts[mid, v, s, bucket, segment] = part
    keys = sorted(parts)
    found = await conn.fetch(
        _read_aggregates(level),
        to_json([key[:4] for key in keys if not key[4]]),
        to_json([key for key in keys if key[4]]),
    )
    stored = {(mid, v, s, b, seg): codec.decode(c) for mid, v, s, b, seg, c in found}
    plain, segmented = [], []
    for key in keys:
        total = stored.get(key, {})
        for counter, value in parts[key].items():
            total[counter] = total.get(counter, 0.0) + value
        if key[4]:
            segmented.append((*key[:4], total, key[4]))
        else:
            plain.append((*key[:4], total))
    await conn.execute(_write_aggregates(level), to_json(plain), to_json(segmented))


# -- reads -------------------------------------------------------------------------------------


async def window(
    db: connection.Database, monitor_id: int, span: BucketRange, only: Only
) -> dict[Group, Counters]:
    """`Store.window`: the aggregate rows of `span` and its unfolded deltas, summed."""
    params: list[Any] = [monitor_id]
    kind, extra, delta = _filters(params, only)
    parts = []
    for table, start, end in (
        *((f"{kind}_{p.level}", p.start, p.end) for p in decompose(span)),
        ("agg_delta", span.start, span.end),
    ):
        params += [start, end]
        parts.append(
            f"SELECT version, served_by, counters FROM {table} WHERE monitor_id = $1"
            f" AND bucket >= ${len(params) - 1} AND bucket < ${len(params)}"
            f"{delta if table == 'agg_delta' else extra}"
        )
    if len(parts) == 1:
        return {}
    found = await db.fetch(" UNION ALL ".join(parts), *params)
    result: dict[Group, Counters] = {}
    for v, s, counters in found:
        _sum_into(result.setdefault((v, s), {}), counters, only)
    return result


async def series(
    db: connection.Database, monitor_id: int, steps: Steps, only: Only
) -> dict[int, dict[Group, Counters]]:
    """`Store.series`: the aggregate rows of the steps' level and the unfolded deltas, summed
    per point."""
    unit = LEVEL_MINUTES[steps.level]
    end = steps.start + steps.width * steps.count
    params: list[Any] = [unit, steps.start, steps.width, monitor_id, -(-end // unit), end]
    kind, extra, delta = _filters(params, only)
    found = await db.fetch(
        "SELECT (bucket * $1::bigint - $2::bigint) / $3::bigint, version, served_by, counters"
        f" FROM {kind}_{steps.level} WHERE monitor_id = $4"
        f" AND bucket >= $2::bigint / $1::bigint AND bucket < $5{extra}"
        " UNION ALL SELECT (bucket - $2::bigint) / $3::bigint, version, served_by, counters"
        f" FROM agg_delta WHERE monitor_id = $4 AND bucket >= $2 AND bucket < $6{delta}",
        *params,
    )
    result: dict[int, dict[Group, Counters]] = {}
    for point, v, s, counters in found:
        _sum_into(result.setdefault(point, {}).setdefault((v, s), {}), counters, only)
    return result


async def totals(db: connection.Database) -> dict[int, dict[Group, Counters]]:
    """`Store.totals`: the folded totals and the unfolded deltas, summed."""
    found = await db.fetch(
        "SELECT monitor_id, version, served_by, key, sum(value) FROM"
        f" (SELECT * FROM totals UNION ALL {LIFETIME_DELTAS}) AS lifetime GROUP BY 1, 2, 3, 4",
    )
    result: dict[int, dict[Group, Counters]] = {}
    for mid, v, s, key, value in found:
        result.setdefault(mid, {}).setdefault((v, s), {})[key] = value
    return result


def _sum_into(into: Counters, counters: str, only: Only | None = None) -> None:
    """Add a stored `counters` object (JSON text) into `into`: the counters `only` keeps
    (`Only.keeps`; None: every one).

    Reads sum aggregate rows here rather than in SQL (`jsonb_each_text` and a grouping, a
    histogram cell a row), which costs the server more than decoding costs here.
    """
    found = codec.decode(counters)
    if only is None or only.sketches is None:
        for key, value in found.items():
            into[key] = into.get(key, 0.0) + value
        return
    keeps = only.keeps
    for key, value in found.items():
        if keeps(key):
            into[key] = into.get(key, 0.0) + value


def _filters(params: list[Any], only: Only) -> tuple[str, str, str]:
    """The aggregate tables a read takes (`agg`, or `seg` for a segment's), the SQL conditions
    for the optional filters on them and on `agg_delta`; their values are appended to
    `params`."""
    conditions = ""
    if only.version is not None:
        params.append(only.version)
        conditions += f" AND version = ${len(params)}"
    if only.served_by is not None:
        params.append(only.served_by)
        conditions += f" AND served_by = ${len(params)}"
    params.append(only.segment or "")
    segment = f" AND segment = ${len(params)}"
    if only.segment is None:
        return "agg", conditions, conditions + segment
    return "seg", conditions + segment, conditions + segment
