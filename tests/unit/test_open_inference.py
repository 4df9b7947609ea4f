"""The Open Inference Protocol response check the fallback's v2 answers are held to finds what the
protocol's specification forbids (and a response like its own example passes)."""

from __future__ import annotations

from tests.support import open_inference


def test_the_specification_s_example_passes() -> None:
    example = {
        "id": "42",
        "model_name": "mymodel",
        "outputs": [
            {
                "name": "output0",
                "shape": [3, 2],
                "datatype": "FP32",
                "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1],
            }
        ],
    }
    assert open_inference.problems(example) == []


def test_the_inference_response_check_finds_what_the_specification_forbids() -> None:
    good = {"name": "p", "shape": [2, 1], "datatype": "UINT8", "data": [[1], [255]]}
    assert open_inference.problems({"model_name": "m", "outputs": [good]}) == []
    assert open_inference.problems({"outputs": [good], "id": 4, "parameters": {"a": []}}) == [
        "model_name: a string is required",
        "id: not a string",
        "parameters.a: not a string, number or boolean",
    ]
    bad = [
        {**good, "shape": [3, 1]},
        {**good, "data": [1, 256]},
        {**good, "datatype": "FP128"},
        {**good, "shape": [-1, 2]},
        {**good, "data": None},
    ]
    assert open_inference.problems({"model_name": "m", "outputs": bad}) == [
        "outputs[0].data: 2 elements for shape [3, 1]",
        "outputs[1].data: 256 is not a UINT8 element",
        "outputs[2].datatype: 'FP128' is not a tensor data type",
        "outputs[3].shape: an array of unsigned 64-bit integers is required",
        "outputs[4].data: an array is required",
    ]
