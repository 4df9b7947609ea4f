"""JSON pointers (RFC 6901), header lookup, and what a capture spec extracts from an exchange."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthloop.core import extract, pointer
from truthloop.core.extract import NOT_JSON, Extraction, Row
from truthloop.core.spec import BatchSpec, CaptureSpec, SegmentSpec, Source

# RFC 6901 section 5, verbatim.
RFC_DOCUMENT = json.loads(
    r"""
   {
      "foo": ["bar", "baz"],
      "": 0,
      "a/b": 1,
      "c%d": 2,
      "e^f": 3,
      "g|h": 4,
      "i\\j": 5,
      "k\"l": 6,
      " ": 7,
      "m~n": 8
   }
"""
)
RFC_EXAMPLES = [
    ("", RFC_DOCUMENT),
    ("/foo", ["bar", "baz"]),
    ("/foo/0", "bar"),
    ("/", 0),
    ("/a~1b", 1),
    ("/c%d", 2),
    ("/e^f", 3),
    ("/g|h", 4),
    ("/i\\j", 5),
    ('/k"l', 6),
    ("/ ", 7),
    ("/m~0n", 8),
]


@pytest.mark.parametrize(("text", "expected"), RFC_EXAMPLES)
def test_rfc_6901_section_5_examples(text: str, expected: Any) -> None:
    assert pointer.resolve(RFC_DOCUMENT, text) == expected


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", ()),
        ("/", ("",)),
        ("//", ("", "")),
        ("/a~1b/m~0n", ("a/b", "m~n")),
        ("/~01", ("~1",)),  # ~0 first would make this "/"; RFC: ~1 is undone before ~0
        ("/~10", ("/0",)),
        ("/0/-", ("0", "-")),
    ],
)
def test_parse_unescapes_and_render_inverts_it(text: str, tokens: tuple[str, ...]) -> None:
    assert pointer.parse(text) == tokens
    assert pointer.render(tokens) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo", "'foo': a JSON pointer is empty or starts with '/'"),
        ("#/foo", "'#/foo': a JSON pointer is empty or starts with '/'"),
        ("/a~2b", "'/a~2b': '~' at character 3 must be followed by '0' or '1'"),
        ("/a~", "'/a~': '~' at character 3 must be followed by '0' or '1'"),
    ],
)
def test_invalid_pointers_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(pointer.PointerError) as caught:
        pointer.parse(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


DOCUMENT = {"features": {"tenure": 3, "tags": ["a", "b"]}, "n": None, "list": [10, 20]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/features/plan", '/features/plan: no key "plan" at /features'),
        ("/nope/x", '/nope/x: no key "nope" at the document root'),
        (
            "/features/tenure/x",
            "/features/tenure/x: cannot descend into a number at /features/tenure",
        ),
        ("/n/x", "/n/x: cannot descend into null at /n"),
        (
            "/features/tags/2",
            "/features/tags/2: index 2 is past the end (length 2) at /features/tags",
        ),
        ("/features/tags/01", '/features/tags/01: "01" is not an array index at /features/tags'),
        ("/features/tags/-1", '/features/tags/-1: "-1" is not an array index at /features/tags'),
        (
            "/features/tags/-",
            '/features/tags/-: "-" (after the last element) names no value at /features/tags',
        ),
        ("/list/١", '/list/١: "١" is not an array index at /list'),
        ("/a~1b", '/a~1b: no key "a/b" at the document root'),
    ],
)
def test_a_failed_walk_says_where_it_stopped(text: str, message: str) -> None:
    missing = pointer.resolve(DOCUMENT, text)
    assert isinstance(missing, pointer.Missing)
    assert str(missing) == message


def test_resolve_takes_parsed_tokens_and_finds_falsy_values() -> None:
    assert pointer.resolve(DOCUMENT, ("features", "tags", "1")) == "b"
    assert pointer.resolve(DOCUMENT, "/n") is None
    assert pointer.resolve(DOCUMENT, "/list/0") == 10
    assert pointer.resolve([[1, [2]]], "/0/1/0") == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=10,
)


TOKENS = st.sampled_from(
    ["", "a", "0", "1", "2", "00", "01", "-", "+1", "\u0661", "9" * 30]
) | st.text(max_size=3)


@given(document=json_values, tokens=st.lists(TOKENS, max_size=4))
def test_the_short_walk_resolves_as_the_step_by_step_one(document: Any, tokens: list[str]) -> None:
    """resolve's walk through plain objects and arrays gives what the walk that says where it
    stopped gives, value or Missing."""
    assert pointer.resolve(document, tokens) == pointer._walk(document, tuple(tokens))


@given(document=json_values)
def test_every_value_in_a_document_is_reachable_by_its_pointer(document: Any) -> None:
    def walk(value: Any, tokens: tuple[str, ...]) -> None:
        text = pointer.render(tokens)
        assert pointer.parse(text) == tokens
        assert pointer.resolve(document, text) == value
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*tokens, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*tokens, str(index)))

    walk(document, ())


# --- bodies and headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
        (b" 7 ", 7),
        (b"18446744073709551616", 18446744073709551616),
        (b"", NOT_JSON),
        (None, NOT_JSON),
        (b"{", NOT_JSON),
        (b"NaN", NOT_JSON),
        (b"1e400", NOT_JSON),
        (b"\xff", NOT_JSON),
        (b"<html></html>", NOT_JSON),
        (b"[" * 100_000 + b"]" * 100_000, NOT_JSON),  # deeper than the decoder goes
    ],
)
def test_decode(body: bytes | None, expected: Any) -> None:
    assert extract.decode(body) == expected


RAW_HEADERS = [(b"Host", b"model"), (b"X-Entity-ID", b" u-42 "), (b"x-entity-id", b"second")]


@pytest.mark.parametrize(
    "headers",
    [
        RAW_HEADERS,
        [(k.decode(), v.decode()) for k, v in RAW_HEADERS],
        {"host": "model", "X-ENTITY-ID": "u-42"},
    ],
)
def test_header_lookup_ignores_case_and_takes_the_first(headers: extract.Headers) -> None:
    assert extract.header(headers, "x-entity-id") == "u-42"
    assert extract.header(headers, "X-Entity-Id") == "u-42"
    assert extract.header(headers, "x-missing") is None


def test_header_bytes_are_latin_1() -> None:
    assert extract.header([(b"X-Name", "Zoë".encode("latin-1"))], "x-name") == "Zoë"


# --- extraction -----------------------------------------------------------------------------------

SPEC = CaptureSpec(
    prediction=Source(pointer="/prediction"),
    entity_id=Source(pointer="/user_id"),
    score=Source(pointer="/score"),
    features=Source(pointer="/features"),
)
REQUEST = {"user_id": "u1", "features": {"tenure": 3}}
RESPONSE = {"prediction": 1, "score": 0.75}


def test_a_single_prediction() -> None:
    assert extract.extract(SPEC, [], REQUEST, RESPONSE) == Extraction(
        rows=(Row("u1", 1, 0.75, {"tenure": 3}, None),)
    )


def test_optional_parts_stay_none_and_the_whole_body_can_be_the_features() -> None:
    spec = CaptureSpec(prediction=Source(pointer=""), features=Source(pointer=""))
    assert extract.extract(spec, [], [1, 2], "yes") == Extraction(
        rows=(Row(None, "yes", None, [1, 2], None),)
    )


@pytest.mark.parametrize(
    ("spec", "headers", "request_body"),
    [
        (SPEC, [], {"features": {"tenure": 3}}),
        (SPEC, [], {"user_id": None, "features": {"tenure": 3}}),
        (
            CaptureSpec(prediction=Source(pointer="/prediction"), entity_id=Source(header="X-Id")),
            [(b"x-other", b"u9")],
            NOT_JSON,
        ),
    ],
    ids=["no-key", "null", "no-header"],
)
def test_a_request_without_its_entity_is_captured_without_one(
    spec: CaptureSpec, headers: list[tuple[bytes, bytes]], request_body: Any
) -> None:
    """Labels by prediction ID need no entity: the prediction is kept, only entity joins miss it."""
    assert extract.extract(spec, headers, request_body, RESPONSE).rows[0].entity_id is None


def test_entity_from_a_header_needs_no_request_body() -> None:
    spec = CaptureSpec(prediction=Source(pointer="/prediction"), entity_id=Source(header="X-Id"))
    result = extract.extract(spec, [(b"x-id", b"u9")], NOT_JSON, RESPONSE)
    assert result.rows == (Row("u9", 1),)


@pytest.mark.parametrize(
    ("value", "entity"), [("u1", "u1"), (42, "42"), (-7, "-7"), (10**30, str(10**30))]
)
def test_entity_ids_are_strings_or_integers(value: Any, entity: str) -> None:
    result = extract.extract(SPEC, [], {**REQUEST, "user_id": value}, RESPONSE)
    assert result.rows[0].entity_id == entity


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (True, "expected a non-empty string or an integer, got a boolean"),
        (1.5, "expected a non-empty string or an integer, got a number"),
        ({"id": 1}, "expected a non-empty string or an integer, got an object"),
        ("", "the entity ID is an empty string"),
        pytest.param(
            10**5000, "expected a non-empty string or an integer, got a number", id="5000-digits"
        ),
    ],
)
def test_other_entity_ids_are_invalid(value: Any, detail: str) -> None:
    result = extract.extract(SPEC, [], {**REQUEST, "user_id": value}, RESPONSE)
    assert result == Extraction(error="entity_invalid", detail=detail)


@pytest.mark.parametrize(
    ("request_body", "response_body", "error", "detail"),
    [
        (NOT_JSON, RESPONSE, "not_json", "the request body is not JSON"),
        (REQUEST, NOT_JSON, "not_json", "the response body is not JSON"),
        (
            {"user_id": "u1"},
            RESPONSE,
            "features_missing",
            '/features: no key "features" at the document root',
        ),
        (
            REQUEST,
            {"score": 0.5},
            "prediction_missing",
            '/prediction: no key "prediction" at the document root',
        ),
        (
            REQUEST,
            {"prediction": 1},
            "score_missing",
            '/score: no key "score" at the document root',
        ),
        (
            REQUEST,
            {"prediction": 1, "score": "high"},
            "score_invalid",
            "expected a number or an object of numbers, got a string",
        ),
        (
            REQUEST,
            {"prediction": 1, "score": True},
            "score_invalid",
            "expected a number or an object of numbers, got a boolean",
        ),
        (
            REQUEST,
            {"prediction": 1, "score": 10**400},
            "score_invalid",
            "expected a number or an object of numbers, got a number",
        ),
        (
            REQUEST,
            {"prediction": 1, "score": {"cat": 0.5, "dog": "high"}},
            "score_invalid",
            "expected a number or an object of numbers, got an object",
        ),
        (
            REQUEST,
            [1],
            "prediction_missing",
            '/prediction: "prediction" is not an array index at the document root',
        ),
    ],
)
def test_what_is_missing_is_a_reason_not_an_exception(
    request_body: Any, response_body: Any, error: str, detail: str
) -> None:
    assert extract.extract(SPEC, [], request_body, response_body) == Extraction(
        error=error, detail=detail
    )


def test_bad_sources_are_reasons_too() -> None:
    bad_pointer = CaptureSpec(prediction=Source(pointer="prediction"))
    assert extract.extract(bad_pointer, [], REQUEST, RESPONSE) == Extraction(
        error="invalid_pointer",
        detail="prediction: 'prediction': a JSON pointer is empty or starts with '/'",
    )
    from_header = CaptureSpec(prediction=Source(header="X-Prediction"))
    assert extract.extract(from_header, [], REQUEST, RESPONSE).error == "unsupported_source"


BATCH = CaptureSpec(
    prediction=Source(pointer=""),
    entity_id=Source(pointer="/id"),
    features=Source(pointer="/x"),
    batch=BatchSpec(instances="/instances", predictions="/predictions"),
)


def test_a_batch_zips_instances_with_predictions_one_row_each() -> None:
    request_body = {"instances": [{"id": "a", "x": [1]}, {"id": 7, "x": [2]}]}
    result = extract.extract(BATCH, [], request_body, {"predictions": [0.2, 0.9]})
    assert result == Extraction(rows=(Row("a", 0.2, None, [1], 0), Row("7", 0.9, None, [2], 1)))


def test_a_batch_row_without_its_entity_is_kept_without_one() -> None:
    request_body = {"instances": [{"id": "a", "x": 1}, {"x": 2}]}
    result = extract.extract(BATCH, [], request_body, {"predictions": [1, 0]})
    assert result == Extraction(rows=(Row("a", 1, None, 1, 0), Row(None, 0, None, 2, 1)))


def test_batch_pointers_are_relative_to_the_row_and_headers_shared() -> None:
    spec = CaptureSpec(
        prediction=Source(pointer="/label"),
        score=Source(pointer="/p/1"),
        entity_id=Source(header="X-Tenant"),
        batch=BatchSpec(instances="/inputs", predictions="/outputs"),
    )
    response = {"outputs": [{"label": "cat", "p": [0.1, 0.9]}, {"label": "dog", "p": [0.8, 0.2]}]}
    result = extract.extract(spec, {"x-tenant": "t1"}, {"inputs": [[1], [2]]}, response)
    assert result.rows == (Row("t1", "cat", 0.9, None, 0), Row("t1", "dog", 0.2, None, 1))


def test_an_empty_batch_has_no_rows() -> None:
    assert extract.extract(BATCH, [], {"instances": []}, {"predictions": []}) == Extraction()


@pytest.mark.parametrize(
    ("request_body", "response_body", "error", "detail"),
    [
        (
            {"instances": [{"id": "a", "x": 1}] * 3},
            {"predictions": [1, 0]},
            "batch_length_mismatch",
            "3 instances at /instances, 2 predictions at /predictions",
        ),
        (
            {},
            {"predictions": []},
            "instances_missing",
            '/instances: no key "instances" at the document root',
        ),
        (
            {"instances": {"id": "a"}},
            {"predictions": []},
            "instances_missing",
            "/instances: expected an array, got an object",
        ),
        (
            {"instances": []},
            {"predictions": None},
            "predictions_missing",
            "/predictions: expected an array, got null",
        ),
        (
            {"instances": [{"id": [], "x": 1}]},
            {"predictions": [1]},
            "entity_invalid",
            "row 0: expected a non-empty string or an integer, got an array",
        ),
    ],
)
def test_batch_failures_are_reasons_for_the_whole_exchange(
    request_body: Any, response_body: Any, error: str, detail: str
) -> None:
    assert extract.extract(BATCH, [], request_body, response_body) == Extraction(
        error=error, detail=detail
    )


def test_a_multiclass_score_is_an_object_of_class_scores() -> None:
    got = extract.extract(SPEC, [], REQUEST, {"prediction": "cat", "score": {"cat": 0.7, "dog": 0}})
    assert got.rows[0].score == {"cat": 0.7, "dog": 0.0}


COUNTRY = SegmentSpec("country", Source(header="X-Country"))
DEVICE = SegmentSpec("device", Source(pointer="/device"))
TENURE = SegmentSpec("tenure", Source(pointer="/features/tenure"), buckets=(6.0, 12.0))
SEGMENTS = (COUNTRY, DEVICE, TENURE)


def test_segments_are_read_from_headers_and_the_request_body() -> None:
    request = {**REQUEST, "device": "ios"}
    result = extract.extract(SPEC, {"x-country": " DE "}, request, RESPONSE, SEGMENTS)
    assert result == Extraction(
        rows=(
            Row(
                "u1",
                1,
                0.75,
                {"tenure": 3},
                None,
                {"country": "DE", "device": "ios", "tenure": 3},
            ),
        )
    )


def test_without_segments_rows_are_as_before() -> None:
    plain = extract.extract(SPEC, {"x-country": "DE"}, REQUEST, RESPONSE)
    assert plain == extract.extract(SPEC, {"x-country": "DE"}, REQUEST, RESPONSE, ())
    assert plain.rows[0].segments is None


@pytest.mark.parametrize(
    ("headers", "request_body", "found"),
    [
        ({}, {"features": {}}, None),  # nothing: no error, no segments
        ({"x-country": ""}, {"device": None}, None),  # an empty header, a null
        ({"x-country": "DE"}, {"features": 3}, {"country": "DE"}),  # the walk stops
        ({"x-country": "DE"}, NOT_JSON, {"country": "DE"}),  # no body to point into
        ({}, {"device": False, "features": {"tenure": 2**40}}, {"device": False, "tenure": 2**40}),
    ],
)
def test_a_segment_the_request_lacks_is_absent_never_an_error(
    headers: dict[str, str], request_body: Any, found: dict[str, Any] | None
) -> None:
    spec = CaptureSpec(prediction=Source(pointer="/prediction"))
    result = extract.extract(spec, headers, request_body, RESPONSE, SEGMENTS)
    assert result.error is None
    assert result.dropped == ()
    assert [r.segments for r in result.rows] == [found]


def test_a_value_that_cannot_be_a_segments_is_dropped_with_its_reason() -> None:
    spec = CaptureSpec(prediction=Source(pointer="/prediction"))
    request = {"device": {"os": "ios"}, "features": {"tenure": [1]}}
    result = extract.extract(spec, {"x-country": "D\x01E"}, request, RESPONSE, SEGMENTS)
    assert result.rows == (Row(None, 1),)
    assert sorted(result.dropped) == ["invalid", "not_scalar", "not_scalar"]
    request = {"device": "x" * 129, "features": {"tenure": 2**60}}
    result = extract.extract(spec, {"x-country": "DE"}, request, RESPONSE, SEGMENTS)
    assert result.rows == (Row(None, 1, segments={"country": "DE"}),)
    assert sorted(result.dropped) == ["out_of_range", "too_long"]


def test_a_batch_reads_each_rows_instance_and_shares_the_header() -> None:
    request_body = {
        "instances": [
            {"id": "a", "x": 1, "device": "ios", "features": {"tenure": 7}},
            {"id": "b", "x": 2},
            {"id": "c", "x": 3, "device": ["web"]},
        ]
    }
    result = extract.extract(
        BATCH, [(b"X-Country", b"FR")], request_body, {"predictions": [1, 0, 1]}, SEGMENTS
    )
    assert [r.segments for r in result.rows] == [
        {"country": "FR", "device": "ios", "tenure": 7},
        {"country": "FR"},
        {"country": "FR"},
    ]
    assert result.dropped == ("not_scalar",)


def test_a_failed_extraction_reads_no_segments() -> None:
    result = extract.extract(SPEC, {"x-country": "DE"}, REQUEST, {"score": 0.5}, SEGMENTS)
    assert (result.error, result.rows, result.dropped) == ("prediction_missing", (), ())


# -- protocols' rows ---------------------------------------------------------------------------


V2 = CaptureSpec(
    prediction=Source(pointer="/predict"),
    score=Source(pointer="/predict_proba"),
    features=Source(pointer=""),
    entity_id=Source(pointer="/parameters/entity_ids", per_row=True),
    protocol="open-inference-v2",
)
V2_REQUEST = {
    "parameters": {"entity_ids": ["c-1", 2]},
    "inputs": [
        {"name": "predict", "shape": [2, 2], "datatype": "FP64", "data": [[1.5, 3], [0.5, 9]]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
    ],
}
V2_RESPONSE = {
    "outputs": [
        {"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [1, 0]},
        {
            "name": "predict_proba",
            "shape": [2, 2],
            "datatype": "FP64",
            "data": [0.2, 0.8, 0.7, 0.3],
        },
    ]
}


def test_a_v2_batch_gives_a_record_per_row_with_flat_features_and_class_scores() -> None:
    segment = SegmentSpec("plan", Source(pointer="/plan"))
    result = extract.extract(V2, [], V2_REQUEST, V2_RESPONSE, [segment])
    assert result == Extraction(
        rows=(
            Row(
                "c-1",
                1,
                {"0": 0.2, "1": 0.8},
                {"predict.0": 1.5, "predict.1": 3, "plan": "basic"},
                0,
                {"plan": "basic"},
            ),
            Row(
                "2",
                0,
                {"0": 0.7, "1": 0.3},
                {"predict.0": 0.5, "predict.1": 9, "plan": "pro"},
                1,
                {"plan": "pro"},
            ),
        )
    )


def test_a_binary_score_points_into_the_row_s_probabilities() -> None:
    spec = CaptureSpec(
        Source(pointer="/predict"),
        score=Source(pointer="/predict_proba/1"),
        protocol="open-inference-v2",
    )
    assert [row.score for row in extract.extract(spec, [], V2_REQUEST, V2_RESPONSE).rows] == [
        0.8,
        0.3,
    ]


def test_a_custom_score_array_stays_invalid() -> None:
    spec = CaptureSpec(Source(pointer="/p"), score=Source(pointer="/s"))
    assert extract.extract(spec, [], {}, {"p": 1, "s": [0.2, 0.8]}).error == "score_invalid"


def test_a_v2_prediction_missing_lists_the_outputs() -> None:
    spec = CaptureSpec(Source(pointer="/predict"), protocol="open-inference-v2")
    response = {"outputs": [{"name": "output-0", "shape": [1], "datatype": "INT32", "data": [1]}]}
    request = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [2]}]}
    assert extract.extract(spec, [], request, response) == Extraction(
        error="prediction_missing",
        detail='row 0: /predict: no key "predict" at the document root; the outputs are: output-0',
    )


@pytest.mark.parametrize(
    ("entity", "headers", "expected"),
    [
        (Source(header="X-Entity-IDs", per_row=True), {"x-entity-ids": "a, b"}, ["a", "b"]),
        (Source(header="X-Entity-IDs", per_row=True), {}, [None, None]),
        (Source(pointer="/ids", per_row=True), {}, [None, None]),
        (Source(pointer="/parameters/entity_ids", per_row=True), {}, ["c-1", "2"]),
        (Source(pointer="/parameters/none", per_row=True), {}, [None, None]),
        (Source(pointer="/parameters/listed", per_row=True), {}, ["c-1", "c-2"]),
        (Source(header="X-Tenant"), {"x-tenant": "t"}, ["t", "t"]),
        (Source(pointer="/plan"), {}, ["basic", "pro"]),
    ],
)
def test_a_row_s_entity_is_in_the_row_or_one_of_a_list_per_row(
    entity: Source, headers: dict[str, str], expected: list[str | None]
) -> None:
    spec = CaptureSpec(Source(pointer="/predict"), entity_id=entity, protocol="open-inference-v2")
    parameters = {"entity_ids": ["c-1", 2], "none": None, "listed": "c-1, c-2"}
    request = {**V2_REQUEST, "parameters": parameters}
    rows = extract.extract(spec, headers, request, V2_RESPONSE).rows
    assert [row.entity_id for row in rows] == expected


@pytest.mark.parametrize(
    ("entity", "headers", "error", "detail"),
    [
        (
            Source(header="X-Ids", per_row=True),
            {"x-ids": "a,b,c"},
            "batch_length_mismatch",
            "3 entity IDs in the X-Ids header, 2 rows",
        ),
        (
            Source(header="X-Ids", per_row=True),
            {"x-ids": "a,"},
            "entity_invalid",
            "row 1: the entity ID is an empty string",
        ),
        (
            Source(pointer="/parameters/entity_ids", per_row=True),
            {},
            "batch_length_mismatch",
            "1 entity IDs at /parameters/entity_ids, 2 rows",
        ),
        (
            Source(pointer="/parameters", per_row=True),
            {},
            "entity_invalid",
            "/parameters: expected an array or a comma-separated string of entity IDs, one per "
            "row, got an object",
        ),
        (
            Source(pointer="/parameters/0", per_row=True),
            {},
            "entity_invalid",
            "row 0: expected a non-empty string or an integer, got an object",
        ),
    ],
)
def test_a_list_of_entities_per_row_must_fit_the_rows(
    entity: Source, headers: dict[str, str], error: str, detail: str
) -> None:
    spec = CaptureSpec(Source(pointer="/predict"), entity_id=entity, protocol="open-inference-v2")
    request = {**V2_REQUEST, "parameters": {"entity_ids": ["c-1"], "0": [{}, {}]}}
    assert extract.extract(spec, headers, request, V2_RESPONSE) == Extraction(
        error=error, detail=detail
    )


def test_an_entity_per_row_of_a_custom_batch() -> None:
    spec = CaptureSpec(
        Source(pointer=""),
        entity_id=Source(header="X-Ids", per_row=True),
        batch=BatchSpec("/instances", "/predictions"),
    )
    result = extract.extract(
        spec, {"X-Ids": "u1,u2"}, {"instances": [1, 2]}, {"predictions": [0, 1]}
    )
    assert [(row.entity_id, row.prediction) for row in result.rows] == [("u1", 0), ("u2", 1)]


def test_a_preset_s_request_and_response_must_have_as_many_rows() -> None:
    spec = CaptureSpec(Source(pointer=""), protocol="kserve-v1")
    assert extract.extract(spec, [], {"instances": [1, 2]}, {"predictions": [0]}) == Extraction(
        error="batch_length_mismatch", detail="2 rows in the request, 1 in the response"
    )
    assert extract.extract(spec, [], {"instances": [1]}, NOT_JSON) == Extraction(
        error="not_json", detail="the response body is not JSON"
    )
    assert extract.extract(spec, [], {"instance": [1]}, {"predictions": [0]}).error == (
        "instances_missing"
    )


def test_torchserve_reads_one_record_from_the_whole_bodies() -> None:
    spec = CaptureSpec(
        Source(pointer=""), entity_id=Source(header="X-Entity-ID"), protocol="torchserve"
    )
    result = extract.extract(spec, {"x-entity-id": "e"}, NOT_JSON, "tabby")
    assert result == Extraction(rows=(Row("e", "tabby"),))


def test_a_preset_s_prediction_that_is_not_a_value_is_invalid() -> None:
    """TF Serving answers a list per row for a model of one output: the preset's default, the
    whole row, is no prediction the service takes; the detail says where to point."""
    spec = CaptureSpec(Source(pointer=""), protocol="tfserving")
    assert extract.extract(spec, [], {"instances": [[1.0]]}, {"predictions": [[0.93]]}) == (
        Extraction(
            error="prediction_invalid",
            detail="row 0: expected a string, number or boolean, got an array at (the row): "
            "point capture.prediction into it",
        )
    )
    pointed = CaptureSpec(Source(pointer="/0"), protocol="tfserving")
    assert extract.extract(pointed, [], {"instances": [[1.0]]}, {"predictions": [[0.93]]}).rows == (
        Row(None, 0.93, index=0),
    )
    custom = CaptureSpec(Source(pointer="/p"))
    assert extract.extract(custom, [], {}, {"p": [1]}).rows == (Row(None, [1]),)
