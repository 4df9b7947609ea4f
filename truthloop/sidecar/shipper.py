"""Shipping capture records to the feedback service: queue → batches → POST, spool when it is away.

Records enter through `submit` (O(1), never awaits) into a byte-bounded `RecordBuffer`. A sender
task forms NDJSON batches (by size or after `linger`) and POSTs them to
`{feedback_url}/v1/predictions`. A batch the service cannot take now (unreachable, timeout, 408,
429, 5xx) goes to the disk spool and the sender backs off; while the service is away a spiller
task moves every new batch to the spool too, and it also spills whenever the queue passes its
high-water mark, so memory stays bounded while a slow POST is in flight. Spooled batches are sent
first, oldest first, once the service answers again.

A 400 that names bad items by index drops those items (counted `rejected` by the service's reason)
and sends the rest at once; any other 4xx drops the batch. The exception is `unknown_monitor`:
the operator registers a monitor with the service as the ModelMonitor is created, which can be
after its pods start serving, so such records are kept and retried like an outage's (the spool
bounds them if the monitor never comes). Every record ends delivered, spooled,
or counted in `stats.dropped` under a reason: `queue_full`, `closed`, `spool_full` (oldest spooled
batch dropped to make room), `spool_error` (the disk refused), `rejected`, `shutdown_timeout`.
Records carry their prediction_id and the service deduplicates, so a retry never double-counts.

`close(drain_seconds)` stops accepting, keeps POSTing for most of the budget while the service
answers, then writes whatever is left to the spool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from truthloop.sidecar.backoff import Backoff, BackoffSettings
from truthloop.sidecar.buffer import RecordBuffer
from truthloop.sidecar.spool import Batch, Entry, Spool, SpoolError

log = logging.getLogger("truthloop.sidecar.shipper")

UNREGISTERED = "unknown_monitor"
"""The service's reason for a record whose monitor it does not know (yet): retried, not dropped."""

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ShipperSettings:
    feedback_url: str
    """Base URL of the feedback service (`http://truthloop-feedback:8080`)."""
    spool_dir: Path
    """Where batches wait while the service is away (an emptyDir in the pod)."""
    token: str | None = None
    """Bearer token for writes, when the service requires one."""
    queue_bytes: int = 32 * MiB
    """Bound on encoded records held in memory."""
    spool_bytes: int = 1024 * MiB
    """Bound on the spool; the oldest batches are dropped to stay under it."""
    batch_bytes: int = 1 * MiB
    """Largest batch body (the service takes 8 MiB by default)."""
    batch_records: int = 5000
    """Most records per batch (the service takes 10,000)."""
    linger: float = 0.2
    """Longest wait, in seconds, for a batch to fill once it has a first record."""
    timeout: float = 5.0
    """Seconds a POST may take before the service counts as away."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    """Delays between attempts while the service is away."""
    drain_share: float = 0.8
    """Share of the drain budget spent POSTing at shutdown; the rest is kept for the spool."""


@dataclass(slots=True)
class ShipStats:
    """Record counts; the admin port exports them."""

    shipped: int = 0
    retried: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)


class _Details(msgspec.Struct):
    index: int | None = None
    reason: str = "invalid"


class _ErrorBody(msgspec.Struct):
    details: list[_Details] = []


_decode_error = msgspec.json.Decoder(_ErrorBody).decode


class Shipper:
    """Owns the queue, the spool and the tasks that move records between them and the service."""

    def __init__(self, settings: ShipperSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.stats = ShipStats()
        self.buffer = RecordBuffer(
            settings.queue_bytes,
            batch_bytes=settings.batch_bytes,
            batch_records=settings.batch_records,
        )
        self.spool = Spool(settings.spool_dir, settings.spool_bytes)
        self._session = session
        self._url = settings.feedback_url.rstrip("/") + "/v1/predictions"
        self._headers = {"Content-Type": "application/x-ndjson"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"
        self._backoff = Backoff(settings.backoff)
        self._seq = 0
        self._down = False
        self._spill_all = False
        self._spool_full = False
        self._draining = False
        self._stopping = asyncio.Event()
        self._inflight: Batch | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def down(self) -> bool:
        """True from a failed attempt until the next delivered batch."""
        return self._down

    def start(self) -> None:
        """Index the spool (raises SpoolError if unusable) and start sending."""
        self.spool.open()
        self._seq = self.spool.next_seq
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="truthloop-shipper-send"),
            asyncio.create_task(self._spill_loop(), name="truthloop-shipper-spill"),
        ]

    def submit(self, record: bytes) -> None:
        """Queue one encoded record (O(1), never awaits); a refused one is counted."""
        if not self.buffer.put(record):
            self.stats.dropped["closed" if self.buffer.closed else "queue_full"] += 1

    async def close(self, drain_seconds: float) -> None:
        """Stop accepting; deliver what is queued within the budget, spool the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        self.buffer.close()
        self._draining = True
        self._stopping.set()
        sender, spiller = self._tasks
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(loop.time() + drain_seconds * self.settings.drain_share):
                await asyncio.shield(sender)
        self._spill_all = True
        self.buffer.spill.set()
        if not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        try:
            async with asyncio.timeout_at(deadline):
                if self._inflight is not None:
                    # Cancelled mid-POST: the service may have it too; it deduplicates.
                    await self._to_spool(self._inflight)
                    self._inflight = None
                await asyncio.shield(spiller)
        except TimeoutError:
            spiller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spiller
            lost = len(self.buffer) + (self._inflight.count if self._inflight else 0)
            self.stats.dropped["shutdown_timeout"] += lost
            log.error("drain budget spent: %d records were neither sent nor spooled", lost)

    # -- tasks ---------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            entry = None if self._draining else self.spool.head()
            if entry is not None:
                await self._replay(entry)
                continue
            if self._draining and (self._down or not len(self.buffer)):
                return
            records = await self.buffer.batch(self.settings.linger)
            if not records:
                continue
            batch = self._inflight = self._batch(records)
            rest = await self._deliver(batch)
            if rest is not None:
                self._inflight = rest
                await self._to_spool(rest)
                self._went_down()
            self._inflight = None

    async def _spill_loop(self) -> None:
        buffer = self.buffer
        while True:
            await buffer.spill.wait()
            if not (self._down or self._spill_all or buffer.bytes >= buffer.high_water):
                buffer.spill.clear()
                continue
            records = await buffer.batch(self.settings.linger)
            if records:
                await self._to_spool(self._batch(records))
            elif buffer.closed:
                return

    # -- steps ---------------------------------------------------------------------------------

    def _batch(self, records: list[bytes]) -> Batch:
        self._seq += 1
        return Batch.of(self._seq - 1, records)

    async def _replay(self, entry: Entry) -> None:
        """Send the oldest spooled batch, after a backoff delay while the service is away."""
        if self._down:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff.next_delay()):
                    await self._stopping.wait()
            if self._draining:
                return
        entry.busy = True
        try:
            try:
                batch = await self.spool.read(entry)
            except SpoolError as e:
                log.error("dropping an unreadable spooled batch of %d records: %s", entry.count, e)
                self.stats.dropped["spool_error"] += entry.count
                await self.spool.remove(entry)
                return
            rest = await self._deliver(batch)
            if rest is None:
                await self.spool.remove(entry)
                self._spool_full = self._spool_full and bool(len(self.spool))
                self._came_up()
                return
            if rest.count != entry.count:
                await self._to_spool(rest)
                await self.spool.remove(entry)
            self._went_down()
        finally:
            entry.busy = False

    async def _deliver(self, batch: Batch) -> Batch | None:
        """POST a batch; None when done with it (delivered or refused), else what to retry."""
        while True:
            try:
                status, body = await self._post(batch.body)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                return self._retry(batch, type(e).__name__)
            if 200 <= status < 300:
                self.stats.shipped += batch.count
                return None
            if status in (408, 429) or status >= 500:
                return self._retry(batch, f"HTTP {status}")
            bad = _bad_items(body, batch.count) if status == 400 else None
            if bad is None:
                self._reject(batch.count, f"http_{status}", status)
                return None
            refused = {i: reason for i, reason in bad.items() if reason != UNREGISTERED}
            for reason, count in collections.Counter(refused.values()).items():
                self._reject(count, reason, status)
            lines = batch.lines()
            kept = [line for i, line in enumerate(lines) if i not in refused]
            if not kept:
                return None
            batch = Batch.of(batch.seq, kept)
            if len(refused) < len(bad):
                return self._retry(batch, "its monitor is not registered yet")

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        async with self._session.post(
            self._url,
            data=body,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
        ) as response:
            return response.status, await response.read()

    async def _to_spool(self, batch: Batch) -> None:
        try:
            dropped = await self.spool.append(batch)
        except SpoolError as e:
            log.error("could not spool %d records: %s", batch.count, e)
            self.stats.dropped["spool_error"] += batch.count
            return
        if dropped:
            self.stats.dropped["spool_full"] += dropped
            if not self._spool_full:
                log.warning("spool full: dropping the oldest records (counted) to keep new ones")
            self._spool_full = True

    def _retry(self, batch: Batch, why: str) -> Batch:
        self.stats.retried += batch.count
        if not self._down:
            log.warning("feedback service unavailable (%s); spooling until it answers", why)
        return batch

    def _reject(self, count: int, reason: str, status: int) -> None:
        self.stats.dropped["rejected"] += count
        self.stats.rejected[reason] += count
        log.error("feedback service refused %d records (HTTP %d, %s)", count, status, reason)

    def _went_down(self) -> None:
        self._down = True
        self.buffer.spill.set()

    def _came_up(self) -> None:
        if self._down:
            log.info("feedback service answers again; replaying the spool")
        self._down = False
        self._backoff.reset()


def _bad_items(body: bytes, count: int) -> dict[int, str] | None:
    """Bad item indices → reason from a 400 answer; None unless it names items of this batch."""
    try:
        details = _decode_error(body).details
    except msgspec.DecodeError:
        return None
    bad = {d.index: d.reason for d in details if d.index is not None and 0 <= d.index < count}
    if not bad or len(bad) != len({d.index for d in details}):
        return None
    return bad
