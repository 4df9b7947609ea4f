"""What a capture spec takes from one request/response pair: entity, prediction, score, features.

`extract` is pure and total: the bodies come in already decoded (`decode` turns bytes into JSON or
`NOT_JSON`), and whatever the pair lacks is an `Extraction` with a reason code, never an exception.
The reason is the sidecar's `capture_errors{reason}` label; `detail` says where (`row 2:
/user_id: no key "user_id" at the document root`).

A capture that is not row-based (`custom` without a batch spec, `torchserve`) reads the entity
and features from the request (body pointer or request header) and the prediction and score from
the response body. A row-based one zips the request's rows with the response's (core/protocols:
a batch spec's `instances` and `predictions` arrays, or the protocol's own), one `Row` per pair;
the entity and features pointers then read the request's row, the prediction and score pointers
the response's (`""` being the row itself, as in KServe v1's `{"predictions": [0.2]}`). A header
source gives every row the same value; a `per_row` entity gives each row its own, from an array
at a pointer into the whole request or a header's comma-separated list. With a preset
(a protocol other than `custom`), the features are flattened (`protocols.features`), a score
that is an array is the class scores by position (`{"0": 0.2, "1": 0.8}`), and a prediction that
is an array or an object is `prediction_invalid` (a preset's default of the whole row, where the
server answers a list or an object per row: the feedback service would refuse the record).

The entity is optional even when the spec names one: a request without it (no header, no key,
or null) still gives its row, with `entity_id` None, because such a prediction can still be
labeled by its prediction ID; only joins by entity need the entity.

Segments (`spec.segments`, passed as `segments`) are read like the entity: from a request header
(every row the same) or at a pointer into the request body (the row's instance for a batch) into
`Row.segments`. A segment the request lacks (no header, an empty one, no key, null, a body that
is not JSON) is simply absent from the row, never an error: a prediction is worth more than its
slice. A value that cannot be a segment's (an object or array: `not_scalar`; what
`core.segments.invalid` refuses: a string over 128 characters, `too_long`, or with control
characters, `invalid`; an integer beyond ±2**53, `out_of_range`) is absent too, its reason listed
in `Extraction.dropped` (the sidecar's `segment_values_dropped{reason}`). Without segments none of
this runs.

Reason codes: `not_json`, `invalid_pointer`, `unsupported_source`, `entity_invalid`,
`prediction_missing`, `prediction_invalid`, `score_missing`, `score_invalid`, `features_missing`,
and the rows' (core/protocols): `instances_missing`, `predictions_missing`, `tensor_invalid`,
`shape_mismatch`, `batch_length_mismatch`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from truthloop.core import pointer, protocols, segments
from truthloop.core.protocols import NOT_JSON as NOT_JSON
from truthloop.core.spec import CaptureSpec, SegmentSpec, Source
from truthloop.core.wire import Scalar

HeaderName = str | bytes
Headers = Mapping[str, str] | Iterable[tuple[HeaderName, HeaderName]]


_DECODER: Final = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Row:
    """One captured prediction. `index` is the row's place in a batch, None outside batches."""

    entity_id: str | None
    prediction: Any
    score: float | dict[str, float] | None = None
    """A number (binary), or an object of class scores (multiclass)."""
    features: Any = None
    index: int | None = None
    segments: dict[str, Scalar] | None = None
    """The raw value of each declared segment the request has; None when it has none."""


@dataclass(frozen=True, slots=True)
class Extraction:
    """The rows of one exchange, or why there are none: `error` is a reason code. `dropped`: the
    reason of each segment value left out of a row (`not_scalar`, `too_long`, ...)."""

    rows: tuple[Row, ...] = ()
    error: str | None = None
    detail: str | None = None
    dropped: tuple[str, ...] = ()


class _Failed(Exception):
    """Internal: one field could not be extracted; becomes the Extraction's error."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def decode(body: bytes | None) -> Any:
    """The JSON value in `body`, or NOT_JSON for a missing, empty or malformed body."""
    if not body:
        return NOT_JSON
    try:
        return _DECODER.decode(body)
    except (msgspec.MsgspecError, RecursionError):  # nested deeper than the decoder goes
        return NOT_JSON


def header(headers: Headers, name: str) -> str | None:
    """The first value of header `name` (any case), whitespace-trimmed; None when absent.

    `headers` is a mapping or (name, value) pairs of str or raw bytes (decoded as Latin-1, the
    octets HTTP carries).
    """
    wanted = name.lower()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        text = key.decode("latin-1") if isinstance(key, bytes) else key
        if text.lower() == wanted:
            found = value.decode("latin-1") if isinstance(value, bytes) else value
            return found.strip()
    return None


def extract(
    capture: CaptureSpec,
    request_headers: Headers,
    request_body: Any,
    response_body: Any,
    segments: Sequence[SegmentSpec] = (),
) -> Extraction:
    """The rows `capture` finds in one exchange, with the raw value of each of `segments`;
    bodies are decoded JSON or NOT_JSON."""
    reader = _SegmentReader(segments, request_headers) if segments else None
    paths = _Paths()
    try:
        requests = None
        if capture.row_based:  # skipped for a single row: its cost is per request
            requests = _rows(protocols.request_rows(capture, request_body))
        if requests is None:
            row = _row(capture, request_headers, request_body, response_body, None, paths, reader)
            rows: tuple[Row, ...] = (row,)
        else:
            responses = _rows(protocols.response_rows(capture, response_body)) or []
            _same_length(capture, requests, responses)
            entities = _entities(capture, request_headers, request_body, len(requests), paths)
            rows = tuple(
                _row(capture, request_headers, request, response, index, paths, reader, entities)
                for index, (request, response) in enumerate(zip(requests, responses, strict=True))
            )
    except _Failed as failure:
        return Extraction(error=failure.reason, detail=failure.detail)
    if reader is None or not reader.dropped:
        return Extraction(rows=rows)
    return Extraction(rows=rows, dropped=tuple(reader.dropped))


def _rows(found: list[Any] | protocols.RowsError | None) -> list[Any] | None:
    if isinstance(found, protocols.RowsError):
        raise _Failed(found.reason, found.detail)
    return found


def _same_length(capture: CaptureSpec, requests: list[Any], responses: list[Any]) -> None:
    if len(requests) == len(responses):
        return
    if capture.batch is not None:
        raise _Failed(
            "batch_length_mismatch",
            f"{len(requests)} instances at {capture.batch.instances}, "
            f"{len(responses)} predictions at {capture.batch.predictions}",
        )
    raise _Failed(
        "batch_length_mismatch",
        f"{len(requests)} rows in the request, {len(responses)} in the response",
    )


def _entities(
    capture: CaptureSpec, headers: Headers, body: Any, count: int, paths: _Paths
) -> list[str | None] | None:
    """The rows' entity IDs of a `perRow` entity (None for any other): the items of a
    comma-separated header, or of the array (or comma-separated string: v2 `parameters` hold
    only scalars on KServe and Triton) at a pointer into the whole request. A request without it
    has no entity in any row."""
    source = capture.entity_id
    if source is None or not source.per_row:
        return None
    if source.header is not None:
        value = header(headers, source.header)
        if value is None:
            return [None] * count
        found: list[Any] = [item.strip() for item in value.split(",")]
        where = f"in the {source.header} header"
    else:
        path = source.pointer or ""
        value = _at(body, path, "entity", "", "request", paths, optional=True)
        if value is None:
            return [None] * count
        if isinstance(value, str):  # a comma-separated list: the Open Inference Protocol's
            found = [item.strip() for item in value.split(",")]  # parameters are scalars
        elif isinstance(value, list):
            found = value
        else:
            raise _Failed("entity_invalid", f"{path}: expected an array or a comma-separated "
                          "string of entity IDs, one per row, got "
                          f"{pointer.describe(value)}")  # fmt: skip
        where = f"at {path}"
    if len(found) != count:
        raise _Failed("batch_length_mismatch", f"{len(found)} entity IDs {where}, {count} rows")
    return [_entity(item, f"row {index}: ") for index, item in enumerate(found)]


class _SegmentReader:
    """The segments' raw values of one exchange's rows: a header read once for every row, a
    pointer parsed once and resolved in each row's request body; what is left out, in
    `dropped`."""

    __slots__ = ("dropped", "fixed", "paths")

    def __init__(self, specs: Sequence[SegmentSpec], headers: Headers) -> None:
        self.dropped: list[str] = []
        self.fixed: list[tuple[str, str]] = []
        self.paths: list[tuple[str, tuple[str, ...]]] = []
        for spec in specs:
            if spec.source.header is not None:
                value = header(headers, spec.source.header)
                if value:
                    self.fixed.append((spec.name, value))
            else:
                with contextlib.suppress(pointer.PointerError):  # a parsed spec's are valid
                    self.paths.append((spec.name, pointer.parse(spec.source.pointer or "")))

    def values(self, body: Any) -> dict[str, Scalar] | None:
        found: dict[str, Any] = dict(self.fixed)
        if body is not NOT_JSON:
            for name, path in self.paths:
                found[name] = pointer.resolve(body, path)
        values: dict[str, Scalar] = {}
        for name, raw in found.items():
            if raw is None or isinstance(raw, pointer.Missing):
                continue
            if isinstance(raw, dict | list):
                self.dropped.append("not_scalar")
            elif (problem := segments.invalid(raw)) is not None:
                self.dropped.append(problem[0])
            else:
                values[name] = raw
        return values or None


def _row(
    capture: CaptureSpec,
    headers: Headers,
    request: Any,
    response: Any,
    index: int | None,
    paths: _Paths,
    reader: _SegmentReader | None = None,
    entities: list[str | None] | None = None,
) -> Row:
    where = "" if index is None else f"row {index}: "
    entity = None
    if entities is not None and index is not None:
        entity = entities[index]
    elif capture.entity_id is not None:
        entity = _entity(
            _read(capture.entity_id, headers, request, "entity", where, paths, optional=True),
            where,
        )
    features = None
    if capture.features is not None:
        features = _read(capture.features, headers, request, "features", where, paths)
        if capture.protocol != "custom":
            features = protocols.features(capture, features, paths.feature_keys)
    prediction, score = _answer(capture, response, where, paths)
    found = None if reader is None else reader.values(request)
    return Row(entity, prediction, score, features, index, found)


def answer(capture: CaptureSpec, response_body: Any) -> Extraction:
    """The prediction and score of a single-row response alone, as one row without entity or
    features: what the sidecar reads before it sends the response (`core.abstain`)."""
    try:
        prediction, score = _answer(capture, response_body, "", _Paths())
    except _Failed as failure:
        return Extraction(error=failure.reason, detail=failure.detail)
    return Extraction(rows=(Row(None, prediction, score),))


def _answer(
    capture: CaptureSpec, response: Any, where: str, paths: _Paths
) -> tuple[Any, float | dict[str, float] | None]:
    try:
        prediction = _body_value(capture.prediction, response, "prediction", where, paths)
    except _Failed as failure:
        if failure.reason != "prediction_missing" or capture.protocol != "open-inference-v2":
            raise
        outputs = protocols.names(response) if isinstance(response, dict) else "none"
        raise _Failed(failure.reason, f"{failure.detail}; the outputs are: {outputs}") from None
    if capture.protocol != "custom" and isinstance(prediction, list | dict):
        raise _Failed(
            "prediction_invalid",
            f"{where}expected a string, number or boolean, got {pointer.describe(prediction)} at "
            f"{capture.prediction.pointer or '(the row)'}: point capture.prediction into it",
        )
    score = None
    if capture.score is not None:
        value = _body_value(capture.score, response, "score", where, paths)
        if isinstance(value, list) and capture.protocol != "custom":
            value = {str(i): item for i, item in enumerate(value)}
        score = _score(value, where)
    return prediction, score


def _read(
    source: Source,
    headers: Headers,
    body: Any,
    field: str,
    where: str,
    paths: _Paths,
    optional: bool = False,
) -> Any:
    """A request-side value: from a header, or at a pointer into the request body. When there is
    none: None if `optional`, else a `<field>_missing` failure."""
    if source.header is not None:
        value = header(headers, source.header)
        if value is None:
            if optional:
                return None
            raise _Failed(f"{field}_missing", f"{where}no {source.header} header")
        return value
    return _at(body, source.pointer or "", field, where, "request", paths, optional)


def _body_value(source: Source, body: Any, field: str, where: str, paths: _Paths) -> Any:
    """A response-side value: only a pointer into the response body can hold one."""
    if source.pointer is None:
        raise _Failed("unsupported_source", f"{field} is read from the response body, not a header")
    return _at(body, source.pointer, field, where, "response", paths)


class _Paths(dict[str, tuple[str, ...]]):
    """The capture's pointers, each parsed once per exchange (a batch reads them in every row);
    PointerError for one that is not a pointer. `feature_keys`: the features' keys made once per
    exchange likewise (`protocols.features`)."""

    __slots__ = ("feature_keys",)

    def __init__(self) -> None:
        super().__init__()
        self.feature_keys = protocols.Keys()

    def __missing__(self, path: str) -> tuple[str, ...]:
        found = self[path] = pointer.parse(path)
        return found


def _at(
    body: Any,
    path: str,
    field: str,
    where: str,
    side: str,
    paths: _Paths,
    optional: bool = False,
) -> Any:
    if body is NOT_JSON:
        raise _Failed("not_json", f"the {side} body is not JSON")
    try:
        tokens = paths[path]
    except pointer.PointerError as e:
        raise _Failed("invalid_pointer", f"{field}: {e}") from e
    value = pointer.resolve(body, tokens)
    if isinstance(value, pointer.Missing):
        if optional:
            return None
        raise _Failed(f"{field}_missing", f"{where}{value}")
    return value


def _entity(value: Any, where: str) -> str | None:
    """Entity IDs are strings; integers are taken as their decimal text; null is no entity."""
    if value is None:
        return None
    if isinstance(value, str):
        if value:
            return value
        raise _Failed("entity_invalid", f"{where}the entity ID is an empty string")
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # beyond Python's int-to-str digit limit
            pass
    raise _Failed(
        "entity_invalid",
        f"{where}expected a non-empty string or an integer, got {pointer.describe(value)}",
    )


def _score(value: Any, where: str) -> float | dict[str, float]:
    """A number, or an object of numbers (a multiclass model's class scores; the service checks
    each is a probability and the task)."""
    if isinstance(value, dict):
        try:
            return {str(k): _number(v) for k, v in value.items()}
        except (TypeError, OverflowError):
            pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    raise _Failed(
        "score_invalid",
        f"{where}expected a number or an object of numbers, got {pointer.describe(value)}",
    )


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(value)
