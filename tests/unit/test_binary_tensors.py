"""The Open Inference Protocol's binary tensor data extension read back into JSON tensors, as
Triton's and KServe's Python clients send it by default."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from truthloop.core import binary_tensors, extract


def body(head: dict[str, Any], *parts: bytes) -> tuple[bytes, int]:
    """The JSON `head` with `parts` after it, and the JSON's length (the header's value)."""
    text = json.dumps(head).encode()
    return text + b"".join(parts), len(text)


def tensor(name: str, shape: list[int], datatype: str, raw: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }


def strings(*texts: str) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def test_each_binary_input_gets_its_values_in_order_beside_a_json_one() -> None:
    x = np.array([[0.5, -1.25], [2.0, 3.5]], dtype="<f8")
    flags = np.array([True, False], dtype="?")
    ids = np.array([7, -9], dtype="<i8")
    inputs = [
        tensor("x", [2, 2], "FP64", x.tobytes()),
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
        tensor("flag", [2], "BOOL", flags.tobytes()),
        tensor("id", [2], "INT64", ids.tobytes()),
        tensor("who", [2], "BYTES", strings("ana", "zoë")),
    ]
    raw, length = body(
        {"id": "r1", "inputs": inputs},
        x.tobytes(),
        flags.tobytes(),
        ids.tobytes(),
        strings("ana", "zoë"),
    )
    read = binary_tensors.read(raw, length)
    assert [t.get("data") for t in read["inputs"]] == [
        [0.5, -1.25, 2.0, 3.5],
        ["basic", "pro"],
        [True, False],
        [7, -9],
        ["ana", "zoë"],
    ]
    assert read["id"] == "r1"


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("FP16", "<f2"), ("FP32", "<f4"), ("INT8", "<i1"), ("UINT16", "<u2"), ("UINT64", "<u8")],
)
def test_every_number_type_is_read_little_endian(datatype: str, dtype: str) -> None:
    values = np.array([1, 2, 3], dtype=dtype)
    raw, length = body(
        {"outputs": [tensor("y", [3], datatype, values.tobytes())]}, values.tobytes()
    )
    assert binary_tensors.read(raw, length)["outputs"][0]["data"] == [1, 2, 3]


def test_a_json_body_without_binary_tensors_is_read_as_it_is() -> None:
    head = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.5]}]}
    raw, length = body(head)
    assert binary_tensors.read(raw, length) == head


ONE = np.array([1.0], dtype="<f8").tobytes()


@pytest.mark.parametrize(
    ("raw", "length"),
    [
        body({"inputs": [tensor("x", [1], "FP64", ONE)]}, ONE[:4]),  # short
        body({"inputs": [tensor("x", [1], "FP64", ONE)]}, ONE, b"\x00"),  # left over
        body({"inputs": [tensor("x", [1], "FP32", ONE[:3])]}, ONE[:3]),  # not whole numbers
        body({"inputs": [tensor("x", [1], "BOOL", b"\x02")]}, b"\x02"),
        body({"inputs": [tensor("x", [1], "BYTES", b"\x09\x00\x00\x00ab")]}, b"\x09\x00\x00\x00ab"),
        body({"inputs": [tensor("x", [1], "COMPLEX", ONE)]}, ONE),
        body({"inputs": [{"name": "x", "parameters": {"binary_data_size": -1}}]}),
        (b'["not", "an", "object"]', 23),
        (b"{not json", 9),
        (b"{}", 3),
        (b"{}", 0),
    ],
)
def test_a_body_whose_parts_do_not_add_up_is_none(raw: bytes, length: int) -> None:
    assert binary_tensors.read(raw, length) is None


def test_a_body_is_read_so_only_when_its_headers_announce_the_extension() -> None:
    ones = np.array([1.0, 2.0], dtype="<f8").tobytes()
    raw, length = body({"inputs": [tensor("x", [2], "FP64", ones)]}, ones)
    announced = [(b"Inference-Header-Content-Length", str(length).encode())]
    assert binary_tensors.decode(raw, announced)["inputs"][0]["data"] == [1.0, 2.0]
    assert binary_tensors.decode(raw, []) is extract.NOT_JSON
    assert binary_tensors.decode(b'{"a": 1}', []) == {"a": 1}
    assert (
        binary_tensors.decode(raw, [(b"inference-header-content-length", b"x")]) is extract.NOT_JSON
    )
    assert binary_tensors.decode(None, announced) is extract.NOT_JSON


def test_a_json_part_nested_too_deep_to_decode_is_not_json() -> None:
    head = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert binary_tensors.read(head, len(head)) is None
