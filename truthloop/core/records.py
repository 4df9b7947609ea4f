"""Capture records and actuals: JSON bodies in, typed values or per-item errors out.

The feedback service validates a whole request before storing anything, and answers with every
bad item at once: `parse_predictions` and `parse_actuals` produce the typed items and the
`ItemError`s (`index`, `field`, `message`, and a `reason` code that is also the metric label and
the log field). A request is stored only when it has no error.

One client must not take the service down, so the work and the answer are bounded: the item
count is checked right after the body is decoded, before any item is converted; the first
`MAX_ERRORS` errors are kept and the others only counted; and the parsers are generators that
`yield` every `SLICE` items, so a caller on an event loop can serve other requests in between
(its return value, the `StopIteration` value, is the `Parsed` outcome).

The wire shapes are msgspec Structs (a capture record is `wire.CaptureRecord`, the one the
sidecar encodes), so a well-formed batch is decoded and type-checked in one C pass; only when
that fails is the body split into raw items (NDJSON: its lines) and each decoded on its own, to
name every bad item rather than the first. Both paths then run the same checks
of meaning:

- identifiers (prediction, entity, tag, version) that are empty, longer than
  `Limits.max_id_length` or hold characters that are not printable (`str.isprintable`: control,
  format and separator characters other than the space) are refused: they end up in URLs,
  Prometheus labels and CSV files;
- string labels (a prediction or an actual) holding control characters (C0, DEL, C1) are
  refused: a class label is a counter key, and PostgreSQL stores no NUL in text or `jsonb`;
- features may hold any text but NUL (`\u0000`), in keys and values alike;
- integers beyond ±2**53 (they survive neither a float nor a database integer); JSON itself
  has no NaN or Infinity and msgspec refuses numbers out of float range (and lone surrogates);
- timestamps before 1970, more than `Limits.future_skew` ahead of `now`, and (predictions only)
  older than `Limits.max_age`, the retention period, since they would be deleted on arrival;
- values the monitor's task cannot use (a label of "cat" for a binary task);
- a record's `segments`: at most `spec.MAX_SEGMENTS`, each value of a segment the monitor
  declares a string, number, boolean or null as `core.segments.invalid` allows (null is no value:
  left out). A name the monitor does not declare is a warning, not an error (`unknown_segment`,
  `segments.<name>`): its value is left out and the record stored, since a sidecar may hold
  records captured under a spec that has since dropped the segment, and it drops a refused one;
- the same key twice in one request with different content (`duplicate_in_batch`): which one
  would win is undefined. Identical repeats are fine and counted as duplicates;
- a review label (`source: review`) names its `reviewer` (`REVIEWER`: it becomes a Prometheus
  label) and the `prediction_id` it labels, and carries an actual, a vote, or instead a
  `decision` (`skip`, `unsure`); `reviewer` and `decision` without `source: review` are refused.
  Whether the prediction exists is the store's to say (`unknown_prediction`).

Timestamps are RFC 3339 strings with an offset, or epoch seconds. A JSON syntax error is not an
item's problem: it propagates as `msgspec.DecodeError` for the caller to report.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec

from truthloop.core import metrics, segments
from truthloop.core.spec import MAX_SEGMENTS, format_duration
from truthloop.core.tasks import Task
from truthloop.core.wire import SERVED_BY as SERVED_BY  # the engine groups by it
from truthloop.core.wire import CaptureRecord, Scalar, ServedBy

Vote = Literal["up", "down"]
Decision = Literal["skip", "unsure"]
"""A reviewer's answer that is no label."""

Reason = Literal[
    "admin_only",
    "bad_framing",
    "bad_header",
    "bad_method",
    "bad_request",
    "bad_request_line",
    "bad_target",
    "busy",
    "duplicate_in_batch",
    "http",
    "invalid",
    "invalid_json",
    "invalid_spec",
    "mismatch",
    "missing",
    "no_reference",
    "no_review",
    "not_captured",
    "not_queued",
    "out_of_range",
    "store_unavailable",
    "task_change",
    "too_large",
    "too_long",
    "too_many_items",
    "too_many_waiting",
    "too_old",
    "unauthorized",
    "unknown_key",
    "unknown_monitor",
    "unknown_prediction",
    "unknown_report",
    "unknown_segment",
    "unknown_value",
    "unsupported",
    "unusable_label",
    "wrong_namespace",
    "wrong_type",
]
"""Every `reason` code an `ItemError` may carry, so every one the feedback service can answer in
an error body: the type checker refuses any other, and docs/api.md lists each (a test compares)."""

MAX_SAFE_INT = 2**53
MAX_REVIEWER = 128
REVIEWER = re.compile(rf"[A-Za-z0-9._@+-]{{1,{MAX_REVIEWER}}}")
"""A reviewer's name: it becomes a Prometheus label value and a key of the lifetime totals, so
a plain word (an email fits) with no `:`, space or control character."""


class _Monitored(Protocol):
    """An item in its wire shape: it names its monitor (for the rejection counts)."""

    @property
    def monitor(self) -> str: ...


T = TypeVar("T")
W = TypeVar("W", bound=_Monitored)

MAX_ERRORS = 100
"""Item errors kept for one request, in index order; the others are only counted."""
MAX_CLASS_SCORES = 50
"""Class scores a multiclass record may carry."""
SLICE = 250
"""Items validated between two `yield`s of a parser."""

Steps = Generator[None, None, T]
"""Work done in slices: each `yield` is a point where the caller may let other work run; the
generator's return value is the result."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """One problem with one item of a request; `index` is None for the request as a whole."""

    index: int | None
    field: str
    message: str
    reason: Reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "message": self.message,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a client may send."""

    max_id_length: int = 512
    """Longest identifier (prediction, entity, tag, model version), in characters."""
    max_text_length: int = 4096
    """Longest string prediction or actual."""
    future_skew: float = 300.0
    """How far ahead of the service's clock a timestamp may be (clock skew between pods)."""
    max_age: float = 30 * 86400.0
    """Oldest prediction accepted, in seconds before now: the retention period."""
    max_items: int = 10_000
    """Most records or actuals in one request."""


class PredictionRecord(msgspec.Struct, frozen=True, gc=False):
    """One captured prediction. Its key is (monitor, prediction_id, served_by).

    (Records and actuals are msgspec Structs rather than dataclasses: requests carry thousands.)
    """

    monitor: str
    prediction_id: str
    served_by: ServedBy
    model_version: str
    ts: float
    prediction: Scalar
    entity_id: str | None = None
    tag: str | None = None
    score: float | None = None
    features: Any = None
    scores: dict[str, float] | None = None
    """A multiclass model's class scores (class label -> probability), read by estimated
    performance at ingest (`core.estimate`) and not stored."""
    abstained: bool = False
    """The sidecar answered "I don't know" in the model's place (`spec.review.abstain`)."""
    segments: dict[str, Scalar] | None = None
    """The record's raw value of each segment of `spec.segments` it has (`core.segments`
    assigns the kept value at ingest)."""


class Actual(msgspec.Struct, frozen=True, gc=False):
    """Ground truth for a prediction (by id) or for an entity's prediction(s) at `timestamp`.

    Exactly one of `prediction_id`/`entity_id` is set, and exactly one of `value`/`vote`, or
    (a review label's) `decision`.
    """

    monitor: str
    timestamp: float
    prediction_id: str | None = None
    entity_id: str | None = None
    tag: str | None = None
    value: Scalar | None = None
    vote: Vote | None = None
    reviewer: str | None = None
    """Set for a label from human review (`source: review`): who gave it. A review label names
    a `prediction_id` that exists (else the request is refused)."""
    decision: Decision | None = None
    """A reviewer's `skip` or `unsure` (with `reviewer`, in place of `value`/`vote`): no label,
    the item goes back to the queue."""


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """The outcome of validating one request.

    `items` are the valid, distinct items in request order and `indices` their positions in the
    request; `repeats` counts identical repeats dropped; `rejected` counts bad items per monitor
    they name (`""` when the monitor is unknown or unreadable).
    """

    items: tuple[T, ...] = ()
    indices: tuple[int, ...] = ()
    repeats: int = 0
    errors: tuple[ItemError, ...] = ()
    """The first `MAX_ERRORS` errors, in index order."""
    omitted: int = 0
    """Errors found beyond `errors`."""
    rejected: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[ItemError, ...] = ()
    """The first `MAX_ERRORS` warnings: values left out of an item that is still stored."""
    warnings_omitted: int = 0
    """Warnings found beyond `warnings`."""
    ignored: Mapping[tuple[str, Reason], int] = field(default_factory=dict)
    """Values left out per (monitor, reason), every one counted (the service's counter)."""


class Problems:
    """The errors (or the warnings) of one request: the first `MAX_ERRORS` kept in the order
    found, the others only counted, so a body of a million bad items costs no more memory than
    one of a hundred."""

    __slots__ = ("count", "kept", "omitted")

    def __init__(self) -> None:
        self.kept: list[ItemError] = []
        self.omitted = 0
        self.count = 0
        """All found, kept or not: a plain attribute, as checks read it twice per item."""

    def add(self, index: int | None, field: str, message: str, reason: Reason) -> None:
        self.count += 1
        if len(self.kept) < MAX_ERRORS:
            self.kept.append(ItemError(index, field, message, reason))
        else:
            self.omitted += 1


# -- wire shapes -------------------------------------------------------------------------------


class ActualIn(msgspec.Struct, frozen=True):
    monitor: str
    prediction_id: str | None = None
    entity_id: str | int | None = None
    tag: str | None = None
    timestamp: float | str | None = None
    actual: int | float | str | bool | msgspec.UnsetType | None = msgspec.UNSET
    vote: Vote | None = None
    source: Literal["review"] | None = None
    reviewer: str | None = None
    decision: Decision | None = None


class _ActualsIn(msgspec.Struct, frozen=True):
    items: list[ActualIn]


class _Named(msgspec.Struct):
    """The monitor an item names, read from an item that failed its type check."""

    monitor: object = None


_RECORDS = msgspec.json.Decoder(list[CaptureRecord])
_RECORD = msgspec.json.Decoder(CaptureRecord)
_ACTUALS = msgspec.json.Decoder(_ActualsIn)
_ACTUAL = msgspec.json.Decoder(ActualIn)
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_SHAPE = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])
_NAMED = msgspec.json.Decoder(_Named)

Raw = bytes | msgspec.Raw
"""An item not yet decoded: an element of a JSON array, or a line of NDJSON."""


# -- entry points ------------------------------------------------------------------------------


def parse_predictions(
    body: bytes,
    tasks: Mapping[str, Task],
    now: float,
    limits: Limits,
    *,
    ndjson: bool = False,
    segments: Mapping[str, frozenset[str]] | None = None,
) -> Steps[Parsed[PredictionRecord]]:
    """Validate capture records, a JSON array (or NDJSON: one record a line, blank lines skipped);
    `tasks` maps each known monitor to its task, `segments` to the names of its `spec.segments`
    (a monitor left out has none).

    Raises `msgspec.DecodeError` for a JSON body that is not JSON at all; in NDJSON a line that is
    not JSON is that item's error.
    """
    items: Sequence[CaptureRecord] | Sequence[Raw]
    if ndjson:
        # Lines that are not blank; splitlines (C) costs a fifth of a regex scan per record.
        lines = filter(bytes.strip, body.splitlines())
        items = list(itertools.islice(lines, limits.max_items + 1))
    else:
        try:
            items = _RECORDS.decode(body)
        except msgspec.ValidationError:
            try:
                items = _RAWS.decode(body)
            except msgspec.ValidationError:
                return _refused("", "expected a JSON array of records")
    if len(items) > limits.max_items:
        return _refused("", f"at most {limits.max_items} records per request", "too_many_items")
    checker = _Checker(tasks, now, limits, features=b"\\u0000" in body, segments=segments)
    return (yield from _collect(items, _RECORD, checker.prediction, checker, _prediction_key))


def parse_actuals(
    body: bytes, tasks: Mapping[str, Task], now: float, limits: Limits
) -> Steps[Parsed[Actual]]:
    """Validate `{"items": [...]}`, a JSON array of actuals, or one actual object.

    A missing `timestamp` is `now`. Raises `msgspec.DecodeError` for a body that is not JSON.
    """
    items: Sequence[ActualIn] | Sequence[Raw]
    try:
        items = _ACTUALS.decode(body).items
    except msgspec.ValidationError:
        try:
            shape = _SHAPE.decode(body)
        except msgspec.ValidationError:
            shape = [msgspec.Raw(body)]  # a scalar: one item of the wrong type
        if isinstance(shape, list):
            items = shape
        elif "items" in shape:
            try:
                items = _RAWS.decode(shape["items"])
            except msgspec.ValidationError:
                return _refused("items", "expected an array")
        else:
            items = [msgspec.Raw(body)]
    if len(items) > limits.max_items:
        return _refused(
            "items", f"at most {limits.max_items} actuals per request", "too_many_items"
        )
    checker = _Checker(tasks, now, limits)
    return (yield from _collect(items, _ACTUAL, checker.actual, checker, _actual_key))


def _prediction_key(record: PredictionRecord) -> tuple[str, tuple[Any, ...]]:
    return "prediction_id", (record.monitor, record.prediction_id, record.served_by)


def _actual_key(actual: Actual) -> tuple[str, tuple[Any, ...]]:
    if actual.prediction_id is not None:
        return "prediction_id", (actual.monitor, actual.prediction_id)
    return "entity_id", (actual.monitor, actual.entity_id, actual.tag, actual.timestamp)


def _collect(
    items: Sequence[W | Raw],
    decoder: msgspec.json.Decoder[W],
    check: Callable[[int, W], T | None],
    checker: _Checker,
    key_of: Callable[[T], tuple[str, tuple[Any, ...]]],
) -> Steps[Parsed[T]]:
    """Decode (raw items) and check each item, drop identical repeats, refuse conflicting ones,
    count rejections; `yield` before each slice of `SLICE` items."""
    out: list[T] = []
    indices: list[int] = []
    seen: dict[tuple[Any, ...], tuple[int, T]] = {}
    repeats = 0
    rejected: dict[str, int] = {}
    problems = checker.problems
    for index, item in enumerate(items):
        if not index % SLICE:
            yield
        before = problems.count
        wire = checker.typed(index, item, decoder) if isinstance(item, Raw) else item
        value = None if wire is None else check(index, wire)
        if value is not None:
            field, key = key_of(value)
            first = seen.get(key)
            if first is None:
                seen[key] = (index, value)
                out.append(value)
                indices.append(index)
            elif first[1] == value:
                repeats += 1
            else:
                checker.fail(
                    index,
                    field,
                    f"same key as item {first[0]} with different content",
                    "duplicate_in_batch",
                )
        if problems.count > before:
            monitor = _monitor(item if wire is None else wire)
            monitor = monitor if monitor in checker.tasks else ""
            rejected[monitor] = rejected.get(monitor, 0) + 1
    warnings = checker.warnings
    return Parsed(
        tuple(out),
        tuple(indices),
        repeats,
        tuple(problems.kept),
        problems.omitted,
        rejected,
        tuple(warnings.kept),
        warnings.omitted,
        checker.ignored,
    )


def _refused(field: str, message: str, reason: Reason = "wrong_type") -> Parsed[Any]:
    return Parsed(errors=(ItemError(None, field, message, reason),))


# -- type errors, one per item -----------------------------------------------------------------

_FIELD_AT = re.compile(r"- at `\$\.?([^`\[]*)")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def type_error(error: msgspec.ValidationError) -> tuple[str, str, Reason]:
    """(field, message, reason) of an item's first bad field, from msgspec's message."""
    message = str(error)
    missing = _MISSING.search(message)
    if missing:
        return missing[1], "is required", "missing"
    at = _FIELD_AT.search(message)
    return at[1] if at else "", message.split(" - at ")[0], "wrong_type"


def _monitor(item: _Monitored | Raw) -> str:
    """The monitor an item names, or "" (for the rejection counts); a raw one is read leniently."""
    if not isinstance(item, Raw):
        return item.monitor
    try:
        monitor = _NAMED.decode(item).monitor
    except (msgspec.DecodeError, RecursionError):
        return ""
    return monitor if isinstance(monitor, str) else ""


# -- checks of meaning -------------------------------------------------------------------------


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""C0 controls, DEL and C1 controls: not in a string label."""


def identifier_problem(value: str, max_length: int) -> tuple[str, Reason] | None:
    """Why `value` cannot be an identifier, as (message, reason), or None when it can."""
    if not value:
        return "must not be empty", "missing"
    if len(value) > max_length:
        return f"longer than {max_length} characters", "too_long"
    if not value.isprintable():
        return "must not contain control or other non-printable characters", "invalid"
    return None


def _has_nul(value: Any) -> bool:
    """Whether a NUL is in any string or key of a decoded JSON value (walked with a stack, not
    recursion: features may nest deeply)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any("\x00" in key for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _Checker:
    """Checks shared by both decoding paths; problems go to `problems`."""

    __slots__ = (
        "features",
        "ignored",
        "limits",
        "now",
        "problems",
        "segments",
        "tasks",
        "usable",
        "warnings",
    )

    def __init__(
        self,
        tasks: Mapping[str, Task],
        now: float,
        limits: Limits,
        *,
        features: bool = False,
        segments: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.tasks = tasks
        self.segments = segments or {}
        self.now = now
        self.limits = limits
        self.features = features
        """Whether features may hold a NUL (the body has a `\\u0000` escape), so walk them."""
        self.problems = Problems()
        self.warnings = Problems()
        """Values left out of items that are still stored."""
        self.ignored: dict[tuple[str, Reason], int] = {}
        self.usable: set[tuple[Any, ...]] = set()
        """(check, task, type, value) that passed `scalar`: a batch repeats its labels."""

    def fail(self, index: int, field: str, message: str, reason: Reason = "invalid") -> None:
        self.problems.add(index, field, message, reason)

    def typed(self, index: int, item: Raw, decoder: msgspec.json.Decoder[W]) -> W | None:
        """A raw item decoded to its wire shape, or None (and its error)."""
        try:
            return decoder.decode(item)
        except msgspec.ValidationError as e:
            self.fail(index, *type_error(e))
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
            self.fail(index, "", f"not JSON: {e}", "invalid_json")
        return None

    def prediction(self, index: int, item: CaptureRecord) -> PredictionRecord | None:
        before = self.problems.count
        task = self.task(index, item.monitor)
        self.ident(index, "prediction_id", item.prediction_id)
        if item.model_version:
            self.ident(index, "model_version", item.model_version)
        entity_id = self.entity(index, item.entity_id)
        tag = None if item.tag is msgspec.UNSET else item.tag
        if tag is not None:
            self.ident(index, "tag", tag)
        ts = self.timestamp(index, "ts", item.ts, self.limits.max_age)
        self.scalar(index, "prediction", item.prediction, task, metrics.check_prediction)
        score = None if item.score is msgspec.UNSET else item.score
        features = None if item.features is msgspec.UNSET else item.features
        scores = None
        if isinstance(score, dict):
            scores, score = score, None
            self.class_scores(index, task, scores)
        elif score is not None:
            if task is not None and task != "binary":
                self.fail(
                    index,
                    "score",
                    f"a number is a binary monitor's score, this is {task}"
                    + (": give an object of class scores" if task == "multiclass" else ""),
                )
            elif not 0.0 <= score <= 1.0:
                self.fail(index, "score", "must be a probability from 0 to 1", "out_of_range")
        if self.features and _has_nul(features):
            self.fail(index, "features", "must not contain NUL characters (\\u0000)")
        raw = self.segment_values(index, item.monitor, item.segments) if item.segments else None
        if self.problems.count > before:
            return None
        return PredictionRecord(
            item.monitor,
            item.prediction_id,
            item.served_by,
            item.model_version,
            ts,
            item.prediction,
            entity_id,
            tag,
            score,
            features,
            scores,
            item.abstained,
            raw,
        )

    def segment_values(
        self, index: int, monitor: str, values: Mapping[str, Any]
    ) -> dict[str, Scalar] | None:
        """A record's segment values: at most `MAX_SEGMENTS`, valid (`segments.invalid`); nulls
        and names the monitor does not declare (a warning each) left out (None when nothing is
        left). An undeclared name is no error: the record may predate a spec that dropped it."""
        if len(values) > MAX_SEGMENTS:
            self.fail(
                index,
                "segments",
                f"at most {MAX_SEGMENTS} segments, got {len(values)}",
                "too_many_items",
            )
            return None
        declared = self.segments.get(monitor, frozenset())
        out: dict[str, Scalar] = {}
        for name, value in values.items():
            if name not in declared:
                if monitor in self.tasks:  # an unknown monitor is its own error
                    known = ", ".join(sorted(declared)) if declared else "none"
                    self.warnings.add(
                        index,
                        f"segments.{name}" if len(name) <= 64 else "segments",
                        f"the monitor declares no segment {_short(name)} (its segments: {known}):"
                        " its value is not stored",
                        "unknown_segment",
                    )
                    key: tuple[str, Reason] = (monitor, "unknown_segment")
                    self.ignored[key] = self.ignored.get(key, 0) + 1
            elif value is not None:
                problem = segments.invalid(value)
                if problem is None:
                    out[name] = value
                else:
                    self.fail(index, f"segments.{name}", problem[1], problem[0])
        return out or None

    def class_scores(self, index: int, task: Task | None, scores: dict[str, float]) -> None:
        """A multiclass record's class scores: at most `MAX_CLASS_SCORES`, each in [0, 1]."""
        if task is not None and task != "multiclass":
            self.fail(
                index,
                "score",
                f"class scores (an object) are a multiclass monitor's, this is {task}",
            )
        elif len(scores) > MAX_CLASS_SCORES:
            self.fail(index, "score", f"at most {MAX_CLASS_SCORES} class scores, got {len(scores)}")
        else:
            for label, value in scores.items():
                if not 0.0 <= value <= 1.0:
                    self.fail(
                        index,
                        "score",
                        f"class {_short(label)}: must be a probability from 0 to 1",
                        "out_of_range",
                    )
                    break

    def actual(self, index: int, item: ActualIn) -> Actual | None:
        before = self.problems.count
        task = self.task(index, item.monitor)
        review = item.source == "review"
        if review:
            self.review(index, item)
        else:
            self.unreviewed(index, item)
            if (item.prediction_id is None) == (item.entity_id is None):
                self.fail(
                    index,
                    "prediction_id",
                    "give exactly one of prediction_id and entity_id",
                    "missing",
                )
        if item.prediction_id is not None and item.entity_id is None:
            self.ident(index, "prediction_id", item.prediction_id)
            if item.tag is not None:
                self.fail(
                    index, "tag", "a tag selects an entity's prediction series: use entity_id"
                )
        entity_id = self.entity(index, item.entity_id)
        if item.tag is not None:
            self.ident(index, "tag", item.tag)
        timestamp = self.now
        if item.timestamp is not None:
            timestamp = self.timestamp(index, "timestamp", item.timestamp, None)
        value = item.actual
        given = (value is not msgspec.UNSET) + (item.vote is not None)
        if item.decision is not None:
            if given:
                field = "actual" if value is not msgspec.UNSET else "vote"
                self.fail(index, field, "a decision (skip, unsure) is given instead of a label")
        elif given != 1:
            wanted = "actual, vote and decision" if review else "actual and vote"
            self.fail(index, "actual", f"give exactly one of {wanted}", "missing")
        elif value is None:
            self.fail(index, "actual", "must not be null", "missing")
        elif value is not msgspec.UNSET:
            self.scalar(index, "actual", value, task, metrics.check_actual)
        if self.problems.count > before:
            return None
        return Actual(
            item.monitor,
            timestamp,
            item.prediction_id,
            entity_id,
            item.tag,
            None if value is msgspec.UNSET else value,
            item.vote,
            item.reviewer,
            item.decision,
        )

    def review(self, index: int, item: ActualIn) -> None:
        """A review label's own fields: who gave it (`REVIEWER`), and no entity."""
        if item.reviewer is None:
            self.fail(index, "reviewer", "a review label names its reviewer", "missing")
        elif not REVIEWER.fullmatch(item.reviewer):
            self.fail(
                index,
                "reviewer",
                f"expected 1 to {MAX_REVIEWER} letters, digits or ._@+- (an email fits),"
                f" got {_short(item.reviewer)}",
            )
        if item.prediction_id is None:
            self.fail(
                index,
                "prediction_id",
                "a review label names the prediction_id it labels (not an entity_id)",
                "missing",
            )
        elif item.entity_id is not None:
            self.fail(
                index, "entity_id", "a review label names one prediction: give prediction_id only"
            )

    def unreviewed(self, index: int, item: ActualIn) -> None:
        """`reviewer` and `decision` belong to a review label (`source: review`) only."""
        for name, value in (("reviewer", item.reviewer), ("decision", item.decision)):
            if value is not None:
                self.fail(index, name, 'only a review label has it: add "source": "review"')

    def task(self, index: int, monitor: str) -> Task | None:
        task = self.tasks.get(monitor)
        if task is None:
            self.fail(
                index, "monitor", f"no monitor {_short(monitor)} is registered", "unknown_monitor"
            )
        return task

    def ident(self, index: int, field: str, value: str) -> None:
        problem = identifier_problem(value, self.limits.max_id_length)
        if problem:
            self.fail(index, field, *problem)

    def entity(self, index: int, value: str | int | None) -> str | None:
        if isinstance(value, int):
            if isinstance(value, bool) or abs(value) > MAX_SAFE_INT:
                self.fail(index, "entity_id", "integer too large (beyond ±2**53)", "out_of_range")
                return None
            return str(value)
        if value is not None:
            self.ident(index, "entity_id", value)
        return value

    def scalar(
        self,
        index: int,
        field: str,
        value: Scalar,
        task: Task | None,
        usable: Callable[[Task, Scalar], str | None],
    ) -> None:
        known = (usable, task, type(value), value)  # the type: True == 1 == 1.0 as keys
        if known in self.usable:
            return
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT:
            self.fail(index, field, "integer too large (beyond ±2**53)", "out_of_range")
        elif isinstance(value, str) and len(value) > self.limits.max_text_length:
            self.fail(
                index, field, f"longer than {self.limits.max_text_length} characters", "too_long"
            )
        elif isinstance(value, str) and _CONTROL.search(value):
            self.fail(index, field, "must not contain control characters")
        elif task is not None:
            problem = usable(task, value)
            if problem:
                self.fail(index, field, problem, "unusable_label")
            else:
                self.usable.add(known)

    def timestamp(self, index: int, field: str, value: float | str, max_age: float | None) -> float:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    self.fail(index, field, "an RFC 3339 timestamp needs an offset (Z or ±hh:mm)")
                    return math.nan
                ts = parsed.timestamp()
            except (ValueError, OverflowError):
                self.fail(index, field, f"not an RFC 3339 timestamp: {_short(value)}")
                return math.nan
        else:
            ts = value
        if ts < 0:
            self.fail(index, field, "is before 1970", "out_of_range")
        elif ts > self.now + self.limits.future_skew:
            self.fail(
                index,
                field,
                f"is more than {format_duration(self.limits.future_skew)} in the future",
                "out_of_range",
            )
        elif max_age is not None and ts < self.now - max_age:
            self.fail(index, field, "is older than the retention period", "too_old")
        return ts


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
