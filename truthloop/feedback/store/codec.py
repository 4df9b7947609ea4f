"""Stored columns ⇄ values, the same for both SQL backends.

Both keep a record's `prediction`, `actual` and `features` as JSON text and read its label as
the columns `actual, vote, assumed` (SQLite keeps them in the record's row, PostgreSQL in a
table of its own, NULL while unlabeled); a driver hands back `assumed`/`correct` as integers
(SQLite) or booleans (PostgreSQL), so the converters take either; `vote` holds what the store
wrote, a `Vote` or NULL. Row converters take the columns in the order of `ROW_COLUMNS` /
`STORED_COLUMNS`: a backend passes a fetched row as `*row`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import msgspec
import numpy as np

from truthloop.core.join import Label, Row
from truthloop.core.plan import NewPending, Waiting
from truthloop.core.profile import Profile, Reference, ReferenceSource
from truthloop.core.records import Actual, PredictionRecord, Vote
from truthloop.core.spec import parse_monitor
from truthloop.feedback.store.interface import Registered, StoredPrediction

ROW_COLUMNS = (
    "id, prediction_id, served_by, model_version, ts, prediction, score, actual, vote, assumed"
)
PENDING_COLUMNS = "id, prediction_id, entity_id, tag, ts, actual, vote, labeled"
STORED_COLUMNS = (
    "id, prediction_id, served_by, model_version, entity_id, tag, ts, prediction, score, features,"
    " actual, vote, assumed, correct, labeled_at, outlier"
)
REFERENCE_COLUMNS = "id, monitor_id, version, created, source"
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


def label(actual: str | None, vote: Vote | None, assumed: Any) -> Label | None:
    if actual is None and vote is None:
        return None
    return Label(None if actual is None else decode(actual), vote, bool(assumed))


def label_columns(value: Label) -> tuple[str | None, str | None, bool]:
    """(actual, vote, assumed) as stored."""
    return (None if value.value is None else to_json(value.value), value.vote, value.assumed)


def prediction_values(
    monitor_id: int, record: PredictionRecord, outlier: float | None = None
) -> tuple[Any, ...]:
    """A capture record as the `predictions` table's columns: monitor_id, prediction_id,
    served_by, model_version, entity_id, tag, ts, prediction, score, features, outlier."""
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
    )


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
) -> Row:
    return Row(
        ref,
        prediction_id,
        served_by,
        model_version,
        ts,
        decode(prediction),
        score,
        label(actual, vote, assumed),
    )


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
    correct: Any,
    labeled_at: float | None,
    outlier: float | None,
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
        label=label(actual, vote, assumed),
        correct=None if correct is None else bool(correct),
        labeled_at=labeled_at,
        outlier=outlier,
    )


def outlier_filter(outlier: bool | None) -> str:
    """The SQL condition (both backends) keeping outliers only (True: a score above 0), none of
    them (False: 0, or no score), or every record (None)."""
    if outlier is None:
        return ""
    return " AND outlier > 0" if outlier else " AND coalesce(outlier, 0) <= 0"
