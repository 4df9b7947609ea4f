"""The in-memory capture queue: encoded records waiting to ship, bounded in bytes.

Records are encoded before they are queued, so the bound is exact and memory cannot grow past it
whatever the records hold. `put` is called on the request path (from `Tap.observe`): it is O(1),
never awaits and never raises; a record that does not fit is refused and the caller counts it.
Consumers take batches: up to `batch_bytes`/`batch_records`, waiting at most `linger` seconds
for a batch to fill once the first record is there.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class RecordBuffer:
    """A FIFO of encoded records with a byte bound and a high-water mark.

    `spill` is set when the queued bytes reach the high-water mark: whoever spills to disk waits
    on it (the shipper also sets it itself while the feedback service is away).
    """

    __slots__ = (
        "_full",
        "_items",
        "_nonempty",
        "batch_bytes",
        "batch_records",
        "bytes",
        "closed",
        "high_water",
        "max_bytes",
        "spill",
    )

    def __init__(
        self, max_bytes: int, *, batch_bytes: int, batch_records: int, high_water: float = 0.5
    ) -> None:
        self.max_bytes = max_bytes
        self.batch_bytes = batch_bytes
        self.batch_records = batch_records
        self.high_water = int(max_bytes * high_water)
        self.bytes = 0
        self.closed = False
        self._items: collections.deque[bytes] = collections.deque()
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        self.spill = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, record: bytes) -> bool:
        """Queue one encoded record; False when closed or when it does not fit."""
        size = len(record) + 1  # the newline that ends it in an NDJSON batch
        if self.closed or self.bytes + size > self.max_bytes:
            return False
        self._items.append(record)
        self.bytes += size
        self._nonempty.set()
        if self.bytes >= self.batch_bytes or len(self._items) >= self.batch_records:
            self._full.set()
        if self.bytes >= self.high_water:
            self.spill.set()
        return True

    def take(self) -> list[bytes]:
        """Up to one batch of records, oldest first, without waiting (may be empty)."""
        items = self._items
        out: list[bytes] = []
        size = 0
        while items and len(out) < self.batch_records:
            record = items[0]
            if out and size + len(record) + 1 > self.batch_bytes:
                break
            items.popleft()
            out.append(record)
            size += len(record) + 1
        self.bytes -= size
        if not items:
            self._nonempty.clear()
        if self.bytes < self.batch_bytes and len(items) < self.batch_records:
            self._full.clear()
        return out

    async def batch(self, linger: float) -> list[bytes]:
        """The next batch: waits for a first record, then up to `linger` s for a full batch.

        Returns at once, possibly empty, once the buffer is closed.
        """
        if not self._items and not self.closed:
            await self._nonempty.wait()
        if not self._full.is_set() and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self._full.wait()
        return self.take()

    def close(self) -> None:
        """Refuse further records and wake every waiter; what is queued can still be taken."""
        self.closed = True
        self._nonempty.set()
        self._full.set()
        self.spill.set()
