"""The rows of the model servers' protocols: what one request and its response hold, row by row.

A row-based capture (`CaptureSpec.row_based`: a preset protocol other than torchserve, or
`custom` with `batch`) makes one record per row. `request_rows` and `response_rows` give each
side's rows, which the extraction (core/extract) zips by position, the sidecar's fallback answers
and the CloudEvents source reads alike. They return None for a capture that is not row-based (the
body is one record), and a `RowsError` for a body that does not hold the protocol's rows: a reason
code (the extraction's) and a detail saying where. They never raise; what they build is bounded by
the body (a row count no data backs is refused).

Per protocol, request → response:
- `open-inference-v2` (KServe v2, MLServer, Triton): `inputs` → `outputs`, named tensors `{name,
  shape, datatype, data}` with `data` in row-major order, flat or nested; `shape[0]` is the row
  count, the same for every tensor of a side. A row is `{tensor name: its value in the row}`: a
  scalar when a row holds one value, else the row's slice, nested to the rest of the shape.
- `kserve-v1`: `instances` (or `inputs`) → `predictions`.
- `tfserving`: `instances` → `predictions` (the row format); `inputs` → `outputs` (the columnar
  format: a list of rows, or an object of name → list, zipped into rows `{name: value}`).
- `seldon-v1`: `data.ndarray` (or `data.tensor` `{shape, values}`) on both sides; with
  `data.names`, a list row as long as the names is `{name: value}`.
- `mlflow`: `dataframe_split` `{columns, data}` (rows `{column: value}`), `dataframe_records`,
  `instances`, or `inputs` (a list, or an object of columns) → `{"predictions": [...]}` (a list,
  or an object of columns) or a bare list (MLflow 1.x).
- `custom` with `batch`: the arrays at `batch.instances` and `batch.predictions`.

`features` is what a preset keeps of a row for profiling: named columns, flat, so drift profiles
each (`core.profile`); `row` tells the row back from them, for the rules' replay.

Reasons: `not_json`, `invalid_pointer`, `instances_missing` / `predictions_missing` (the request's
/ the response's rows are not where the protocol has them), `tensor_invalid` (a tensor or column
that is not one), `shape_mismatch` (data that does not fill its shape), `batch_length_mismatch`
(a side's tensors or columns with different row counts).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from truthloop.core import pointer
from truthloop.core.pointer import describe
from truthloop.core.spec import CaptureSpec


class _Undecodable(enum.Enum):
    NOT_JSON = "not_json"


NOT_JSON: Final = _Undecodable.NOT_JSON
"""A body that is absent, empty or not JSON (what `core.extract.decode` returns for one)."""

_CONTAINERS = frozenset((list, dict))
_MOST = 2**64
"""More values than any body holds: a shape's size is multiplied out up to here."""
_SHOWN_DIMS = 8
"""A shape longer than this is cut short in a detail (and so is a list of keys)."""
_SHOWN_NAME = 64
"""A name longer than this (a tensor's, a key) is cut short in a detail."""


@dataclass(frozen=True, slots=True)
class RowsError:
    """Why a body holds no rows: `reason` a code, `detail` where (`/inputs/1: shape [2, 4] holds 8
    values, data has 6`)."""

    reason: str
    detail: str


class _Bad(Exception):
    """Internal: the body does not hold the protocol's rows; becomes a RowsError."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Side:
    """Which side is read: its name in details and its reason for rows not found."""

    name: str
    missing: str


_REQUEST: Final = _Side("request", "instances_missing")
_RESPONSE: Final = _Side("response", "predictions_missing")


def request_rows(capture: CaptureSpec, body: Any) -> list[Any] | RowsError | None:
    """The rows of a request body (decoded JSON or NOT_JSON); None when `capture` is not
    row-based."""
    if capture.batch is not None:
        return _batch(body, capture.batch.instances, _REQUEST)
    return _read(_REQUESTS.get(capture.protocol), body, _REQUEST)


def response_rows(capture: CaptureSpec, body: Any) -> list[Any] | RowsError | None:
    """The rows of a response body (decoded JSON or NOT_JSON); None when `capture` is not
    row-based."""
    if capture.batch is not None:
        return _batch(body, capture.batch.predictions, _RESPONSE)
    return _read(_RESPONSES.get(capture.protocol), body, _RESPONSE)


class Keys(dict[tuple[str, int], tuple[str, ...]]):
    """The keys `<tensor>.0` .. `<tensor>.<k-1>` of a tensor's vector of k values, each made
    once: an exchange's rows share them (pass one to `features` for every row)."""

    def __missing__(self, key: tuple[str, int]) -> tuple[str, ...]:
        name, count = key
        found = self[key] = tuple(map(f"{name}.".__add__, map(str, range(count))))
        return found


def features(capture: CaptureSpec, value: Any, keys: Keys | None = None) -> Any:
    """What a preset keeps as a row's features, flat and named: a list is keyed by position
    (`"0"`, `"1"`, ...), as is a lone scalar (`{"0": value}`); of an open-inference-v2 row, a
    tensor's 1-D vector of values becomes `<tensor>.<i>` (MLServer's single `predict` input of
    4 columns: `predict.0` .. `predict.3`). `custom` keeps what its pointer read, as read.
    `keys`: the vectors' keys made so far, shared by the rows of an exchange."""
    if capture.protocol == "custom" or value is None:
        return value
    if isinstance(value, list):
        return {str(i): item for i, item in enumerate(value)}
    if not isinstance(value, dict):
        return {"0": value}
    if capture.protocol != "open-inference-v2":
        return value
    if keys is None:
        keys = Keys()
    flat: dict[str, Any] = {}
    for name, item in value.items():
        if type(item) is list and _CONTAINERS.isdisjoint(map(type, item)):
            flat.update(zip(keys[name, len(item)], item, strict=True))
        else:
            flat[name] = item
    return flat


class _Vector(list[Any]):
    """A vector `row` gathers back from `<tensor>.<i>` features (a list the row already held is
    a plain list)."""


def row(capture: CaptureSpec, stored: Any) -> Any:
    """The row `features` flattened into `stored`, as far as it can be told back: what a
    fallback rule reads, replayed on stored records (`core.rulehistory`). Keys `"0"` ..
    `"<k-1>"` in order are a list; of an open-inference-v2 row, `<tensor>.0` ..
    `<tensor>.<k-1>` of values that are not lists or objects a vector. (A scalar row comes back
    as a list of one: both were `{"0": v}`.)"""
    if capture.protocol == "custom" or not isinstance(stored, dict):
        return stored
    if stored and all(key == str(i) for i, key in enumerate(stored)):
        return list(stored.values())
    if capture.protocol != "open-inference-v2":
        return stored
    found: dict[str, Any] = {}
    for key, value in stored.items():
        name, dot, index = key.rpartition(".")
        if dot and type(value) not in _CONTAINERS:
            if index == "0" and name not in found and name not in stored:
                found[name] = _Vector([value])
                continue
            vector = found.get(name)
            if isinstance(vector, _Vector) and index == str(len(vector)):
                vector.append(value)
                continue
        found[key] = value
    return {key: list(v) if isinstance(v, _Vector) else v for key, v in found.items()}


def _read(
    reader: Callable[[Any, _Side], list[Any]] | None, body: Any, side: _Side
) -> list[Any] | RowsError | None:
    if reader is None:
        return None
    if body is NOT_JSON:
        return RowsError("not_json", f"the {side.name} body is not JSON")
    try:
        return reader(body, side)
    except _Bad as bad:
        return RowsError(bad.reason, bad.detail)


def _batch(body: Any, path: str, side: _Side) -> list[Any] | RowsError:
    """`custom` with `batch`: the array at `path`."""
    field = side.missing.removesuffix("_missing")
    if body is NOT_JSON:
        return RowsError("not_json", f"the {side.name} body is not JSON")
    try:
        value = pointer.resolve(body, path)
    except pointer.PointerError as e:
        return RowsError("invalid_pointer", f"{field}: {e}")
    if isinstance(value, pointer.Missing):
        return RowsError(side.missing, str(value))
    if not isinstance(value, list):
        return RowsError(side.missing, f"{path}: expected an array, got {describe(value)}")
    return value


# -- the protocols' shapes ---------------------------------------------------------------------


def _v2(body: Any, side: _Side) -> list[Any]:
    """Open Inference Protocol: `inputs` / `outputs`, rows `{tensor name: value}`."""
    key = "inputs" if side is _REQUEST else "outputs"
    tensors = _member(body, (key,), side)[1]
    if not isinstance(tensors, list) or not tensors:
        raise _Bad(side.missing, f"/{key}: expected an array of tensors, got {describe(tensors)}")
    columns: dict[str, list[Any]] = {}
    first = ""
    for i, tensor in enumerate(tensors):
        where = f"/{key}/{i}"
        if not isinstance(tensor, dict):
            raise _Bad(
                "tensor_invalid",
                f"{where}: expected a tensor object, got {describe(tensor)}",
            )
        name = tensor.get("name")
        if not isinstance(name, str):
            raise _Bad("tensor_invalid", f"{where}/name: expected a string, got {describe(name)}")
        if name in columns:
            raise _Bad("tensor_invalid", f"{where}/name: {_short(repr(name))} names two tensors")
        if "data" not in tensor:
            raise _Bad("tensor_invalid", f"{where}/data: missing (and no binary data follows)")
        rows = _tensor(tensor.get("shape"), tensor["data"], where, "data", squeeze=True)
        if columns and len(rows) != len(columns[first]):
            raise _Bad(
                "batch_length_mismatch",
                f"{where} ({_short(name)}) has {len(rows)} rows, /{key}/0 ({_short(first)}) "
                f"{len(columns[first])}",
            )
        if not columns:
            first = name
        columns[name] = rows
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _kserve_v1(body: Any, side: _Side) -> list[Any]:
    """KServe v1: `instances` (or `inputs`) → `predictions`."""
    if side is _REQUEST:
        key, rows = _member(body, ("instances", "inputs"), side)
    else:
        key, rows = _member(body, ("predictions",), side)
    return _list(rows, f"/{key}", side)


def _tfserving(body: Any, side: _Side) -> list[Any]:
    """TF Serving: `instances` → `predictions` (rows), `inputs` → `outputs` (columns)."""
    keys = ("instances", "inputs") if side is _REQUEST else ("predictions", "outputs")
    key, value = _member(body, keys, side)
    if key == keys[0]:
        return _list(value, f"/{key}", side)
    return _columnar(value, f"/{key}", side)


def _seldon_v1(body: Any, side: _Side) -> list[Any]:
    """Seldon Core v1: `data.ndarray` or `data.tensor`, named by `data.names`."""
    data = _member(body, ("data",), side)[1]
    if not isinstance(data, dict):
        raise _Bad(side.missing, f"/data: expected an object, got {describe(data)}")
    if "ndarray" in data:
        rows = _list(data["ndarray"], "/data/ndarray", side)
    elif "tensor" in data:
        tensor = data["tensor"]
        if not isinstance(tensor, dict):
            raise _Bad(
                "tensor_invalid",
                f"/data/tensor: expected an object, got {describe(tensor)}",
            )
        rows = _tensor(tensor.get("shape"), tensor.get("values"), "/data/tensor", "values")
    else:
        raise _Bad(side.missing, f"/data: no ndarray or tensor (has {_keys(data)})")
    names = data.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return rows
    return [
        dict(zip(names, row, strict=True))
        if isinstance(row, list) and len(row) == len(names)
        else row
        for row in rows
    ]


def _mlflow(body: Any, side: _Side) -> list[Any]:
    """MLflow's scoring server: four request shapes → `{"predictions": ...}` or a bare list."""
    if side is _RESPONSE:
        if isinstance(body, list):
            return body
        return _columnar(_member(body, ("predictions",), side)[1], "/predictions", side)
    keys = ("dataframe_split", "dataframe_records", "instances", "inputs")
    key, value = _member(body, keys, side)
    if key == "dataframe_split":
        return _split(value, side)
    if key == "inputs":
        return _columnar(value, "/inputs", side)
    return _list(value, f"/{key}", side)


_Reader = Callable[[Any, _Side], list[Any]]
_REQUESTS: Final[Mapping[str, _Reader]] = {
    "open-inference-v2": _v2,
    "kserve-v1": _kserve_v1,
    "tfserving": _tfserving,
    "seldon-v1": _seldon_v1,
    "mlflow": _mlflow,
}
_RESPONSES: Final = _REQUESTS


# -- the parts they share ----------------------------------------------------------------------


def _member(body: Any, keys: tuple[str, ...], side: _Side) -> tuple[str, Any]:
    """The first of `keys` the body object has, and its value."""
    if isinstance(body, dict):
        for key in keys:
            if key in body:
                return key, body[key]
    wanted = " or ".join(f"/{key}" for key in keys)
    got = f"an object with {_keys(body)}" if isinstance(body, dict) else describe(body)
    raise _Bad(side.missing, f"expected {wanted} in the {side.name} body, got {got}")


def _list(value: Any, where: str, side: _Side) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(side.missing, f"{where}: expected an array, got {describe(value)}")
    return value


def _columnar(value: Any, where: str, side: _Side) -> list[Any]:
    """A list of rows, or an object of columns (name → list, all as long) zipped into rows."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict) or not value:
        raise _Bad(side.missing, f"{where}: expected an array or an object of columns, got "
                   f"{describe(value)}")  # fmt: skip
    first = next(iter(value))
    for name, column in value.items():
        at = f"{where}/{_short(pointer.escape(name))}"
        if not isinstance(column, list):
            raise _Bad("tensor_invalid", f"{at}: expected an array (a column), got "
                       f"{describe(column)}")  # fmt: skip
        if len(column) != len(value[first]):
            raise _Bad(
                "batch_length_mismatch",
                f"{at} has {len(column)} rows, {where}/{_short(pointer.escape(first))} "
                f"{len(value[first])}",
            )
    names = list(value)
    return [dict(zip(names, row, strict=True)) for row in zip(*value.values(), strict=True)]


def _split(value: Any, side: _Side) -> list[Any]:
    """pandas' split orient, `{columns, data}`: rows `{column: value}` (lists without columns)."""
    if not isinstance(value, dict):
        raise _Bad(side.missing, f"/dataframe_split: expected an object, got {describe(value)}")
    rows = _list(value.get("data"), "/dataframe_split/data", side)
    columns = value.get("columns")
    if columns is None:
        return rows
    if not isinstance(columns, list):
        raise _Bad("tensor_invalid", f"/dataframe_split/columns: expected an array, got "
                   f"{describe(columns)}")  # fmt: skip
    found = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise _Bad("shape_mismatch", f"/dataframe_split/data/{i}: expected an array of "
                       f"{len(columns)} values (the columns), got {describe(row)}")  # fmt: skip
        found.append(dict(zip(map(str, columns), row, strict=True)))
    return found


def _tensor(shape: Any, data: Any, where: str, field: str, *, squeeze: bool = False) -> list[Any]:
    """A tensor's rows: `data` (flat or nested, row-major) cut along `shape[0]`. A row is the
    row's slice nested to `shape[1:]`; a scalar for a 1-D tensor, and with `squeeze` whenever a
    row holds one value."""
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _Bad("tensor_invalid", f"{where}/shape: expected an array of at least one "
                   f"non-negative integer, got {describe(shape)}")  # fmt: skip
    if not isinstance(data, list):
        raise _Bad("tensor_invalid", f"{where}/{field}: expected an array, got {describe(data)}")
    flat = flatten(data)
    count = shape[0]
    size = _size(shape[1:]) if count else 0
    if size == 0 and count > 0:
        raise _Bad("tensor_invalid", f"{where}/shape: {_shape(shape)} has rows of no values")
    if size is None or count * size != len(flat):
        holds = "over 2**64" if size is None else count * size
        raise _Bad("shape_mismatch", f"{where}: shape {_shape(shape)} holds {holds} values, "
                   f"{field} has {len(flat)}")  # fmt: skip
    if count == 0:
        return []
    if size == 1 and (squeeze or len(shape) == 1):
        return flat
    rows = [flat[i : i + size] for i in range(0, len(flat), size)]
    if len(shape) > 2:
        rows = [_nest(row, shape[2:]) for row in rows]
    return rows


def _size(dims: list[int]) -> int | None:
    """The product of `dims`, or None once it passes 2**64 (with no zero among them): a shape of
    many huge dimensions is refused without multiplying them all out."""
    if 0 in dims:
        return 0
    size = 1
    for dim in dims:
        size *= dim
        if size > _MOST:
            return None
    return size


def flatten(data: list[Any]) -> list[Any]:
    """Nested lists' leaves in row-major order: a level at a time while every item is a list
    (nested data of a shape), else walked with a stack (not recursion)."""
    while list in (kinds := set(map(type, data))):
        if len(kinds) > 1:
            return _walk(data)
        data = list(itertools.chain.from_iterable(data))
    return data


def _walk(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _nest(values: list[Any], dims: list[int]) -> list[Any]:
    """A flat row as nested lists of the row's shape (`dims`, its innermost dimensions last)."""
    for dim in reversed(dims):
        values = [values[i : i + dim] for i in range(0, len(values), dim)]
    return values


def _shape(shape: list[int]) -> str:
    shown = ", ".join(map(str, shape[:_SHOWN_DIMS]))
    return f"[{shown}{', ...' if len(shape) > _SHOWN_DIMS else ''}]"


def _short(name: str) -> str:
    """A name from a body as a detail shows it: at most `_SHOWN_NAME` characters."""
    return name if len(name) <= _SHOWN_NAME else name[: _SHOWN_NAME - 3] + "..."


def names(found: Mapping[str, Any]) -> str:
    """An object's keys as a detail lists them (`predict, predict_proba`): the first few, each
    cut short."""
    shown = ", ".join(map(_short, itertools.islice(found, _SHOWN_DIMS)))
    return shown + (", ..." if len(found) > _SHOWN_DIMS else "")


def _keys(body: dict[str, Any]) -> str:
    return f"keys {names(body)}" if body else "no keys"
