"""Fallback answers: the rules' predictions in the shape the model would have answered in.

`answer` builds the body for the spec's `capture.protocol` from one prediction per row the
protocol reads in the request (one for a request that is not row-based):

- `custom`, `torchserve` (`body`): the prediction at the `capture.prediction` pointer; for a
  custom batch spec, an array at `capture.batch.predictions` with one element per row.
- `kserve-v1`, `mlflow`: `{"predictions": [...]}`, one element per row.
- `tfserving`: `{"predictions": [...]}` for a row request (`instances`), `{"outputs": ...}` for a
  columnar one (`inputs`): a list, or an object of one output name (the prediction pointer's first
  token) to its list.
- `seldon-v1`: `{"data": {"names": [...], "ndarray": [...]}, "meta": {}}`: with a pointer whose
  first token is a name, that name and a one-element list per row; to a `data.tensor` request,
  numbers are answered as a tensor `{"shape": [N] (or [N, 1] with a name), "values": [...]}`.
- `open-inference-v2`: an inference response for the model the request path names
  (`/v2/models/{name}[/versions/{v}]/infer`), the request's `id` echoed, one output tensor named by
  the pointer's first token, shape `[N, 1]` (or `[N, ...]` as the pointer's index tokens nest the
  value), its datatype from the values (BOOL, INT64, FP64, BYTES) and the data flat, row-major.

A row's element is its prediction placed at the (row-relative) prediction pointer (`place`), so
the sidecar's capture reads a fallback answer back with the same spec as the model's. Objects are
created along the way; an array index creates an array, padded with null. `-` is placed as an
object key, since reading a pointer takes `-` in an array as naming no value. The rules' values
keep their JSON types. Raises ValueError for what cannot be built; the sidecar then asks the model
instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from truthloop.core import pointer, protocols
from truthloop.core.spec import CaptureSpec

MAX_INDEX = 1024
"""Largest array index a prediction pointer may put an answer at (the rest is null padding)."""

_V2_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_INT64 = range(-(2**63), 2**63)


def answer(capture: CaptureSpec, predictions: Sequence[Any], request: Any, path: str) -> Any:
    """The JSON value to answer `request` (decoded JSON, sent to `path`) with in the spec's
    protocol; `predictions` has one value per row of the request (one if not row-based)."""
    protocol = capture.protocol
    if protocol in ("custom", "torchserve"):
        return body(capture, predictions)
    tokens = _prediction_tokens(capture)
    if protocol == "open-inference-v2":
        return _v2(tokens, predictions, request, path)
    if protocol == "seldon-v1":
        return _seldon(tokens, predictions, request)
    if protocol == "tfserving" and isinstance(request, dict) and "instances" not in request:
        return {"outputs": _columns(tokens, predictions)}
    return {"predictions": [place(tokens, value) for value in predictions]}


def body(capture: CaptureSpec, predictions: Sequence[Any]) -> Any:
    """The custom answer; `predictions` has one value, or one per row for batches.

    Raises ValueError for a prediction pointer that reads a header (nothing to place) and for a
    non-batch spec given other than one prediction.
    """
    row_tokens = _prediction_tokens(capture)
    if capture.batch is None:
        if len(predictions) != 1:
            raise ValueError(f"one prediction expected, got {len(predictions)}")
        return place(row_tokens, predictions[0])
    rows = [place(row_tokens, value) for value in predictions]
    return place(pointer.parse(capture.batch.predictions), rows)


def place(tokens: Sequence[str], value: Any) -> Any:
    """A new document holding `value` at `tokens` (an RFC 6901 pointer's reference tokens).

    An array index beyond `MAX_INDEX` is refused (ValueError) rather than padded.
    """
    for token in reversed(tokens):
        if pointer.is_index(token):
            index = int(token)
            if index > MAX_INDEX:
                raise ValueError(f"array index {index} in the prediction pointer is too large")
            value = [None] * index + [value]
        else:
            value = {token: value}
    return value


@dataclass(frozen=True, slots=True)
class V2Model:
    """The model a v2 inference request is sent to, as its path names it."""

    name: str
    version: str | None


def v2_model(path: str) -> V2Model | None:
    """The model of a v2 inference path, `/v2/models/{name}[/versions/{v}]/infer` (the query
    ignored, the segments percent-decoded); None for any other path."""
    found = _V2_INFER.fullmatch(path.partition("?")[0])
    if found is None:
        return None
    name, version = found.groups()
    return V2Model(unquote(name), None if version is None else unquote(version))


def _prediction_tokens(capture: CaptureSpec) -> tuple[str, ...]:
    source = capture.prediction.pointer
    if source is None:
        raise ValueError("capture.prediction reads a header: a body cannot be built")
    return pointer.parse(source)


def _columns(tokens: tuple[str, ...], predictions: Sequence[Any]) -> Any:
    """A column of the rows' elements: a list, or under the output name the pointer starts
    with."""
    if tokens and not pointer.is_index(tokens[0]):
        return {tokens[0]: [place(tokens[1:], value) for value in predictions]}
    return [place(tokens, value) for value in predictions]


def _seldon(tokens: tuple[str, ...], predictions: Sequence[Any], request: Any) -> Any:
    """`data.ndarray` rows, or to a `data.tensor` request a tensor when every row's value is a
    number, as Seldon answers in the request's own form; a pointer starting with a name gives
    `names` and a one-element row."""
    named = bool(tokens) and not pointer.is_index(tokens[0])
    names = [tokens[0]] if named else []
    values = [place(tokens[1:] if named else tokens, value) for value in predictions]
    data = request.get("data") if isinstance(request, dict) else None
    if isinstance(data, dict) and "tensor" in data and all(map(_is_number, values)):
        shape = [len(values), 1] if named else [len(values)]
        return {"data": {"names": names, "tensor": {"shape": shape, "values": values}}, "meta": {}}
    ndarray = [[value] for value in values] if named else values
    return {"data": {"names": names, "ndarray": ndarray}, "meta": {}}


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _v2(
    tokens: tuple[str, ...], predictions: Sequence[Any], request: Any, path: str
) -> dict[str, Any]:
    model = v2_model(path)
    if model is None:
        raise ValueError(f"{path!r} is not a v2 inference path: /v2/models/{{name}}/infer")
    if not tokens:
        raise ValueError("a v2 prediction pointer starts with the output's name: /predict")
    rows = [place(tokens[1:], value) for value in predictions] if tokens[1:] else predictions
    if not rows:
        raise ValueError("a v2 answer to no rows has no datatype")
    dims = _dims(rows[0])
    data: list[Any] = []
    if dims:
        for row in rows:
            if _dims(row) != dims:
                raise ValueError("the rows' predictions differ in shape: a tensor cannot hold them")
            data.extend(protocols.flatten(row))
    else:
        data.extend(rows)  # a row's list among scalars: refused by `_datatype`
    output = {
        "name": tokens[0],
        "shape": [len(rows), *(dims or (1,))],
        "datatype": _datatype(data),
        "data": data,
    }
    response: dict[str, Any] = {"model_name": model.name}
    if model.version is not None:
        response["model_version"] = model.version
    if isinstance(request, dict) and isinstance(request.get("id"), str):
        response["id"] = request["id"]
    response["parameters"] = {}
    response["outputs"] = [output]
    return response


def _dims(value: Any) -> tuple[int, ...]:
    """The shape of nested lists (`()` for a scalar); ValueError for ragged ones."""
    if not isinstance(value, list):
        return ()
    inner = {_dims(item) for item in value}
    if len(inner) > 1:
        raise ValueError("a prediction's arrays differ in length: a tensor cannot hold them")
    return (len(value), *(inner.pop() if inner else ()))


_DATATYPES: dict[type, str] = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}


def _datatype(data: Sequence[Any]) -> str:
    """BOOL, INT64, FP64 (numbers with a fraction among them) or BYTES (strings), as the values
    are; ValueError for what a tensor cannot hold (null, arrays among scalars, objects, mixed
    kinds, an integer beyond INT64)."""
    kinds = set(map(type, data))
    if not kinds:
        raise ValueError("a v2 answer without values has no datatype")
    for kind in kinds - _DATATYPES.keys():
        held = next(value for value in data if type(value) is kind)
        raise ValueError(f"a v2 tensor cannot hold {pointer.describe(held)}")
    if int in kinds:
        integers = [value for value in data if type(value) is int]
        for extreme in (min(integers), max(integers)):
            if extreme not in _INT64:
                raise ValueError(f"{extreme} is beyond INT64")
    if kinds == {int, float}:
        return "FP64"
    if len(kinds) > 1:
        held = sorted(_DATATYPES[kind] for kind in kinds)
        raise ValueError(f"a tensor holds one datatype, the predictions are {held}")
    return _DATATYPES[kinds.pop()]
