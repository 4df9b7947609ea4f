"""UUIDv7 prediction IDs: RFC 9562 layout, time-ordered, pure (same inputs, same ID); and the
sidecar's source of them."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core.ids import RANDOM_BYTES, uuid7
from truthloop.sidecar.ids import BLOCK, PredictionIds

MS = st.integers(min_value=0, max_value=2**48 - 1)
RAND = st.binary(min_size=RANDOM_BYTES, max_size=RANDOM_BYTES)


@settings(max_examples=200, deadline=None)
@given(MS, RAND)
def test_layout_is_rfc_9562_version_7(unix_ms: int, rand: bytes) -> None:
    value = uuid.UUID(uuid7(unix_ms, rand))

    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == unix_ms
    assert str(value) == uuid7(unix_ms, rand)


@settings(max_examples=200, deadline=None)
@given(MS, MS, RAND, RAND)
def test_ids_sort_by_their_millisecond(a: int, b: int, ra: bytes, rb: bytes) -> None:
    if a == b:
        assert uuid7(a, ra)[:13] == uuid7(b, rb)[:13]  # one millisecond: randomness orders them
    else:
        assert (uuid7(a, ra) < uuid7(b, rb)) == (a < b)


UNUSED_BITS = {
    # (byte, bit) of `rand` that no ID shows: hex digit 3 (the low nibble of byte 1) and the top
    # two bits of digit 4 (byte 2), which the version and variant fields take.
    *((1, bit) for bit in range(4)),
    (2, 7),
    (2, 6),
}


@pytest.mark.parametrize("byte", range(RANDOM_BYTES))
@pytest.mark.parametrize("bit", range(8))
def test_each_of_the_74_random_bits_used_changes_the_id(byte: int, bit: int) -> None:
    zero = bytes(RANDOM_BYTES)
    flipped = bytearray(zero)
    flipped[byte] = 1 << bit
    changed = uuid7(0, bytes(flipped)) != uuid7(0, zero)
    assert changed == ((byte, bit) not in UNUSED_BITS)


def test_known_values() -> None:
    # 48 bits of time, version 7, the top 12 random bits, variant 0b10, the low 62 random bits.
    assert uuid7(0x017F22E279B0, bytes(range(10))) == "017f22e2-79b0-7000-8203-040506070809"
    assert uuid7(0x017F22E279B0, b"\xff" * 10) == "017f22e2-79b0-7fff-bfff-ffffffffffff"


def test_too_few_random_bytes_is_an_error() -> None:
    with pytest.raises(ValueError, match="rand: need 10 bytes"):
        uuid7(0, b"short")


def test_the_sidecars_source_gives_distinct_current_v7_ids() -> None:
    new_id = PredictionIds()
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(3 * BLOCK + 1)]  # across several draws of random bytes
    after = time.time_ns() // 1_000_000

    assert len(set(ids)) == len(ids)
    for value in map(uuid.UUID, ids):
        assert value.version == 7
        assert before <= value.int >> 80 <= after
