"""The Open Inference Protocol's binary tensor data extension, read back into JSON tensors.

Triton's and KServe's Python clients send a tensor's values as raw bytes unless told otherwise
(tritonclient's `binary_data=True`, KServe's `InferInput.set_data_from_numpy`): the body is the
JSON inference request (or response) in its first `Inference-Header-Content-Length` bytes, then
each binary tensor's bytes in the order of `inputs` (`outputs`), as many as the tensor's
`binary_data_size` parameter says. `decode` gives each such tensor its values as `data`, so that
the protocol reads the rows as from a JSON body: numbers little-endian, BOOL a byte each, a BYTES
element a 4-byte little-endian length and that many bytes (read as UTF-8). A body whose parts do
not add up is None, as a body that is not JSON.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import msgspec

from truthloop.core import extract

_NUMBERS = {
    "BOOL": "?",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
"""Each datatype's struct format character (little-endian, with `<`)."""
_LENGTH = struct.Struct("<I")
HEADER = b"inference-header-content-length"
_DECODER = msgspec.json.Decoder()


def decode(body: bytes | None, headers: Iterable[tuple[bytes, bytes]]) -> Any:
    """The JSON value of a body (decoded JSON, or extract.NOT_JSON), its binary tensors read in
    when its `headers` (raw fields, as the proxy keeps them) announce the extension."""
    length = next((v for k, v in headers if len(k) == len(HEADER) and k.lower() == HEADER), None)
    if body is None or length is None:
        return extract.decode(body)
    read_in = read(body, int(length)) if length.strip().isdigit() else None
    return extract.NOT_JSON if read_in is None else read_in


def read(body: bytes, json_length: int) -> Any:
    """The JSON part of `body` with every binary tensor's values as its `data`; None when the
    JSON part is not an object or the binary parts do not add up to the rest of the body."""
    if not 0 < json_length <= len(body):
        return None
    try:
        head = _DECODER.decode(body[:json_length])
    except (msgspec.DecodeError, RecursionError):  # RecursionError: nested too deep to decode
        return None
    if not isinstance(head, dict):
        return None
    tensors = head.get("inputs" if "inputs" in head else "outputs")
    offset = json_length
    for tensor in tensors if isinstance(tensors, list) else ():
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if type(size) is not int or not 0 <= size <= len(body) - offset:
            return None
        values = _values(tensor.get("datatype"), body[offset : offset + size])
        if values is None:
            return None
        tensor["data"] = values
        offset += size
    return head if offset == len(body) else None


def _values(datatype: Any, raw: bytes) -> list[Any] | None:
    """A binary tensor's values, read with struct: the sidecar reads bodies with this module and
    never loads numpy (12 MiB)."""
    if datatype == "BYTES":
        return _strings(raw)
    code = _NUMBERS.get(datatype) if isinstance(datatype, str) else None
    if code is None or len(raw) % struct.calcsize(code):
        return None
    if code == "?" and raw.translate(None, b"\x00\x01"):
        return None
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))


def _strings(raw: bytes) -> list[Any] | None:
    out, offset = [], 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            return None
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if length > len(raw) - offset:
            return None
        out.append(raw[offset : offset + length].decode("utf-8", "replace"))
        offset += length
    return out
