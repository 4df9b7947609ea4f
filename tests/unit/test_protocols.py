"""core/protocols: the rows of each model server's protocol, from the payloads its docs show.

The examples are the protocols' own documented ones (the Open Inference Protocol's REST spec,
MLServer's scikit-learn and pandas-codec requests, KServe's v1 and v2 iris examples, TF Serving's
REST API row and columnar formats, Seldon Core v1's ndarray and tensor, MLflow's four scoring
inputs, TorchServe's image classification), so a reader that drifts from a server's shape fails
here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthloop.core import extract
from truthloop.core.protocols import (
    NOT_JSON,
    RowsError,
    features,
    request_rows,
    response_rows,
    row,
)
from truthloop.core.spec import PROTOCOLS, BatchSpec, CaptureSpec, Source


def preset(protocol: str) -> CaptureSpec:
    return CaptureSpec(Source(pointer=""), features=Source(pointer=""), protocol=protocol)  # type: ignore[arg-type]


V2 = preset("open-inference-v2")
KSERVE_V1 = preset("kserve-v1")

# -- open-inference-v2 -------------------------------------------------------------------------

# MLServer's scikit-learn example: one `predict` input of N rows of features.
MLSERVER_REQUEST = {
    "inputs": [
        {
            "name": "predict",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    ]
}
MLSERVER_RESPONSE = {
    "model_name": "iris",
    "model_version": "v0.1.0",
    "id": "e2e1c7e1-0c4c-4a8f-a1a6-5c3b7b6a5a10",
    "parameters": {},
    "outputs": [
        {
            "name": "predict",
            "shape": [2, 1],
            "datatype": "INT64",
            "parameters": {"content_type": "np"},
            "data": [1, 1],
        }
    ],
}


def test_v2_mlserver_rows_are_named_by_input_and_output() -> None:
    assert request_rows(V2, MLSERVER_REQUEST) == [
        {"predict": [6.8, 2.8, 4.8, 1.4]},
        {"predict": [6.0, 3.4, 4.5, 1.6]},
    ]
    assert response_rows(V2, MLSERVER_RESPONSE) == [{"predict": 1}, {"predict": 1}]


def test_v2_features_expand_a_row_s_vector_by_position() -> None:
    [row, _] = request_rows(V2, MLSERVER_REQUEST)  # type: ignore[misc]
    assert features(V2, row) == {
        "predict.0": 6.8,
        "predict.1": 2.8,
        "predict.2": 4.8,
        "predict.3": 1.4,
    }


def test_v2_pandas_codec_columns_become_named_features() -> None:
    # MLServer's docs: a pandas DataFrame sent with the `pd` content type, one input per column.
    request = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": "First Name",
                "datatype": "BYTES",
                "parameters": {"content_type": "str"},
                "shape": [2],
                "data": ["Joanne", "Michael"],
            },
            {"name": "Age", "datatype": "INT32", "shape": [2], "data": [34, 22]},
        ],
    }
    rows = request_rows(V2, request)
    assert rows == [{"First Name": "Joanne", "Age": 34}, {"First Name": "Michael", "Age": 22}]
    assert [features(V2, row) for row in rows] == rows  # type: ignore[union-attr]


def test_v2_kserve_iris_with_flat_data_and_a_one_dimensional_output() -> None:
    # KServe's sklearn v2 example: `input-0` [2, 4] and the answer's `output-0` [2].
    request = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6],
            }
        ]
    }
    response = {
        "model_name": "sklearn-v2-iris",
        "model_version": None,
        "id": "823248cc",
        "parameters": None,
        "outputs": [
            {
                "name": "output-0",
                "shape": [2],
                "datatype": "INT32",
                "parameters": None,
                "data": [1, 1],
            }
        ],
    }
    assert request_rows(V2, request) == [
        {"input-0": [6.8, 2.8, 4.8, 1.4]},
        {"input-0": [6.0, 3.4, 4.5, 1.6]},
    ]
    assert response_rows(V2, response) == [{"output-0": 1}, {"output-0": 1}]


def test_v2_rows_nest_to_the_rest_of_the_shape_and_probabilities_stay_vectors() -> None:
    response = {
        "outputs": [
            {
                "name": "predict_proba",
                "shape": [2, 2],
                "datatype": "FP64",
                "data": [0.9, 0.1, 0.2, 0.8],
            },
            {"name": "image", "shape": [2, 2, 3], "datatype": "UINT8", "data": list(range(12))},
            {"name": "ok", "shape": [2, 1, 1], "datatype": "BOOL", "data": [[[True]], [[False]]]},
        ]
    }
    assert response_rows(V2, response) == [
        {"predict_proba": [0.9, 0.1], "image": [[0, 1, 2], [3, 4, 5]], "ok": True},
        {"predict_proba": [0.2, 0.8], "image": [[6, 7, 8], [9, 10, 11]], "ok": False},
    ]


def test_the_open_inference_protocol_s_own_example_request_does_not_fill_its_shape() -> None:
    # The spec's example: input1's shape [3] with one value. A server refuses it too.
    request = {
        "id": "42",
        "inputs": [
            {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
            {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
        ],
        "outputs": [{"name": "output0"}],
    }
    assert request_rows(V2, request) == RowsError(
        "shape_mismatch", "/inputs/1: shape [3] holds 3 values, data has 1"
    )
    # ... and its example response does.
    response = {
        "id": "42",
        "outputs": [
            {
                "name": "output0",
                "shape": [3, 2],
                "datatype": "FP32",
                "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1],
            }
        ],
    }
    assert response_rows(V2, response) == [
        {"output0": [1.0, 1.1]},
        {"output0": [2.0, 2.1]},
        {"output0": [3.0, 3.1]},
    ]


def tensor(name: str, shape: Any, data: Any = (), **more: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "FP32", "data": list(data), **more}


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (
            {},
            "instances_missing",
            "expected /inputs in the request body, got an object with no keys",
        ),
        ([1], "instances_missing", "expected /inputs in the request body, got an array"),
        (
            {"inputs": []},
            "instances_missing",
            "/inputs: expected an array of tensors, got an array",
        ),
        (
            {"inputs": {}},
            "instances_missing",
            "/inputs: expected an array of tensors, got an object",
        ),
        ({"inputs": [3]}, "tensor_invalid", "/inputs/0: expected a tensor object, got a number"),
        (
            {"inputs": [{"shape": [1], "data": [1]}]},
            "tensor_invalid",
            "/inputs/0/name: expected a string, got null",
        ),
        (
            {"inputs": [tensor("a", [1], [1]), tensor("a", [1], [2])]},
            "tensor_invalid",
            "/inputs/1/name: 'a' names two tensors",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "a",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 3},
                    }
                ]
            },
            "tensor_invalid",
            "/inputs/0/data: missing (and no binary data follows)",
        ),
        (
            {"inputs": [tensor("a", [], [1])]},
            "tensor_invalid",
            "/inputs/0/shape: expected an array of at least one non-negative integer, got an array",
        ),
        ({"inputs": [tensor("a", [2.0], [1, 2])]}, "tensor_invalid", "/inputs/0/shape: "),
        ({"inputs": [tensor("a", [-1, 2], [1, 2])]}, "tensor_invalid", "/inputs/0/shape: "),
        ({"inputs": [tensor("a", [True], [1])]}, "tensor_invalid", "/inputs/0/shape: "),
        ({"inputs": [tensor("a", "2")]}, "tensor_invalid", "/inputs/0/shape: "),
        (
            {"inputs": [{"name": "a", "shape": [1], "data": 5}]},
            "tensor_invalid",
            "/inputs/0/data: expected an array, got a number",
        ),
        (
            {"inputs": [tensor("a", [2, 2], [1, 2, 3])]},
            "shape_mismatch",
            "/inputs/0: shape [2, 2] holds 4 values, data has 3",
        ),
        (
            {"inputs": [tensor("a", [1, 10**30], [1])]},
            "shape_mismatch",
            "/inputs/0: shape [1, 1000000000000000000000000000000] holds over 2**64 values, "
            "data has 1",
        ),
        (
            {"inputs": [tensor("a", [1, 2, 3, 4, 5, 6, 7, 8, 9], [1])]},
            "shape_mismatch",
            "/inputs/0: shape [1, 2, 3, 4, 5, 6, 7, 8, ...] holds 362880 values, data has 1",
        ),
        (
            {"inputs": [tensor("a", [10**12, 0])]},
            "tensor_invalid",
            "/inputs/0/shape: [1000000000000, 0] has rows of no values",
        ),
        (
            {"inputs": [tensor("a", [2], [1, 2]), tensor("b", [3], [1, 2, 3])]},
            "batch_length_mismatch",
            "/inputs/1 (b) has 3 rows, /inputs/0 (a) 2",
        ),
    ],
)
def test_v2_requests_without_rows_say_why_and_where(body: Any, reason: str, detail: str) -> None:
    found = request_rows(V2, body)
    assert isinstance(found, RowsError)
    assert found.reason == reason
    assert found.detail.startswith(detail)


def test_v2_responses_without_rows_are_predictions_missing() -> None:
    assert response_rows(V2, {"outputs": []}) == RowsError(
        "predictions_missing", "/outputs: expected an array of tensors, got an array"
    )
    assert response_rows(V2, {"error": "boom"}) == RowsError(
        "predictions_missing",
        "expected /outputs in the response body, got an object with keys error",
    )


def test_v2_a_tensor_of_no_rows_gives_none() -> None:
    assert request_rows(V2, {"inputs": [tensor("a", [0, 4])]}) == []


ELEMENTS = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, width=32),
    st.booleans(),
    st.text(max_size=4),
)


def nested(flat: list[Any], dims: list[int]) -> Any:
    for dim in reversed(dims[1:]):
        flat = [flat[i : i + dim] for i in range(0, len(flat), dim)]
    return flat


@given(
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    rows=st.integers(0, 4),
    data=st.data(),
)
def test_v2_nested_and_flat_data_give_the_same_rows(
    dims: list[int], rows: int, data: st.DataObject
) -> None:
    shape = [rows, *dims]
    flat = data.draw(st.lists(ELEMENTS, min_size=math.prod(shape), max_size=math.prod(shape)))
    as_flat = request_rows(V2, {"inputs": [tensor("x", shape, flat)]})
    as_nested = request_rows(V2, {"inputs": [tensor("x", shape, nested(flat, shape))]})
    assert as_flat == as_nested
    assert isinstance(as_flat, list)
    assert len(as_flat) == rows
    size = math.prod(dims)
    for i, found in enumerate(as_flat):
        piece = flat[i * size : (i + 1) * size]
        assert found == {"x": piece[0] if size == 1 else nested(piece, dims)}


SCALARS = st.one_of(st.integers(-9, 9), st.text(max_size=2), st.booleans(), st.none())
V2_ROWS = st.dictionaries(
    st.text(st.sampled_from("ab.01"), min_size=1, max_size=4),
    SCALARS | st.lists(SCALARS, min_size=1, max_size=3) | st.lists(st.lists(SCALARS), min_size=1),
    max_size=4,
)


@given(V2_ROWS)
def test_a_v2_row_is_told_back_from_its_features_when_its_names_do_not_look_flattened(
    found: dict[str, Any],
) -> None:
    flat = features(V2, found)
    told = row(V2, flat)
    plain = not any(key.rpartition(".")[2].isdigit() for key in found)
    if plain and not all(key == str(i) for i, key in enumerate(flat)):
        assert told == found
    assert features(V2, told) == flat


def test_rows_told_back() -> None:
    assert row(KSERVE_V1, {"0": 1, "1": 2}) == [1, 2]
    assert row(KSERVE_V1, {"1": 1, "0": 2}) == {"1": 1, "0": 2}
    assert row(KSERVE_V1, {"a.0": 1}) == {"a.0": 1}
    assert row(V2, {"a.0": 1, "a.1": 2, "a": 3}) == {"a.0": 1, "a.1": 2, "a": 3}
    assert row(V2, {"a.0": 1, "b": 0, "a.1": 2, "a.3": 4}) == {"a": [1, 2], "b": 0, "a.3": 4}
    assert row(CaptureSpec(Source(pointer="")), {"0": 1}) == {"0": 1}


# -- kserve-v1 ---------------------------------------------------------------------------------


def test_kserve_v1_iris_instances_and_predictions() -> None:
    request = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
    assert request_rows(KSERVE_V1, request) == request["instances"]
    assert response_rows(KSERVE_V1, {"predictions": [1, 1]}) == [1, 1]
    assert features(KSERVE_V1, request["instances"][0]) == {"0": 6.8, "1": 2.8, "2": 4.8, "3": 1.4}
    assert request_rows(KSERVE_V1, {"inputs": [{"a": 1}]}) == [{"a": 1}]
    assert features(KSERVE_V1, {"a": [1, 2]}) == {"a": [1, 2]}
    assert features(KSERVE_V1, 3.5) == {"0": 3.5}


def test_kserve_v1_without_rows() -> None:
    assert request_rows(KSERVE_V1, {"instance": []}) == RowsError(
        "instances_missing",
        "expected /instances or /inputs in the request body, got an object with keys instance",
    )
    assert request_rows(KSERVE_V1, {"instances": {"a": 1}}) == RowsError(
        "instances_missing", "/instances: expected an array, got an object"
    )
    assert response_rows(KSERVE_V1, [1, 2]) == RowsError(
        "predictions_missing", "expected /predictions in the response body, got an array"
    )


# -- tfserving ---------------------------------------------------------------------------------

TFSERVING = preset("tfserving")
TF_ROWS = [
    {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
    {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
]


def test_tfserving_row_format() -> None:
    # TF Serving's REST API docs: the row format, and half_plus_three's answer.
    assert request_rows(TFSERVING, {"signature_name": "classify_x_to_y", "instances": TF_ROWS}) == (
        TF_ROWS
    )
    assert request_rows(TFSERVING, {"instances": [1.0, 2.0, 5.0]}) == [1.0, 2.0, 5.0]
    assert response_rows(TFSERVING, {"predictions": [3.5, 4.0, 5.5]}) == [3.5, 4.0, 5.5]


def test_tfserving_columnar_format_is_zipped_into_rows() -> None:
    columnar = {
        "inputs": {
            "tag": ["foo", "bar"],
            "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
            "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
        }
    }
    assert request_rows(TFSERVING, columnar) == TF_ROWS
    assert request_rows(TFSERVING, {"inputs": [[1, 2], [3, 4]]}) == [[1, 2], [3, 4]]
    assert response_rows(TFSERVING, {"outputs": [[0.1], [0.9]]}) == [[0.1], [0.9]]
    assert response_rows(TFSERVING, {"outputs": {"scores": [0.1, 0.9], "classes": [0, 1]}}) == [
        {"scores": 0.1, "classes": 0},
        {"scores": 0.9, "classes": 1},
    ]


def test_tfserving_columns_must_be_arrays_of_one_length() -> None:
    assert request_rows(TFSERVING, {"inputs": {"a": [1, 2], "b/c": [1]}}) == RowsError(
        "batch_length_mismatch", "/inputs/b~1c has 1 rows, /inputs/a 2"
    )
    assert request_rows(TFSERVING, {"inputs": {"a": [1], "b": 2}}) == RowsError(
        "tensor_invalid", "/inputs/b: expected an array (a column), got a number"
    )
    assert request_rows(TFSERVING, {"inputs": {}}) == RowsError(
        "instances_missing", "/inputs: expected an array or an object of columns, got an object"
    )
    assert response_rows(TFSERVING, {"error": "x"}) == RowsError(
        "predictions_missing",
        "expected /predictions or /outputs in the response body, got an object with keys error",
    )


# -- seldon-v1 ---------------------------------------------------------------------------------

SELDON = preset("seldon-v1")


def test_seldon_ndarray_rows_are_named_by_names() -> None:
    request = {"data": {"names": ["a", "b"], "ndarray": [[1.0, 2.0], [3.0, 4.0]]}}
    response = {
        "data": {"names": ["t:0", "t:1", "t:2"], "ndarray": [[0.0, 0.1, 0.9], [0.8, 0.1, 0.1]]},
        "meta": {},
    }
    assert request_rows(SELDON, request) == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]
    assert response_rows(SELDON, response) == [
        {"t:0": 0.0, "t:1": 0.1, "t:2": 0.9},
        {"t:0": 0.8, "t:1": 0.1, "t:2": 0.1},
    ]
    assert response_rows(SELDON, {"data": {"names": [], "ndarray": [1, 0]}, "meta": {}}) == [1, 0]
    assert request_rows(SELDON, {"data": {"ndarray": [[1, 2]]}}) == [[1, 2]]
    assert request_rows(SELDON, {"data": {"names": ["a"], "ndarray": [[1, 2], 3]}}) == [[1, 2], 3]


def test_seldon_tensor_rows_are_cut_along_the_first_dimension() -> None:
    request = {
        "data": {
            "names": ["a", "b", "c"],
            "tensor": {"shape": [2, 3], "values": [1, 2, 3, 4, 5, 6]},
        }
    }
    assert request_rows(SELDON, request) == [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]
    one = {"data": {"names": ["proba"], "tensor": {"shape": [2, 1], "values": [0.2, 0.7]}}}
    assert response_rows(SELDON, one) == [{"proba": 0.2}, {"proba": 0.7}]
    assert response_rows(SELDON, {"data": {"tensor": {"shape": [2], "values": [0, 1]}}}) == [0, 1]
    assert request_rows(SELDON, {"data": {"tensor": {"shape": [2, 3], "values": [1]}}}) == (
        RowsError("shape_mismatch", "/data/tensor: shape [2, 3] holds 6 values, values has 1")
    )


def test_seldon_without_rows() -> None:
    assert request_rows(SELDON, {"data": {"strData": "hello"}}) == RowsError(
        "instances_missing", "/data: no ndarray or tensor (has keys strData)"
    )
    assert request_rows(SELDON, {"data": [1]}) == RowsError(
        "instances_missing", "/data: expected an object, got an array"
    )
    assert response_rows(SELDON, {"data": {"tensor": 1}}) == RowsError(
        "tensor_invalid", "/data/tensor: expected an object, got a number"
    )


# -- mlflow ------------------------------------------------------------------------------------

MLFLOW = preset("mlflow")
MLFLOW_ROWS = [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}},
        {
            "dataframe_split": {
                "index": [0, 1],
                "columns": ["a", "b", "c"],
                "data": [[1, 2, 3], [4, 5, 6]],
            }
        },
        {"dataframe_records": MLFLOW_ROWS},
        {"instances": MLFLOW_ROWS},
        {"inputs": {"a": [1, 4], "b": [2, 5], "c": [3, 6]}},
        {"inputs": MLFLOW_ROWS},
    ],
)
def test_mlflow_s_four_inputs_give_the_same_rows(body: Any) -> None:
    assert request_rows(MLFLOW, body) == MLFLOW_ROWS


def test_mlflow_answers_with_predictions_or_a_bare_list() -> None:
    assert response_rows(MLFLOW, {"predictions": [0, 1]}) == [0, 1]
    assert response_rows(MLFLOW, [0, 1]) == [0, 1]
    assert response_rows(MLFLOW, {"predictions": [{"label": 0}, {"label": 1}]}) == [
        {"label": 0},
        {"label": 1},
    ]
    assert response_rows(MLFLOW, {"predictions": {"label": [0, 1]}}) == [{"label": 0}, {"label": 1}]
    assert request_rows(MLFLOW, {"dataframe_split": {"data": [[1, 2]]}}) == [[1, 2]]


def test_mlflow_without_rows() -> None:
    assert request_rows(MLFLOW, {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}) == (
        RowsError(
            "shape_mismatch",
            "/dataframe_split/data/0: expected an array of 1 values (the columns), got an array",
        )
    )
    assert request_rows(MLFLOW, {"dataframe_split": {"columns": "a", "data": []}}) == RowsError(
        "tensor_invalid", "/dataframe_split/columns: expected an array, got a string"
    )
    assert request_rows(MLFLOW, {"dataframe_split": []}) == RowsError(
        "instances_missing", "/dataframe_split: expected an object, got an array"
    )
    assert request_rows(MLFLOW, {"columns": ["a"]}).reason == "instances_missing"  # type: ignore[union-attr]
    assert response_rows(MLFLOW, {"predictions": 1}) == RowsError(
        "predictions_missing",
        "/predictions: expected an array or an object of columns, got a number",
    )


# -- torchserve, custom --------------------------------------------------------------------------


def test_torchserve_and_custom_without_batch_are_not_row_based() -> None:
    # TorchServe's image classifier answers one object of class scores per request.
    torchserve = CaptureSpec(Source(pointer=""), protocol="torchserve")
    assert request_rows(torchserve, NOT_JSON) is None
    assert response_rows(torchserve, {"tiger_cat": 0.46, "tabby": 0.31}) is None
    custom = CaptureSpec(Source(pointer="/prediction"))
    assert request_rows(custom, {}) is None
    assert response_rows(custom, {}) is None


def test_custom_batch_reads_the_arrays_at_its_pointers() -> None:
    custom = CaptureSpec(Source(pointer=""), batch=BatchSpec("/instances", "/out/predictions"))
    assert request_rows(custom, {"instances": [1, 2]}) == [1, 2]
    assert response_rows(custom, {"out": {"predictions": [3]}}) == [3]
    assert response_rows(custom, {"out": {}}) == RowsError(
        "predictions_missing", '/out/predictions: no key "predictions" at /out'
    )
    assert request_rows(custom, {"instances": 1}) == RowsError(
        "instances_missing", "/instances: expected an array, got a number"
    )
    assert request_rows(custom, NOT_JSON) == RowsError("not_json", "the request body is not JSON")
    assert features(custom, [1, 2]) == [1, 2]


@pytest.mark.parametrize("protocol", [p for p in PROTOCOLS if p not in ("custom", "torchserve")])
def test_a_body_that_is_not_json_has_no_rows(protocol: str) -> None:
    assert request_rows(preset(protocol), NOT_JSON) == RowsError(
        "not_json", "the request body is not JSON"
    )
    assert response_rows(preset(protocol), extract.decode(b"<html>")) == RowsError(
        "not_json", "the response body is not JSON"
    )


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "inputs",
                        "outputs",
                        "name",
                        "shape",
                        "data",
                        "instances",
                        "predictions",
                        "values",
                        "tensor",
                        "ndarray",
                        "names",
                        "dataframe_split",
                        "columns",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    ),
    st.sampled_from([p for p in PROTOCOLS if p != "custom"]),
)
def test_rows_are_total(body: Any, protocol: str) -> None:
    for side in (request_rows, response_rows):
        found = side(preset(protocol), body)
        assert found is None or isinstance(found, list | RowsError)


def test_names_from_a_body_are_cut_short_in_details() -> None:
    long = "x" * 100
    found = request_rows(V2, {"inputs": [tensor(long, [1], [1]), tensor(long, [1], [2])]})
    assert found == RowsError("tensor_invalid", f"/inputs/1/name: '{'x' * 60}... names two tensors")
    many = {f"k{i}": i for i in range(10)}
    assert request_rows(KSERVE_V1, many) == RowsError(
        "instances_missing",
        "expected /instances or /inputs in the request body, got an object with keys k0, k1, k2, "
        "k3, k4, k5, k6, k7, ...",
    )
