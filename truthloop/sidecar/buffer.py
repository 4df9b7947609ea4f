"""The in-memory capture queue: encoded records waiting to ship, bounded in bytes.

Records are encoded before they are queued, so the bound is exact and memory cannot grow past it
whatever the records hold. Each is appended, with the newline that ends it, to the NDJSON body of
the batch it will ship in, so a batch is ready to send the moment it is cut: no loop over its
records, no join, on the turn of the event loop that ships it. `put` is called on the request
path (from `Tap.observe`): it is O(1), never awaits and never raises; a record that does not fit
is refused and the caller counts it. A batch is cut when it holds `batch_records` records or the
next record would take it past `batch_bytes` or the high-water mark (a record larger than that
ships alone); consumers wait at most `linger` seconds for a batch to be cut once a first record
is there, then take what has gathered. Batches cut while the consumer was away (a POST in flight)
are taken together, up to `post_bytes` and `post_records`: a steady stream ships in small
batches, and a backlog (a model answering batches of rows) in few large ones, without holding a
large batch open in quiet times.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class RecordBuffer:
    """A FIFO of NDJSON batch bodies with a byte bound and a high-water mark.

    `spill` is set when the queued bytes reach the high-water mark: whoever spills to disk waits
    on it (the shipper also sets it itself while the feedback service is away).
    """

    __slots__ = (
        "_count",
        "_cut",
        "_full",
        "_nonempty",
        "_open",
        "_wakes",
        "batch_bytes",
        "batch_records",
        "bytes",
        "closed",
        "high_water",
        "max_bytes",
        "post_bytes",
        "post_records",
        "records",
        "spill",
    )

    def __init__(
        self,
        max_bytes: int,
        *,
        batch_bytes: int,
        batch_records: int,
        high_water: float = 0.5,
        post_bytes: int = 0,
        post_records: int = 0,
    ) -> None:
        self.max_bytes = max_bytes
        self.high_water = int(max_bytes * high_water)
        self.batch_bytes = max(1, min(batch_bytes, self.high_water))
        """A batch is cut by the high-water mark at the latest: one that is not cut would wait
        out its linger while the queue spills nothing and refuses records."""
        self.batch_records = batch_records
        self.post_bytes = max(post_bytes, self.batch_bytes)
        self.post_records = max(post_records, batch_records)
        """What one `take` may join of the batches already cut (at least one batch's worth)."""
        self.bytes = 0
        self.records = 0
        self.closed = False
        self._open = bytearray()
        """The batch records are appended to, `_count` of them."""
        self._count = 0
        self._cut: collections.deque[tuple[bytearray, int]] = collections.deque()
        """Batches cut, oldest first, with their record counts."""
        self._wakes = 0
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        """Set while a batch is cut."""
        self.spill = asyncio.Event()

    def __len__(self) -> int:
        return self.records

    def put(self, record: bytes) -> bool:
        """Queue one encoded record; False when closed or when it does not fit."""
        size = len(record) + 1  # the newline that ends it in an NDJSON batch
        if self.closed or self.bytes + size > self.max_bytes:
            return False
        if self._count and len(self._open) + size > self.batch_bytes:
            self._cut_open()
        body = self._open
        body += record
        body.append(0x0A)
        self._count += 1
        self.records += 1
        self.bytes += size
        self._nonempty.set()
        if self._count >= self.batch_records or len(body) >= self.batch_bytes:
            self._cut_open()
        if self.bytes >= self.high_water:
            self.spill.set()
        return True

    def take(self) -> tuple[bytearray, int] | None:
        """The oldest batch's body and record count, joined by the batches cut after it while
        they fit `post_bytes` and `post_records`, cutting the one still filling if none is cut;
        None when empty. Never waits."""
        if not self._cut:
            if not self._count:
                return None
            self._cut_open()
        cut = self._cut
        body, count = cut.popleft()
        while cut and (
            len(body) + len(cut[0][0]) <= self.post_bytes and count + cut[0][1] <= self.post_records
        ):
            more, records = cut.popleft()
            body += more
            count += records
        self.bytes -= len(body)
        self.records -= count
        if not self.records:
            self._nonempty.clear()
        if not self._cut:
            self._full.clear()
        return body, count

    async def batch(self, linger: float) -> tuple[bytearray, int] | None:
        """The next batch: waits for a first record, then up to `linger` s for a batch to be cut.

        Returns at once, possibly None, once the buffer is closed; returns None, taking nothing,
        when `wake` is called meanwhile.
        """
        self._settle()
        wakes = self._wakes
        if not self.records and not self.closed:
            await self._nonempty.wait()
        if not self._cut and not self.closed and self._wakes == wakes:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self._full.wait()
        if self._wakes != wakes:
            return None
        return self.take()

    def wake(self) -> None:
        """Make every `batch()` waiting now return None at once (the caller has other work for
        it: a batch just spooled, to be sent before what is queued)."""
        self._wakes += 1
        self._nonempty.set()
        self._full.set()

    def close(self) -> None:
        """Refuse further records and wake every waiter; what is queued can still be taken."""
        self.closed = True
        self._nonempty.set()
        self._full.set()
        self.spill.set()

    def _cut_open(self) -> None:
        self._cut.append((self._open, self._count))
        self._open = bytearray()
        self._count = 0
        self._full.set()

    def _settle(self) -> None:
        """The events as the queue stands: `wake` sets them regardless, to wake who waits."""
        if self.closed:
            return
        if not self.records:
            self._nonempty.clear()
        if not self._cut:
            self._full.clear()
