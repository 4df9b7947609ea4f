"""UUIDv7 (RFC 9562): time-ordered identifiers for predictions.

`uuid7(unix_ms, rand)` is pure — the caller supplies the clock and the randomness — so the same
inputs always give the same ID and tests need no clock. IDs sort by creation time to the
millisecond, which keeps the feedback store's index on `prediction_id` append-mostly.
"""

from __future__ import annotations

RANDOM_BYTES = 10
"""How many random bytes `uuid7` takes: 74 of their 80 bits are used (rand_a 12, rand_b 62)."""

_TIME_MASK = (1 << 48) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def uuid7(unix_ms: int, rand: bytes) -> str:
    """The canonical 8-4-4-4-12 hex form of the UUIDv7 for `unix_ms` and `rand`.

    `unix_ms` is milliseconds since the Unix epoch (taken modulo 2**48); `rand` must be at least
    `RANDOM_BYTES` long, or ValueError.
    """
    if len(rand) < RANDOM_BYTES:
        raise ValueError(f"rand: need {RANDOM_BYTES} bytes, got {len(rand)}")
    bits = int.from_bytes(rand[:RANDOM_BYTES])
    rand_a = (bits >> 68) & 0xFFF
    rand_b = bits & ((1 << 62) - 1)
    value = ((unix_ms & _TIME_MASK) << 80) | _VERSION | (rand_a << 64) | _VARIANT | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
