"""The disk spool: capture batches kept while the feedback service cannot take them.

One file per batch, named `<seq>-<records>.ndjson` so the directory alone tells the order and the
record count; a batch is written to a hidden temporary file, fsynced, renamed into place and the
directory fsynced, so a crash leaves either the whole batch or nothing (leftover temporaries are
removed on open). A batch is indexed only once it is whole on disk, so a reader never meets a file
still being written; files the index does not know (a write whose directory fsync failed, a
previous process's batches) are adopted on open and by `adopt()`. Batches are replayed in `seq`
order.

The spool is capped in bytes of disk, each batch counted in whole 4 KiB blocks (a spool of small
batches takes far more disk than their bytes, and the pod's emptyDir `sizeLimit` counts blocks),
and the disk may fill before the cap: either way making room drops
the oldest batches first (never one being sent right now) and reports how many records went.
Writes are serialised, so the cap holds with several writers.

File work runs in the default executor; the bookkeeping stays on the event loop, so the spool is
used from one loop only. `SpoolError` (an `OSError`) is raised when the disk refuses a write or
read, `SpoolFull` when no older batch is left to drop for a new one.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_NAME = re.compile(r"^(\d{16})-(\d+)\.ndjson$")

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

BLOCK = 4096
"""The allocation unit a batch file's size is rounded up to."""


def footprint(size: int) -> int:
    """Bytes of disk a file of `size` bytes takes."""
    return -(-size // BLOCK) * BLOCK


class SpoolError(OSError):
    """The spool directory could not be written or read."""


class SpoolFull(SpoolError):
    """No room for a batch, even after dropping every older batch that could go.

    `dropped` counts the older records dropped while trying.
    """

    def __init__(self, message: str, dropped: int = 0) -> None:
        super().__init__(errno.ENOSPC, message)
        self.dropped = dropped


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded records as the NDJSON body that ships them (each line ends with a newline); `seq`
    orders batches. The body may be the queue's bytearray, handed over: nobody changes it."""

    seq: int
    body: bytes | bytearray
    count: int

    @classmethod
    def of(cls, seq: int, records: list[bytes]) -> Batch:
        return cls(seq, b"\n".join(records) + b"\n", len(records))

    def lines(self) -> list[bytes]:
        return bytes(self.body).splitlines()


@dataclass(order=True, slots=True)
class Entry:
    """A batch on disk."""

    seq: int
    count: int = field(compare=False)
    size: int = field(compare=False)
    busy: bool = field(default=False, compare=False)
    """Being sent: never dropped to make room."""

    @property
    def name(self) -> str:
        return f"{self.seq:016d}-{self.count}.ndjson"


class Spool:
    """Batches on disk, oldest first, at most `max_bytes` in total."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records = 0
        self._entries: list[Entry] = []
        self._names: set[str] = set()
        self._writing = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def open(self) -> None:
        """Create the directory if needed, remove torn writes, index the batches already there."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for entry in _scan(self.directory, frozenset(), clean=True):
                self._add(entry)
        except OSError as e:
            raise SpoolError(e.errno, f"spool {self.directory}: {e.strerror}") from e

    async def adopt(self) -> int:
        """Index whole batches on disk that the index does not know; how many records."""
        async with self._writing:
            found = await self._run(_scan, self.directory, frozenset(self._names), False)
            for entry in found:
                self._add(entry)
        return sum(entry.count for entry in found)

    @property
    def next_seq(self) -> int:
        """A sequence number after every batch already spooled."""
        return self._entries[-1].seq + 1 if self._entries else 0

    def head(self) -> Entry | None:
        """The oldest batch not being sent already."""
        return next((e for e in self._entries if not e.busy), None)

    async def append(self, batch: Batch) -> int:
        """Write a batch, then index it; returns how many older records were dropped to make room.

        Raises SpoolFull when the batch cannot fit (larger than the whole spool, or the disk full
        with nothing older left to drop), SpoolError when the disk refuses otherwise.
        """
        size = footprint(len(batch.body))
        if size > self.max_bytes:
            raise SpoolFull(f"a batch of {size} bytes exceeds the spool's {self.max_bytes}")
        entry = Entry(batch.seq, batch.count, size)
        dropped = 0
        async with self._writing:
            while True:
                if self.bytes + size > self.max_bytes:
                    dropped += await self._drop_oldest(dropped, "the spool is full")
                    continue
                try:
                    await self._run(_write, self.directory, entry.name, batch.body)
                except SpoolError as e:
                    if e.errno not in _DISK_FULL:
                        raise
                    dropped += await self._drop_oldest(dropped, f"the disk is full ({e})")
                    continue
                break
            self._add(entry)
        return dropped

    async def read(self, entry: Entry) -> Batch:
        body = await self._run(Path.read_bytes, self.directory / entry.name)
        return Batch(entry.seq, body, entry.count)

    async def remove(self, entry: Entry) -> None:
        """Forget a batch that was delivered (or replaced); gone already is fine."""
        self._remove(entry)
        await self._run(_unlink, self.directory / entry.name)

    async def _drop_oldest(self, dropped: int, why: str) -> int:
        """Drop the oldest batch not being sent; its record count. SpoolFull if there is none."""
        victim = self.head()
        if victim is None:
            raise SpoolFull(f"{why} and holds nothing older to drop", dropped)
        self._remove(victim)
        await self._run(_unlink, self.directory / victim.name)
        return victim.count

    def _add(self, entry: Entry) -> None:
        bisect.insort(self._entries, entry)
        self._names.add(entry.name)
        self.bytes += entry.size
        self.records += entry.count

    def _remove(self, entry: Entry) -> None:
        index = bisect.bisect_left(self._entries, entry)
        if index < len(self._entries) and self._entries[index] is entry:
            del self._entries[index]
            self._names.discard(entry.name)
            self.bytes -= entry.size
            self.records -= entry.count

    @staticmethod
    async def _run(function: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, function, *args)
        except SpoolError:
            raise
        except OSError as e:
            raise SpoolError(e.errno, f"spool: {e.strerror}: {e.filename}") from e


def _scan(directory: Path, known: frozenset[str], clean: bool) -> list[Entry]:
    """The batches in `directory` not in `known`; with `clean`, torn writes are removed (only
    safe before anything writes)."""
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match is None:
            if clean and path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        elif path.name not in known:
            with contextlib.suppress(FileNotFoundError):
                found.append(Entry(int(match[1]), int(match[2]), footprint(path.stat().st_size)))
    return found


def _write(directory: Path, name: str, body: bytes | bytearray) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
