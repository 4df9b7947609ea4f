"""Fallback answers put the prediction where the model would, and capture reads it back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
