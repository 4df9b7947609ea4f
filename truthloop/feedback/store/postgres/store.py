"""The scale-out store: PostgreSQL through asyncpg, shared by several feedback-service replicas.

`postgresql://user@host:5432/db` is asyncpg's DSN; query parameters other than `pool_size`
(connections per replica, default 10) are server settings, e.g. `?search_path=truthloop` to keep
the tables in that (existing) schema. Several deployments can share a database in different
schemas: the advisory-lock keys and the NOTIFY channel are derived from the schema's name.

Schema. `MIGRATIONS` are applied at `open`, each once, in order, recorded in
`truthloop_migrations`, under a transaction-scoped advisory lock, so replicas starting together
apply them once. A database migrated by a newer build (a version this one does not know) is
refused rather than misread.

Concurrent writers. Every write is one transaction; a deadlock or serialization failure reruns it
(a few times, then `StoreUnavailable`).
- Writes append their counter deltas (minute buckets, and lifetime-only counters) to
  `agg_delta`, which takes no lock another writer could wait for: every batch adds to the same
  few hundred hot aggregate rows, and updating them in place would serialize all writers. A
  delta row holds one group's counters of one minute (or its lifetime-only ones: bucket NULL)
  as one `jsonb` object, not a row per counter: a batch of scored binary actuals has about a
  hundred counters (histogram cells) per minute, and each row is a heap insert, an index entry
  and WAL for the server. The minute, hour and day aggregates are rows of one group and bucket
  with a `counters` object too. The leader's `compact` (each tick) takes delta rows out, sums
  them in Python (`rollup`) and adds the sums to the aggregate rows they belong to (read,
  added, written back whole) and to the totals (a row per counter, upserted `value = value +
  excluded.value`), in one transaction holding the *fold* advisory lock: two replicas folding
  at once take turns. (Summing in SQL cost the server a hash aggregate and an upsert per
  histogram cell, a thousand per group and minute: more than all the writes it folded.) Every
  read takes the aggregate rows and the deltas not yet folded in one statement (one snapshot),
  so no read sees a delta twice or not at all, and sums them in Python too.
- Labels are written optimistically: the join reads records with their labels and each label's
  version (`xmin`), computes the deltas, then COPYs the labels of records that had none (another
  writer's label for one is a unique violation) and replaces the others only where the version
  is unchanged (the `UPDATE` counts them). A batch that finds a label moved under it reruns
  *alone*: its monitors' *labels* advisory lock, which writers hold shared, taken exclusive, so
  it reads after every writer before it committed and nobody writes beside it; it then moves
  the aggregates by the difference from the label the other left: no lost update. Locking the
  records instead (`FOR UPDATE`) costs every batch a heap write per record and two statements.
- A batch of records and an actual for one of them, arriving on two replicas at once, must not
  miss each other (the actual finding no record, the batch finding no pending actual). Batches
  hold their monitor's *intake* advisory lock shared; an actual that found nothing takes it
  exclusive, which waits out the batches in flight, and looks again before it waits as pending.
- Pending actuals a batch joins are taken `FOR UPDATE`, so two batches never both join one.
- A prediction batch is COPYed into the table, half the server's work of an upsert; a known key
  fails the COPY, and the batch is rerun as one multi-row `INSERT … SELECT … ON CONFLICT DO
  NOTHING RETURNING` (a known key is a duplicate). The ids of COPYed records are looked up only
  when the batch labels some (a pending actual names one, or a late record gets the assumed
  label). Labels are rows of their own, so labeling never rewrites a record and its features:
  COPYed for records that had none, updated by version for the ones relabeled. Other batches of
  rows travel as one JSON parameter (`_rows`), not an array per column.

Replicas. Exactly one leads (`try_lead`): it holds a session-level advisory lock on a connection
of its own, checked on every tick; when that connection or its process dies the lock is released
and the next replica to tick takes it. `hold_state` serializes read-modify-write of a monitor's
state across replicas (a session advisory lock per monitor). Every write of monitors or state
sends `pg_notify` in its transaction; each replica LISTENs on a connection of its own (re-opened
when lost, after which the watchers are told to reread everything) and tells its watchers.

Connection loss. A call that cannot reach the database raises `StoreUnavailable` (the service
answers 503 with Retry-After). A transaction that broke before its commit was sent is retried
once on a fresh connection; one that broke during the commit is not (its outcome is unknown; a
client's retry is a duplicate or the same label again). The pool replaces dead connections by
itself, so the service recovers as soon as the database is back.

Index plan: `predictions (monitor_id, ts)` serves retention (oldest first, in chunks: a delete
touches only the rows it removes, and takes their labels along), the missing-actual sweep and
dataset reads; the unique key serves duplicates and joins by id; `(monitor_id, entity_id, ts)`
serves entity joins; `agg_delta (monitor_id, bucket)` keeps reads of unfolded deltas short.
Tables whose rows are updated in place (aggregates, labels) leave room in each page
(`fillfactor`), so an update stays on its page without touching the indexes (HOT).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
import zlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from truthloop.core import join, plan
from truthloop.core.join import Row
from truthloop.core.plan import ACTUALS_EXPIRED, Lifetime
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import Monitor
from truthloop.core.windows import LEVEL_MINUTES, BucketRange, Steps, decompose
from truthloop.feedback.store import codec
from truthloop.feedback.store.codec import PENDING_COLUMNS, ROW_COLUMNS, STORED_COLUMNS, to_json
from truthloop.feedback.store.interface import (
    Counters,
    DatasetQuery,
    FeedbackResult,
    Group,
    IngestResult,
    LabelsRejected,
    Registered,
    Store,
    StoredPrediction,
    StoredState,
    StoreError,
    StoreUnavailable,
    rollup,
)

log = logging.getLogger("truthloop.feedback.store")

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a new connection before calling the database unavailable."""
LEAD_CHECK_TIMEOUT = 2.0
"""A leader whose connection does not answer this fast gives up leading."""
ATTEMPTS = 4
"""Runs of a transaction that keeps meeting deadlocks or serialization failures."""
FOLD_CHUNK = 1_000
"""Most delta rows (a group's counters of one minute, about a hundred for a scored binary
monitor) one fold transaction moves."""
FOLD_BUDGET = 1.0
"""Seconds after which `compact` stops starting new folds (the tick it runs in waits for it)."""
RELISTEN_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Seconds between attempts to re-open the LISTEN connection (the last one repeats)."""

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

LEVELS = tuple(LEVEL_MINUTES)

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
CREATE TABLE monitors (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    key text NOT NULL UNIQUE,
    body text NOT NULL,
    created double precision NOT NULL,
    deleted double precision
);
CREATE TABLE states (
    monitor_id integer PRIMARY KEY,
    version bigint NOT NULL,
    state text NOT NULL,
    external text NOT NULL,
    override text
);
CREATE TABLE sweeps (
    monitor_id integer PRIMARY KEY,
    swept double precision NOT NULL
);
CREATE TABLE predictions (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    monitor_id integer NOT NULL,
    prediction_id text NOT NULL,
    served_by text NOT NULL,
    model_version text NOT NULL,
    entity_id text,
    tag text,
    ts double precision NOT NULL,
    prediction text NOT NULL,
    score double precision,
    features text
);
CREATE UNIQUE INDEX predictions_key ON predictions (monitor_id, prediction_id, served_by);
CREATE INDEX predictions_entity ON predictions (monitor_id, entity_id, ts)
    WHERE entity_id IS NOT NULL;
CREATE INDEX predictions_ts ON predictions (monitor_id, ts);
CREATE TABLE labels (
    prediction_ref bigint PRIMARY KEY,
    actual text,
    vote text,
    assumed boolean NOT NULL,
    correct boolean,
    labeled_at double precision NOT NULL
) WITH (fillfactor = 80);
CREATE TABLE pending (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    monitor_id integer NOT NULL,
    prediction_id text,
    entity_id text,
    tag text,
    ts double precision NOT NULL,
    actual text,
    vote text,
    expires double precision NOT NULL
);
CREATE INDEX pending_pid ON pending (monitor_id, prediction_id)
    WHERE prediction_id IS NOT NULL;
CREATE INDEX pending_entity ON pending (monitor_id, entity_id) WHERE entity_id IS NOT NULL;
CREATE INDEX pending_expires ON pending (expires);
CREATE TABLE agg_delta (
    monitor_id integer NOT NULL,
    bucket bigint,
    version text NOT NULL,
    served_by text NOT NULL,
    key text NOT NULL,
    value double precision NOT NULL
);
CREATE INDEX agg_delta_window ON agg_delta (monitor_id, bucket);
CREATE TABLE totals (
    monitor_id integer NOT NULL,
    version text NOT NULL,
    served_by text NOT NULL,
    key text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (monitor_id, version, served_by, key)
) WITH (fillfactor = 70);
"""
    + "".join(
        f"""
CREATE TABLE agg_{level} (
    monitor_id integer NOT NULL,
    bucket bigint NOT NULL,
    version text NOT NULL,
    served_by text NOT NULL,
    key text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (monitor_id, bucket, version, served_by, key)
) WITH (fillfactor = 70);
"""
        for level in LEVELS
    ),
    # 2: counter deltas as one row per group and minute (`counters` one jsonb object), not one
    # row per counter; the deltas not yet folded are carried over, summed per counter.
    """
LOCK TABLE agg_delta IN ACCESS EXCLUSIVE MODE;
CREATE TABLE agg_delta_groups (
    monitor_id integer NOT NULL,
    bucket bigint,
    version text NOT NULL,
    served_by text NOT NULL,
    counters jsonb NOT NULL
);
INSERT INTO agg_delta_groups
SELECT monitor_id, bucket, version, served_by, jsonb_object_agg(key, value) FROM (
    SELECT monitor_id, bucket, version, served_by, key, sum(value) AS value FROM agg_delta
    GROUP BY 1, 2, 3, 4, 5
) AS counters
GROUP BY 1, 2, 3, 4;
DROP TABLE agg_delta;
ALTER TABLE agg_delta_groups RENAME TO agg_delta;
CREATE INDEX agg_delta_window ON agg_delta (monitor_id, bucket);
""",
    # 3: the minute, hour and day aggregates one row per group and bucket too (`counters`), not
    # one per counter: a fold then writes a few rows per group, not one per histogram cell.
    "".join(
        f"""
LOCK TABLE agg_{level} IN ACCESS EXCLUSIVE MODE;
CREATE TABLE agg_{level}_groups (
    monitor_id integer NOT NULL,
    bucket bigint NOT NULL,
    version text NOT NULL,
    served_by text NOT NULL,
    counters jsonb NOT NULL,
    PRIMARY KEY (monitor_id, bucket, version, served_by)
) WITH (fillfactor = 70);
INSERT INTO agg_{level}_groups
SELECT monitor_id, bucket, version, served_by, jsonb_object_agg(key, value) FROM agg_{level}
GROUP BY 1, 2, 3, 4;
DROP TABLE agg_{level};
ALTER TABLE agg_{level}_groups RENAME TO agg_{level};
"""
        for level in LEVELS
    ),
    # 4: a pending prediction_id actual remembers what it labeled (it waits on for the model's
    # shadow answer after labeling a fallback answer)
    "ALTER TABLE pending ADD COLUMN labeled text;",
)
"""The schema, one script per version (version = position + 1); never edit a released one."""


def _rows(param: int, *types: str) -> str:
    """A `SELECT` of the rows in parameter `param`, a JSON array of arrays (`to_json`), column
    `i` cast to `types[i]`.

    One JSON text rather than an array per column: asyncpg encodes arrays element by element in
    Python (an ABC `isinstance` each), which cost more than all the SQL of a batch. `jsonb`, so
    the server parses each row once, not once per column.
    """
    columns = ", ".join(f"(r->>{i})::{kind}" for i, kind in enumerate(types))
    return f"SELECT {columns} FROM jsonb_array_elements(${param}::jsonb) AS r"


def _array(param: int, kind: str) -> str:
    """The array in parameter `param`, a JSON array (`to_json`) of `kind` values."""
    return f"ARRAY(SELECT json_array_elements_text(${param}::json)::{kind})"


_BATCH = _rows(1, "int", "int", *("text",) * 5, "float8", "text", "float8", "text")
"""A batch of predictions: its index, then the table's columns (prediction and features as JSON
text)."""

INSERT_PREDICTIONS = f"""
WITH batch AS ({_BATCH}
), added AS (
    INSERT INTO predictions (monitor_id, prediction_id, served_by, model_version, entity_id, tag,
                             ts, prediction, score, features)
    SELECT monitor_id, prediction_id, served_by, model_version, entity_id, tag, ts, prediction,
        score, features
    FROM batch AS b(i, monitor_id, prediction_id, served_by, model_version, entity_id, tag, ts,
                    prediction, score, features)
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

PREDICTION_COLUMNS = (
    "monitor_id",
    "prediction_id",
    "served_by",
    "model_version",
    "entity_id",
    "tag",
    "ts",
    "prediction",
    "score",
    "features",
)
"""The `predictions` columns a batch fills, in `codec.prediction_values` order (for COPY)."""

REFS = f"""
SELECT u.i, p.id FROM ({_rows(1, "int", "int", "text", "text")}) AS u(i, mid, pid, sb)
JOIN predictions p ON p.monitor_id = u.mid AND p.prediction_id = u.pid AND p.served_by = u.sb
"""
"""(index, id) of the records in $1 (index, monitor_id, prediction_id, served_by)."""

LABELED = "predictions LEFT JOIN labels ON prediction_ref = id"
"""Records with their labels (a label's columns are NULL while it has none)."""

VERSIONED_ROW = f"{ROW_COLUMNS}, labels.xmin::text"
"""A record as the join reads it, and its label's version (the xid that wrote it; NULL without a
label): a relabel applies only while the label is still that version."""

FIND_ROWS = f"""
SELECT u.i, {VERSIONED_ROW} FROM ({_rows(1, "int", "int", "text")}) AS u(i, mid, pid)
JOIN ({LABELED}) ON monitor_id = u.mid AND prediction_id = u.pid
UNION ALL
SELECT u.i, {VERSIONED_ROW}
FROM ({_rows(2, "int", "int", "text", "text", "float8", "float8")})
    AS u(i, mid, entity, wanted_tag, lo, hi)
JOIN ({LABELED}) ON monitor_id = u.mid AND entity_id = u.entity
    AND ts >= u.lo AND ts <= u.hi AND tag IS NOT DISTINCT FROM u.wanted_tag
"""
"""(actual index, record with its label) of every record an actual could label: by id, or
entity in span."""

LABEL_COLUMNS = ("prediction_ref", "actual", "vote", "assumed", "correct", "labeled_at")

RELABEL = f"""
UPDATE labels SET actual = n.actual, vote = n.vote, assumed = n.assumed, correct = n.correct,
    labeled_at = n.labeled_at
FROM ({_rows(1, "bigint", "text", "text", "text", "bool", "bool", "float8")})
    AS n(ref, version, actual, vote, assumed, correct, labeled_at)
WHERE prediction_ref = n.ref AND labels.xmin = n.version::xid
"""
"""Replace labels that are still the version the join read (one another writer changed is
skipped: the caller counts)."""

DELETE_PREDICTIONS = """
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

INSERT_PENDING = f"""
INSERT INTO pending (monitor_id, prediction_id, entity_id, tag, ts, actual, vote, expires)
{_rows(1, "int", "text", "text", "text", "float8", "text", "text", "float8")}
"""

JOIN_PENDING = f"""
SELECT {PENDING_COLUMNS} FROM pending
WHERE monitor_id = $1
    AND (prediction_id = ANY({_array(2, "text")}) OR entity_id = ANY({_array(3, "text")}))
    AND (EXISTS (SELECT FROM pending WHERE monitor_id = $1 AND prediction_id IS NOT NULL)
        OR EXISTS (SELECT FROM pending WHERE monitor_id = $1 AND entity_id IS NOT NULL))
ORDER BY id FOR UPDATE
"""
"""The pending actuals of monitor $1 that name one of the ids $2 or entities $3, locked.

The `EXISTS` gate (every pending actual has an id or an entity) is a one-time filter: while
none waits for the monitor, the usual case, the server neither builds the batch's arrays nor
probes the indexes with them (sorting them by the collation first), most of this statement's
cost."""


ADD_DELTAS = """
INSERT INTO agg_delta (monitor_id, bucket, version, served_by, counters)
SELECT (r->>0)::int, (r->>1)::bigint, r->>2, r->>3, r->4 FROM jsonb_array_elements($1::jsonb) AS r
"""
"""Counter deltas, one row per group: of a minute bucket, or (bucket NULL) of the lifetime totals
only. Append-only."""


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
    """The `level` aggregate rows of the groups and buckets in parameter 1."""
    return f"""
SELECT monitor_id, version, served_by, bucket, counters FROM agg_{level}
JOIN ({_rows(1, "int", "text", "text", "bigint")}) AS k(monitor_id, version, served_by, bucket)
USING (monitor_id, bucket, version, served_by)
"""


def _write_aggregates(level: str) -> str:
    """Put the `level` aggregate rows in parameter 1 (a JSON array of [monitor_id, version,
    served_by, bucket, counters]), replacing the ones that exist."""
    return f"""
INSERT INTO agg_{level} (monitor_id, version, served_by, bucket, counters)
SELECT (r->>0)::int, r->>1, r->>2, (r->>3)::bigint, r->4 FROM jsonb_array_elements($1::jsonb) AS r
ON CONFLICT (monitor_id, bucket, version, served_by) DO UPDATE SET counters = excluded.counters
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


class PostgresStore(Store):
    """`Store` on PostgreSQL for several replicas; see the module docstring for the protocol."""

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.replica = uuid.uuid4().hex
        """This process's mark on its notifications, so it does not reread its own writes."""
        self._pool: asyncpg.Pool | None = None
        self._keys: Keys | None = None
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._leader: asyncpg.Connection | None = None
        self._leading = False
        self._lead_lock = asyncio.Lock()
        self._watchers: list[Callable[[], None]] = []
        self._closing = False

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def keys(self) -> Keys:
        if self._keys is None:
            raise RuntimeError("the store is not open")
        return self._keys

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT, server_settings=settings or None
            )
        except UNAVAILABLE as e:
            raise _unavailable(e) from e
        except asyncpg.PostgresError as e:  # refused: credentials, database, settings
            raise StoreError(f"the database refused the connection: {e}") from e

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
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

    async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(conn, *args)` in one transaction, rerun on deadlock or a connection lost early."""
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                async with self._connection() as conn, conn.transaction():
                    result = await fn(conn, *args)
                    committing = True
                return result
            except RETRY as e:
                if attempt >= ATTEMPTS:
                    raise StoreUnavailable(f"the database kept aborting the write: {e}") from e
            except UNAVAILABLE as e:
                if committing or attempt > 1:
                    raise _unavailable(e) from e

    async def _read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(conn, *args)` on a pooled connection, tried twice (a pooled one may have died)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._connection() as conn:
                    return await fn(conn, *args)
            except UNAVAILABLE as e:
                if attempt > 1:
                    raise _unavailable(e) from e

    async def open(self) -> None:
        conn = await self._connect()
        try:
            schema = await conn.fetchval("SELECT current_schema()")
            if schema is None:
                raise StoreError(
                    "no schema to create tables in: the search_path names none that exists"
                    " (create it, or set ?search_path= in the store URL)"
                )
            self._keys = Keys.of(schema)
            await _migrate(conn, self._keys)
        except UNAVAILABLE as e:
            raise _unavailable(e) from e
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                reset=_stateless,
            )
            await self._listen()
        except UNAVAILABLE as e:
            await self.close()
            raise _unavailable(e) from e
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
        for conn in (self._listener, self._leader):
            if conn is not None:
                await _close(conn)
        self._listener = self._leader = None
        self._leading = False
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), CONNECT_TIMEOUT)
            except (TimeoutError, *UNAVAILABLE):
                self._pool.terminate()
            self._pool = None

    # -- replicas ------------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this replica led at its last `try_lead`."""
        return self._leading

    async def try_lead(self) -> bool:
        async with self._lead_lock:
            return await self._try_lead()

    async def _try_lead(self) -> bool:
        try:
            if self._leader is None or self._leader.is_closed():
                self._leading = False
                # The server drops a silent leader's session (and lock) within ~10 s.
                self._leader = await self._connect(
                    tcp_keepalives_idle="5", tcp_keepalives_interval="2", tcp_keepalives_count="3"
                )
            if self._leading:
                await self._leader.execute("SELECT 1", timeout=LEAD_CHECK_TIMEOUT)
            else:
                self._leading = bool(
                    await self._leader.fetchval(
                        "SELECT pg_try_advisory_lock($1, 0)",
                        self.keys.leader,
                        timeout=LEAD_CHECK_TIMEOUT,
                    )
                )
        except (StoreError, *UNAVAILABLE):
            if self._leader is not None:
                self._leader.terminate()
            self._leader, self._leading = None, False
        return self._leading

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def _announce(self) -> None:
        for callback in self._watchers:
            callback()

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            await conn.add_listener(self.keys.channel, self._heard)
        except UNAVAILABLE as e:
            conn.terminate()
            raise _unavailable(e) from e
        conn.add_termination_listener(self._lost)
        self._listener = conn

    def _heard(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if payload != self.replica:
            self._announce()

    def _lost(self, conn: Any) -> None:
        if not self._closing and self._relisten is None:
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Re-open the LISTEN connection; what was said meanwhile is lost, so reread it all."""
        try:
            for attempt in itertools.count():
                try:
                    await self._listen()
                    break
                except StoreError as e:
                    log.warning("cannot LISTEN for other replicas' changes yet: %s", e)
                    await asyncio.sleep(RELISTEN_DELAYS[min(attempt, len(RELISTEN_DELAYS) - 1)])
        finally:
            self._relisten = None
        self._announce()

    async def _notify(self, conn: asyncpg.Connection) -> None:
        """Tell the other replicas (at commit) that monitors or their state changed."""
        await conn.execute("SELECT pg_notify($1, $2)", self.keys.channel, self.replica)

    @contextlib.asynccontextmanager
    async def hold_state(self, monitor_id: int) -> AsyncIterator[StoredState | None]:
        try:
            async with self._connection() as conn:
                await conn.execute("SELECT pg_advisory_lock($1, $2)", self.keys.state, monitor_id)
                try:
                    found = await conn.fetchrow(
                        "SELECT version, state, external, override FROM states"
                        " WHERE monitor_id = $1",
                        monitor_id,
                    )
                    yield None if found is None else _state(*found)
                finally:
                    if not conn.is_closed():  # (a pooled connection holds no other)
                        await conn.execute("SELECT pg_advisory_unlock_all()")
        except UNAVAILABLE as e:
            raise _unavailable(e) from e

    # -- monitors and state --------------------------------------------------------------------

    async def load_monitors(self) -> list[Registered]:
        found = await self._read(
            _fetch,
            "SELECT id, body, created, deleted FROM monitors WHERE key NOT LIKE '%#%' ORDER BY id",
        )
        return [codec.registered(*r) for r in found]

    async def put_monitor(
        self, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> Registered:
        return await self._tx(self._put_monitor, monitor, body, now)

    async def _put_monitor(
        self, conn: asyncpg.Connection, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> Registered:
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", self.keys.registry)
        await self._notify(conn)
        old = await conn.fetchrow(
            "SELECT id, body, created, deleted FROM monitors WHERE key = $1", monitor.key
        )
        text = to_json(body)
        if old is not None:
            previous = codec.registered(*old)
            if previous.deleted is None or previous.monitor.spec.task == monitor.spec.task:
                await conn.execute(
                    "UPDATE monitors SET body = $1, deleted = NULL WHERE id = $2", text, previous.id
                )
                return Registered(previous.id, monitor, body, previous.created)
            # A deleted monitor re-created with another task starts afresh; the purge takes the
            # old data under a key no PUT can use.
            await conn.execute(
                "UPDATE monitors SET key = key || '#' || id WHERE id = $1", previous.id
            )
        monitor_id = await conn.fetchval(
            "INSERT INTO monitors (key, body, created) VALUES ($1, $2, $3) RETURNING id",
            monitor.key,
            text,
            now,
        )
        return Registered(monitor_id, monitor, body, now)

    async def delete_monitor(self, key: str, now: float) -> bool:
        return await self._tx(self._delete_monitor, key, now)

    async def _delete_monitor(self, conn: asyncpg.Connection, key: str, now: float) -> bool:
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", self.keys.registry)
        status = await conn.execute(
            "UPDATE monitors SET deleted = $1 WHERE key = $2 AND deleted IS NULL", now, key
        )
        if _count(status) == 0:
            return False
        await self._notify(conn)
        return True

    async def purge_deleted(self, before: float, limit: int) -> int:
        return await self._tx(self._purge_deleted, before, limit)

    async def _purge_deleted(self, conn: asyncpg.Connection, before: float, limit: int) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", self.keys.registry)
        # A fold writes aggregate rows back whole: one under way would bring purged ones back.
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", self.keys.fold)
        removed = 0
        doomed = await conn.fetch(
            "SELECT id FROM monitors WHERE deleted IS NOT NULL AND deleted < $1", before
        )
        for (monitor_id,) in doomed:
            removed += await conn.fetchval(
                DELETE_PREDICTIONS, monitor_id, math.inf, limit - removed
            )
            if removed >= limit:
                break
            tables = ("pending", "agg_delta", "totals", "states", "sweeps")
            for table in (*tables, *(f"agg_{level}" for level in LEVELS)):
                removed += _count(
                    await conn.execute(f"DELETE FROM {table} WHERE monitor_id = $1", monitor_id)
                )
            await conn.execute("DELETE FROM monitors WHERE id = $1", monitor_id)
        return removed

    async def load_states(self) -> dict[int, StoredState]:
        found = await self._read(
            _fetch, "SELECT monitor_id, version, state, external, override FROM states"
        )
        return {r[0]: _state(*r[1:]) for r in found}

    async def save_state(self, monitor_id: int, state: StoredState) -> None:
        await self._tx(self._save_state, monitor_id, state)

    async def _save_state(
        self, conn: asyncpg.Connection, monitor_id: int, state: StoredState
    ) -> None:
        await conn.execute(
            "INSERT INTO states (monitor_id, version, state, external, override)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (monitor_id) DO UPDATE SET"
            " version = excluded.version, state = excluded.state, external = excluded.external,"
            " override = excluded.override",
            monitor_id,
            state.version,
            to_json(state.state),
            to_json(list(state.external)),
            state.override,
        )
        await self._notify(conn)

    # -- predictions ---------------------------------------------------------------------------

    async def insert_predictions(
        self, records: Sequence[PredictionRecord], monitors: Mapping[str, Registered], now: float
    ) -> IngestResult:
        if not records:
            return IngestResult(0, 0, 0)
        try:
            return await self._tx(self._insert_predictions, records, monitors, now, True)
        except asyncpg.UniqueViolationError:  # a key already stored: a retried batch
            return await self._tx(self._insert_predictions, records, monitors, now, False)

    async def _insert_predictions(
        self,
        conn: asyncpg.Connection,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, Registered],
        now: float,
        copy: bool,
    ) -> IngestResult:
        """Insert a batch and join the pending actuals it satisfies: by COPY with `copy`, which
        fails on a known key (the caller reruns the batch as an upsert, which skips them)."""
        mids = [monitors[r.monitor].id for r in records]
        await conn.execute(
            "SELECT pg_advisory_xact_lock_shared($1, m) FROM unnest($2::int[]) AS m",
            self.keys.intake,
            sorted(set(mids)),
        )
        rows = [codec.prediction_values(mid, r) for r, mid in zip(records, mids, strict=True)]
        refs: dict[int, int] | None = None  # batch index -> record id, looked up when labeling
        if copy:
            await conn.copy_records_to_table(
                "predictions", records=rows, columns=PREDICTION_COLUMNS
            )
            stored: Sequence[int] = range(len(records))
        else:
            returned = await conn.fetch(
                INSERT_PREDICTIONS, to_json([(i, *row) for i, row in enumerate(rows)])
            )
            refs = dict(returned)
            stored = list(refs)
        batch = [records[i] for i in stored]
        waiting = {}
        for key, part in plan.by_monitor(batch).items():
            registered = monitors[key]
            found = await conn.fetch(
                JOIN_PENDING,
                registered.id,
                to_json([r.prediction_id for r in part]),
                to_json(sorted({r.entity_id for r in part if r.entity_id is not None})),
            )
            if found:
                waiting[registered.id] = [codec.waiting(registered.monitor.key, *w) for w in found]
        result = plan.plan_arrivals(batch, monitors, waiting, now)
        if result.labels and refs is None:
            refs = await _refs(conn, records, mids)
        ids = {j: refs[stored[j]] for j in result.labels} if refs is not None else {}
        await self._write_plan(conn, result, now, {}, ids if result.labels else None)
        return IngestResult(len(stored), len(records) - len(stored), result.matched)

    # -- actuals -------------------------------------------------------------------------------

    async def apply_actuals(
        self, actuals: Sequence[Actual], monitors: Mapping[str, Registered], now: float
    ) -> FeedbackResult:
        if not actuals:
            return FeedbackResult(0, 0)
        try:
            return await self._tx(self._apply_actuals, actuals, monitors, now, False)
        except (asyncpg.UniqueViolationError, _Relabeled):
            # Another writer labeled one of the records since this one read it: alone this time.
            return await self._tx(self._apply_actuals, actuals, monitors, now, True)

    async def _apply_actuals(
        self,
        conn: asyncpg.Connection,
        actuals: Sequence[Actual],
        monitors: Mapping[str, Registered],
        now: float,
        alone: bool,
    ) -> FeedbackResult:
        """Join the actuals to the records they label, beside the monitors' other label writers
        (whose writes may fail this one's) or, `alone`, with them waited out and kept out."""
        mids = sorted({monitors[a.monitor].id for a in actuals})
        await self._hold_labels(conn, mids, alone)
        found, rows = await _find(conn, actuals, range(len(actuals)), monitors)
        unmatched = [i for i in range(len(actuals)) if i not in found]
        if unmatched:
            # About to wait as pending: wait out the batches in flight, then look again.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, m) FROM unnest($2::int[]) AS m",
                self.keys.intake,
                sorted({monitors[actuals[i].monitor].id for i in unmatched}),
            )
            more, more_rows = await _find(conn, actuals, unmatched, monitors)
            found.update(more)
            rows.update(more_rows)
        candidates = {i: [rows[ref][0] for ref in sorted(refs)] for i, refs in found.items()}
        result = plan.plan_actuals(actuals, monitors, candidates, now)
        if result.errors:
            raise LabelsRejected(result.errors)
        versions = {ref: version for ref, (_, version) in rows.items() if version is not None}
        await self._write_plan(conn, result, now, versions)
        return FeedbackResult(matched=result.matched, pending=len(result.waiting))

    @staticmethod
    async def _write_plan(
        conn: asyncpg.Connection,
        result: plan.Plan,
        now: float,
        versions: Mapping[int, str],
        refs: Mapping[int, int] | None = None,
    ) -> None:
        """Store a plan: labels (`versions` of the ones replaced; `refs` maps a new record's
        batch index to its id), counter deltas and totals, pending actuals."""
        await _write_labels(conn, result.labels, now, versions, refs)
        await _add(conn, result.deltas, result.totals)
        if result.waiting:
            await conn.execute(
                INSERT_PENDING,
                to_json([codec.pending_values(p) for p in result.waiting]),
            )
        if result.done:
            await conn.execute("DELETE FROM pending WHERE id = ANY($1::bigint[])", result.done)
        if result.partly:
            await conn.execute(
                "UPDATE pending SET labeled = u.labeled FROM"
                f" ({_rows(1, 'bigint', 'text')}) AS u(id, labeled) WHERE pending.id = u.id",
                to_json([(ref, to_json(labeled)) for ref, labeled in result.partly]),
            )

    async def _hold_labels(
        self, conn: asyncpg.Connection, mids: Sequence[int], alone: bool
    ) -> None:
        """Hold the monitors' labels lock (in id order) until commit: shared beside the other
        writers, or exclusive, to write `alone`."""
        shared = "" if alone else "_shared"
        await conn.execute(
            f"SELECT pg_advisory_xact_lock{shared}($1, m) FROM unnest($2::int[]) AS m",
            self.keys.labels,
            mids,
        )

    # -- maintenance ---------------------------------------------------------------------------

    async def assume_missing(
        self, monitor: Registered, cutoff: float, now: float, limit: int
    ) -> int:
        if join.assumed_label(monitor.monitor.spec) is None:
            return 0
        return await self._tx(self._assume_missing, monitor, cutoff, now, limit)

    async def _assume_missing(
        self,
        conn: asyncpg.Connection,
        monitor: Registered,
        cutoff: float,
        now: float,
        limit: int,
    ) -> int:
        swept = await conn.fetchval("SELECT swept FROM sweeps WHERE monitor_id = $1", monitor.id)
        swept = -math.inf if swept is None else swept
        if swept >= cutoff:
            return 0
        await self._hold_labels(conn, [monitor.id], True)
        candidates = await conn.fetch(
            f"SELECT {ROW_COLUMNS} FROM {LABELED} WHERE monitor_id = $1 AND ts >= $2 AND ts < $3"
            " AND prediction_ref IS NULL ORDER BY ts LIMIT $4",
            monitor.id,
            swept,
            cutoff,
            limit,
        )
        result = plan.plan_assumed(monitor, [codec.row(*found) for found in candidates])
        await self._write_plan(conn, result, now, {})
        swept = candidates[-1]["ts"] if len(candidates) == limit else cutoff
        await conn.execute(
            "INSERT INTO sweeps (monitor_id, swept) VALUES ($1, $2)"
            " ON CONFLICT (monitor_id) DO UPDATE SET swept = excluded.swept",
            monitor.id,
            swept,
        )
        return len(result.labels)

    async def expire_pending(self, now: float) -> dict[int, int]:
        return await self._tx(self._expire_pending, now)

    @staticmethod
    async def _expire_pending(conn: asyncpg.Connection, now: float) -> dict[int, int]:
        found = await conn.fetch(
            "WITH gone AS (DELETE FROM pending WHERE expires <= $1 RETURNING monitor_id, labeled)"
            " SELECT monitor_id, count(*) FROM gone WHERE labeled IS NULL GROUP BY monitor_id",
            now,
        )
        expired = {mid: n for mid, n in found}
        await _add(
            conn, {}, {(mid, "", ""): {ACTUALS_EXPIRED: float(n)} for mid, n in expired.items()}
        )
        return expired

    async def delete_predictions(self, monitor_id: int, before: float, limit: int) -> int:
        return await self._tx(_fetchval, DELETE_PREDICTIONS, monitor_id, before, limit)

    async def compact(self) -> int:
        """Fold the counter deltas writers appended into the aggregates, in transactions of
        `FOLD_CHUNK` rows for up to about `FOLD_BUDGET` seconds (a backlog takes several ticks;
        reads are exact meanwhile); how many delta rows were folded."""
        folded = 0
        deadline = time.monotonic() + FOLD_BUDGET
        while True:
            moved = await self._tx(self._fold, FOLD_CHUNK)
            folded += moved
            if moved < FOLD_CHUNK or time.monotonic() > deadline:
                return folded

    async def _fold(self, conn: asyncpg.Connection, limit: int) -> int:
        """Move up to `limit` delta rows into the minute buckets, their hour and day rollups and
        the lifetime totals; how many it moved. Aggregate rows are summed here and written
        whole, so folds take turns (the *fold* lock): two leaders for a moment, say."""
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", self.keys.fold)
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

    # -- reads ---------------------------------------------------------------------------------

    async def window(
        self,
        monitor_id: int,
        span: BucketRange,
        *,
        version: str | None = None,
        served_by: str | None = None,
    ) -> dict[Group, Counters]:
        params: list[Any] = [monitor_id]
        extra = _filters(params, version, served_by)
        parts = []
        for table, start, end in (
            *((f"agg_{p.level}", p.start, p.end) for p in decompose(span)),
            ("agg_delta", span.start, span.end),
        ):
            params += [start, end]
            parts.append(
                f"SELECT version, served_by, counters FROM {table} WHERE monitor_id = $1"
                f" AND bucket >= ${len(params) - 1} AND bucket < ${len(params)}{extra}"
            )
        if len(parts) == 1:
            return {}
        found = await self._read(_fetch, " UNION ALL ".join(parts), *params)
        result: dict[Group, Counters] = {}
        for v, s, counters in found:
            _sum_into(result.setdefault((v, s), {}), counters)
        return result

    async def series(
        self,
        monitor_id: int,
        span: BucketRange,
        steps: Steps,
        *,
        version: str | None = None,
        served_by: str | None = None,
    ) -> dict[int, dict[Group, Counters]]:
        unit = LEVEL_MINUTES[steps.level]
        end = steps.start + steps.width * steps.count
        params: list[Any] = [unit, steps.start, steps.width, monitor_id, -(-end // unit), end]
        extra = _filters(params, version, served_by)
        found = await self._read(
            _fetch,
            "SELECT (bucket * $1::bigint - $2::bigint) / $3::bigint, version, served_by, counters"
            f" FROM agg_{steps.level} WHERE monitor_id = $4"
            f" AND bucket >= $2::bigint / $1::bigint AND bucket < $5{extra}"
            " UNION ALL SELECT (bucket - $2::bigint) / $3::bigint, version, served_by, counters"
            f" FROM agg_delta WHERE monitor_id = $4 AND bucket >= $2 AND bucket < $6{extra}",
            *params,
        )
        result: dict[int, dict[Group, Counters]] = {}
        for point, v, s, counters in found:
            _sum_into(result.setdefault(point, {}).setdefault((v, s), {}), counters)
        return result

    async def totals(self) -> dict[int, dict[Group, Counters]]:
        found = await self._read(
            _fetch,
            "SELECT monitor_id, version, served_by, key, sum(value) FROM"
            f" (SELECT * FROM totals UNION ALL {LIFETIME_DELTAS}) AS lifetime GROUP BY 1, 2, 3, 4",
        )
        result: dict[int, dict[Group, Counters]] = {}
        for mid, v, s, key, value in found:
            result.setdefault(mid, {}).setdefault((v, s), {})[key] = value
        return result

    async def timeline(self, monitor_id: int, entity_id: str, limit: int) -> list[StoredPrediction]:
        found = await self._read(
            _fetch,
            f"SELECT {STORED_COLUMNS} FROM {LABELED} WHERE monitor_id = $1 AND entity_id = $2"
            " ORDER BY ts DESC, id DESC LIMIT $3",
            monitor_id,
            entity_id,
            limit,
        )
        return [codec.stored(*r) for r in found]

    async def dataset(
        self, query: DatasetQuery, after: tuple[float, int], limit: int
    ) -> list[StoredPrediction]:
        params: list[Any] = [query.monitor_id, *after, query.end]
        sql = (
            f"SELECT {STORED_COLUMNS} FROM predictions JOIN labels ON prediction_ref = id"
            " WHERE monitor_id = $1 AND ts >= $2 AND (ts, id) > ($2, $3) AND ts < $4"
        )
        if query.version is not None:
            params.append(query.version)
            sql += f" AND model_version = ${len(params)}"
        if query.correct is not None:
            params.append(query.correct)
            sql += f" AND correct = ${len(params)}"
        params.append(limit)
        found = await self._read(_fetch, sql + f" ORDER BY ts, id LIMIT ${len(params)}", *params)
        return [codec.stored(*r) for r in found]


# -- statements shared by the writes -----------------------------------------------------------


async def _migrate(conn: asyncpg.Connection, keys: Keys) -> None:
    """Apply the migrations this database lacks, once, whoever else is starting."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", keys.migrate)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS truthloop_migrations"
            " (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in await conn.fetch("SELECT version FROM truthloop_migrations")}
        newest = max(done, default=0)
        if newest > len(MIGRATIONS):
            raise StoreError(
                f"the database schema is at version {newest}, newer than this build knows"
                f" ({len(MIGRATIONS)}): run a newer truthloop"
            )
        for version, script in enumerate(MIGRATIONS, start=1):
            if version not in done:
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO truthloop_migrations (version) VALUES ($1)", version
                )
                log.info("store schema migrated to version %d", version)


async def _stateless(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release: nothing beyond the driver's own rollback.

    Pooled connections keep no session state (no settings, cursors, LISTENs; `hold_state`
    releases its lock itself), so the server-side reset would only cost a round trip.
    """


async def _fetch(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    return await conn.fetch(sql, *args)


async def _fetchval(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    return await conn.fetchval(sql, *args)


Versioned = tuple[Row, str | None]
"""A record as the join read it, and its label's version (None: it had no label)."""


async def _find(
    conn: asyncpg.Connection,
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
    for i, *columns, version in await conn.fetch(FIND_ROWS, to_json(by_id), to_json(by_entity)):
        found.setdefault(i, []).append(columns[0])
        rows[columns[0]] = (codec.row(*columns), version)
    return found, rows


async def _refs(
    conn: asyncpg.Connection, records: Sequence[PredictionRecord], mids: Sequence[int]
) -> dict[int, int]:
    """Batch index -> id of the batch's records (just COPYed: each is stored)."""
    keys = [
        (i, mid, r.prediction_id, r.served_by)
        for i, (r, mid) in enumerate(zip(records, mids, strict=True))
    ]
    return dict(await conn.fetch(REFS, to_json(keys)))


class _Relabeled(Exception):
    """A label changed between the join's read and its write (the join reruns with locks)."""


async def _write_labels(
    conn: asyncpg.Connection,
    labels: Mapping[int, tuple[join.Row, bool | None]],
    now: float,
    versions: Mapping[int, str],
    refs: Mapping[int, int] | None,
) -> None:
    """Store a plan's labels (`refs` maps its refs to record ids where they differ): COPYed for
    records that had none (a record another writer labeled meanwhile fails it:
    `UniqueViolationError`), replacing the version in `versions` for the ones that had one
    (`_Relabeled` when another writer changed it)."""
    if not labels:
        return
    columns: dict[join.Label, tuple[str | None, str | None, bool]] = {}
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
        await conn.copy_records_to_table("labels", records=fresh, columns=LABEL_COLUMNS)
    if changed and _count(await conn.execute(RELABEL, to_json(changed))) < len(changed):
        raise _Relabeled


async def _add(
    conn: asyncpg.Connection,
    deltas: Mapping[join.GroupKey, Mapping[str, float]],
    totals: Mapping[tuple[int, str, str], Mapping[str, float]],
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
        nonzero = {key: value for key, value in counters.items() if value}
        if nonzero:
            values.append((*group, nonzero))
    if values:
        await conn.execute(ADD_DELTAS, to_json(values))


async def _add_to_aggregate(
    conn: asyncpg.Connection, level: str, groups: Mapping[join.GroupKey, Mapping[str, float]]
) -> None:
    """Add summed counters to the `level` aggregate's rows of their groups and buckets."""
    keys = sorted(groups)
    found = await conn.fetch(_read_aggregates(level), to_json(keys))
    stored = {(mid, v, s, bucket): codec.decode(c) for mid, v, s, bucket, c in found}
    rows = []
    for key in keys:
        total = stored.get(key, {})
        for counter, value in groups[key].items():
            total[counter] = total.get(counter, 0.0) + value
        rows.append((*key, total))
    await conn.execute(_write_aggregates(level), to_json(rows))


def _sum_into(into: Counters, counters: str) -> None:
    """Add a stored `counters` object (JSON text) into `into`.

    Reads sum aggregate rows here rather than in SQL: expanding a thousand histogram cells a row
    (`jsonb_each_text`) and grouping them cost the server ten times what decoding costs here.
    """
    for key, value in codec.decode(counters).items():
        into[key] = into.get(key, 0.0) + value


# -- values ------------------------------------------------------------------------------------


def _state(version: int, state: str, external: str, override: str | None) -> StoredState:
    return StoredState(version, codec.decode(state), tuple(codec.decode(external)), override)


def _filters(params: list[Any], version: str | None, served_by: str | None) -> str:
    """SQL conditions for the optional filters; their values are appended to `params`."""
    sql = ""
    if version is not None:
        params.append(version)
        sql += f" AND version = ${len(params)}"
    if served_by is not None:
        params.append(served_by)
        sql += f" AND served_by = ${len(params)}"
    return sql


def _count(status: str) -> int:
    """Rows a command touched, from its status tag (`DELETE 42`)."""
    return int(status.rpartition(" ")[2] or 0)


def _unavailable(error: BaseException) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    return StoreUnavailable(f"the database is unavailable: {error or type(error).__name__}")


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=CONNECT_TIMEOUT)
    except (TimeoutError, *UNAVAILABLE):
        conn.terminate()


def open_url(url: str) -> PostgresStore:
    """`postgresql://user@host:port/db[?pool_size=N&search_path=schema&...]`."""
    parts = urlsplit(url)
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: expected postgresql://user@host/db")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: malformed query") from None
    options = dict(query)
    pool_size = options.pop("pool_size", "10")
    if not pool_size.isdigit() or not 2 <= int(pool_size) <= 1000:
        raise ValueError(f"bad PostgreSQL store URL {url!r}: pool_size must be 2 to 1000")
    options.setdefault("application_name", "truthloop-feedback")
    dsn = urlunsplit(parts._replace(query=urlencode(options)))
    return PostgresStore(dsn, pool_size=int(pool_size))
