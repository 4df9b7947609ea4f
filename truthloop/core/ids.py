"""UUIDv7 (RFC 9562): time-ordered identifiers for predictions.

`uuid7(unix_ms, rand)` is pure — the caller supplies the clock and the randomness — so the same
inputs always give the same ID and tests need no clock. IDs sort by creation time to the
millisecond, which keeps the feedback store's index on `prediction_id` append-mostly.
"""

from __future__ import annotations

RANDOM_BYTES = 10
"""How many random bytes `uuid7` takes: 74 of their 80 bits are used (rand_a 12, rand_b 62)."""

_TIME_MASK = (1 << 48) - 1
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
"""Hex digit 16 with the variant bits (0b10) over the two random bits left of it."""


def uuid7(unix_ms: int, rand: bytes) -> str:
    """The canonical 8-4-4-4-12 hex form of the UUIDv7 for `unix_ms` and `rand`.

    `unix_ms` is milliseconds since the Unix epoch (taken modulo 2**48); `rand` must be at least
    `RANDOM_BYTES` long, or ValueError.

    Built from the hex digits of the time and of `rand` (it runs once per proxied request): digit
    12 becomes the version, digit 16 takes the variant, and the rest are kept — rand_a is the
    first 12 random bits, rand_b the last 62.
    """
    if len(rand) < RANDOM_BYTES:
        raise ValueError(f"rand: need {RANDOM_BYTES} bytes, got {len(rand)}")
    h = f"{unix_ms & _TIME_MASK:012x}{rand[:RANDOM_BYTES].hex()}"
    return f"{h[:8]}-{h[8:12]}-7{h[12:15]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
