"""Shipping capture records to the feedback service: queue → batches → POST, spool when it is away.

Records enter through `submit` (O(1), never awaits) into a byte-bounded `RecordBuffer`, which
appends each to the NDJSON body of its batch. A sender task takes batches (cut by size, or after
`linger`) and POSTs them to `{feedback_url}/v1/predictions` with a `client.Client`, which writes
a body a slice per turn of the loop: shipping takes no long turn from the requests the proxy
serves. A
batch the service cannot take now goes to the disk spool and the sender backs off; while the
service is away a spiller task moves every new batch to the spool too, and it also spills
whenever the queue passes its high-water mark, so memory stays bounded while a slow POST is in
flight. Spooled batches are sent first, oldest first, once the service answers again.

What an answer means for the records (`judge`):
- 2xx: delivered.
- unreachable, timeout, 408, 429, 5xx: the service is away; retried with backoff, spooled meanwhile.
- 401, 403 and any other 4xx but 400 and 413: capture is *refused* (a missing or rotated token, a
  wrong URL); kept and retried like an outage's, never dropped, and reported (`refused`, the
  admin port's readiness body and metrics). With `token_file`, the token is reread before each
  retry, so a rotated Secret takes effect without a restart.
- 413: the batch is split in halves and each sent; a single record the service finds too large
  is dropped (`rejected`, reason `too_large`).
- 400 naming bad items by index: those items are dropped (`rejected`, under the service's reason)
  and the rest sent at once — except `unknown_monitor`: the operator registers a monitor with
  the service as the ModelMonitor is created, which can be after its pods start serving, so such
  records are kept and retried. A 400 that names no item is split like a 413, down to the
  record the service refuses.

Every record ends delivered, spooled, or counted in `stats.dropped` under a reason:
`queue_full`, `closed`, `spool_full` (the oldest spooled batches dropped to make room, for the
bound or because the disk filled first), `spool_error` (the disk refused), `rejected`,
`shutdown_timeout`. Records carry their prediction_id and the service deduplicates, so a retry
never double-counts. Repeated failures are logged once per reason per minute, with a count.

`close(drain_seconds)` stops accepting, keeps POSTing for most of the budget while the service
answers, then writes whatever is left to the spool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from truthloop.core.throttle import Throttle
from truthloop.sidecar.backoff import Backoff, BackoffSettings
from truthloop.sidecar.buffer import RecordBuffer
from truthloop.sidecar.client import Client
from truthloop.sidecar.spool import Batch, Spool, SpoolError, SpoolFull

log = logging.getLogger("truthloop.sidecar.shipper")

UNREGISTERED = "unknown_monitor"
"""The service's reason for a record whose monitor it does not know (yet): retried, not dropped."""

MiB = 1024 * 1024

PREDICTIONS_PATH = "/v1/predictions"
MONITOR_HEADER = "X-Truthloop-Monitor"
"""Names the sidecar's monitor on every POST, so a service that refuses the batch unread can
still tell the monitor's status that its capture is refused."""


@dataclass(frozen=True, slots=True)
class ShipperSettings:
    feedback_url: str
    """Base URL of the feedback service (`http://truthloop-feedback:8081`)."""
    spool_dir: Path
    """Where batches wait while the service is away (an emptyDir in the pod)."""
    token: str | None = None
    """Bearer token for writes, when the service requires one."""
    token_file: Path | None = None
    """Where `token` was read from: reread when the service refuses it (a rotated Secret)."""
    monitor: str = ""
    """`namespace/name`, sent with every batch (`MONITOR_HEADER`)."""
    queue_bytes: int = 32 * MiB
    """Bound on encoded records held in memory."""
    spool_bytes: int = 1024 * MiB
    """Bound on the spool; the oldest batches are dropped to stay under it."""
    batch_bytes: int = 256 * 1024
    """A batch is cut at this size (or `linger`): what a steady stream ships in, and about what
    memory a batch waiting to be cut holds."""
    batch_records: int = 5000
    """A batch is cut at this many records."""
    post_bytes: int = 4 * MiB
    """Largest POST body: the batches cut while one POST was in flight go together in the next,
    up to this (half what the service takes by default, `--max-body` 8 MiB; a 413 splits a batch
    in halves). One POST is in flight at a time, so a model answering batches of rows makes
    records faster than one 256 KiB batch a round trip carries them."""
    post_records: int = 10_000
    """Most records per POST: as many as the service takes in one request."""
    slice_bytes: int = 256 * 1024
    """Bytes of a batch's body written a turn of the event loop (`client.Client`): a large batch
    is written in few turns, none long."""
    linger: float = 0.2
    """Longest wait, in seconds, for a batch to fill once it has a first record: with a healthy
    service, about what a SIGKILL of the sidecar can lose."""
    timeout: float = 5.0
    """Seconds a POST may take before the service counts as away."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    """Delays between attempts while the service is away."""
    adopt_interval: float = 60.0
    """Seconds between looks for spooled batches the index does not know (`Spool.adopt`)."""
    drain_share: float = 0.8
    """Share of the drain budget spent POSTing at shutdown; the rest is kept for the spool."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The service refuses capture: `reason` (`unauthorized`, `forbidden`, `http_404`, ...)
    since `since` (epoch seconds)."""

    reason: str
    since: float
    status: int


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an answer to a batch means for its records (see the module's docstring)."""

    kind: Literal["delivered", "away", "refused", "split", "items"]
    reason: str = ""
    """`refused`: why; `split`: the reason a single record is dropped under."""
    items: Mapping[int, str] = field(default_factory=dict)
    """`items`: index of each bad record → the service's reason."""


_REFUSED = {401: "unauthorized", 403: "forbidden"}


def judge(status: int, body: bytes, count: int) -> Verdict:
    """The verdict on a batch of `count` records answered `status` with `body`."""
    if 200 <= status < 300:
        return Verdict("delivered")
    if status in (408, 429) or status >= 500:
        return Verdict("away", f"http_{status}")
    if status == 413:
        return Verdict("split", "too_large")
    if status != 400:
        return Verdict("refused", _REFUSED.get(status, f"http_{status}"))
    try:
        details = _decode_error(body).details
    except msgspec.DecodeError:
        return Verdict("split", "http_400")
    bad = {d.index: d.reason for d in details if d.index is not None and 0 <= d.index < count}
    if bad and len(bad) == len({d.index for d in details}):
        return Verdict("items", items=bad)
    return Verdict("split", details[0].reason if details else "http_400")


class Shipper:
    """Owns the queue, the spool and the tasks that move records between them and the service."""

    def __init__(self, settings: ShipperSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.stats = ShipStats()
        self.buffer = RecordBuffer(
            settings.queue_bytes,
            batch_bytes=settings.batch_bytes,
            batch_records=settings.batch_records,
            post_bytes=settings.post_bytes,
            post_records=settings.post_records,
        )
        self.spool = Spool(settings.spool_dir, settings.spool_bytes)
        self.refused: Refusal | None = None
        """Set while the service refuses capture (the records wait in the spool)."""
        self._clock = clock
        self._headers = {"Content-Type": "application/x-ndjson"}
        if settings.monitor:
            self._headers[MONITOR_HEADER] = settings.monitor
        self._authorize(settings.token)
        self._client = Client(
            settings.feedback_url,
            self._headers,
            timeout=settings.timeout,
            slice_bytes=settings.slice_bytes,
        )
        self._backoff = Backoff(settings.backoff)
        self._throttle = Throttle()
        self._seq = 0
        self._adopt_at = 0.0
        self._down = False
        self._spill_all = False
        self._draining = False
        self._stopping = asyncio.Event()
        self._inflight: Batch | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def down(self) -> bool:
        """True from a failed attempt until the next delivered batch."""
        return self._down

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header shipping sends now (None: none), for the sidecar's other
        posts to the service: a token reread after a refusal serves them too."""
        return self._headers.get("Authorization")

    def health(self) -> dict[str, Any]:
        """Capture's health as the admin port's readiness body shows it."""
        refused = self.refused
        return {
            "refused": refused.reason if refused else None,
            "since": refused.since if refused else None,
            "spooled_records": self.spool.records,
        }

    def start(self) -> None:
        """Index the spool (raises SpoolError if unusable) and start sending."""
        self.spool.open()
        self._seq = self.spool.next_seq
        self._adopt_at = asyncio.get_running_loop().time() + self.settings.adopt_interval
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
            if lost:  # a start undone (budget 0) has nothing queued: nothing to report
                self.stats.dropped["shutdown_timeout"] += lost
                log.error("drain budget spent: %d records were neither sent nor spooled", lost)
        finally:
            self._client.close()

    # -- tasks ---------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._draining and loop.time() >= self._adopt_at:
                self._adopt_at = loop.time() + self.settings.adopt_interval
                await self._adopt()
            if not self._draining and self.spool.head() is not None:
                await self._replay()
                continue
            if self._draining and (self._down or not len(self.buffer)):
                return
            taken = await self.buffer.batch(self.settings.linger)
            if taken is None:
                continue
            batch = self._inflight = self._batch(*taken)
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
            taken = await buffer.batch(self.settings.linger)
            if taken is not None:
                await self._to_spool(self._batch(*taken))
                # The sender may be waiting for records, which would leave this batch in the
                # spool until traffic comes: woken, it sends the spool first.
                buffer.wake()
            elif buffer.closed:
                return

    # -- steps ---------------------------------------------------------------------------------

    def _batch(self, body: bytearray, count: int) -> Batch:
        self._seq += 1
        return Batch(self._seq - 1, body, count)

    async def _adopt(self) -> None:
        """Index spooled batches the index lost track of, so they are sent, not orphaned."""
        try:
            adopted = await self.spool.adopt()
        except SpoolError as e:
            self._say("spool_error", "cannot scan the spool for lost batches: %s", e)
            return
        if adopted:
            log.warning("found %d spooled records the spool's index did not know: sending", adopted)

    async def _replay(self) -> None:
        """Send the oldest spooled batch, after a backoff delay while the service is away.

        The batch is chosen after the delay: meanwhile the spool may have dropped the one that was
        oldest before, to make room."""
        if self._down:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._backoff.next_delay()):
                    await self._stopping.wait()
            if self._draining:
                return
        entry = self.spool.head()
        if entry is None:
            return
        entry.busy = True
        try:
            try:
                batch = await self.spool.read(entry)
            except SpoolError as e:
                self._drop("spool_error", entry.count, "an unreadable spooled batch: %s", e)
                await self.spool.remove(entry)
                return
            rest = await self._deliver(batch)
            if rest is None:
                await self.spool.remove(entry)
                self._came_up()
                return
            if rest.count != entry.count:
                await self._to_spool(rest)
                await self.spool.remove(entry)
            self._went_down()
        finally:
            entry.busy = False

    async def _deliver(self, batch: Batch) -> Batch | None:
        """POST a batch, in parts where the service refuses its size or its whole; None once
        every record is delivered or dropped (counted), else the records to retry later."""
        parts = collections.deque((batch,))
        while parts:
            part = parts[0]
            try:
                status, body = await self._client.request("POST", PREDICTIONS_PATH, part.body)
            except (OSError, TimeoutError) as e:
                return self._retry(parts, type(e).__name__)
            verdict = judge(status, body, part.count)
            if verdict.kind == "delivered":
                parts.popleft()
                self.stats.shipped += part.count
                self.refused = None
            elif verdict.kind == "away":
                return self._retry(parts, f"HTTP {status}")
            elif verdict.kind == "refused":
                await self._refused(verdict.reason, status)
                return self._retry(parts, f"HTTP {status}, capture refused ({verdict.reason})")
            elif verdict.kind == "split":
                parts.popleft()
                if part.count == 1:
                    self._reject(1, verdict.reason, status)
                    continue
                lines = part.lines()
                half = len(lines) // 2
                parts.extendleft(
                    (Batch.of(part.seq, lines[half:]), Batch.of(part.seq, lines[:half]))
                )
            else:
                parts.popleft()
                refused = {i: r for i, r in verdict.items.items() if r != UNREGISTERED}
                for reason, count in collections.Counter(refused.values()).items():
                    self._reject(count, reason, status)
                kept = [line for i, line in enumerate(part.lines()) if i not in refused]
                if kept:
                    parts.appendleft(Batch.of(part.seq, kept))
                    if len(refused) < len(verdict.items):
                        return self._retry(parts, "its monitor is not registered yet")
        return None

    async def _to_spool(self, batch: Batch) -> None:
        try:
            dropped = await self.spool.append(batch)
        except SpoolFull as e:
            if e.dropped:
                self._drop(
                    "spool_full", e.dropped, "spool full: dropped the oldest to keep new ones"
                )
            self._drop("spool_full", batch.count, "no room left to spool records: %s", e)
            return
        except SpoolError as e:
            self._drop("spool_error", batch.count, "could not spool records: %s", e)
            return
        if dropped:
            self._drop("spool_full", dropped, "spool full: dropped the oldest to keep new ones")

    def _retry(self, parts: collections.deque[Batch], why: str) -> Batch:
        """The records of `parts` as one batch to retry later (counted)."""
        batch = parts[0]
        if len(parts) > 1:
            batch = Batch.of(batch.seq, [line for part in parts for line in part.lines()])
        self.stats.retried += batch.count
        if not self._down:
            log.warning("feedback service unavailable (%s); spooling until it answers", why)
        return batch

    async def _refused(self, reason: str, status: int) -> None:
        if self.refused is None or self.refused.reason != reason:
            self.refused = Refusal(reason, self._clock(), status)
        self._say(
            f"refused:{reason}",
            "the feedback service refuses capture (HTTP %d, %s): records are spooled and retried",
            status,
            reason,
        )
        if status in _REFUSED and self.settings.token_file is not None:
            try:
                token = await asyncio.get_running_loop().run_in_executor(
                    None, self.settings.token_file.read_text
                )
            except OSError as e:
                self._say("token_file", "cannot reread the token file: %s", e)
                return
            self._authorize(token.strip() or None)

    def _authorize(self, token: str | None) -> None:
        """Send `token` from now on; one that cannot be a header's value (a line break, a control
        or non-ASCII character) is no token: the service refuses, and the file is reread."""
        if token and token.isascii() and token.isprintable():
            self._headers["Authorization"] = f"Bearer {token}"
        else:
            self._headers.pop("Authorization", None)

    def _reject(self, count: int, reason: str, status: int) -> None:
        self.stats.rejected[reason] += count
        self._drop(
            "rejected",
            count,
            "feedback service refused records (HTTP %d, %s)",
            status,
            reason,
            key=f"rejected:{reason}",
        )

    def _drop(self, reason: str, count: int, message: str, *args: object, key: str = "") -> None:
        """Count `count` lost records under `reason`, and say so (once a minute per reason)."""
        self.stats.dropped[reason] += count
        self._say(key or reason, f"%d records lost ({reason}): {message}", count, *args)

    def _say(self, key: str, message: str, *args: object) -> None:
        said = self._throttle.note(key, time.monotonic(), message, *args)
        if said is not None:
            log.error(*said)

    def _went_down(self) -> None:
        self._down = True
        self.buffer.spill.set()

    def _came_up(self) -> None:
        if self._down:
            log.info("feedback service answers again; replaying the spool")
        self._down = False
        self._backoff.reset()
