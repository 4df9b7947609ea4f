"""Byte sizes written as Kubernetes quantities (`32Mi`, `1Gi`, `500k`, or plain bytes).

Flags and pod specs use the same notation, so the sidecar's bounds and the operator's emptyDir
`sizeLimit` are read by one parser.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kMGT]i?|Ki)?\s*$")


def parse_bytes(text: str) -> int:
    """`32Mi` → 33554432; Kubernetes quantity suffixes (k M G T, Ki Mi Gi Ti) or plain bytes.

    Raises ValueError for anything else.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError("expected a size like 32Mi, 1Gi, 500k or a number of bytes")
    return int(float(match[1]) * _UNITS[match[2] or ""])
