"""The Open Inference Protocol's REST inference response, checked as its specification writes it.

From the protocol's `inference_rest.md`: `$inference_response = {model_name: $string,
model_version: $string #optional, id: $string (the request's, if any), parameters: $parameters
#optional, outputs: [$response_output, ...]}`; `$response_output = {name, shape: [$number, ...]
(each an unsigned 64-bit integer), datatype (the Tensor Data Types table), parameters #optional,
data: $tensor_data}`; `$parameters` maps names to a string, number or boolean; tensor data is
row-major, nested or flat, "without any stride or padding", so it holds exactly prod(shape)
elements of the datatype's JSON kind. `problems` lists what a body breaks, empty when none.
"""

from __future__ import annotations

import math
from typing import Any

UNSIGNED = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}
SIGNED = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64}
FLOATS = frozenset({"FP16", "FP32", "FP64"})
DATATYPES = frozenset({"BOOL", "BYTES", *UNSIGNED, *SIGNED, *FLOATS})


def problems(response: Any) -> list[str]:
    """What `response` (decoded JSON) breaks of `$inference_response`."""
    if not isinstance(response, dict):
        return ["the response is not an object"]
    found: list[str] = []
    if not isinstance(response.get("model_name"), str):
        found.append("model_name: a string is required")
    for optional in ("model_version", "id"):
        if optional in response and not isinstance(response[optional], str):
            found.append(f"{optional}: not a string")
    if "parameters" in response:
        found += _parameters(response["parameters"], "parameters")
    outputs = response.get("outputs")
    if not isinstance(outputs, list):
        return [*found, "outputs: an array is required"]
    for index, output in enumerate(outputs):
        found += _output(output, f"outputs[{index}]")
    return found


def _parameters(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    return [
        f"{where}.{name}: not a string, number or boolean"
        for name, item in value.items()
        if not isinstance(item, str | int | float)
    ]


def _output(output: Any, where: str) -> list[str]:
    if not isinstance(output, dict):
        return [f"{where}: not an object"]
    found = []
    if not isinstance(output.get("name"), str):
        found.append(f"{where}.name: a string is required")
    shape = output.get("shape")
    if not isinstance(shape, list) or not all(_unsigned(d, 64) for d in shape):
        found.append(f"{where}.shape: an array of unsigned 64-bit integers is required")
        shape = None
    datatype = output.get("datatype")
    if datatype not in DATATYPES:
        found.append(f"{where}.datatype: {datatype!r} is not a tensor data type")
    if "parameters" in output:
        found += _parameters(output["parameters"], f"{where}.parameters")
    data = output.get("data")
    if not isinstance(data, list):
        return [*found, f"{where}.data: an array is required"]
    elements: list[Any] = []
    _flatten(data, elements)
    if shape is not None and len(elements) != math.prod(shape):
        found.append(f"{where}.data: {len(elements)} elements for shape {shape}")
    if datatype in DATATYPES:
        wrong = [e for e in elements if not _of(datatype, e)]
        if wrong:
            found.append(f"{where}.data: {wrong[0]!r} is not a {datatype} element")
    return found


def _flatten(data: list[Any], into: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, into)
        else:
            into.append(item)


def _unsigned(value: Any, bits: int) -> bool:
    return type(value) is int and 0 <= value < 2**bits


def _of(datatype: str, element: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(element, bool)
    if datatype == "BYTES":
        return isinstance(element, str)
    if datatype in UNSIGNED:
        return _unsigned(element, UNSIGNED[datatype])
    if datatype in SIGNED:
        bits = SIGNED[datatype]
        return type(element) is int and -(2 ** (bits - 1)) <= element < 2 ** (bits - 1)
    return isinstance(element, int | float) and not isinstance(element, bool)
