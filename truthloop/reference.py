"""`truthloop reference -f FILE --monitor NS/NAME`: send a reference data set to the feedback
service, which profiles it and measures drift against it from then on.

The file's columns are the model's features plus `prediction`, optionally `score`, `actual` and
`ts`. Its format comes from its extension: `.csv`, `.ndjson` or `.jsonl`, `.parquet` (the service
reads Parquet when it has pyarrow); `--format` says it for any other name. The file is streamed,
never read whole; on a terminal a file of 8 MiB or more shows a progress bar. With `--version` the
reference is that model version's; without, it is every version's that has none of its own.

On success it prints what was stored (the reference's id, rows and columns) and any warnings (a
constant feature...). A refusal prints one line naming the file and, for a bad row, its line and
column: `train.csv:12: column tenure: ...`.

Exit status: 0 stored, 1 the service refused it or could not be reached, 2 a bad flag or a file
that cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from truthloop import flags
from truthloop.flags import UsageError
from truthloop.remote import DEFAULT_URL, Unreachable

FORMATS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet"}
"""File extension -> format."""
CONTENT_TYPES = {
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
CHUNK = 1024 * 1024
"""Bytes read from the file and sent at a time."""
PROGRESS_FROM = 8 * 1024 * 1024
"""Files this large show a progress bar (on a terminal): smaller ones take no time to send."""
TIMEOUT = 3600.0
"""Seconds the whole upload may take (a 500 MB file on a slow link, then its profiling)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "reference", text, __doc__)
    flag = flags.env_flags(parser)
    parser.add_argument(
        "-f", "--filename", dest="file", required=True, metavar="FILE", help="the data set"
    )
    parser.add_argument(
        "--monitor", required=True, metavar="NS/NAME", help="the monitor it is the reference of"
    )
    parser.add_argument(
        "--version", default=None, help="the model version it is for (default: every version)"
    )
    parser.add_argument(
        "--format",
        choices=sorted(CONTENT_TYPES),
        default=None,
        help="the file's format (default: from its extension)",
    )
    flag("--feedback-url", "TRUTHLOOP_FEEDBACK_URL", DEFAULT_URL, "the feedback service")
    flag(
        "--token-file",
        "TRUTHLOOP_TOKEN_FILE",
        None,
        "file holding a write token (or set TRUTHLOOP_TOKEN)",
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Upload:
    """What to send where, from the flags."""

    path: Path
    fmt: str
    url: str
    token: str | None
    version: str | None


def upload_from(args: argparse.Namespace) -> Upload:
    """The upload the flags ask for; a `UsageError` names the flag that cannot be used."""
    namespace, slash, name = args.monitor.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise UsageError(f"--monitor {args.monitor!r}: expected NAMESPACE/NAME")
    path = Path(args.file)
    fmt = args.format or FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise UsageError(
            f"{args.file}: cannot tell its format from its extension ({known}); give --format"
        )
    base = flags.get(args, "feedback-url", flags.base_url)
    return Upload(
        path,
        fmt,
        f"{base}/v1/monitors/{namespace}/{name}/reference",
        flags.write_token(args.token_file),
        args.version,
    )


def run(args: argparse.Namespace) -> int:
    try:
        upload = upload_from(args)
        size = upload.path.stat().st_size
        if not upload.path.is_file():
            raise UsageError(f"{args.file}: not a file")
    except UsageError as e:
        return _fail(str(e), 2)
    except OSError as e:
        return _fail(f"{args.file}: {e.strerror}", 2)
    show = size >= PROGRESS_FROM and sys.stderr.isatty()
    try:
        status, answer = asyncio.run(_send(upload, size, show))
    except OSError as e:
        return _fail(f"{args.file}: {e.strerror or e}", 2)
    except Unreachable as e:
        return _fail(f"{args.file}: cannot reach the feedback service at {e.url}: {e.reason}", 1)
    if status >= 300:
        return _fail(refusal(args.file, status, answer), 1)
    print(summary(args.file, answer))
    for warning in answer.get("warnings", ()) if isinstance(answer, dict) else ():
        print(f"{args.file}: warning: {warning}")
    return 0


def _fail(message: str, status: int) -> int:
    print(f"truthloop reference: {message}", file=sys.stderr)
    return status


async def _send(upload: Upload, size: int, show: bool) -> tuple[int, Any]:
    """POST the file in chunks; (status, the decoded JSON answer or its text)."""
    headers = {"Content-Type": CONTENT_TYPES[upload.fmt], "Content-Length": str(size)}
    if upload.token:
        headers["Authorization"] = f"Bearer {upload.token}"
    params = {"version": upload.version} if upload.version else {}
    with _progress(upload.path.name, size, show) as advance:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    upload.url, data=_chunks(upload.path, advance), headers=headers, params=params
                ) as response,
            ):
                text = await response.text()
                try:
                    return response.status, json.loads(text)
                except ValueError:
                    return response.status, text
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise Unreachable(upload.url.split("/v1/", 1)[0], str(e) or type(e).__name__) from e


async def _chunks(path: Path, advance: Callable[[int], None]) -> AsyncIterator[bytes]:
    """The file, a chunk at a time, each counted on the progress bar once read."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            advance(len(chunk))
            yield chunk


class _progress:
    """A rich progress bar on standard error while the file is sent, when `show`; afterwards
    it says the service is profiling. Otherwise nothing."""

    def __init__(self, name: str, size: int, show: bool) -> None:
        self.name, self.size, self.show = name, size, show
        self.bar: Any = None
        self.sent = 0

    def __enter__(self) -> Callable[[int], None]:
        if not self.show:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task(f"sending {self.name}", total=self.size)

        def advance(n: int) -> None:
            self.sent += n
            self.bar.update(task, advance=n)
            if self.sent >= self.size:
                self.bar.update(task, description=f"profiling {self.name}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary(file: str, answer: Mapping[str, Any]) -> str:
    """`FILE: stored reference ID of NS/NAME (version V): ROWS rows; COLUMNS`."""
    version = answer.get("version") or ""
    whose = f" (version {version})" if version else " (every version without its own)"
    columns = ", ".join(f"{c['name']} {c['type']}" for c in answer.get("columns", ()))
    return (
        f"{file}: stored reference {answer.get('id')} of {answer.get('monitor')}{whose}:"
        f" {answer.get('rows')} rows; {columns}"
    )


def refusal(file: str, status: int, answer: Any) -> str:
    """The service's refusal in one line: the file, the first problem's line and column where
    it names them, and how many more there were."""
    if not isinstance(answer, dict):
        text = " ".join(str(answer).split())[:200]
        return f"{file}: the service answered {status}: {text}"
    details = answer.get("details") or []
    first = details[0] if details and isinstance(details[0], dict) else {}
    more = len(details) - 1 + int(answer.get("truncated") or 0)
    where = file
    if isinstance(first.get("index"), int):
        where += f":{first['index']}"
    message = first.get("message") or answer.get("error") or f"HTTP {status}"
    field = first.get("field")
    column = f"column {field}: " if field and isinstance(first.get("index"), int) else ""
    if field and not column and field not in ("body",):
        column = f"{field}: "
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"{where}: {column}{message}{tail}"
