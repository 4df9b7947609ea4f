"""`Store` on PostgreSQL: each write fetches what `core.plan` needs, plans, and writes the plan.

Every write is one transaction (`connection.Database`), run by any replica. A batch of records
and an actual for one of them, arriving on two replicas at once, must not miss each other (the
actual finding no record, the batch finding no pending actual): batches hold their monitors'
*intake* advisory lock shared; an actual that found nothing takes it exclusive, which waits out
the batches in flight, and looks again before it waits as pending. How labels, counters,
pending actuals, records, replicas and the schema are kept is said in the module of each.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import asyncpg

from truthloop.core import alerts, join, plan, registry, review, segments, windows
from truthloop.core.evaluation import Group
from truthloop.core.plan import ACTUALS_EXPIRED
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import Monitor
from truthloop.core.windows import BucketRange, Steps
from truthloop.feedback.store import codec, interface
from truthloop.feedback.store.codec import ROW_COLUMNS, STORED_COLUMNS, to_json
from truthloop.feedback.store.postgres import (
    aggregates,
    connection,
    labels,
    locks,
    pending,
    predictions,
    replicas,
    reviews,
    schema,
    sql,
)

_PUT_TOKEN = codec.PUT_TOKEN.format("$1", "$2", "$3")
_ADD_TRANSITION = codec.ADD_TRANSITION.format(*(f"${n}" for n in range(1, 8)))
_TRANSITIONS = codec.TRANSITIONS.format("$1", "$2", "$3", "$4")
_DELETE_TRANSITIONS = codec.DELETE_TRANSITIONS.format("$1", "$2", "$3")
_ADD_REPORT = codec.ADD_REPORT.format("$1", "$2", "$3", "$4", "$5", "$6")
_KEEP_REPORTS = codec.KEEP_REPORTS.format("$1", "$2")
_LIST_REPORTS = codec.LIST_REPORTS.format("$1", "$2")
_REPORT_PARTS = {part: sql.format("$1", "$2") for part, sql in codec.REPORT_PARTS.items()}
_REFERENCES = (
    f"SELECT {codec.REFERENCE_COLUMNS},"
    f" CASE WHEN id = ANY({sql.array(1, 'bigint')}) THEN NULL ELSE profile END"
    " FROM reference_profiles ORDER BY id"
)
"""Every stored reference, with its profile unless its id is in $1 (a JSON array)."""


_ADD_SIDECAR_MINUTES = (
    "INSERT INTO sidecar_minutes AS s (monitor_id, bucket, key, value)"
    " SELECT $1, (r->>0)::bigint, r->>1, (r->>2)::float8 FROM jsonb_array_elements($2::jsonb) AS r"
    " WHERE EXISTS (SELECT 1 FROM monitors WHERE id = $1 AND deleted IS NULL)"
    " ON CONFLICT (monitor_id, bucket, key) DO UPDATE SET value = s.value + excluded.value"
)
_SIDECAR_MINUTES = codec.SIDECAR_MINUTES.format(
    "$1::bigint", "$2::bigint", "$3", "$4::bigint", "$5::bigint"
)
_DELETE_SIDECAR_MINUTES = (
    "DELETE FROM sidecar_minutes WHERE ctid = ANY(ARRAY(SELECT ctid FROM sidecar_minutes"
    " WHERE monitor_id = $1 AND bucket < $2 LIMIT $3))"
)

_ADD_HALF = {
    half: text.format("$1::int", "$2::text", "$3::float8", "$4::int", "$5::text", "$6::int")
    for half, text in codec.ADD_HALF.items()
}
_FILL_HALF = {
    half: text.format("$1::int", "$2::text", "$3::text", "$4::int")
    for half, text in codec.FILL_HALF.items()
}
_TAKE_PAIR = codec.TAKE_PAIR.format("$1::int", "$2::text", "$3::float8")
_EXPIRE_HALVES = codec.EXPIRE_HALVES.format("$1::float8", "$2::int")


class PostgresStore(interface.Store):
    """`Store` on PostgreSQL for several replicas; the package's modules say how."""

    shared = True

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.replica = uuid.uuid4().hex
        """This process's mark on its notifications, so it does not reread its own writes."""
        self._db = connection.Database(dsn, pool_size)
        self._keys: locks.Keys | None = None
        self._leader: replicas.Leader | None = None
        self._listener: replicas.Listener | None = None
        self._watchers: list[Callable[[], None]] = []
        self._parsed = codec.Parsed()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def keys(self) -> locks.Keys:
        return interface.opened(self._keys)

    async def open(self) -> None:
        conn = await self._db.connect()
        try:
            name = await conn.fetchval("SELECT current_schema()")
            if name is None:
                raise interface.StoreError(
                    "no schema to create tables in: the search_path names none that exists"
                    " (create it, or set ?search_path= in the store URL)"
                )
            self._keys = locks.Keys.of(name)
            await schema.migrate(conn, self._keys.migrate)
        except connection.UNAVAILABLE as e:
            raise connection.unavailable(e) from e
        finally:
            await conn.close()
        try:
            await self._db.open()
            self._leader = replicas.Leader(self._db, self.keys.leader)
            self._listener = replicas.Listener(
                self._db, self.keys.channel, self.replica, self._announce
            )
            await self._listener.open()
        except connection.UNAVAILABLE as e:
            await self.close()
            raise connection.unavailable(e) from e
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._leader is not None:
            await self._leader.close()
        await self._db.close()

    # -- replicas ------------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this replica led at its last `try_lead`."""
        return self._leader is not None and self._leader.leading

    async def try_lead(self) -> bool:
        if self._leader is None:
            raise RuntimeError("the store is not open")
        return await self._leader.try_lead()

    def watch(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def _announce(self) -> None:
        for callback in self._watchers:
            callback()

    def hold_state(
        self, monitor_id: int
    ) -> AbstractAsyncContextManager[interface.StoredState | None]:
        return replicas.hold_state(self._db, self.keys.state, monitor_id)

    # -- monitors and state --------------------------------------------------------------------

    async def load_monitors(self) -> list[interface.Registered]:
        return await self._db.read(self._load_monitors)

    async def _load_monitors(self, conn: connection.Conn) -> list[interface.Registered]:
        """The monitors and their references; a profile this process decoded before is not
        read again (unless a read beside this one forgot it meanwhile)."""
        try:
            found = await conn.fetch(_REFERENCES, to_json(self._parsed.profiles_known()))
            references = self._parsed.references(found)
        except KeyError:
            references = self._parsed.references(await conn.fetch(_REFERENCES, "[]"))
        found = await conn.fetch(
            "SELECT id, body, created, deleted FROM monitors WHERE key NOT LIKE '%#%' ORDER BY id"
        )
        return self._parsed.registered(found, references)

    async def put_monitor(
        self, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> tuple[interface.Registered, bool]:
        return await self._db.transaction(self._put_monitor, monitor, body, now)

    async def _put_monitor(
        self, conn: connection.Conn, monitor: Monitor, body: Mapping[str, Any], now: float
    ) -> tuple[interface.Registered, bool]:
        await locks.hold(conn, self.keys.registry)
        await replicas.notify(conn, self.keys.channel, self.replica)
        old = await conn.fetchrow(
            "SELECT id, body, created, deleted FROM monitors WHERE key = $1", monitor.key
        )
        previous = None if old is None else codec.registered(*old)
        done = registry.register(previous, monitor, body)
        text = to_json(done.body)
        if previous is not None and done.keeps:
            await conn.execute(
                "UPDATE monitors SET body = $1, deleted = NULL WHERE id = $2", text, previous.id
            )
            found = await conn.fetch(
                f"SELECT {codec.REFERENCE_COLUMNS}, profile FROM reference_profiles"
                " WHERE monitor_id = $1",
                previous.id,
            )
            kept = interface.Registered(
                previous.id,
                done.monitor,
                done.body,
                previous.created,
                references=codec.references_by_version(found),
            )
            return kept, done.created
        if previous is not None:
            # Replaced by a monitor of another task: the purge takes the old data under a key no
            # PUT can use.
            await conn.execute(
                "UPDATE monitors SET key = key || '#' || id WHERE id = $1", previous.id
            )
        monitor_id = await conn.fetchval(
            "INSERT INTO monitors (key, body, created) VALUES ($1, $2, $3) RETURNING id",
            monitor.key,
            text,
            now,
        )
        return interface.Registered(monitor_id, done.monitor, done.body, now), done.created

    async def delete_monitor(self, key: str, now: float) -> bool:
        return await self._db.transaction(self._delete_monitor, key, now)

    async def put_reference(
        self,
        monitor_id: int,
        version: str,
        source: ReferenceSource,
        profile: Profile,
        now: float,
    ) -> Reference:
        return await self._db.transaction(
            self._put_reference, monitor_id, version, source, profile, now
        )

    async def _put_reference(
        self,
        conn: connection.Conn,
        monitor_id: int,
        version: str,
        source: ReferenceSource,
        profile: Profile,
        now: float,
    ) -> Reference:
        """Replace the version's reference, serialized with deletes (the registry lock): a
        reference is never stored for a monitor a delete just marked."""
        await locks.hold(conn, self.keys.registry)
        await _live(conn, {monitor_id})
        await conn.execute(
            "DELETE FROM reference_profiles WHERE monitor_id = $1 AND version = $2",
            monitor_id,
            version,
        )
        ref = await conn.fetchval(
            "INSERT INTO reference_profiles (monitor_id, version, created, source, profile)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            monitor_id,
            version,
            now,
            source,
            codec.profile_json(profile),
        )
        await replicas.notify(conn, self.keys.channel, self.replica)
        return Reference(ref, version, now, source, profile)

    async def load_tokens(self) -> dict[str, str]:
        return {namespace: sha256 for namespace, sha256 in await self._db.fetch(codec.LOAD_TOKENS)}

    async def put_token(self, namespace: str, sha256: str, now: float) -> None:
        await self._db.transaction(self._put_token, namespace, sha256, now)

    async def _put_token(
        self, conn: connection.Conn, namespace: str, sha256: str, now: float
    ) -> None:
        await conn.execute(_PUT_TOKEN, namespace, sha256, now)
        await replicas.notify(conn, self.keys.channel, self.replica)

    async def _delete_monitor(self, conn: connection.Conn, key: str, now: float) -> bool:
        """Mark it deleted once the writes under way for it committed (their locks, in the
        order writers take them); a replica that still thinks it live is refused after."""
        await locks.hold(conn, self.keys.registry)
        monitor_id = await conn.fetchval(
            "SELECT id FROM monitors WHERE key = $1 AND deleted IS NULL", key
        )
        if monitor_id is None:
            return False
        await locks.hold_monitors(conn, self.keys.labels, [monitor_id])
        await locks.hold_monitors(conn, self.keys.intake, [monitor_id])
        await conn.execute("UPDATE monitors SET deleted = $1 WHERE id = $2", now, monitor_id)
        await replicas.notify(conn, self.keys.channel, self.replica)
        return True

    async def purge_deleted(self, before: float, limit: int) -> int:
        return await self._db.transaction(self._purge_deleted, before, limit)

    async def _purge_deleted(self, conn: connection.Conn, before: float, limit: int) -> int:
        await locks.hold(conn, self.keys.registry)
        # A fold writes aggregate rows back whole: one under way would bring purged ones back.
        await locks.hold(conn, self.keys.fold)
        removed = 0
        doomed = await conn.fetch(
            "SELECT id FROM monitors WHERE deleted IS NOT NULL AND deleted < $1", before
        )
        for (monitor_id,) in doomed:
            removed += await predictions.delete(conn, monitor_id, math.inf, limit - removed)
            if removed >= limit:
                break
            aggregated = (f"{kind}_{level}" for kind in ("agg", "seg") for level in schema.LEVELS)
            for table in (*codec.PURGED_TABLES, "agg_delta", *aggregated):
                removed += sql.count(
                    await conn.execute(f"DELETE FROM {table} WHERE monitor_id = $1", monitor_id)
                )
            await conn.execute("DELETE FROM monitors WHERE id = $1", monitor_id)
        return removed

    async def load_states(self) -> dict[int, interface.StoredState]:
        found = await self._db.fetch(
            "SELECT monitor_id, version, state, external, override FROM states"
        )
        return {r[0]: replicas.stored_state(*r[1:]) for r in found}

    async def save_state(self, monitor_id: int, state: interface.StoredState) -> None:
        await self._db.transaction(self._save_state, monitor_id, state)

    async def _save_state(
        self, conn: connection.Conn, monitor_id: int, state: interface.StoredState
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
        await replicas.notify(conn, self.keys.channel, self.replica)

    # -- history -------------------------------------------------------------------------------

    async def add_transitions(
        self, monitor_id: int, transitions: Sequence[alerts.Transition]
    ) -> None:
        rows = [(monitor_id, t.at, *codec.transition_values(t)) for t in transitions]
        if rows:
            await self._db.transaction(lambda conn: conn.executemany(_ADD_TRANSITION, rows))

    async def transitions(
        self, monitor_id: int, start: float, end: float, limit: int
    ) -> list[alerts.Transition]:
        found = await self._db.fetch(_TRANSITIONS, monitor_id, start, end, limit)
        return [codec.transition(*row) for row in reversed(found)]

    async def delete_transitions(self, monitor_id: int, before: float, limit: int) -> int:
        done = await self._db.transaction(
            lambda conn: conn.execute(_DELETE_TRANSITIONS, monitor_id, before, limit)
        )
        return sql.count(done)

    # -- predictions ---------------------------------------------------------------------------

    async def insert_predictions(
        self,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, interface.Registered],
        now: float,
        designs: Mapping[int, review.Design] | None = None,
        segment_sets: Mapping[int, segments.ValueSets] | None = None,
    ) -> interface.IngestResult:
        if not records:
            return interface.IngestResult(0, 0, 0)
        # Before the transaction: no connection waits on them.
        work = (records, monitors, now, codec.prepare(records, monitors, designs, segment_sets))
        try:
            return await self._db.transaction(self._insert_predictions, *work, True)
        except asyncpg.UniqueViolationError:  # a key already stored: a retried batch
            return await self._db.transaction(self._insert_predictions, *work, False)

    async def _insert_predictions(
        self,
        conn: connection.Conn,
        records: Sequence[PredictionRecord],
        monitors: Mapping[str, interface.Registered],
        now: float,
        prepared: codec.Prepared,
        copy: bool,
    ) -> interface.IngestResult:
        """Insert a batch and join the pending actuals it satisfies: by COPY with `copy`, which
        fails on a known key (the caller reruns the batch as an upsert, which skips them)."""
        mids = [monitors[r.monitor].id for r in records]
        await locks.hold_monitors(conn, self.keys.intake, sorted(set(mids)), shared=True)
        await _live(conn, set(mids))
        rows = codec.batch_values(records, monitors, prepared)
        selected = prepared.selected
        stored, refs = await predictions.insert(conn, rows, copy)
        await reviews.enqueue(conn, codec.queued_values(records, monitors, selected, stored, now))
        batch = [records[i] for i in stored]
        waiting = await pending.waiting(conn, batch, monitors)
        result = plan.plan_arrivals(
            batch, monitors, waiting, now, prepared.sketched, stored, selected, prepared.assigned
        )
        if result.labels and refs is None:
            refs = await predictions.refs(conn, records, mids)
        ids = {j: refs[stored[j]] for j in result.labels} if refs is not None else {}
        await _write_plan(conn, result, now, {}, ids if result.labels else None)
        return interface.IngestResult(len(stored), len(records) - len(stored), result.matched)

    # -- actuals -------------------------------------------------------------------------------

    async def apply_actuals(
        self, actuals: Sequence[Actual], monitors: Mapping[str, interface.Registered], now: float
    ) -> interface.FeedbackResult:
        if not actuals:
            return interface.FeedbackResult(0, 0)
        return await labels.optimistically(self._db, self._apply_actuals, actuals, monitors, now)

    async def _apply_actuals(
        self,
        conn: connection.Conn,
        actuals: Sequence[Actual],
        monitors: Mapping[str, interface.Registered],
        now: float,
        alone: bool,
    ) -> interface.FeedbackResult:
        """Join the actuals to the records they label, beside the monitors' other label writers
        (whose writes may fail this one's) or, `alone`, with them waited out and kept out."""
        mids = sorted({monitors[a.monitor].id for a in actuals})
        await labels.hold(conn, self.keys.labels, mids, alone)
        await _live(conn, set(mids))
        found, rows = await labels.find(conn, actuals, range(len(actuals)), monitors)
        unmatched = [i for i in range(len(actuals)) if i not in found]
        if unmatched:
            # About to wait as pending: wait out the batches in flight, then look again.
            await locks.hold_monitors(
                conn, self.keys.intake, sorted({monitors[actuals[i].monitor].id for i in unmatched})
            )
            more, more_rows = await labels.find(conn, actuals, unmatched, monitors)
            found.update(more)
            rows.update(more_rows)
        candidates = {i: [rows[ref][0] for ref in sorted(refs)] for i, refs in found.items()}
        items = await reviews.named(conn, actuals, monitors)
        result = plan.plan_actuals(actuals, monitors, candidates, now, items)
        if result.errors:
            raise interface.LabelsRejected(result.errors)
        versions = {ref: version for ref, (_, version) in rows.items() if version is not None}
        await _write_plan(conn, result, now, versions)
        return interface.FeedbackResult(matched=result.matched, pending=len(result.waiting))

    # -- maintenance ---------------------------------------------------------------------------

    async def assume_missing(
        self, monitor: interface.Registered, cutoff: float, now: float, limit: int
    ) -> int:
        if join.assumed_label(monitor.monitor.spec) is None:
            return 0
        return await self._db.transaction(self._assume_missing, monitor, cutoff, now, limit)

    async def _assume_missing(
        self,
        conn: connection.Conn,
        monitor: interface.Registered,
        cutoff: float,
        now: float,
        limit: int,
    ) -> int:
        swept = await conn.fetchval("SELECT swept FROM sweeps WHERE monitor_id = $1", monitor.id)
        swept = -math.inf if swept is None else swept
        if swept >= cutoff:
            return 0
        await labels.hold(conn, self.keys.labels, [monitor.id], True)
        candidates = await conn.fetch(
            f"SELECT {ROW_COLUMNS} FROM {labels.LABELED} WHERE monitor_id = $1 AND ts >= $2"
            " AND ts < $3 AND prediction_ref IS NULL ORDER BY ts LIMIT $4",
            monitor.id,
            swept,
            cutoff,
            limit,
        )
        result = plan.plan_assumed(monitor, [codec.row(*found) for found in candidates])
        await _write_plan(conn, result, now, {})
        swept = candidates[-1]["ts"] if len(candidates) == limit else cutoff
        await conn.execute(
            "INSERT INTO sweeps (monitor_id, swept) VALUES ($1, $2)"
            " ON CONFLICT (monitor_id) DO UPDATE SET swept = excluded.swept",
            monitor.id,
            swept,
        )
        return len(result.labels)

    async def expire_pending(self, now: float) -> dict[int, int]:
        return await self._db.transaction(_expire_pending, now)

    async def delete_predictions(self, monitor_id: int, before: float, limit: int) -> int:
        return await self._db.transaction(_delete_predictions, monitor_id, before, limit)

    # -- CloudEvents waiting for their other half -----------------------------------------------

    async def put_half(
        self,
        monitor_id: int,
        event_id: str,
        half: Literal["request", "response"],
        payload: str,
        now: float,
        limit: int,
    ) -> interface.HalfStored:
        bit = codec.HALF_BITS[half]

        async def put(conn: connection.Conn) -> interface.HalfStored:
            values = (monitor_id, event_id, now, bit, payload, limit)
            if await conn.fetchrow(_ADD_HALF[half], *values) is not None:
                return interface.HalfStored("waiting")
            row = await conn.fetchrow(_FILL_HALF[half], monitor_id, event_id, payload, bit)
            stored = codec.half_stored(row)
            if stored.outcome == "paired":
                await conn.execute(_TAKE_PAIR, monitor_id, event_id, now)
            return stored

        return await self._db.transaction(put)

    async def expire_halves(self, before: float, limit: int) -> dict[int, int]:
        async def expire(conn: connection.Conn) -> dict[int, int]:
            found = codec.unpaired(await conn.fetch(_EXPIRE_HALVES, before, limit))
            await aggregates.add(conn, {}, {(mid, "", ""): c for mid, c in found.items()})
            return {mid: int(sum(counts.values())) for mid, counts in found.items()}

        return await self._db.transaction(expire)

    # -- the sidecars' minutes -----------------------------------------------------------------

    async def add_sidecar_minutes(
        self, monitor_id: int, minutes: Mapping[int, Mapping[str, float]]
    ) -> None:
        rows = codec.sidecar_rows(minutes)
        await self._db.transaction(
            lambda conn: conn.execute(_ADD_SIDECAR_MINUTES, monitor_id, rows)
        )

    async def sidecar_minutes(
        self, monitor_id: int, span: BucketRange, step_minutes: int
    ) -> list[tuple[float, dict[str, float]]]:
        steps, (start, width, first, end) = codec.sidecar_span(span, step_minutes)
        found = await self._db.fetch(_SIDECAR_MINUTES, start, width, monitor_id, first, end)
        return codec.sidecar_steps(steps, found)

    async def delete_sidecar_minutes(self, monitor_id: int, before: float, limit: int) -> int:
        bucket = windows.bucket_of(before)
        status = await self._db.transaction(
            lambda conn: conn.execute(_DELETE_SIDECAR_MINUTES, monitor_id, bucket, limit)
        )
        return sql.count(status)

    # -- the review queue ----------------------------------------------------------------------

    async def lease_review(
        self, monitor_id: int, reviewer: str, limit: int, now: float, lease_seconds: float
    ) -> list[interface.ReviewItem]:
        return await self._db.transaction(
            reviews.lease, monitor_id, reviewer, limit, now, lease_seconds
        )

    async def expire_reviews(self, now: float, limit: int) -> dict[int, int]:
        return await self._db.transaction(reviews.expire, now, limit)

    async def review_stats(
        self, now: float, monitor_id: int | None = None
    ) -> dict[int, interface.QueueStats]:
        return await self._db.read(reviews.stats, now, monitor_id)

    async def compact(self) -> int:
        return await aggregates.compact(self._db, self.keys.fold)

    # -- reads ---------------------------------------------------------------------------------

    async def window(
        self, monitor_id: int, span: BucketRange, only: interface.Only = interface.EVERY
    ) -> interface.Groups:
        return await aggregates.window(self._db, monitor_id, span, only)

    async def series(
        self, monitor_id: int, steps: Steps, only: interface.Only = interface.EVERY
    ) -> dict[int, interface.Groups]:
        return await aggregates.series(self._db, monitor_id, steps, only)

    async def totals(self) -> dict[int, dict[Group, interface.Counters]]:
        return await aggregates.totals(self._db)

    async def segment_values(
        self, monitor_id: int, since: float, limit: int
    ) -> dict[str, dict[str, int]]:
        found = await self._db.fetch(
            "SELECT segments, count(*) FROM (SELECT segments FROM predictions"
            " WHERE monitor_id = $1 AND ts >= $2 ORDER BY ts DESC LIMIT $3) AS newest"
            " WHERE segments IS NOT NULL GROUP BY segments",
            monitor_id,
            since,
            limit,
        )
        return codec.segment_counts(found)

    async def timeline(
        self, monitor_id: int, entity_id: str, limit: int, outlier: bool | None = None
    ) -> list[interface.StoredPrediction]:
        found = await self._db.fetch(
            f"SELECT {STORED_COLUMNS} FROM {labels.LABELED} WHERE monitor_id = $1"
            f" AND entity_id = $2{codec.outlier_filter(outlier)} ORDER BY ts DESC, id DESC"
            " LIMIT $3",
            monitor_id,
            entity_id,
            limit,
        )
        return [codec.stored(*r) for r in found]

    async def dataset(
        self, query: interface.DatasetQuery, after: tuple[float, int], limit: int
    ) -> list[interface.StoredPrediction]:
        params: list[Any] = [query.monitor_id, *after, query.end]
        source = labels.LABELED
        if query.labeled:
            source = "predictions JOIN labels ON prediction_ref = id"
        statement = (
            f"SELECT {STORED_COLUMNS} FROM {source}"
            " WHERE monitor_id = $1 AND ts >= $2 AND (ts, id) > ($2, $3) AND ts < $4"
        )
        if query.version is not None:
            params.append(query.version)
            statement += f" AND model_version = ${len(params)}"
        if query.correct is not None:
            params.append(query.correct)
            statement += f" AND correct = ${len(params)}"
        statement += codec.outlier_filter(query.outlier) + codec.review_filters(query)
        params.append(limit)
        found = await self._db.fetch(statement + f" ORDER BY ts, id LIMIT ${len(params)}", *params)
        return [codec.stored(*r) for r in found]

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
        values = (monitor_id, at, alert, to_json(summary), document, html)
        return await self._db.transaction(_add_report, values, keep)

    async def reports(self, monitor_id: int, limit: int) -> list[interface.StoredReport]:
        return codec.stored_reports(await self._db.fetch(_LIST_REPORTS, monitor_id, limit))

    async def report(
        self, monitor_id: int, report_id: int, part: interface.ReportPart
    ) -> str | None:
        found = await self._db.fetch(_REPORT_PARTS[part], monitor_id, report_id)
        return str(found[0][0]) if found else None


async def _add_report(conn: connection.Conn, values: tuple[Any, ...], keep: int) -> int:
    report_id = await conn.fetchval(_ADD_REPORT, *values)
    await conn.execute(_KEEP_REPORTS, values[0], keep)
    return int(report_id)


async def _live(conn: connection.Conn, monitor_ids: set[int]) -> None:
    """Refuse a write for monitors another replica deleted (`MonitorsGone`): called holding
    the locks a delete waits for, so a write either commits before the delete or sees it."""
    live = await conn.fetchval(
        "SELECT array_agg(id) FROM monitors WHERE id = ANY($1::int[]) AND deleted IS NULL",
        list(monitor_ids),
    )
    gone = monitor_ids - set(live or ())
    if gone:
        raise interface.MonitorsGone(sorted(gone))


async def _write_plan(
    conn: connection.Conn,
    result: plan.Plan,
    now: float,
    versions: Mapping[int, str],
    refs: Mapping[int, int] | None = None,
) -> None:
    """Store a plan: labels (`versions` of the ones replaced; `refs` maps a new record's batch
    index to its id), counter deltas and totals, pending actuals."""
    await labels.write(conn, result.labels, now, versions, refs)
    await aggregates.add(conn, result.deltas, result.totals)
    await pending.write(conn, result)
    await reviews.answer(conn, result.reviews)


async def _delete_predictions(
    conn: connection.Conn, monitor_id: int, before: float, limit: int
) -> int:
    deleted = await predictions.delete(conn, monitor_id, before, limit)
    await conn.execute(reviews.UNQUEUE_GONE, monitor_id, before)
    return deleted


async def _expire_pending(conn: connection.Conn, now: float) -> dict[int, int]:
    expired = await pending.expire(conn, now)
    await aggregates.add(
        conn, {}, {(mid, "", ""): {ACTUALS_EXPIRED: float(n)} for mid, n in expired.items()}
    )
    return expired
