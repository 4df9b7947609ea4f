"""`truthloop export --monitor NS/NAME -o FILE`: a monitor's labeled records (its dataset) to a
file for retraining or analysis, with where each label came from and, for the records the review
queue selected, their inclusion probability and weight 1/pi (docs/review.md).

The file's format comes from its extension, `.csv`, `.jsonl` (or `.ndjson`) or `.parquet`
(which needs pyarrow: `pip install 'truthloop[parquet]'`); `--format` says it for any other
name. The records are those of `--window` ending now (the spec's `metrics.window` by default),
or from `--from` to `--to` (RFC 3339 with an offset, or epoch seconds); `--reviewed` keeps the
records labeled by a reviewer, `--wrong` the misses, `--abstained` those the model answered
"I don't know" for. The export is written as the service streams it, in constant memory (a
Parquet row group per 10,000 rows; features, votes as JSON text), to FILE.part, renamed to FILE
once whole: a failed export leaves no file. On a terminal, a progress line counts the rows.

Exit status: 0 written, 1 the service refused or could not be reached, 2 a bad flag or a file
that cannot be written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import msgspec

from truthloop import flags, remote
from truthloop.core import dataset
from truthloop.flags import UsageError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
"""File extension -> format."""
ASKED = {"csv": "csv", "jsonl": "ndjson", "parquet": "ndjson"}
"""What each format is read from: the service's CSV, or its NDJSON."""
CHUNK = 256 * 1024
ROW_GROUP = 10_000
"""Rows of a Parquet row group: what the export holds in memory at most."""
READ_TIMEOUT = 300.0
"""Seconds the service may stay silent (a slow store page) before the export fails."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "export", text, __doc__)
    remote.service_flags(parser, token=False)
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write")
    parser.add_argument(
        "--format", choices=sorted(ASKED), default=None, help="default: from the extension"
    )
    parser.add_argument("--window", default=None, help="a duration ending now (7d, 12h...)")
    parser.add_argument("--from", dest="start", default=None, metavar="TIME", help="from then")
    parser.add_argument("--to", dest="end", default=None, metavar="TIME", help="up to then")
    parser.add_argument("--version", default=None, help="only this model version")
    parser.add_argument("--reviewed", action="store_true", help="only reviewers' labels")
    parser.add_argument("--wrong", action="store_true", help="only the misses")
    parser.add_argument("--abstained", action="store_true", help="only abstained records")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Export:
    """What to read from where, and where to write it, from the flags."""

    monitor: str
    url: str
    params: dict[str, str]
    path: Path
    fmt: str


def export_from(args: argparse.Namespace) -> Export:
    """The export the flags ask for; a `UsageError` names the flag that cannot be used."""
    url = remote.monitor_url(args)
    path = Path(args.output)
    fmt = args.format or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{args.output}: cannot tell the format from its extension"
            f" ({', '.join(FORMATS)}); give --format"
        )
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError("Parquet needs pyarrow: pip install 'truthloop[parquet]'")
    params = {"format": ASKED[fmt]}
    for name, value in (
        ("window", args.window),
        ("from", args.start),
        ("to", args.end),
        ("version", args.version),
    ):
        if value is not None:
            params[name] = value
    for name in ("reviewed", "wrong", "abstained"):
        if getattr(args, name):
            params[name] = "true"
    return Export(args.monitor, url, params, path, fmt)


class Refused(Exception):
    def __init__(self, status: int, answer: Any) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer


def run(args: argparse.Namespace) -> int:
    try:
        export = export_from(args)
    except UsageError as e:
        return remote.fail("export", str(e), 2)
    part = export.path.with_name(export.path.name + ".part")
    try:
        rows = asyncio.run(_export(export, part, sys.stderr.isatty()))
    except OSError as e:
        part.unlink(missing_ok=True)
        return remote.fail("export", f"{export.path}: {e.strerror or e}", 2)
    except remote.Unreachable as e:
        part.unlink(missing_ok=True)
        return remote.fail("export", e.said(), 1)
    except Refused as e:
        part.unlink(missing_ok=True)
        return remote.fail("export", f"{export.monitor}: {remote.refused(e.status, e.answer)}", 1)
    os.replace(part, export.path)
    print(f"{export.path}: {rows} rows of {export.monitor}")
    return 0


async def _export(export: Export, part: Path, show: bool) -> int:
    """Stream the dataset into `part`; the rows written."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=READ_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            task = await _task(session, export.url) if export.fmt == "parquet" else None
            async with session.get(export.url + "/dataset", params=export.params) as response:
                if response.status >= 300:
                    text = await response.text()
                    try:
                        raise Refused(response.status, json.loads(text))
                    except ValueError:
                        raise Refused(response.status, text) from None
                with _progress(export.monitor, show) as advance, _writer(export, part, task) as w:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        advance(w(chunk))
                    advance(w(b""))
                    return w.rows
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
        raise remote.Unreachable(export.url.split("/v1/", 1)[0], str(e) or type(e).__name__) from e


async def _task(session: aiohttp.ClientSession, url: str) -> str:
    """The monitor's task (a Parquet file's prediction and actual columns depend on it)."""
    async with session.get(url) as response:
        text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        if response.status >= 300:
            raise Refused(response.status, answer)
    task = answer.get("spec", {}).get("task") if isinstance(answer, dict) else None
    return task if isinstance(task, str) else "binary"


class _Writer(Protocol):
    """Takes the export's chunks (an empty one ends it) and answers the rows each completed."""

    rows: int

    def __call__(self, chunk: bytes) -> int: ...


class _Bytes:
    """CSV or JSON lines: the service's bytes as they come; rows are its lines (no cell holds
    a newline: labels and identifiers refuse control characters, JSON text escapes them)."""

    def __init__(self, out: IO[bytes], header: bool) -> None:
        self.out = out
        self.header = header
        self.rows = 0

    def __call__(self, chunk: bytes) -> int:
        self.out.write(chunk)
        lines = chunk.count(b"\n")
        if self.header and lines:
            lines, self.header = lines - 1, False
        self.rows += lines
        return lines


class _Parquet:
    """JSON lines into Parquet row groups of `ROW_GROUP` rows, typed by `core.dataset.COLUMNS`."""

    def __init__(self, path: Path, task: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        label = pa.float64() if task == "regression" else pa.string()
        types = {
            "text": pa.string(),
            "number": pa.float64(),
            "bool": pa.bool_(),
            "label": label,
            "json": pa.string(),
        }
        self.schema = pa.schema([(name, types[kind]) for name, kind in dataset.COLUMNS])
        self.convert = {name: _converter(kind, task) for name, kind in dataset.COLUMNS}
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.pending = b""
        self.batch: list[dict[str, Any]] = []
        self.rows = 0

    def __call__(self, chunk: bytes) -> int:
        if not chunk:  # the end: what is left
            lines = [self.pending] if self.pending.strip() else []
            self.pending = b""
        else:
            *lines, self.pending = (self.pending + chunk).split(b"\n")
        before = self.rows
        for line in lines:
            if line.strip():
                self.batch.append(msgspec.json.decode(line))
                self.rows += 1
            if len(self.batch) >= ROW_GROUP:
                self.flush()
        if not chunk:
            self.flush()
        return self.rows - before

    def flush(self) -> None:
        if not self.batch:
            return
        columns = {
            name: [convert(row.get(name)) for row in self.batch]
            for name, convert in self.convert.items()
        }
        self.writer.write_table(self.pa.Table.from_pydict(columns, schema=self.schema))
        self.batch = []

    def close(self) -> None:
        self.writer.close()


def _converter(kind: dataset.Kind, task: str) -> Callable[[Any], Any]:
    """A row's value as its Parquet column holds it."""
    if kind == "json":
        return lambda v: None if v is None else msgspec.json.encode(v).decode()
    if kind == "number" or (kind == "label" and task == "regression"):
        return lambda v: (
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
        )
    if kind == "label":
        return _class
    return lambda v: v


def _class(value: Any) -> str | None:
    """A class label as text, as the monitor's metrics read it (`true`, `1`, `cat`)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@contextlib.contextmanager
def _writer(export: Export, part: Path, task: str | None) -> Iterator[_Writer]:
    """A writer of the export's chunks into `part`."""
    if export.fmt == "parquet":
        parquet = _Parquet(part, task or "binary")
        try:
            yield parquet
        finally:
            parquet.close()
        return
    with part.open("wb") as out:
        yield _Bytes(out, header=export.fmt == "csv")


@contextlib.contextmanager
def _progress(monitor: str, show: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress line on standard error counting the rows written, when `show`."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn("exporting {task.description}: {task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(monitor, total=None)
        yield lambda n: bar.update(task, advance=n)
