"""Stored columns ⇄ values, the same for both SQL backends.

Both keep a record's `prediction`, `actual` and `features` as JSON text and read its label as
the columns `actual, vote, assumed, reviewer` (SQLite keeps them in the record's row, PostgreSQL
in a table of its own, NULL while unlabeled); a driver hands back `assumed`/`correct`/
`abstained` as integers (SQLite) or booleans (PostgreSQL), so the converters take either; `vote`
holds what the store wrote, a `Vote` or NULL. Row converters take the columns in the order of
`ROW_COLUMNS` / `STORED_COLUMNS` / `ITEM_COLUMNS`: a backend passes a fetched row as `*row`.

The review queue (`review_items`) is the same table in both, and the statements on it that need
no backend's own SQL are here, formatted with the backend's parameter markers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import numpy as np

from truthloop.core import alerts, queue, review, segmented, segments, sketch, windows
from truthloop.core.join import Label, Row
from truthloop.core.plan import NewPending, Waiting
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.records import Actual, PredictionRecord, Vote
from truthloop.core.spec import Monitor, parse_monitor
from truthloop.core.windows import BucketRange, Steps
from truthloop.feedback.store.interface import (
    DatasetQuery,
    HalfStored,
    QueueStats,
    Registered,
    ReviewItem,
    StoredPrediction,
    StoredReport,
)

ROW_COLUMNS = (
    "id, prediction_id, served_by, model_version, ts, prediction, score, actual, vote, assumed,"
    " reviewer, review_pi, review_f, review_part, review_reason, segment_keys"
)
PENDING_COLUMNS = "id, prediction_id, entity_id, tag, ts, actual, vote, labeled"
STORED_COLUMNS = (
    "id, prediction_id, served_by, model_version, entity_id, tag, ts, prediction, score, features,"
    " actual, vote, assumed, reviewer, correct, labeled_at, outlier, review_pi, review_reason,"
    " abstained, (SELECT votes FROM review_items AS r WHERE r.monitor_id = predictions.monitor_id"
    " AND r.prediction_id = predictions.prediction_id)"
)
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
    "outlier",
    "review_pi",
    "review_f",
    "review_part",
    "review_reason",
    "abstained",
    "segments",
    "segment_keys",
)
"""The `predictions` columns a new record fills, in `prediction_values` order."""
REFERENCE_COLUMNS = "id, monitor_id, version, created, source"
PURGED_TABLES = (
    "pending",
    "totals",
    "states",
    "sweeps",
    "reference_profiles",
    "review_items",
    "sidecar_minutes",
    "transitions",
    "reports",
    "event_halves",
)
"""The tables of both stores whose rows a purged monitor's id deletes, beside its predictions and
aggregate tables (each store's own); a new table of a monitor's rows belongs here."""
"""A stored reference's columns but its profile (`references` reads the profile after them)."""

TOKENS_TABLE = """
CREATE TABLE tokens (
    namespace text PRIMARY KEY,
    sha256 text NOT NULL,
    updated double precision NOT NULL
)"""
"""The namespace tokens' scopes (a migration of both stores): the SHA-256 of each namespace's
token (`core.scopes.digest`), never the token."""
LOAD_TOKENS = "SELECT namespace, sha256 FROM tokens"
PUT_TOKEN = (
    "INSERT INTO tokens (namespace, sha256, updated) VALUES ({0}, {1}, {2})"
    " ON CONFLICT (namespace) DO UPDATE SET sha256 = excluded.sha256, updated = excluded.updated"
)
"""Formatted with the backend's three parameter markers (`?` or `$1`...)."""

REFERENCES_TABLE = """
CREATE TABLE reference_profiles (
    id {id},
    monitor_id integer NOT NULL,
    version text NOT NULL,
    created double precision NOT NULL,
    source text NOT NULL,
    profile text NOT NULL
);
CREATE UNIQUE INDEX reference_profiles_version ON reference_profiles (monitor_id, version);
ALTER TABLE predictions ADD COLUMN outlier double precision;
"""
"""The reference profiles (one per monitor and model version; a replaced one's id is never used
again, `id` is formatted with the backend's never-reused key) and each record's outlier score:
a migration of both stores."""

HISTORY_TABLES = """
CREATE TABLE transitions (
    monitor_id integer NOT NULL,
    at double precision NOT NULL,
    seq integer NOT NULL,
    kind text NOT NULL,
    alert text,
    reason text NOT NULL,
    previous text,
    current text,
    PRIMARY KEY (monitor_id, at, seq)
);
CREATE TABLE reports (
    id {id},
    monitor_id integer NOT NULL,
    at double precision NOT NULL,
    alert text NOT NULL,
    summary text NOT NULL,
    document text NOT NULL,
    html text NOT NULL
);
CREATE INDEX reports_at ON reports (monitor_id, at);
CREATE TABLE sidecar_minutes (
    monitor_id integer NOT NULL,
    bucket {bucket} NOT NULL,
    key text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (monitor_id, bucket, key)
);
"""
"""What the dashboard and the alert reports read besides the counters, a migration of both
stores: `transitions`, the alert machine's (`alerts.Transition`, `seq` orders those of one
tick), for the timeline and the fallback's periods; `reports`, one per alert that fired
(`summary` the listing's JSON, `document` the whole report's JSON, `html` the self-contained
page); `sidecar_minutes`, the sidecars' own request counters and latency histogram per minute
bucket, summed over pods (`key` as `wire.SidecarMinute.counts` names them)."""

EVENT_HALVES_TABLE = """
CREATE TABLE event_halves (
    monitor_id integer NOT NULL,
    event_id text NOT NULL,
    received double precision NOT NULL,
    halves integer NOT NULL,
    request text,
    response text,
    paired double precision,
    PRIMARY KEY (monitor_id, event_id)
);
CREATE INDEX event_halves_waiting ON event_halves (monitor_id) WHERE paired IS NULL;
CREATE INDEX event_halves_received ON event_halves (received);
"""
"""CloudEvents waiting for their other half (a migration of both stores): one row per event of
a monitor (`event_id` is `cloudevents.pair_key`: the id within the component that logged it),
`halves` the bits of the halves seen (`HALF_BITS`), `request`/`response` each half's
`cloudevents.Half` JSON until the pair is taken (`paired` then says when, and the row stays,
without them, until it expires: a half delivered again is known as a duplicate). `received` is
the first half's arrival, from which the row expires."""
HALF_BITS = {"request": 1, "response": 2}
BOTH_HALVES = 3
ADD_HALF = {
    half: (
        f"INSERT INTO event_halves (monitor_id, event_id, received, halves, {half})"
        " SELECT {0}, {1}, {2}, {3}, {4} WHERE (SELECT count(*) FROM (SELECT 1 FROM event_halves"
        " WHERE monitor_id = {0} AND paired IS NULL LIMIT {5}) AS waiting) < {5}"
        " ON CONFLICT (monitor_id, event_id) DO NOTHING RETURNING halves"
    )
    for half in HALF_BITS
}
"""The first half of event {1} of monitor {0} (arrived at {2}, bit {3}, `Half` JSON {4}),
unless the monitor has {5} halves waiting already; a row only when it is new."""
FILL_HALF = {
    half: (
        f"UPDATE event_halves SET {half} = CASE WHEN paired IS NULL THEN {{2}} END,"
        " halves = halves | {3} WHERE monitor_id = {0} AND event_id = {1}"
        " RETURNING halves, request, response, paired"
    )
    for half in HALF_BITS
}
"""A half of an event already known (its other half's, or this one again): the row after it,
for `half_stored`; none when the event is not known (the insert found the monitor full)."""
TAKE_PAIR = (
    "UPDATE event_halves SET request = NULL, response = NULL, paired = {2}"
    " WHERE monitor_id = {0} AND event_id = {1}"
)
EXPIRE_HALVES = (
    "DELETE FROM event_halves WHERE (monitor_id, event_id) IN (SELECT monitor_id, event_id"
    " FROM event_halves WHERE received < {0} LIMIT {1}) RETURNING monitor_id, halves, paired"
)
"""Delete up to {1} events first seen before {0}, paired or not (`unpaired` counts those not)."""
UNPAIRED_KEYS = {1: "@cloudevents_unpaired/no_response", 2: "@cloudevents_unpaired/no_request"}
"""The lifetime totals (version and served_by "") counting the halves that expired alone: a
request whose response never came (the model did not answer 200), or a response alone."""


def half_stored(row: Any) -> HalfStored:
    """What `FILL_HALF`'s row says of the half just stored (None: the monitor is full)."""
    if row is None:
        return HalfStored("full")
    halves, request, response, paired = row
    if paired is not None or halves != BOTH_HALVES or request is None or response is None:
        return HalfStored("duplicate")
    return HalfStored("paired", request, response)


def unpaired(rows: Iterable[Any]) -> dict[int, dict[str, float]]:
    """`EXPIRE_HALVES`' rows: per monitor id, the `UNPAIRED_KEYS` totals they add."""
    found: dict[int, dict[str, float]] = {}
    for monitor_id, halves, paired in rows:
        if paired is None:
            counts = found.setdefault(monitor_id, {})
            key = UNPAIRED_KEYS[halves]
            counts[key] = counts.get(key, 0.0) + 1.0
    return found


ADD_TRANSITION = (
    "INSERT INTO transitions (monitor_id, at, seq, kind, alert, reason, previous, current)"
    " VALUES ({0}, {1}, (SELECT coalesce(max(seq) + 1, 0) FROM transitions"
    " WHERE monitor_id = {0} AND at = {1}), {2}, {3}, {4}, {5}, {6})"
)
"""One transition of monitor {0} at {1}, numbered after those stored at the same time (a call's
in its order; two steps at one clock reading, as an injected clock makes, do not collide):
{2}..{6} are `transition_values`. Formatted with numbered markers (`?1` or `$1`)."""
TRANSITIONS = (
    "SELECT at, kind, alert, reason, previous, current FROM transitions"
    " WHERE monitor_id = {0} AND at >= {1} AND at < {2} ORDER BY at DESC, seq DESC LIMIT {3}"
)
"""Monitor {0}'s newest {3} transitions in [{1}, {2}), newest first (`transition` reads a row)."""
DELETE_TRANSITIONS = (
    "DELETE FROM transitions WHERE monitor_id = {0} AND (at, seq) IN (SELECT at, seq"
    " FROM transitions WHERE monitor_id = {0} AND at < {1} ORDER BY at LIMIT {2})"
)
"""Delete monitor {0}'s oldest {2} transitions from before {1} (retention, a chunk at a time)."""

ADD_REPORT = (
    "INSERT INTO reports (monitor_id, at, alert, summary, document, html)"
    " VALUES ({0}, {1}, {2}, {3}, {4}, {5}) RETURNING id"
)
KEEP_REPORTS = (
    "DELETE FROM reports WHERE monitor_id = {0} AND id NOT IN"
    " (SELECT id FROM reports WHERE monitor_id = {0} ORDER BY at DESC, id DESC LIMIT {1})"
)
"""Delete monitor {0}'s reports but the newest {1}."""
LIST_REPORTS = (
    "SELECT id, at, alert, summary FROM reports WHERE monitor_id = {0}"
    " ORDER BY at DESC, id DESC LIMIT {1}"
)
REPORT_PARTS = {
    part: f"SELECT {part} FROM reports WHERE monitor_id = {{0}} AND id = {{1}}"
    for part in ("document", "html")
}
"""One report's document or page."""


def stored_reports(rows: Iterable[Iterable[Any]]) -> list[StoredReport]:
    """`LIST_REPORTS`' rows."""
    return [
        StoredReport(int(rid), float(at), str(alert), decode(summary))
        for rid, at, alert, summary in rows
    ]


REVIEW_TABLE = """
ALTER TABLE predictions ADD COLUMN review_pi double precision;
ALTER TABLE predictions ADD COLUMN review_f double precision;
ALTER TABLE predictions ADD COLUMN review_part text;
ALTER TABLE predictions ADD COLUMN review_reason text;
ALTER TABLE predictions ADD COLUMN abstained {flag};
ALTER TABLE {labels} ADD COLUMN reviewer text;
CREATE TABLE review_items (
    id {id},
    monitor_id integer NOT NULL,
    prediction_id text NOT NULL,
    model_version text NOT NULL,
    ts double precision NOT NULL,
    queued double precision NOT NULL,
    expires double precision NOT NULL,
    reason text NOT NULL,
    pi double precision NOT NULL,
    state text NOT NULL DEFAULT 'open',
    lease_until double precision,
    leased_to text,
    passed text NOT NULL DEFAULT '[]',
    votes text NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX review_items_key ON review_items (monitor_id, prediction_id);
CREATE INDEX review_items_lease ON review_items (monitor_id, state, queued);
CREATE INDEX review_items_expires ON review_items (expires) WHERE state = 'open';
"""
"""Human review (a migration of both stores): a queued record's mark (`review.Mark`), whether
the sidecar abstained, the reviewer of a label (`labels`: the table a label lives in; `flag` the
backend's false-by-default boolean), and the queue, one item per queued model record (its
prediction id), `passed` and `votes` as JSON lists."""

SEGMENT_COLUMNS = """
ALTER TABLE predictions ADD COLUMN segments text;
ALTER TABLE predictions ADD COLUMN segment_keys text;
"""
"""Segments (a migration of both stores): a record's raw segment values (a JSON object) and
its prefixes (a JSON list, `core.segments.prefixes`), NULL for a record without segments."""

ITEM_COLUMNS = (
    "r.prediction_id, r.model_version, r.ts, p.prediction, p.score, p.features, p.outlier,"
    " p.abstained, r.reason, r.pi, r.queued, r.lease_until, r.leased_to, r.votes"
)
"""A leased item (`r`) with its record (`p`), as `review_item` takes them."""


def stats_arguments(now: float, monitor_id: int | None) -> tuple[float, ...]:
    """`REVIEW_STATS`'s {0} and {1} at `now`, then the monitor for a statement of one."""
    since = now - EXPIRED_WITHIN
    return (now, since) if monitor_id is None else (now, since, monitor_id)


def leased(items: str) -> str:
    """The items of `items` (a table, or a statement's name for rows of one) with their
    records, as `review_item` takes them (the caller adds which, and their order)."""
    return (
        f"SELECT {ITEM_COLUMNS} FROM {items} AS r JOIN predictions AS p"
        " ON p.monitor_id = r.monitor_id AND p.prediction_id = r.prediction_id"
        f" AND p.served_by = '{queue.REVIEWED_BY}'"
    )


def lease_order(table: str) -> str:
    """The order items (of `table`, a name or alias) are leased in: abstained and explored ones
    first, then the oldest."""
    first = ", ".join(f"'{reason}'" for reason in queue.FIRST)
    return f"{table}.reason NOT IN ({first}), {table}.queued, {table}.id"


ITEM_STATE_COLUMNS = "id, state, lease_until, leased_to, passed, votes"
"""An item as an answer changes it (`queue.Item`)."""
EXPIRE_REVIEWS = (
    "UPDATE review_items SET state = 'expired', lease_until = NULL, leased_to = NULL"
    " WHERE state = 'open' AND id IN (SELECT id FROM review_items"
    " WHERE state = 'open' AND expires <= {0} ORDER BY expires LIMIT {1}) RETURNING monitor_id"
)
"""Close up to {1} open items past their expiry {0}; each one's monitor."""
REVIEW_STATS = (
    "SELECT monitor_id,"
    " sum(CASE WHEN state = 'open' AND expires > {0} THEN 1 ELSE 0 END),"
    " sum(CASE WHEN state = 'open' AND expires > {0} AND lease_until >= {0} THEN 1 ELSE 0 END),"
    " min(CASE WHEN state = 'open' AND expires > {0} THEN queued END),"
    " sum(CASE WHEN expires <= {0} AND expires > {1} THEN 1 ELSE 0 END)"
    " FROM review_items WHERE {2}(state = 'open' OR (state = 'expired' AND expires > {1}))"
    " GROUP BY monitor_id"
)
"""Per monitor: open items not expired at {0}, those leased, the oldest queued, and those
expired unreviewed since {1} (swept or not yet); {2} is empty, or `monitor_id = <x> AND ` for one
monitor's (a lease reads its own queue's: the whole table's grows with every monitor's)."""
EXPIRED_WITHIN = 86400.0
"""How far back `REVIEW_STATS` counts items expired unreviewed: a day."""
LEASABLE = (
    "monitor_id = {0} AND state = 'open' AND expires > {1}"
    " AND (lease_until IS NULL OR lease_until < {1})"
)
"""Monitor {0}'s items a reviewer may lease at {1}: open, not expired, not leased (the backend
adds that the reviewer has not passed on the item, and the order)."""
UNQUEUE_GONE = (
    "DELETE FROM review_items WHERE monitor_id = {0} AND ts < {1} AND NOT EXISTS (SELECT 1 FROM"
    " predictions AS p WHERE p.monitor_id = review_items.monitor_id"
    f" AND p.prediction_id = review_items.prediction_id AND p.served_by = '{queue.REVIEWED_BY}')"
)
"""Delete monitor {0}'s items of records from before {1} that retention deleted."""

SIDECAR_MINUTES = (
    "SELECT (bucket - {0}) / {1}, key, sum(value) FROM sidecar_minutes"
    " WHERE monitor_id = {2} AND bucket >= {3} AND bucket < {4} GROUP BY 1, 2"
)
"""Monitor {2}'s sidecar counters of the buckets {3} <= b < {4}, summed per step of {1} minutes
from bucket {0} (`sidecar_steps` reads the rows)."""


def sidecar_span(span: BucketRange, step_minutes: int) -> tuple[Steps, tuple[int, int, int, int]]:
    """The steps of a `Store.sidecar_minutes` read and `SIDECAR_MINUTES`' parameters {0}, {1},
    {3}, {4} (the monitor's id, {2}, is the caller's): the read keeps to `span`."""
    steps = windows.steps(span, step_minutes)
    return steps, (steps.start, steps.width, span.start, span.end)


def sidecar_steps(
    steps: Steps, rows: Iterable[Iterable[Any]]
) -> list[tuple[float, dict[str, float]]]:
    """`SIDECAR_MINUTES`' rows as every step's (start, counters), in time order."""
    found: list[dict[str, float]] = [{} for _ in range(steps.count)]
    for index, key, value in rows:
        found[index][key] = value
    return [
        (windows.bucket_start(steps.start + i * steps.width), counts)
        for i, counts in enumerate(found)
    ]


def sidecar_rows(minutes: Mapping[int, Mapping[str, float]]) -> str:
    """Minute buckets' counters as one JSON array of [bucket, key, value], in (bucket, key) order
    (so two writers of the same rows lock them in the same order), zeros left out."""
    return to_json(
        [
            [bucket, key, value]
            for bucket in sorted(minutes)
            for key, value in sorted(minutes[bucket].items())
            if value
        ]
    )


_encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder().decode
_decode_profile = msgspec.json.Decoder(Profile).decode


def to_json(value: Any) -> str:
    """JSON text for a text column (bytes would be a BLOB in SQLite)."""
    return _encode(value).decode()


def registered(
    monitor_id: int,
    body: str,
    created: float,
    deleted: float | None,
    references: Mapping[str, Reference] | None = None,
) -> Registered:
    """A stored monitor, read as it was accepted: one stored before the durations were bounded
    must not stop the service from starting."""
    obj = decode(body)
    monitor = parse_monitor(obj, bounded=False)
    return Registered(monitor_id, monitor, obj, created, deleted, dict(references or {}))


def reference(
    ref: int, version: str, created: float, source: ReferenceSource, profile: str
) -> Reference:
    """A stored reference from its columns (the profile as JSON text)."""
    return Reference(ref, version, created, source, _decode_profile(profile))


def references_by_version(rows: Iterable[Iterable[Any]]) -> dict[str, Reference]:
    """A monitor's references by version, from rows of `REFERENCE_COLUMNS` and the profile."""
    return {
        version: reference(ref, version, created, source, profile)
        for ref, _, version, created, source, profile in rows
    }


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise NotImplementedError(f"cannot store a {type(value).__name__} in a profile")


_encode_profile = msgspec.json.Encoder(enc_hook=_numpy_scalar).encode


def profile_json(profile: Profile) -> str:
    """A profile as JSON text; a numpy number in it (a builder's quantile) is stored as a float."""
    return _encode_profile(profile).decode()


class Parsed:
    """The stored monitors, each body parsed once while it stays the same, and their references,
    each decoded once (a reference's id names one profile for good).

    A store rereads every monitor whenever another replica changes one (a state, a spec, a
    reference); parsing a body compiles its fallback rules, milliseconds each, and a profile can
    hold a hundred features' categories, which a busy replica would otherwise pay per monitor per
    change. A store reads the profiles of the references `profiles_known` does not name only."""

    __slots__ = ("_known", "_references")

    def __init__(self) -> None:
        self._known: dict[int, tuple[str, Registered]] = {}
        self._references: dict[int, Reference] = {}

    def profiles_known(self) -> list[int]:
        """Ids of the references whose profile need not be read again."""
        return list(self._references)

    def references(self, rows: Iterable[Iterable[Any]]) -> dict[int, dict[str, Reference]]:
        """The rows (`REFERENCE_COLUMNS`, then the profile as JSON text, or None for an id of
        `profiles_known`) as references per monitor id and version."""
        by_monitor: dict[int, dict[str, Reference]] = {}
        kept: dict[int, Reference] = {}
        for ref, monitor_id, version, created, source, profile in rows:
            if profile is None:
                found = self._references[ref]
            else:
                found = reference(ref, version, created, source, profile)
            kept[ref] = found
            by_monitor.setdefault(monitor_id, {})[version] = found
        self._references = kept
        return by_monitor

    def registered(
        self,
        rows: Iterable[Iterable[Any]],
        references: Mapping[int, Mapping[str, Reference]] | None = None,
    ) -> list[Registered]:
        """The rows (id, body, created, deleted) as monitors with their `references` (per
        monitor id); what the last call held and these rows no longer do is forgotten."""
        known: dict[int, tuple[str, Registered]] = {}
        out = []
        references = references or {}
        for monitor_id, body, created, deleted in rows:
            hit = self._known.get(monitor_id)
            mine = dict(references.get(monitor_id, {}))
            if hit is None or hit[0] != body:
                found = registered(monitor_id, body, created, deleted, mine)
            else:
                found = replace(hit[1], created=created, deleted=deleted, references=mine)
            known[monitor_id] = (body, found)
            out.append(found)
        self._known = known
        return out


def label(
    actual: str | None, vote: Vote | None, assumed: Any, reviewer: str | None
) -> Label | None:
    if actual is None and vote is None:
        return None
    return Label(None if actual is None else decode(actual), vote, bool(assumed), reviewer)


def label_columns(value: Label) -> tuple[str | None, str | None, bool, str | None]:
    """(actual, vote, assumed, reviewer) as stored."""
    return (
        None if value.value is None else to_json(value.value),
        value.vote,
        value.assumed,
        value.reviewer,
    )


def prediction_values(
    monitor_id: int,
    record: PredictionRecord,
    outlier: float | None = None,
    mark: review.Mark | None = None,
    prefixes: str | None = None,
) -> tuple[Any, ...]:
    """A capture record as the `predictions` table's `PREDICTION_COLUMNS`, with its outlier
    score, its review mark when it was queued and its segment prefixes (a JSON list)."""
    return (
        monitor_id,
        record.prediction_id,
        record.served_by,
        record.model_version,
        record.entity_id,
        record.tag,
        record.ts,
        to_json(record.prediction),
        record.score,
        None if record.features is None else to_json(record.features),
        outlier,
        *((None,) * 4 if mark is None else (mark.pi, mark.f, mark.part, mark.reason)),
        record.abstained,
        None if not record.segments else to_json(record.segments),
        prefixes,
    )


def batch_values(
    records: Sequence[PredictionRecord], monitors: Mapping[str, Registered], prepared: Prepared
) -> list[tuple[Any, ...]]:
    """A batch's `prediction_values`, with each record's outlier score, review mark and
    segment prefixes."""
    outliers, selected, assigned = prepared.sketched.outliers, prepared.selected, prepared.assigned
    marks = selected.marks if selected is not None else [None] * len(records)
    keys: list[str | None] = [None] * len(records)
    if assigned is not None:
        texts: dict[tuple[int, ...], str | None] = {}
        for i, ids in enumerate(map(tuple, assigned.ids.tolist())):
            text = texts.get(ids, "")
            if text == "":
                names = [assigned.names[k] for k in ids if k]
                text = texts[ids] = to_json(names) if names else None
            keys[i] = text
    return [
        prediction_values(monitors[r.monitor].id, r, outlier, mark, found)
        for r, outlier, mark, found in zip(records, outliers, marks, keys, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a batch of records makes before either store writes it, in pure steps."""

    sketched: sketch.Sketched
    selected: review.Selected | None
    assigned: segmented.Assigned | None


def prepare(
    records: Sequence[PredictionRecord],
    monitors: Mapping[str, Registered],
    designs: Mapping[int, review.Design] | None,
    segment_sets: Mapping[int, segments.ValueSets] | None,
) -> Prepared:
    """A batch's sketch (`sketch.sketch`), review selection (with its monitors' `designs` by id:
    `_selection`) and segment prefixes (with their `segment_sets` by id: `segmented.assign`)."""
    sketched = sketch.sketch(records, monitors)
    selected = _selection(records, monitors, designs, sketched.outliers)
    return Prepared(sketched, selected, segmented.assign(records, monitors, segment_sets))


def _selection(
    records: Sequence[PredictionRecord],
    monitors: Mapping[str, Registered],
    designs: Mapping[int, review.Design] | None,
    outliers: Sequence[float | None],
) -> review.Selected | None:
    """The batch's review selection (`review.select`), or None when none of its monitors has
    `spec.review` (the usual case, which costs a set of the batch's monitor keys)."""
    keys = {r.monitor for r in records}
    if all(monitors[key].monitor.spec.review is None for key in keys):
        return None
    return review.select(records, monitors, designs or {}, outliers)


def named_items(
    actuals: Sequence[Actual], monitors: Mapping[str, Registered]
) -> list[tuple[int, str]]:
    """(monitor id, prediction id) of the review items the reviewers' actuals name, sorted."""
    return sorted(
        {
            (monitors[a.monitor].id, a.prediction_id)
            for a in actuals
            if a.reviewer is not None and a.prediction_id is not None
        }
    )


def item_values(
    monitor: Monitor, monitor_id: int, record: PredictionRecord, mark: review.Mark, now: float
) -> tuple[Any, ...]:
    """A queued record as a `review_items` row (monitor_id, prediction_id, model_version, ts,
    queued, expires, reason, pi): it expires when its attribution window does."""
    return (
        monitor_id,
        record.prediction_id,
        record.model_version,
        record.ts,
        now,
        record.ts + monitor.spec.feedback.attribution_window,
        mark.reason,
        mark.pi,
    )


def queued_values(
    records: Sequence[PredictionRecord],
    monitors: Mapping[str, Registered],
    selected: review.Selected | None,
    stored: Sequence[int],
    now: float,
) -> list[tuple[Any, ...]]:
    """The `review_items` rows of the stored records (`stored`: their positions) selected."""
    if selected is None:
        return []
    out = []
    for position, mark in selected.queued(stored):
        record = records[position]
        registered = monitors[record.monitor]
        out.append(item_values(registered.monitor, registered.id, record, mark, now))
    return out


def item(
    ref: int,
    state: queue.State,
    lease_until: float | None,
    leased_to: str | None,
    passed: str,
    votes: str,
) -> queue.Item:
    """An item from `ITEM_STATE_COLUMNS`."""
    return queue.Item(
        ref, state, lease_until, leased_to, tuple(decode(passed)), queue.decode_votes(votes)
    )


def answered_values(answered: queue.Item) -> tuple[Any, ...]:
    """An answered item as stored: state, lease_until, leased_to, passed, votes, then its id."""
    return (
        answered.state,
        answered.lease_until,
        answered.leased_to,
        to_json(answered.passed),
        to_json(answered.votes),
        answered.ref,
    )


def review_item(
    prediction_id: str,
    model_version: str,
    ts: float,
    prediction: str,
    score: float | None,
    features: str | None,
    outlier: float | None,
    abstained: Any,
    reason: review.Reason,
    pi: float,
    queued: float,
    lease_until: float | None,
    leased_to: str | None,
    votes: str,
) -> ReviewItem:
    """A leased item from `ITEM_COLUMNS`."""
    return ReviewItem(
        prediction_id,
        model_version,
        ts,
        decode(prediction),
        score,
        None if features is None else decode(features),
        outlier,
        bool(abstained),
        reason,
        pi,
        queued,
        lease_until,
        leased_to,
        queue.decode_votes(votes),
    )


def queue_stats(rows: Iterable[Iterable[Any]]) -> dict[int, QueueStats]:
    """`REVIEW_STATS`'s rows per monitor id."""
    return {
        mid: QueueStats(int(depth), int(leased), oldest, int(expired))
        for mid, depth, leased, oldest, expired in rows
    }


def expired_by_monitor(rows: Iterable[Iterable[Any]]) -> dict[int, int]:
    """How many of `EXPIRE_REVIEWS`'s rows each monitor has."""
    out: dict[int, int] = {}
    for (mid,) in rows:
        out[mid] = out.get(mid, 0) + 1
    return out


def review_filters(query: DatasetQuery) -> str:
    """The SQL conditions (both backends) of a dataset query's `reviewed` and `abstained`."""
    sql = ""
    if query.reviewed is not None:
        sql += f" AND reviewer IS {'NOT ' if query.reviewed else ''}NULL"
    if query.abstained is not None:
        sql += f" AND {'' if query.abstained else 'NOT '}abstained"
    return sql


def pending_values(pending: NewPending) -> tuple[Any, ...]:
    """An actual that labeled nothing yet, as the `pending` table's columns: monitor_id,
    prediction_id, entity_id, tag, ts, actual, vote, expires."""
    actual = pending.actual
    return (
        pending.monitor_id,
        actual.prediction_id,
        actual.entity_id,
        actual.tag,
        actual.timestamp,
        None if actual.value is None else to_json(actual.value),
        actual.vote,
        pending.expires,
    )


def waiting(
    monitor: str,
    ref: int,
    prediction_id: str | None,
    entity_id: str | None,
    tag: str | None,
    ts: float,
    actual: str | None,
    vote: Vote | None,
    labeled: str | None,
) -> Waiting:
    """A pending actual of `monitor` from the columns of `PENDING_COLUMNS`."""
    value = None if actual is None else decode(actual)
    return Waiting(
        ref,
        Actual(monitor, ts, prediction_id, entity_id, tag, value, vote),
        () if labeled is None else tuple(decode(labeled)),
    )


def row(
    ref: int,
    prediction_id: str,
    served_by: str,
    model_version: str,
    ts: float,
    prediction: str,
    score: float | None,
    actual: str | None,
    vote: Vote | None,
    assumed: Any,
    reviewer: str | None,
    pi: float | None,
    f: float | None,
    part: str | None,
    reason: review.Reason | None,
    prefixes: str | None,
) -> Row:
    return Row(
        ref,
        prediction_id,
        served_by,
        model_version,
        ts,
        decode(prediction),
        score,
        label(actual, vote, assumed, reviewer),
        None if pi is None else review.Mark(pi, f or 0.0, part or "", reason or "random"),
        () if prefixes is None else tuple(decode(prefixes)),
    )


def segment_counts(rows: Iterable[Iterable[Any]]) -> dict[str, dict[str, int]]:
    """Per segment, how many records had each raw value (`segments.text`), from rows of
    (stored raw values as JSON text, how many records stored exactly that)."""
    out: dict[str, dict[str, int]] = {}
    for raw, n in rows:
        for name, value in decode(raw).items():
            counts = out.setdefault(name, {})
            text = segments.text(value)
            counts[text] = counts.get(text, 0) + n
    return out


def stored(
    ref: int,
    prediction_id: str,
    served_by: str,
    model_version: str,
    entity_id: str | None,
    tag: str | None,
    ts: float,
    prediction: str,
    score: float | None,
    features: str | None,
    actual: str | None,
    vote: Vote | None,
    assumed: Any,
    reviewer: str | None,
    correct: Any,
    labeled_at: float | None,
    outlier: float | None,
    pi: float | None,
    reason: review.Reason | None,
    abstained: Any,
    votes: str | None,
) -> StoredPrediction:
    return StoredPrediction(
        cursor=(ts, ref),
        prediction_id=prediction_id,
        served_by=served_by,
        model_version=model_version,
        entity_id=entity_id,
        tag=tag,
        ts=ts,
        prediction=decode(prediction),
        score=score,
        features=None if features is None else decode(features),
        label=label(actual, vote, assumed, reviewer),
        correct=None if correct is None else bool(correct),
        labeled_at=labeled_at,
        outlier=outlier,
        pi=pi,
        reason=reason,
        reviewer=reviewer,
        abstained=bool(abstained),
        votes=() if votes is None else queue.decode_votes(votes),
    )


def outlier_filter(outlier: bool | None) -> str:
    """The SQL condition (both backends) keeping outliers only (True: a score above 0), none of
    them (False: 0, or no score), or every record (None)."""
    if outlier is None:
        return ""
    return " AND outlier > 0" if outlier else " AND coalesce(outlier, 0) <= 0"


def transition_values(t: alerts.Transition) -> tuple[Any, ...]:
    """A transition's columns after its monitor, time and number (`ADD_TRANSITION`)."""
    return (t.kind, t.alert, t.reason, t.previous, t.current)


def transition(
    at: float, kind: Any, alert: str | None, reason: str, previous: Any, current: Any
) -> alerts.Transition:
    """A `TRANSITIONS` row (the kind and phases as stored: written from a `Transition`)."""
    return alerts.Transition(kind, at, alert, reason, previous, current)
