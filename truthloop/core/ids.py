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
    """
    if len(rand) < RANDOM_BYTES:
        raise ValueError(f"rand: need {RANDOM_BYTES} bytes, got {len(rand)}")
    return time_part(unix_ms) + random_parts(rand[:RANDOM_BYTES])[0]


def time_part(unix_ms: int) -> str:
    """The first 13 characters of every UUIDv7 of `unix_ms` (`xxxxxxxx-xxxx`)."""
    h = f"{unix_ms & _TIME_MASK:012x}"
    return f"{h[:8]}-{h[8:]}"


def random_parts(rand: bytes) -> list[str]:
    """The rest of a UUIDv7 (`-7xxx-yxxx-xxxxxxxxxxxx`) for each `RANDOM_BYTES` of `rand`.

    The ID is split in two so that a source of many IDs formats the random parts of a whole
    block at once and the time part once per millisecond. From the hex digits of each share of
    `rand`: rand_a is the first three (12 bits), rand_b the last 62 bits — digit 4 keeps its low
    two bits under the variant, digit 3 is not used.
    """
    h = rand.hex()
    step = 2 * RANDOM_BYTES
    return [
        f"-7{h[i : i + 3]}-{_VARIANT[h[i + 4]]}{h[i + 5 : i + 8]}-{h[i + 8 : i + step]}"
        for i in range(0, len(h) - step + 1, step)
    ]
