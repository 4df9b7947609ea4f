"""Fallback answers put the prediction where the model would, and capture reads it back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import open_inference
from truthloop.core import extract, pointer, respond
from truthloop.core.spec import BatchSpec, CaptureSpec, Source


def spec(prediction: str, batch: BatchSpec | None = None) -> CaptureSpec:
    return CaptureSpec(prediction=Source(pointer=prediction), batch=batch)


@pytest.mark.parametrize(
    ("capture", "predictions", "body"),
    [
        (spec("/prediction"), [1], {"prediction": 1}),
        (spec("/output/label"), ["churn"], {"output": {"label": "churn"}}),
        (spec(""), [0.5], 0.5),
        (spec("/predictions/0"), [1], {"predictions": [1]}),
        (spec("/a~1b/c~0d"), [True], {"a/b": {"c~d": True}}),
        (
            spec("", BatchSpec("/instances", "/predictions")),
            [0, 1, 1],
            {"predictions": [0, 1, 1]},
        ),
        (
            spec("/label", BatchSpec("/instances", "/outputs")),
            ["a", "b"],
            {"outputs": [{"label": "a"}, {"label": "b"}]},
        ),
        (spec("", BatchSpec("/instances", "/predictions")), [], {"predictions": []}),
    ],
)
def test_the_body_holds_each_prediction_at_the_spec_s_pointer(
    capture: CaptureSpec, predictions: list[Any], body: Any
) -> None:
    assert respond.body(capture, predictions) == body


def test_a_prediction_read_from_a_header_cannot_be_answered() -> None:
    capture = CaptureSpec(prediction=Source(header="X-Prediction"))
    with pytest.raises(ValueError, match="header"):
        respond.body(capture, [1])


def test_an_absurd_array_index_is_refused_not_padded() -> None:
    with pytest.raises(ValueError, match="too large"):
        respond.body(spec("/predictions/99999999"), [1])


def test_a_single_answer_takes_exactly_one_prediction() -> None:
    with pytest.raises(ValueError, match="one prediction"):
        respond.body(spec("/prediction"), [1, 0])


tokens = st.lists(
    st.one_of(
        st.sampled_from(["0", "2", "00", "²", "p", "a/b", "~x", ""]),
        # an array index past MAX_INDEX is refused by design (test above), not placed
        st.text(max_size=4).filter(
            lambda t: not (t.isascii() and t.isdigit()) or int(t) <= respond.MAX_INDEX
        ),
    ),
    max_size=3,
)
values = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=5), st.floats(0, 1))


@settings(max_examples=200, deadline=None)
@given(tokens, st.lists(values, min_size=1, max_size=4), st.booleans())
def test_capture_extracts_what_the_fallback_answered(
    path: list[str], predictions: list[Any], batch: bool
) -> None:
    prediction = pointer.render(path)
    if batch:
        capture = spec(prediction, BatchSpec("/instances", "/predictions"))
        request: Any = {"instances": [{} for _ in predictions]}
    else:
        capture, request, predictions = spec(prediction), {}, predictions[:1]
    body = respond.body(capture, predictions)
    extraction = extract.extract(capture, (), request, body)
    assert extraction.error is None
    assert [row.prediction for row in extraction.rows] == predictions


def test_a_dash_token_is_placed_as_a_key_that_capture_reads_back() -> None:
    capture = spec("/-")
    body = respond.body(capture, [1])
    assert body == {"-": 1}
    assert [row.prediction for row in extract.extract(capture, (), {}, body).rows] == [1]


def preset(protocol: str, prediction: str = "") -> CaptureSpec:
    return CaptureSpec(prediction=Source(pointer=prediction), protocol=protocol)


V2_PATH = "/v2/models/churn/infer"


def test_a_v2_answer_is_an_inference_response_with_one_output_tensor_of_n_rows() -> None:
    request = {"id": "r-7", "inputs": [{"name": "predict", "shape": [3, 2], "datatype": "FP64"}]}
    answer = respond.answer(preset("open-inference-v2", "/predict"), [1, 0, 1], request, V2_PATH)
    assert answer == {
        "model_name": "churn",
        "id": "r-7",
        "parameters": {},
        "outputs": [{"name": "predict", "shape": [3, 1], "datatype": "INT64", "data": [1, 0, 1]}],
    }
    assert open_inference.problems(answer) == []


@pytest.mark.parametrize(
    ("predictions", "datatype"),
    [
        ([True, False], "BOOL"),
        ([1, -(2**63)], "INT64"),
        ([0.25, 0.5], "FP64"),
        ([1, 0.5], "FP64"),  # a number with a fraction among integers: the JSON values kept
        (["churn", "stay"], "BYTES"),
    ],
)
def test_a_v2_output_s_datatype_is_what_the_rules_values_are(
    predictions: list[Any], datatype: str
) -> None:
    answer = respond.answer(preset("open-inference-v2", "/label"), predictions, {}, V2_PATH)
    (output,) = answer["outputs"]
    assert (output["datatype"], output["data"], output["shape"]) == (datatype, predictions, [2, 1])
    assert "id" not in answer
    assert open_inference.problems(answer) == []


@pytest.mark.parametrize(
    ("path", "name", "version"),
    [
        ("/v2/models/churn/versions/3/infer", "churn", "3"),
        ("/v2/models/churn/infer?trace=1", "churn", None),
        ("/v2/models/my%20model/versions/v%2F1/infer", "my model", "v/1"),
    ],
)
def test_a_v2_answer_names_the_model_and_version_of_the_request_path(
    path: str, name: str, version: str | None
) -> None:
    answer = respond.answer(preset("open-inference-v2", "/predict"), [1], {}, path)
    assert answer["model_name"] == name
    assert answer.get("model_version") == version
    assert open_inference.problems(answer) == []


@pytest.mark.parametrize(
    ("prediction", "predictions", "shape", "data"),
    [
        ("/predict/0", [1, 0], [2, 1], [1, 0]),
        ("/predict/0/0", [1, 0], [2, 1, 1], [1, 0]),
        ("/predict", [[0.2, 0.8], [0.6, 0.4]], [2, 2], [0.2, 0.8, 0.6, 0.4]),
    ],
)
def test_a_deeper_v2_pointer_places_the_value_inside_the_row(
    prediction: str, predictions: list[Any], shape: list[int], data: list[Any]
) -> None:
    answer = respond.answer(preset("open-inference-v2", prediction), predictions, {}, V2_PATH)
    (output,) = answer["outputs"]
    assert (output["name"], output["shape"], output["data"]) == ("predict", shape, data)
    assert open_inference.problems(answer) == []


@pytest.mark.parametrize(
    ("prediction", "predictions", "path", "message"),
    [
        ("/predict", [1], "/v2/models/churn/ready", "not a v2 inference path"),
        ("/predict", [1], "/v1/models/churn:predict", "not a v2 inference path"),
        ("", [1], V2_PATH, "output's name"),
        ("/predict", [], V2_PATH, "no rows"),
        ("/predict", [1, "a"], V2_PATH, "one datatype"),
        ("/predict", [True, 1], V2_PATH, "one datatype"),
        ("/predict", [None], V2_PATH, "cannot hold null"),
        ("/predict", [{"a": 1}], V2_PATH, "cannot hold an object"),
        ("/predict", [2**63], V2_PATH, "beyond INT64"),
        ("/predict/1", [1], V2_PATH, "cannot hold null"),  # index 0 would be padding
        ("/predict", [[1, 2], [1]], V2_PATH, "differ in shape"),
        ("/predict", [1, [1, 2]], V2_PATH, "cannot hold an array"),
        ("/predict", [[[1, 2], [1]]], V2_PATH, "differ in length"),
    ],
)
def test_what_a_v2_tensor_cannot_hold_is_not_answered(
    prediction: str, predictions: list[Any], path: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        respond.answer(preset("open-inference-v2", prediction), predictions, {}, path)


@pytest.mark.parametrize("protocol", ["kserve-v1", "mlflow"])
def test_kserve_v1_and_mlflow_answer_a_predictions_array(protocol: str) -> None:
    request = {"instances": [[1, 2], [3, 4]]}
    assert respond.answer(preset(protocol), [0, 1], request, "/") == {"predictions": [0, 1]}
    assert respond.answer(preset(protocol, "/label"), ["a"], {"inputs": [[1]]}, "/") == {
        "predictions": [{"label": "a"}]
    }


def test_tfserving_answers_rows_with_predictions_and_columns_with_outputs() -> None:
    path = "/v1/models/churn:predict"
    rows = {"instances": [{"x": 1}, {"x": 2}]}
    columns = {"inputs": {"x": [1, 2]}}
    assert respond.answer(preset("tfserving"), [0, 1], rows, path) == {"predictions": [0, 1]}
    assert respond.answer(preset("tfserving"), [0, 1], columns, path) == {"outputs": [0, 1]}
    assert respond.answer(preset("tfserving", "/scores"), [0.5, 1], columns, path) == {
        "outputs": {"scores": [0.5, 1]}
    }
    assert respond.answer(preset("tfserving", "/scores"), [0.5], rows, path) == {
        "predictions": [{"scores": 0.5}]
    }


def test_seldon_answers_an_ndarray_named_by_the_pointer_s_first_token() -> None:
    request = {"data": {"ndarray": [[1, 2], [3, 4]]}}
    assert respond.answer(preset("seldon-v1"), [0, 1], request, "/api/v1.0/predictions") == {
        "data": {"names": [], "ndarray": [0, 1]},
        "meta": {},
    }
    assert respond.answer(preset("seldon-v1", "/label"), ["a", "b"], request, "/") == {
        "data": {"names": ["label"], "ndarray": [["a"], ["b"]]},
        "meta": {},
    }


def test_seldon_answers_a_tensor_request_with_a_tensor_of_numbers() -> None:
    request = {"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3, 4]}}}
    assert respond.answer(preset("seldon-v1"), [0, 0.5], request, "/") == {
        "data": {"names": [], "tensor": {"shape": [2], "values": [0, 0.5]}},
        "meta": {},
    }
    assert respond.answer(preset("seldon-v1", "/p"), [1, 0], request, "/") == {
        "data": {"names": ["p"], "tensor": {"shape": [2, 1], "values": [1, 0]}},
        "meta": {},
    }
    assert respond.answer(preset("seldon-v1"), ["a", True], request, "/") == {
        "data": {"names": [], "ndarray": ["a", True]},
        "meta": {},
    }


@pytest.mark.parametrize("protocol", ["custom", "torchserve"])
def test_custom_and_torchserve_answer_at_the_prediction_pointer(protocol: str) -> None:
    assert respond.answer(preset(protocol, "/label"), [1], {"x": 1}, "/predictions/m") == {
        "label": 1
    }


@pytest.mark.parametrize("protocol", ["open-inference-v2", "kserve-v1", "seldon-v1", "tfserving"])
def test_no_protocol_answers_a_prediction_read_from_a_header(protocol: str) -> None:
    capture = CaptureSpec(prediction=Source(header="X-Prediction"), protocol=protocol)
    with pytest.raises(ValueError, match="header"):
        respond.answer(capture, [1], {}, V2_PATH)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.lists(st.booleans(), min_size=1, max_size=5),
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5),
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5),
        st.lists(st.text(max_size=5), min_size=1, max_size=5),
    ),
    st.text(min_size=1, max_size=5).filter(lambda t: not set(t) & set("/?%")),
)
def test_every_v2_answer_meets_the_specification(predictions: list[Any], name: str) -> None:
    capture = preset("open-inference-v2", pointer.render([name]))
    answer = respond.answer(capture, predictions, {}, f"/v2/models/{name}/infer")
    assert open_inference.problems(answer) == []
    assert answer["outputs"][0]["data"] == predictions


ROUND_TRIPS = [
    (
        "open-inference-v2",
        "/predict",
        {"inputs": [{"name": "predict", "shape": [3, 2], "datatype": "FP64", "data": [0.0] * 6}]},
    ),
    (
        "open-inference-v2",
        "/output-0",
        {"inputs": [{"name": "a", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]},
    ),
    ("kserve-v1", "", {"instances": [[1, 2], [3, 4], [5, 6]]}),
    ("kserve-v1", "/label", {"inputs": [{"x": 1}, {"x": 2}, {"x": 3}]}),
    ("mlflow", "", {"dataframe_split": {"columns": ["x"], "data": [[1], [2], [3]]}}),
    ("mlflow", "", {"dataframe_records": [{"x": 1}, {"x": 2}, {"x": 3}]}),
    ("tfserving", "", {"instances": [1, 2, 3]}),
    ("tfserving", "", {"inputs": [1, 2, 3]}),
    ("tfserving", "/scores", {"inputs": {"x": [1, 2, 3]}}),
    ("seldon-v1", "", {"data": {"ndarray": [[1, 2], [3, 4], [5, 6]]}}),
    ("seldon-v1", "/label", {"data": {"names": ["a", "b"], "ndarray": [[1, 2], [3, 4], [5, 6]]}}),
    ("seldon-v1", "", {"data": {"tensor": {"shape": [3, 2], "values": [1, 2, 3, 4, 5, 6]}}}),
    ("seldon-v1", "/label", {"data": {"tensor": {"shape": [3, 1], "values": [1, 2, 3]}}}),
]


@pytest.mark.parametrize(("protocol", "prediction", "request_body"), ROUND_TRIPS)
def test_capture_reads_each_row_s_prediction_back_from_the_answer(
    protocol: str, prediction: str, request_body: Any
) -> None:
    capture = preset(protocol, prediction)
    predictions = [1, 0, 1]
    body = respond.answer(capture, predictions, request_body, "/v2/models/m/infer")
    extraction = extract.extract(capture, (), request_body, body)
    assert extraction.error is None, extraction.detail
    assert [row.prediction for row in extraction.rows] == predictions
    assert [row.index for row in extraction.rows] == [0, 1, 2]
