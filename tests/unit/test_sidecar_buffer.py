"""The capture queue: records appended to NDJSON batch bodies as they come, cut by count or size,
bounded in bytes, and a wake that makes waiters look elsewhere."""

from __future__ import annotations

import asyncio

from truthloop.sidecar.buffer import RecordBuffer


def rec(i: int, size: int = 10) -> bytes:
    return f"{i:0{size}d}".encode()


def buffer(
    max_bytes: int = 10_000, batch_bytes: int = 1000, batch_records: int = 5
) -> RecordBuffer:
    return RecordBuffer(max_bytes, batch_bytes=batch_bytes, batch_records=batch_records)


def test_a_batch_is_the_ndjson_body_of_its_records_in_order() -> None:
    b = buffer()
    for i in range(3):
        assert b.put(rec(i))
    assert (len(b), b.bytes) == (3, 33)
    body, count = b.take() or (b"", 0)
    assert bytes(body) == b"0000000000\n0000000001\n0000000002\n"
    assert count == 3
    assert (len(b), b.bytes) == (0, 0)
    assert b.take() is None


def test_batches_are_cut_at_batch_records_and_before_passing_batch_bytes() -> None:
    b = buffer(batch_bytes=30, batch_records=5)
    for i in range(4):  # 11 bytes each: two fit in 30 bytes, a third would not
        b.put(rec(i))
    by_records = buffer(batch_bytes=1000, batch_records=2)
    for i in range(5):
        by_records.put(rec(i))
    for queue, counts in ((b, [2, 2]), (by_records, [2, 2, 1])):
        taken = []
        while (batch := queue.take()) is not None:
            taken.append(batch[1])
        assert taken == counts


def test_batches_cut_while_nobody_took_them_are_taken_together_within_the_post_bounds() -> None:
    by_bytes = RecordBuffer(
        10_000, batch_bytes=30, batch_records=5, post_bytes=70, post_records=100
    )
    by_records = RecordBuffer(10_000, batch_bytes=1000, batch_records=2, post_records=5)
    for i in range(9):
        by_bytes.put(rec(i))  # cut two by two (22 bytes): three cut batches fit in 70
        by_records.put(rec(i))  # cut two by two: two cut batches fit in 5 records
    taken = [(bytes(body), count) for body, count in iter(by_bytes.take, None)]
    assert [count for _, count in taken] == [6, 2, 1]  # the batch still filling is its own
    assert b"".join(body for body, _ in taken) == b"".join(rec(i) + b"\n" for i in range(9))
    assert [count for _, count in iter(by_records.take, None)] == [4, 4, 1]
    assert (len(by_bytes), by_bytes.bytes, len(by_records), by_records.bytes) == (0, 0, 0, 0)


def test_a_record_larger_than_a_batch_ships_alone() -> None:
    b = buffer(batch_bytes=30)
    b.put(rec(1))
    b.put(rec(2, size=50))
    b.put(rec(3))
    assert [(len(body), count) for body, count in iter(b.take, None)] == [(11, 1), (51, 1), (11, 1)]


def test_the_bound_counts_every_byte_with_its_newline_and_refuses_what_does_not_fit() -> None:
    b = buffer(max_bytes=33)
    assert all(b.put(rec(i)) for i in range(3))
    assert not b.put(b"")  # even an empty record takes its newline
    assert b.bytes == 33
    b.take()
    assert b.put(rec(4))


def test_the_high_water_mark_sets_spill_and_close_refuses_records() -> None:
    b = buffer(max_bytes=44)
    b.put(rec(0))
    assert not b.spill.is_set()
    b.put(rec(1))
    assert b.spill.is_set()  # 22 of 44 bytes
    b.close()
    assert not b.put(rec(2))
    assert len(b) == 2


async def test_batch_lingers_for_a_batch_to_be_cut_then_takes_what_gathered() -> None:
    b = buffer(batch_records=3)
    waiter = asyncio.create_task(b.batch(linger=60.0))
    await asyncio.sleep(0)
    b.put(rec(0))
    await asyncio.sleep(0)
    assert not waiter.done()  # lingering: the batch is not cut yet
    b.put(rec(1))
    b.put(rec(2))
    batch = await waiter
    assert batch is not None
    assert batch[1] == 3
    b.put(rec(3))
    batch = await b.batch(linger=0.0)
    assert batch is not None
    assert batch[1] == 1


async def test_wake_makes_every_waiter_return_none_and_takes_nothing() -> None:
    b = buffer(batch_records=3)
    b.put(rec(0))
    waiters = [asyncio.create_task(b.batch(linger=60.0)) for _ in range(2)]
    idle = buffer()
    idle_waiter = asyncio.create_task(idle.batch(linger=60.0))
    await asyncio.sleep(0)
    b.wake()
    idle.wake()
    assert await asyncio.gather(*waiters, idle_waiter) == [None, None, None]
    assert len(b) == 1
    # The wake is spent: a later wait waits again.
    later = asyncio.create_task(idle.batch(linger=60.0))
    await asyncio.sleep(0)
    assert not later.done()
    idle.put(rec(1))
    idle.close()
    batch = await later
    assert batch is not None
    assert batch[1] == 1


def test_a_queue_smaller_than_two_batches_cuts_them_at_its_high_water_mark() -> None:
    """Else a batch would never be cut before the queue spills or refuses records: both the
    sender and the spiller would wait out the linger while records are refused."""
    b = buffer(max_bytes=44, batch_bytes=1000, batch_records=100)
    for i in range(4):
        assert b.put(rec(i))
    assert [count for _, count in iter(b.take, None)] == [2, 2]
