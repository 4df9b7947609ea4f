"""The embedded store: one SQLite file in WAL mode, driven from one dedicated thread.

Every call runs on a single worker thread that owns the only connection, so the event loop never
blocks on disk and transactions never interleave. Writes use `BEGIN IMMEDIATE ... COMMIT`; with
`synchronous=FULL` (the default) a returned write survives power loss, with `NORMAL` it survives
the process being killed (WAL), which is cheaper. Choose with `sqlite:///path.db?synchronous=normal`.

Batches are written with `executemany`; a duplicate key is found by `INSERT OR IGNORE` counting
fewer changes than rows, and only then is the batch redone row by row to learn which ones.

A write does not update the aggregates in place: it appends its counter deltas to `agg_delta`,
one row per minute group with the counters as one JSON object, in the same transaction as its
records and labels, and adds them to the store's in-memory sum of unfolded deltas. `compact`
(every tick) and every aggregate read first fold that sum into the minute, hour and day buckets
and the lifetime totals and empty `agg_delta`: the batches of a second that hit the same buckets
cost one upsert per bucket and counter instead of one each. Reads stay exact. After a crash, or a
rolled-back write, the sum is rebuilt from `agg_delta`, which holds exactly the committed ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from truthloop.core import (
    alerts,
    estimate,
    join,
    plan,
    queue,
    registry,
    review,
    segments,
    sketch,
    windows,
)
from truthloop.core.evaluation import Group
from truthloop.core.join import Label, Row
from truthloop.core.plan import ACTUALS_EXPIRED
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import Monitor
from truthloop.core.windows import (
    LEVEL_MINUTES,
    BucketRange,
    Steps,
    decompose,
)
from truthloop.feedback.store import codec
from truthloop.feedback.store.interface import (
    EVERY,
    Counters,
    DatasetQuery,
    FeedbackResult,
    Groups,
    HalfStored,
    IngestResult,
    LabelsRejected,
    MonitorsGone,
    Only,
    QueueStats,
    Registered,
    ReportPart,
    ReviewItem,
    Store,
    StoredPrediction,
    StoredReport,
    StoredState,
    StoreError,
    by_segment,
    opened,
    rollup,
)

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema (a database from before migrations were numbered has these tables
    # and `user_version` 0: the statements create nothing that exists)
    """
CREATE TABLE IF NOT EXISTS monitors (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    deleted REAL
);
CREATE TABLE IF NOT EXISTS states (
    monitor_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    external TEXT NOT NULL,
    override TEXT
);
CREATE TABLE IF NOT EXISTS sweeps (
    monitor_id INTEGER PRIMARY KEY,
    swept REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    monitor_id INTEGER NOT NULL,
    prediction_id TEXT NOT NULL,
    served_by TEXT NOT NULL,
    model_version TEXT NOT NULL,
    entity_id TEXT,
    tag TEXT,
    ts REAL NOT NULL,
    prediction TEXT NOT NULL,
    score REAL,
    features TEXT,
    actual TEXT,
    vote TEXT,
    assumed INTEGER NOT NULL DEFAULT 0,
    correct INTEGER,
    labeled_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS predictions_key
    ON predictions (monitor_id, prediction_id, served_by);
CREATE INDEX IF NOT EXISTS predictions_entity
    ON predictions (monitor_id, entity_id, ts) WHERE entity_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (monitor_id, ts);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    monitor_id INTEGER NOT NULL,
    prediction_id TEXT,
    entity_id TEXT,
    tag TEXT,
    ts REAL NOT NULL,
    actual TEXT,
    vote TEXT,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_pid ON pending (monitor_id, prediction_id);
CREATE INDEX IF NOT EXISTS pending_entity
    ON pending (monitor_id, entity_id) WHERE entity_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS pending_expires ON pending (expires);
CREATE TABLE IF NOT EXISTS agg_delta (
    id INTEGER PRIMARY KEY,
    monitor_id INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    version TEXT NOT NULL,
    served_by TEXT NOT NULL,
    counters TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    monitor_id INTEGER NOT NULL,
    version TEXT NOT NULL,
    served_by TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (monitor_id, version, served_by, key)
) WITHOUT ROWID;
"""
    + "".join(
        f"""
CREATE TABLE IF NOT EXISTS agg_{level} (
    monitor_id INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    version TEXT NOT NULL,
    served_by TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (monitor_id, bucket, version, served_by, key)
) WITHOUT ROWID;
"""
        for level in LEVEL_MINUTES
    ),
    # 2: a pending prediction_id actual remembers what it labeled (it waits on for the model's
    # shadow answer after labeling a fallback answer)
    "ALTER TABLE pending ADD COLUMN labeled TEXT;",
    # 3: the namespace tokens' scopes
    codec.TOKENS_TABLE,
    # 4: reference profiles, and each record's outlier score
    codec.REFERENCES_TABLE.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"),
    # 5: human review: each record's review mark and abstained flag, a label's reviewer, the queue
    codec.REVIEW_TABLE.format(
        id="INTEGER PRIMARY KEY", flag="INTEGER NOT NULL DEFAULT 0", labels="predictions"
    ),
    # 6: segments: each record's raw values and prefixes, and the segment counters, kept apart
    # (per segment, so a read of one reads only its rows; other reads never see them)
    codec.SEGMENT_COLUMNS
    + "".join(
        f"""
CREATE TABLE seg_{level} (
    monitor_id INTEGER NOT NULL,
    segment TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    version TEXT NOT NULL,
    served_by TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (monitor_id, segment, bucket, version, served_by, key)
) WITHOUT ROWID;
"""
        for level in LEVEL_MINUTES
    ),
    # 7: the alert machine's transitions, the alert reports, the sidecars' minute counters
    codec.HISTORY_TABLES.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", bucket="INTEGER"),
    # 8: CloudEvents waiting for their other half (KServe's payload logger)
    codec.EVENT_HALVES_TABLE,
)
"""Schema steps, applied at `open` each once, in order; `PRAGMA user_version` counts them."""


def migrate(conn: sqlite3.Connection, upto: int = len(MIGRATIONS)) -> None:
    """Apply the migrations the file has not had, up to `upto`, each in a transaction of its own.

    A file migrated by a newer build (a version this one does not know) is refused, not misread.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database schema is at version {version}, newer than this build knows"
            f" ({len(MIGRATIONS)}): run a newer truthloop"
        )
    for number in range(version + 1, upto + 1):
        try:
            script = MIGRATIONS[number - 1]
            conn.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class SQLiteStore(Store):
    """`Store` on one SQLite file; see the module docstring for threading and durability."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="truthloop-sqlite")
        self._conn: sqlite3.Connection | None = None
        # The committed deltas in `agg_delta`, summed per minute group; None: reread them.
        self._unfolded: dict[join.GroupKey, dict[str, float]] | None = None
        self._parsed = codec.Parsed()
        self._halves: list[tuple[_Half, asyncio.Future[HalfStored]]] = []
        """CloudEvent halves waiting for the next group's transaction (`put_half`)."""
        self._halves_writer: asyncio.Future[None] | None = None

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._transaction, fn, *args)

    def _transaction(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            self._unfolded = None  # it may hold the rolled-back write's deltas
            raise
        conn.execute("COMMIT")
        return result

    @property
    def _db(self) -> sqlite3.Connection:
        return opened(self._conn)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        """Open the file, creating it but never its directory: a mistyped path is an error
        naming it, not a new directory tree."""
        if not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: no directory {self.path.parent}")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -65536")
            migrate(conn)
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"{self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._unfolded = None  # read the file's deltas on the first fold

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        self._db.execute("PRAGMA optimize")
        self._db.close()
        self._conn = None

    # -- monitors and state --------------------------------------------------------------------

    async def load_monitors(self) -> list[Registered]:
        return await self._call(self._load_monitors)

    def _load_monitors(self) -> list[Registered]:
        references = self._parsed.references(
            self._db.execute(
                f"SELECT {codec.REFERENCE_COLUMNS},"
                " CASE WHEN id IN (SELECT value FROM json_each(?)) THEN NULL ELSE profile END"
                " FROM reference_profiles ORDER BY id",
                (codec.to_json(self._parsed.profiles_known()),),
            )
        )
        rows = self._db.execute(
            "SELECT id, body, created, deleted FROM monitors WHERE key NOT LIKE '%#%'"
        )
        return self._parsed.registered(rows, references)

    async def put_monitor(
        self, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> tuple[Registered, bool]:
        return await self._tx(self._put_monitor, monitor, body, now)

    def _put_monitor(
        self, conn: sqlite3.Connection, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> tuple[Registered, bool]:
        old = conn.execute(
            "SELECT id, body, created, deleted FROM monitors WHERE key = ?", (monitor.key,)
        ).fetchone()
        previous = None if old is None else codec.registered(*old)
        done = registry.register(previous, monitor, body)
        text = codec.to_json(done.body)
        if previous is not None and done.keeps:
            conn.execute(
                "UPDATE monitors SET body = ?, deleted = NULL WHERE id = ?", (text, previous.id)
            )
            references = _references(conn, previous.id)
            kept = Registered(
                previous.id, done.monitor, done.body, previous.created, references=references
            )
            return kept, done.created
        if previous is not None:
            # Replaced by a monitor of another task: the purge takes the old data under a key no
            # PUT can use.
            conn.execute("UPDATE monitors SET key = key || '#' || id WHERE id = ?", (previous.id,))
        cursor = conn.execute(
            "INSERT INTO monitors (key, body, created) VALUES (?, ?, ?)", (monitor.key, text, now)
        )
        assert cursor.lastrowid is not None
        return Registered(cursor.lastrowid, done.monitor, done.body, now), done.created

    async def delete_monitor(self, key: str, now: float) -> bool:
        return await self._tx(self._delete_monitor, key, now)

    async def put_reference(
        self,
        monitor_id: int,
        version: str,
        source: ReferenceSource,
        profile: Profile,
        now: float,
    ) -> Reference:
        return await self._tx(_put_reference, monitor_id, version, source, profile, now)

    async def load_tokens(self) -> dict[str, str]:
        return await self._call(self._load_tokens)

    def _load_tokens(self) -> dict[str, str]:
        return {namespace: sha256 for namespace, sha256 in self._db.execute(codec.LOAD_TOKENS)}

    async def put_token(self, namespace: str, sha256: str, now: float) -> None:
        await self._tx(_put_token, namespace, sha256, now)

    @staticmethod
    def _delete_monitor(conn: sqlite3.Connection, key: str, now: float) -> bool:
        cursor = conn.execute(
            "UPDATE monitors SET deleted = ? WHERE key = ? AND deleted IS NULL", (now, key)
        )
        return cursor.rowcount > 0

    async def purge_deleted(self, before: float, limit: int) -> int:
        return await self._tx(self._purge_deleted, before, limit)

    def _purge_deleted(self, conn: sqlite3.Connection, before: float, limit: int) -> int:
        removed = 0
        doomed = conn.execute(
            "SELECT id FROM monitors WHERE deleted IS NOT NULL AND deleted < ?", (before,)
        ).fetchall()
        for (monitor_id,) in doomed:
            cursor = conn.execute(
                "DELETE FROM predictions WHERE id IN"
                " (SELECT id FROM predictions WHERE monitor_id = ? LIMIT ?)",
                (monitor_id, limit - removed),
            )
            removed += cursor.rowcount
            if removed >= limit:
                break
            for table in (*codec.PURGED_TABLES, *_agg_tables()):
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE monitor_id = ?", (monitor_id,)
                ).rowcount
            conn.execute("DELETE FROM monitors WHERE id = ?", (monitor_id,))
            self._unfolded = None  # without the purged monitor's deltas
        return removed

    async def load_states(self) -> dict[int, StoredState]:
        return await self._call(self._load_states)

    def _load_states(self) -> dict[int, StoredState]:
        rows = self._db.execute("SELECT monitor_id, version, state, external, override FROM states")
        return {
            monitor_id: StoredState(
                version, codec.decode(state), tuple(codec.decode(external)), override
            )
            for monitor_id, version, state, external, override in rows
        }

    async def save_state(self, monitor_id: int, state: StoredState) -> None:
        await self._tx(self._save_state, monitor_id, state)

    @staticmethod
    def _save_state(conn: sqlite3.Connection, monitor_id: int, state: StoredState) -> None:
        conn.execute(
            "INSERT INTO states (monitor_id, version, state, external, override)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (monitor_id) DO UPDATE SET"
            " version = excluded.version, state = excluded.state, external = excluded.external,"
            " override = excluded.override",
            (
                monitor_id,
                state.version,
                codec.to_json(state.state),
                codec.to_json(list(state.external)),
                state.override,
            ),
        )

    # -- history ------------------------------------------------------------------------------

    async def add_transitions(
        self, monitor_id: int, transitions: Sequence[alerts.Transition]
    ) -> None:
        rows = [(monitor_id, t.at, *codec.transition_values(t)) for t in transitions]
        if rows:
            await self._tx(lambda conn: conn.executemany(_ADD_TRANSITION, rows))

    async def transitions(
        self, monitor_id: int, start: float, end: float, limit: int
    ) -> list[alerts.Transition]:
        rows = await self._call(
            lambda: self._db.execute(_TRANSITIONS, (monitor_id, start, end, limit)).fetchall()
        )
        return [codec.transition(*row) for row in reversed(rows)]

    async def delete_transitions(self, monitor_id: int, before: float, limit: int) -> int:
        return await self._tx(
            lambda conn: conn.execute(_DELETE_TRANSITIONS, (monitor_id, before, limit)).rowcount
        )

    # -- writes -------------------------------------------------------------------------------

    async def insert_predictions(
        self,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, Registered],
        now: float,
        designs: Mapping[int, review.Design] | None = None,
        segment_sets: Mapping[int, segments.ValueSets] | None = None,
    ) -> IngestResult:
        return await self._tx(
            self._insert_predictions, records, monitors, now, designs, segment_sets
        )

    def _insert_predictions(
        self,
        conn: sqlite3.Connection,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, Registered],
        now: float,
        designs: Mapping[int, review.Design] | None,
        segment_sets: Mapping[int, segments.ValueSets] | None,
    ) -> IngestResult:
        prepared = codec.prepare(records, monitors, designs, segment_sets)
        values = codec.batch_values(records, monitors, prepared)
        insert = _INSERT_PREDICTION
        conn.execute("SAVEPOINT batch")
        stored: Sequence[int]
        if conn.executemany(insert, values).rowcount == len(values):
            stored = range(len(records))
        else:
            conn.execute("ROLLBACK TO batch")
            stored = [i for i, v in enumerate(values) if conn.execute(insert, v).rowcount]
        conn.execute("RELEASE batch")
        inserted = [records[i] for i in stored]
        waiting = {
            monitors[key].id: _waiting(conn, monitors[key], batch)
            for key, batch in plan.by_monitor(inserted).items()
        }
        selected = prepared.selected
        result = plan.plan_arrivals(
            inserted, monitors, waiting, now, prepared.sketched, stored, selected, prepared.assigned
        )
        refs = _refs(conn, inserted, monitors) if result.labels else {}
        self._write_plan(conn, result, now, refs)
        queued = codec.queued_values(records, monitors, selected, stored, now)
        if queued:
            conn.executemany(_QUEUE, queued)
        return IngestResult(len(inserted), len(records) - len(inserted), result.matched)

    async def apply_actuals(
        self, actuals: Sequence[Actual], monitors: Mapping[str, Registered], now: float
    ) -> FeedbackResult:
        return await self._tx(self._apply_actuals, actuals, monitors, now)

    def _apply_actuals(
        self,
        conn: sqlite3.Connection,
        actuals: Sequence[Actual],
        monitors: Mapping[str, Registered],
        now: float,
    ) -> FeedbackResult:
        candidates = _candidates(conn, actuals, monitors)
        items = _review_items(conn, actuals, monitors)
        result = plan.plan_actuals(actuals, monitors, candidates, now, items)
        if result.errors:
            raise LabelsRejected(result.errors)
        self._write_plan(conn, result, now)
        return FeedbackResult(matched=result.matched, pending=len(result.waiting))

    def _write_plan(
        self,
        conn: sqlite3.Connection,
        result: plan.Plan,
        now: float,
        refs: Mapping[int, int] | None = None,
    ) -> None:
        """Store a plan: labels (`refs` maps a new record's batch index to its id), counter
        deltas, lifetime totals and pending actuals."""
        _write_labels(conn, result.labels, now, refs)
        self._write_aggregates(conn, result.deltas)
        _write_totals(
            conn,
            [
                (*group, key, n)
                for group, counters in result.totals.items()
                for key, n in counters.items()
            ],
        )
        if result.waiting:
            conn.executemany(
                "INSERT INTO pending (monitor_id, prediction_id, entity_id, tag, ts, actual,"
                " vote, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [codec.pending_values(p) for p in result.waiting],
            )
        if result.done:
            conn.execute(
                "DELETE FROM pending WHERE id IN (SELECT value FROM json_each(?))",
                (codec.to_json(result.done),),
            )
        if result.partly:
            conn.executemany(
                "UPDATE pending SET labeled = ? WHERE id = ?",
                [(codec.to_json(labeled), ref) for ref, labeled in result.partly],
            )
        if result.reviews:
            conn.executemany(_ANSWER, [codec.answered_values(i) for i in result.reviews])

    # -- maintenance ---------------------------------------------------------------------------

    async def assume_missing(
        self, monitor: Registered, cutoff: float, now: float, limit: int
    ) -> int:
        return await self._tx(self._assume_missing, monitor, cutoff, now, limit)

    def _assume_missing(
        self, conn: sqlite3.Connection, monitor: Registered, cutoff: float, now: float, limit: int
    ) -> int:
        if join.assumed_label(monitor.monitor.spec) is None:
            return 0
        found = conn.execute(
            "SELECT swept FROM sweeps WHERE monitor_id = ?", (monitor.id,)
        ).fetchone()
        swept = found[0] if found else float("-inf")
        if swept >= cutoff:
            return 0
        rows = [
            codec.row(*values)
            for values in conn.execute(
                f"SELECT {codec.ROW_COLUMNS} FROM predictions WHERE monitor_id = ? AND ts >= ?"
                " AND ts < ? AND labeled_at IS NULL ORDER BY ts LIMIT ?",
                (monitor.id, swept, cutoff, limit),
            )
        ]
        result = plan.plan_assumed(monitor, rows)
        self._write_plan(conn, result, now)
        swept = rows[-1].ts if len(rows) == limit else cutoff
        conn.execute(
            "INSERT INTO sweeps (monitor_id, swept) VALUES (?, ?)"
            " ON CONFLICT (monitor_id) DO UPDATE SET swept = excluded.swept",
            (monitor.id, swept),
        )
        return len(result.labels)

    async def expire_pending(self, now: float) -> dict[int, int]:
        return await self._tx(self._expire_pending, now)

    @staticmethod
    def _expire_pending(conn: sqlite3.Connection, now: float) -> dict[int, int]:
        expired = dict(
            conn.execute(
                "SELECT monitor_id, count(*) FROM pending WHERE expires <= ? AND labeled IS NULL"
                " GROUP BY monitor_id",
                (now,),
            ).fetchall()
        )
        conn.execute("DELETE FROM pending WHERE expires <= ?", (now,))
        _write_totals(conn, [(mid, "", "", ACTUALS_EXPIRED, n) for mid, n in expired.items()])
        return expired

    async def delete_predictions(self, monitor_id: int, before: float, limit: int) -> int:
        return await self._tx(self._delete_predictions, monitor_id, before, limit)

    @staticmethod
    def _delete_predictions(
        conn: sqlite3.Connection, monitor_id: int, before: float, limit: int
    ) -> int:
        deleted = conn.execute(
            "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions"
            " WHERE monitor_id = ? AND ts < ? LIMIT ?)",
            (monitor_id, before, limit),
        ).rowcount
        conn.execute(_UNQUEUE_GONE, (monitor_id, before))
        return deleted

    # -- CloudEvents waiting for their other half -----------------------------------------------

    async def put_half(
        self,
        monitor_id: int,
        event_id: str,
        half: Literal["request", "response"],
        payload: str,
        now: float,
        limit: int,
    ) -> HalfStored:
        """Halves are written in groups: one transaction (one fsync) takes every half that
        came while the one before committed, as KServe's logger sends one event a request."""
        future: asyncio.Future[HalfStored] = asyncio.get_running_loop().create_future()
        self._halves.append(((monitor_id, event_id, half, payload, now, limit), future))
        if self._halves_writer is None:
            self._halves_writer = asyncio.ensure_future(self._write_halves())
        return await future

    async def _write_halves(self) -> None:
        try:
            while self._halves:
                group, self._halves = self._halves, []
                try:
                    found = await self._tx(_put_halves, [values for values, _ in group])
                except Exception as e:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(e)
                    continue
                except BaseException:  # cancelled: so is every half waiting
                    for _, future in [*group, *self._halves]:
                        future.cancel()
                    self._halves = []
                    raise
                for (_, future), stored in zip(group, found, strict=True):
                    if not future.done():
                        future.set_result(stored)
        finally:
            self._halves_writer = None

    async def expire_halves(self, before: float, limit: int) -> dict[int, int]:
        def expire(conn: sqlite3.Connection) -> dict[int, int]:
            found = codec.unpaired(conn.execute(_EXPIRE_HALVES, (before, limit)).fetchall())
            _write_totals(
                conn, [(mid, "", "", k, n) for mid, c in found.items() for k, n in c.items()]
            )
            return {mid: int(sum(counts.values())) for mid, counts in found.items()}

        return await self._tx(expire)

    # -- the sidecars' minutes -----------------------------------------------------------------

    async def add_sidecar_minutes(
        self, monitor_id: int, minutes: Mapping[int, Mapping[str, float]]
    ) -> None:
        rows = codec.sidecar_rows(minutes)
        await self._tx(lambda conn: conn.execute(_ADD_SIDECAR_MINUTES, (monitor_id, rows)))

    async def sidecar_minutes(
        self, monitor_id: int, span: BucketRange, step_minutes: int
    ) -> list[tuple[float, dict[str, float]]]:
        steps, (start, width, first, end) = codec.sidecar_span(span, step_minutes)
        return await self._call(
            lambda: codec.sidecar_steps(
                steps, self._db.execute(_SIDECAR_MINUTES, (start, width, monitor_id, first, end))
            )
        )

    async def delete_sidecar_minutes(self, monitor_id: int, before: float, limit: int) -> int:
        bucket = windows.bucket_of(before)
        return await self._tx(
            lambda conn: conn.execute(_DELETE_SIDECAR_MINUTES, (monitor_id, bucket, limit)).rowcount
        )

    # -- the review queue ----------------------------------------------------------------------

    async def lease_review(
        self, monitor_id: int, reviewer: str, limit: int, now: float, lease_seconds: float
    ) -> list[ReviewItem]:
        return await self._tx(_lease_review, monitor_id, reviewer, limit, now, lease_seconds)

    async def expire_reviews(self, now: float, limit: int) -> dict[int, int]:
        return await self._tx(_expire_reviews, now, limit)

    async def review_stats(
        self, now: float, monitor_id: int | None = None
    ) -> dict[int, QueueStats]:
        return await self._call(self._review_stats, now, monitor_id)

    def _review_stats(self, now: float, monitor_id: int | None) -> dict[int, QueueStats]:
        query = _REVIEW_STATS if monitor_id is None else _MONITOR_REVIEW_STATS
        return codec.queue_stats(self._db.execute(query, codec.stats_arguments(now, monitor_id)))

    async def compact(self) -> int:
        return await self._call(self._fold)

    def _fold(self) -> int:
        """Fold the unfolded deltas into the aggregates; how many `agg_delta` rows that took."""
        if self._unfolded is None:
            self._unfolded = {}
            for mid, bucket, version, served_by, counters in self._db.execute(
                "SELECT monitor_id, bucket, version, served_by, counters FROM agg_delta"
            ):
                join.add(self._unfolded, (mid, version, served_by, bucket), codec.decode(counters))
        if not self._unfolded:
            return 0
        folded = self._transaction(self._fold_unfolded)
        self._unfolded = {}
        return folded

    def _fold_unfolded(self, conn: sqlite3.Connection) -> int:
        assert self._unfolded is not None
        _fold_into(conn, self._unfolded)
        return conn.execute("DELETE FROM agg_delta").rowcount

    def _write_aggregates(
        self, conn: sqlite3.Connection, deltas: Mapping[join.GroupKey, Mapping[str, float]]
    ) -> None:
        """Append a write's counter deltas to `agg_delta` and to the unfolded sum."""
        rows = _delta_rows(deltas)
        if not rows:
            return
        conn.executemany(
            "INSERT INTO agg_delta (monitor_id, bucket, version, served_by, counters)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        if self._unfolded is not None:
            for group, counters in deltas.items():
                join.add(self._unfolded, group, counters)

    # -- reads ---------------------------------------------------------------------------------

    async def window(self, monitor_id: int, span: BucketRange, only: Only = EVERY) -> Groups:
        return await self._call(self._window, monitor_id, span, only)

    def _window(self, monitor_id: int, span: BucketRange, only: Only) -> Groups:
        self._fold()
        parts, params = [], []
        kind, extra, extra_params = _filters(only)
        for piece in decompose(span):
            parts.append(
                f"SELECT version, served_by, key, value FROM {kind}_{piece.level}"
                f" WHERE monitor_id = ? AND bucket >= ? AND bucket < ?{extra}"
            )
            params += [monitor_id, piece.start, piece.end, *extra_params]
        if not parts:
            return {}
        result: Groups = {}
        for v, s, key, value in self._db.execute(
            "SELECT version, served_by, key, sum(value) FROM ("
            + " UNION ALL ".join(parts)
            + ") GROUP BY version, served_by, key",
            params,
        ):
            result.setdefault((v, s), {})[key] = value
        return result

    async def series(self, monitor_id: int, steps: Steps, only: Only = EVERY) -> dict[int, Groups]:
        return await self._call(self._series, monitor_id, steps, only)

    def _series(self, monitor_id: int, steps: Steps, only: Only) -> dict[int, Groups]:
        self._fold()
        unit = LEVEL_MINUTES[steps.level]
        kind, extra, extra_params = _filters(only)
        # The rows are summed into their points here, not by a GROUP BY, which sorts every row
        # (a 30-day read of 3-hour points of an estimated monitor: about a third of its time).
        result: dict[int, Groups] = {}
        for point, v, s, key, value in self._db.execute(
            "SELECT (bucket * ?1 - ?2) / ?3, version, served_by, key, value"
            f" FROM {kind}_{steps.level} WHERE monitor_id = ?4 AND bucket >= ?5 AND bucket < ?6"
            f"{extra}",
            [
                unit,
                steps.start,
                steps.width,
                monitor_id,
                steps.start // unit,
                -(-(steps.start + steps.width * steps.count) // unit),
                *extra_params,
            ],
        ):
            counters = result.setdefault(point, {}).setdefault((v, s), {})
            counters[key] = counters.get(key, 0.0) + value
        return result

    async def totals(self) -> dict[int, dict[Group, Counters]]:
        return await self._call(self._totals)

    def _totals(self) -> dict[int, dict[Group, Counters]]:
        self._fold()
        result: dict[int, dict[Group, Counters]] = {}
        for mid, v, s, key, value in self._db.execute(
            "SELECT monitor_id, version, served_by, key, value FROM totals"
        ):
            result.setdefault(mid, {}).setdefault((v, s), {})[key] = value
        return result

    async def segment_values(
        self, monitor_id: int, since: float, limit: int
    ) -> dict[str, dict[str, int]]:
        return await self._call(self._segment_values, monitor_id, since, limit)

    def _segment_values(
        self, monitor_id: int, since: float, limit: int
    ) -> dict[str, dict[str, int]]:
        return codec.segment_counts(
            self._db.execute(
                "SELECT segments, count(*) FROM (SELECT segments FROM predictions"
                " WHERE monitor_id = ? AND ts >= ? ORDER BY ts DESC LIMIT ?)"
                " WHERE segments IS NOT NULL GROUP BY segments",
                (monitor_id, since, limit),
            )
        )

    async def timeline(
        self, monitor_id: int, entity_id: str, limit: int, outlier: bool | None = None
    ) -> list[StoredPrediction]:
        return await self._call(self._timeline, monitor_id, entity_id, limit, outlier)

    def _timeline(
        self, monitor_id: int, entity_id: str, limit: int, outlier: bool | None
    ) -> list[StoredPrediction]:
        rows = self._db.execute(
            f"SELECT {codec.STORED_COLUMNS} FROM predictions WHERE monitor_id = ? AND entity_id = ?"
            f"{codec.outlier_filter(outlier)} ORDER BY ts DESC, id DESC LIMIT ?",
            (monitor_id, entity_id, limit),
        )
        return [codec.stored(*values) for values in rows]

    async def dataset(
        self, query: DatasetQuery, after: tuple[float, int], limit: int
    ) -> list[StoredPrediction]:
        return await self._call(self._dataset, query, after, limit)

    def _dataset(
        self, query: DatasetQuery, after: tuple[float, int], limit: int
    ) -> list[StoredPrediction]:
        sql = (
            f"SELECT {codec.STORED_COLUMNS} FROM predictions"
            " WHERE monitor_id = ? AND (ts, id) > (?, ?) AND ts < ?"
        )
        params: list[Any] = [query.monitor_id, *after, query.end]
        if query.labeled:
            sql += " AND labeled_at IS NOT NULL"
        if query.version is not None:
            sql += " AND model_version = ?"
            params.append(query.version)
        if query.correct is not None:
            sql += " AND correct = ?"
            params.append(int(query.correct))
        sql += codec.outlier_filter(query.outlier) + codec.review_filters(query)
        rows = self._db.execute(sql + " ORDER BY ts, id LIMIT ?", [*params, limit])
        return [codec.stored(*values) for values in rows]

    # -- alert reports -------------------------------------------------------------------------

    async def add_report(
        self,
        monitor_id: int,
        at: float,
        alert: str,
        summary: Mapping[str, Any],
        document: str,
        html: str,
        keep: int,
    ) -> int:
        values = (monitor_id, at, alert, codec.to_json(summary), document, html)
        return await self._tx(self._add_report, values, keep)

    @staticmethod
    def _add_report(conn: sqlite3.Connection, values: tuple[Any, ...], keep: int) -> int:
        (report_id,) = conn.execute(_ADD_REPORT, values).fetchone()
        conn.execute(_KEEP_REPORTS, (values[0], keep))
        return int(report_id)

    async def reports(self, monitor_id: int, limit: int) -> list[StoredReport]:
        return await self._call(self._reports, monitor_id, limit)

    def _reports(self, monitor_id: int, limit: int) -> list[StoredReport]:
        return codec.stored_reports(self._db.execute(_LIST_REPORTS, (monitor_id, limit)))

    async def report(self, monitor_id: int, report_id: int, part: ReportPart) -> str | None:
        return await self._call(self._report, monitor_id, report_id, part)

    def _report(self, monitor_id: int, report_id: int, part: ReportPart) -> str | None:
        row = self._db.execute(_REPORT_PARTS[part], (monitor_id, report_id)).fetchone()
        return None if row is None else str(row[0])


# -- row conversions and shared writes ---------------------------------------------------------

_PUT_TOKEN = codec.PUT_TOKEN.format("?", "?", "?")
_ADD_REPORT = codec.ADD_REPORT.format(*"??????")
_KEEP_REPORTS = codec.KEEP_REPORTS.format("?1", "?2")
_LIST_REPORTS = codec.LIST_REPORTS.format("?", "?")
_REPORT_PARTS = {part: sql.format("?", "?") for part, sql in codec.REPORT_PARTS.items()}
_INSERT_PREDICTION = (
    f"INSERT OR IGNORE INTO predictions ({', '.join(codec.PREDICTION_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(codec.PREDICTION_COLUMNS))})"
)
_QUEUE = (
    "INSERT INTO review_items (monitor_id, prediction_id, model_version, ts, queued, expires,"
    " reason, pi) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (monitor_id, prediction_id) DO NOTHING"
)
"""Queue an item (`codec.item_values`), unless its prediction id is queued already."""
_ANSWER = (
    "UPDATE review_items SET state = ?, lease_until = ?, leased_to = ?, passed = ?, votes = ?"
    " WHERE id = ?"
)
"""Store an answered item (`codec.answered_values`)."""
_EXPIRE_REVIEWS = codec.EXPIRE_REVIEWS.format("?", "?")
_REVIEW_STATS = codec.REVIEW_STATS.format("?1", "?2", "")
_MONITOR_REVIEW_STATS = codec.REVIEW_STATS.format("?1", "?2", "monitor_id = ?3 AND ")
_UNQUEUE_GONE = codec.UNQUEUE_GONE.format("?", "?")
_LEASABLE = codec.LEASABLE.format("?1", "?2")
_ADD_TRANSITION = codec.ADD_TRANSITION.format(*(f"?{n}" for n in range(1, 8)))
_TRANSITIONS = codec.TRANSITIONS.format("?1", "?2", "?3", "?4")
_DELETE_TRANSITIONS = codec.DELETE_TRANSITIONS.format("?1", "?2", "?3")


def _review_items(
    conn: sqlite3.Connection, actuals: Sequence[Actual], monitors: Mapping[str, Registered]
) -> dict[tuple[int, str], queue.Item]:
    """The review items the reviewers' actuals name, by (monitor id, prediction id)."""
    wanted = codec.named_items(actuals, monitors)
    if not wanted:
        return {}
    return {
        (mid, pid): codec.item(*columns)
        for mid, pid, *columns in conn.execute(
            f"SELECT monitor_id, prediction_id, {codec.ITEM_STATE_COLUMNS}"
            " FROM (SELECT value ->> 0 AS mid, value ->> 1 AS pid FROM json_each(?)) AS k"
            " CROSS JOIN review_items WHERE monitor_id = k.mid AND prediction_id = k.pid",
            (codec.to_json(wanted),),
        )
    }


def _lease_review(
    conn: sqlite3.Connection,
    monitor_id: int,
    reviewer: str,
    limit: int,
    now: float,
    lease_seconds: float,
) -> list[ReviewItem]:
    ids = codec.to_json(
        [
            ref
            for (ref,) in conn.execute(
                f"SELECT id FROM review_items WHERE {_LEASABLE}"
                " AND NOT EXISTS (SELECT 1 FROM json_each(passed) WHERE value = ?3)"
                f" ORDER BY {codec.lease_order('review_items')} LIMIT ?4",
                (monitor_id, now, reviewer, limit),
            )
        ]
    )
    conn.execute(
        "UPDATE review_items SET lease_until = ?, leased_to = ?"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (now + lease_seconds, reviewer, ids),
    )
    return [
        codec.review_item(*values)
        for values in conn.execute(
            f"{codec.leased('review_items')} WHERE r.id IN (SELECT value FROM json_each(?))"
            f" ORDER BY {codec.lease_order('r')}",
            (ids,),
        )
    ]


def _expire_reviews(conn: sqlite3.Connection, now: float, limit: int) -> dict[int, int]:
    return codec.expired_by_monitor(conn.execute(_EXPIRE_REVIEWS, (now, limit)).fetchall())


def _put_token(conn: sqlite3.Connection, namespace: str, sha256: str, now: float) -> None:
    conn.execute(_PUT_TOKEN, (namespace, sha256, now))


def _references(conn: sqlite3.Connection, monitor_id: int) -> dict[str, Reference]:
    """A monitor's references by version."""
    return codec.references_by_version(
        conn.execute(
            f"SELECT {codec.REFERENCE_COLUMNS}, profile FROM reference_profiles"
            " WHERE monitor_id = ?",
            (monitor_id,),
        )
    )


def _put_reference(
    conn: sqlite3.Connection,
    monitor_id: int,
    version: str,
    source: ReferenceSource,
    profile: Profile,
    now: float,
) -> Reference:
    live = "SELECT 1 FROM monitors WHERE id = ? AND deleted IS NULL"
    if conn.execute(live, (monitor_id,)).fetchone() is None:
        raise MonitorsGone([monitor_id])
    conn.execute(
        "DELETE FROM reference_profiles WHERE monitor_id = ? AND version = ?", (monitor_id, version)
    )
    cursor = conn.execute(
        "INSERT INTO reference_profiles (monitor_id, version, created, source, profile)"
        " VALUES (?, ?, ?, ?, ?)",
        (monitor_id, version, now, source, codec.profile_json(profile)),
    )
    assert cursor.lastrowid is not None
    return Reference(cursor.lastrowid, version, now, source, profile)


def _waiting(
    conn: sqlite3.Connection, registered: Registered, batch: Sequence[PredictionRecord]
) -> list[plan.Waiting]:
    """The monitor's pending actuals that name a record of `batch` (by id or entity), oldest
    first; none at all is the usual case, found by one cheap probe."""
    monitor_id = registered.id
    probe = "SELECT 1 FROM pending WHERE monitor_id = ? LIMIT 1"
    if conn.execute(probe, (monitor_id,)).fetchone() is None:
        return []
    ids = codec.to_json([r.prediction_id for r in batch])
    entities = codec.to_json(sorted({r.entity_id for r in batch if r.entity_id is not None}))
    return [
        codec.waiting(registered.monitor.key, *values)
        for values in conn.execute(
            f"SELECT {codec.PENDING_COLUMNS} FROM pending"
            " WHERE monitor_id = ?1 AND prediction_id IN (SELECT value FROM json_each(?2))"
            f" UNION SELECT {codec.PENDING_COLUMNS} FROM pending"
            " WHERE monitor_id = ?1 AND entity_id IN (SELECT value FROM json_each(?3))"
            " ORDER BY id",
            (monitor_id, ids, entities),
        )
    ]


def _refs(
    conn: sqlite3.Connection, batch: Sequence[PredictionRecord], monitors: Mapping[str, Registered]
) -> dict[int, int]:
    """Batch index → id of records just inserted."""
    keys = codec.to_json(
        [(i, monitors[r.monitor].id, r.prediction_id, r.served_by) for i, r in enumerate(batch)]
    )
    return dict(
        conn.execute(
            "SELECT k.value ->> 0, p.id FROM json_each(?) AS k JOIN predictions AS p"
            " ON p.monitor_id = k.value ->> 1 AND p.prediction_id = k.value ->> 2"
            " AND p.served_by = k.value ->> 3",
            (keys,),
        ).fetchall()
    )


def _candidates(
    conn: sqlite3.Connection, actuals: Sequence[Actual], monitors: Mapping[str, Registered]
) -> dict[int, list[Row]]:
    """The records each actual may label (by id; by entity and tag within its span), in
    arrival order: prediction_id actuals in one query per monitor, entity actuals one each."""
    wanted: dict[int, dict[str, list[int]]] = {}
    found: dict[int, list[Row]] = {}
    for index, actual in enumerate(actuals):
        registered = monitors[actual.monitor]
        if actual.prediction_id is not None:
            wanted.setdefault(registered.id, {}).setdefault(actual.prediction_id, []).append(index)
            continue
        lo, hi = join.entity_span(actual, registered.monitor.spec)
        found[index] = [
            codec.row(*values)
            for values in conn.execute(
                f"SELECT {codec.ROW_COLUMNS} FROM predictions WHERE monitor_id = ?"
                " AND entity_id = ? AND ts >= ? AND ts <= ? AND tag IS ? ORDER BY id",
                (registered.id, actual.entity_id, lo, hi, actual.tag),
            )
        ]
    for mid, ids in wanted.items():
        for values in conn.execute(
            f"SELECT {codec.ROW_COLUMNS} FROM predictions WHERE monitor_id = ?"
            " AND prediction_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (mid, codec.to_json(list(ids))),
        ):
            row = codec.row(*values)
            for index in ids[row.prediction_id]:
                found.setdefault(index, []).append(row)
    return found


LABEL_STATEMENT_MIN = 16
"""Records given the same label and verdict are updated by one statement from this many on: a
third of `executemany`'s cost per row, which pays for a statement per row."""

_SET_LABEL = (
    "UPDATE predictions SET actual = ?, vote = ?, assumed = ?, reviewer = ?, correct = ?,"
    " labeled_at = ?"
)


def _write_labels(
    conn: sqlite3.Connection,
    labels: Mapping[int, tuple[Row, bool | None]],
    now: float,
    refs: Mapping[int, int] | None,
) -> None:
    """Write a plan's labels; `refs` maps the plan's refs to record ids where they differ."""
    alike: dict[tuple[Label, type, bool | None], list[int]] = {}
    for ref, (row, correct) in labels.items():
        label = row.label
        assert label is not None
        key = (label, type(label.value), correct)
        alike.setdefault(key, []).append(ref if refs is None else refs[ref])
    one_by_one: list[tuple[object, ...]] = []
    for (label, _, correct), ids in alike.items():
        columns = (*codec.label_columns(label), None if correct is None else int(correct), now)
        if len(ids) >= LABEL_STATEMENT_MIN:
            conn.execute(
                _SET_LABEL + " WHERE id IN (SELECT value FROM json_each(?))",
                (*columns, codec.to_json(ids)),
            )
        else:
            one_by_one.extend((*columns, record_id) for record_id in ids)
    if one_by_one:
        conn.executemany(_SET_LABEL + " WHERE id = ?", one_by_one)


_Half = tuple[int, str, Literal["request", "response"], str, float, int]
"""`put_half`'s arguments: monitor id, event id, half, payload, now, limit."""


def _put_halves(conn: sqlite3.Connection, halves: Sequence[_Half]) -> list[HalfStored]:
    found = []
    for monitor_id, event_id, half, payload, now, limit in halves:
        bit = codec.HALF_BITS[half]
        values = (monitor_id, event_id, now, bit, payload, limit)
        if conn.execute(_ADD_HALF[half], values).fetchone() is not None:
            found.append(HalfStored("waiting"))
            continue
        row = conn.execute(_FILL_HALF[half], (monitor_id, event_id, payload, bit)).fetchone()
        stored = codec.half_stored(row)
        if stored.outcome == "paired":
            conn.execute(_TAKE_PAIR, (monitor_id, event_id, now))
        found.append(stored)
    return found


_MARKERS = tuple(f"?{n}" for n in range(1, 7))
_ADD_HALF = {half: text.format(*_MARKERS) for half, text in codec.ADD_HALF.items()}
_FILL_HALF = {half: text.format(*_MARKERS) for half, text in codec.FILL_HALF.items()}
_TAKE_PAIR = codec.TAKE_PAIR.format(*_MARKERS)
_EXPIRE_HALVES = codec.EXPIRE_HALVES.format(*_MARKERS)
_ADD_SIDECAR_MINUTES = (
    "INSERT INTO sidecar_minutes (monitor_id, bucket, key, value)"
    " SELECT ?1, r.value ->> 0, r.value ->> 1, r.value ->> 2 FROM json_each(?2) AS r"
    " WHERE EXISTS (SELECT 1 FROM monitors WHERE id = ?1 AND deleted IS NULL)"
    " ON CONFLICT DO UPDATE SET value = value + excluded.value"
)
_SIDECAR_MINUTES = codec.SIDECAR_MINUTES.format("?1", "?2", "?3", "?4", "?5")
_DELETE_SIDECAR_MINUTES = (
    "DELETE FROM sidecar_minutes WHERE rowid IN (SELECT rowid FROM sidecar_minutes"
    " WHERE monitor_id = ? AND bucket < ? LIMIT ?)"
)


def _agg_tables() -> tuple[str, ...]:
    return (
        "agg_delta",
        *(f"{kind}_{level}" for kind in ("agg", "seg") for level in LEVEL_MINUTES),
    )


def _delta_rows(
    deltas: Mapping[join.GroupKey, Mapping[str, float]],
) -> list[tuple[int, int, str, str, str]]:
    """A write's counter deltas as `agg_delta` rows, one per minute group."""
    return [
        (mid, bucket, version, served_by, codec.to_json(counters))
        for (mid, version, served_by, bucket), counters in deltas.items()
        if counters
    ]


def _fold_into(
    conn: sqlite3.Connection, deltas: Mapping[join.GroupKey, Mapping[str, float]]
) -> None:
    """Add summed counter deltas to the minute buckets, their hour and day rollups and the
    lifetime totals.

    One statement per bucket and group, its counters passed as one JSON object and upserted
    through `json_each`: twice as fast as an `executemany` row by row for scored binary
    actuals, whose score histogram touches a thousand keys per batch.
    """
    levels, lifetime = rollup(deltas)
    for level, groups in levels.items():
        for (mid, version, served_by, bucket), counters in groups.items():
            for segment, part in by_segment(counters).items():
                if segment:
                    group: tuple[Any, ...] = (mid, segment, bucket, version, served_by)
                    _upsert(conn, f"seg_{level}", group, part)
                else:
                    _upsert(conn, f"agg_{level}", (mid, bucket, version, served_by), part)
    for group, counters in lifetime.items():
        _upsert(conn, "totals", group, counters)


def _upsert(
    conn: sqlite3.Connection, table: str, group: tuple[Any, ...], counters: Mapping[str, float]
) -> None:
    """`value = value + delta` for each counter of one group of a table."""
    changed = {k: v for k, v in counters.items() if v}
    if not changed:
        return
    columns = _GROUP_COLUMNS[table]
    placeholders = ", ".join("?" * len(columns))
    conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}, key, value)"
        f" SELECT {placeholders}, j.key, j.value FROM json_each(?) AS j WHERE true"
        " ON CONFLICT DO UPDATE SET value = value + excluded.value",
        (*group, codec.to_json(changed)),
    )


_GROUP_COLUMNS = {
    **{f"agg_{level}": ("monitor_id", "bucket", "version", "served_by") for level in LEVEL_MINUTES},
    **{
        f"seg_{level}": ("monitor_id", "segment", "bucket", "version", "served_by")
        for level in LEVEL_MINUTES
    },
    "totals": ("monitor_id", "version", "served_by"),
}


def _write_totals(
    conn: sqlite3.Connection, rows: Iterable[tuple[int, str, str, str, float]]
) -> None:
    conn.executemany(
        "INSERT INTO totals (monitor_id, version, served_by, key, value) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET value = value + excluded.value",
        list(rows),
    )


def _filters(only: Only) -> tuple[str, str, list[Any]]:
    """The aggregate tables a read takes (`agg` or, for a segment's, `seg`), and the SQL
    conditions and their values of its filters."""
    sql, params = "", []
    key = "key"
    if only.segment is not None:
        # The segment's rows (an index range); the filters below read the key behind its prefix.
        sql += " AND segment = ?"
        params.append(only.segment)
        key = "substr(key, instr(key, ':') + 1)"
    if only.version is not None:
        sql += " AND version = ?"
        params.append(only.version)
    if only.served_by is not None:
        sql += " AND served_by = ?"
        params.append(only.served_by)
    if only.sketches is not None:
        kept = f"substr({key}, 1, 1) {'=' if only.sketches else '<>'} '{sketch.PREFIX}'"
        if only.estimates and not only.sketches:
            found = " OR ".join(f"instr({key}, '{m}') > 0" for m in estimate.MARKERS)
            kept = f"({kept} OR {found})"
        sql += f" AND {kept}"
    return ("agg" if only.segment is None else "seg"), sql, params


def open_path(url: str) -> SQLiteStore:
    """`sqlite:///abs/path.db` or `sqlite://rel/path.db`, optionally `?synchronous=normal`."""
    rest = url.removeprefix("sqlite://")
    path, _, query = rest.partition("?")
    options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
    unknown = set(options) - {"synchronous"}
    if not path or unknown:
        raise ValueError(
            f"bad SQLite store URL {url!r}: expected sqlite:///path.db[?synchronous=full|normal]"
        )
    return SQLiteStore(path, **options)
