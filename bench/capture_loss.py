"""What a SIGKILL of the sidecar loses, measured as users run it.

    python bench/capture_loss.py [--rate 2000] [--seconds 3] [--trials 5] [--write]

The `truthloop sidecar` command (configured as the operator injects it, see bench/sidecar.py) in
front of a model, shipping to a live `truthloop feedback` (SQLite), takes a steady `--rate` of
requests from a paced client. At a random moment mid-run the sidecar is killed with SIGKILL (an
OOM kill is the same: nothing in its memory survives), started again at once on the same spool
directory and port, and the load goes on; once the new process has replayed its spool it is
stopped with SIGTERM (its queue drained). Then every prediction ID that a client got in a 2xx
answer is looked up among the records the service stored: lost = answered, never stored. Each
setting is tried `--trials` times; the table gives the median and the largest loss, in records
and in milliseconds of traffic at the rate. The last row stops the sidecar with SIGTERM instead of
SIGKILL: a graceful stop must lose nothing, or the run fails.

`--write` puts the table in BENCHMARKS.md between the `<!-- bench:capture-loss -->` markers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sections
import sidecar as bench

SETTINGS: list[tuple[str, dict[str, str], signal.Signals]] = [
    ("default (`--linger 0.2`)", {}, signal.SIGKILL),
    ("`--linger 0.02`", {"TRUTHLOOP_LINGER": "0.02"}, signal.SIGKILL),
    ("`--queue-bytes 64Ki`", {"TRUTHLOOP_QUEUE_BYTES": "64Ki"}, signal.SIGKILL),
    ("SIGTERM instead (default settings)", {}, signal.SIGTERM),
]
"""(row, the sidecar's environment beyond the defaults, the signal that stops it mid-run)."""


# The client, run in a child process.


def paced_client(url: str, rate: float, seconds: float, out: Path) -> None:
    """Send `rate` requests a second for `seconds` over kept-alive connections (a new one when
    none is idle), write the prediction ID of every 2xx answer to `out`, one a line, and print
    counts as JSON. Requests sent while the sidecar is down fail, and are counted."""
    import httptools
    import uvloop

    host, port = url.removeprefix("http://").rstrip("/").split(":")
    request = (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(bench.REQUEST_BODY), bench.REQUEST_BODY)
    )
    got: list[bytes] = []
    counts: collections.Counter[str] = collections.Counter()
    idle: collections.deque[Connection] = collections.deque()
    busy: set[Connection] = set()
    quiet = asyncio.Event()
    """Set while no request is in flight."""

    class Connection(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.transport: asyncio.Transport | None = None
            self.prediction_id: bytes | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def send(self) -> None:
            assert self.transport is not None
            busy.add(self)
            quiet.clear()
            self.transport.write(request)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.close()

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"x-prediction-id":
                self.prediction_id = value

        def on_message_complete(self) -> None:
            status = self.parser.get_status_code()
            if 200 <= status < 300 and self.prediction_id:
                got.append(self.prediction_id)
                counts["answered"] += 1
            else:
                counts[f"status_{status}"] += 1
            self.prediction_id = None
            self.done()
            idle.append(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self.transport = None
            if self in busy:
                counts["cut"] += 1
                self.done()

        def done(self) -> None:
            busy.discard(self)
            if not busy:
                quiet.set()

    async def connection() -> Connection | None:
        while idle:
            conn = idle.popleft()
            if conn.transport is not None:
                return conn
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                Connection, host, int(port)
            )
        except OSError:
            return None
        return conn

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(int(rate * seconds)):
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            conn = await connection()
            if conn is None:
                counts["refused"] += 1
                continue
            conn.send()
            counts["sent"] += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await quiet.wait()

    uvloop.run(main())
    out.write_bytes(b"".join(pid + b"\n" for pid in got))
    print(json.dumps(counts))


# One trial.


@dataclass(frozen=True)
class Trial:
    answered: set[str]
    """Prediction IDs clients got in 2xx answers."""
    client: dict[str, int]


def trial(
    procs: bench.Processes,
    label: str,
    model_port: int,
    feedback: str,
    directory: Path,
    extra: dict[str, str],
    stop: signal.Signals,
    rate: float,
    seconds: float,
) -> Trial:
    port, admin_port = bench.free_port(), bench.free_port()
    env = bench.command_env(port, model_port, admin_port, feedback, directory / "spool") | extra
    command = [*bench.TRUTHLOOP, "sidecar"]
    first = procs.start(command, port, label, 0, env)
    out = directory / "answered"
    client = subprocess.Popen(
        [*bench.pin(1), sys.executable, __file__, "--role", "client",
         f"http://127.0.0.1:{port}", str(rate), str(seconds), str(out)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(random.uniform(0.3, 0.5) * seconds)
    first.send_signal(stop)
    if first.wait(30) != (0 if stop == signal.SIGTERM else -signal.SIGKILL):
        raise RuntimeError(f"{label}: the sidecar exited with {first.returncode}")
    second = procs.start(command, port, label, 0, env)
    stdout, _ = client.communicate(timeout=seconds + 60)
    wait_replayed(f"http://127.0.0.1:{admin_port}")
    if procs.stop(second) != 0:
        raise RuntimeError(f"{label}: the restarted sidecar exited with {second.returncode}")
    answered = set(out.read_text().split())
    return Trial(answered, json.loads(stdout))


def wait_replayed(admin: str) -> None:
    """Until the sidecar has nothing spooled or queued, so its SIGTERM only has to drain."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        side = bench.counters(admin + "/metrics")
        if not side["truthloop_sidecar_spool_records"] + side["truthloop_sidecar_queue_records"]:
            return
        time.sleep(0.1)
    raise RuntimeError("the restarted sidecar did not replay its spool within 60 s")


def stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT prediction_id FROM predictions")}


# The run.


@dataclass(frozen=True)
class Row:
    setting: str
    stop: signal.Signals
    lost: list[int]
    answered: list[int]
    client: collections.Counter[str]


def run(rate: float, seconds: float, trials: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, bench.Processes(Path(tmp)) as procs:
        model_port, _ = procs.model()
        feedback = procs.feedback()
        done: list[tuple[int, Trial]] = []
        for index, (label, extra, stop) in enumerate(SETTINGS):
            for n in range(trials):
                directory = Path(tmp) / f"setting{index}-trial{n}"
                directory.mkdir()
                done.append(
                    (index, trial(procs, f"sidecar{index}", model_port, feedback, directory,
                                  extra, stop, rate, seconds))
                )  # fmt: skip
                print(f"{label} #{n + 1}: {done[-1][1].client}", file=sys.stderr)
        stored = stored_ids(Path(tmp) / "feedback.db")
    for index, (label, _, stop) in enumerate(SETTINGS):
        mine = [t for i, t in done if i == index]
        client: collections.Counter[str] = collections.Counter()
        for t in mine:
            client.update(t.client)
        rows.append(
            Row(
                label,
                stop,
                [len(t.answered - stored) for t in mine],
                [len(t.answered) for t in mine],
                client,
            )
        )
    graceful = [row for row in rows if row.stop == signal.SIGTERM]
    if any(sum(row.lost) for row in graceful):
        raise RuntimeError(f"a graceful stop lost records: {graceful}")
    return rows


def table(rows: list[Row], rate: float, seconds: float, trials: int, load: str) -> str:
    lines = [
        f"Run {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average {load}. The command in front of the "
        f"model, shipping to a live feedback service, took {rate:,.0f} requests/s for "
        f"{seconds:g} s from a paced client; {trials} times per setting it was stopped at a "
        "random moment 30–50% into the run, started again at once on the same spool directory, "
        "and stopped with SIGTERM at the end. Lost: prediction IDs a client got in a 2xx answer "
        "that the service never stored; ms: those records as milliseconds of traffic at the "
        "rate. Requests sent while the sidecar was down were refused or cut (no ID), and are "
        "not counted.",
        "",
        "| setting | stopped by | answered per run | lost records (median / max) "
        "| lost ms of traffic (median / max) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        median, worst = statistics.median(row.lost), max(row.lost)
        lines.append(
            f"| {row.setting} | {row.stop.name} | {statistics.median(row.answered):,.0f} "
            f"| {median:,.0f} / {worst:,} "
            f"| {median / rate * 1000:,.0f} / {worst / rate * 1000:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = bench.arguments(
        __doc__,
        rate=(float, 2000.0, "requests per second"),
        seconds=(float, 3.0, "seconds of load per trial"),
        trials=(int, 5, "stops per setting"),
    )
    if args.role == "client":
        url, rate, seconds, out = args.role_args
        paced_client(url, float(rate), float(seconds), Path(out))
        return
    before = os.getloadavg()[0]
    rows = run(args.rate, args.seconds, args.trials)
    load = f"{before:.2f} before, {os.getloadavg()[0]:.2f} after"
    text = table(rows, args.rate, args.seconds, args.trials, load)
    print(text)
    if args.write:
        title = "## What a SIGKILL of the sidecar loses (`bench/capture_loss.py`)"
        sections.write(bench.BENCHMARKS, "capture-loss", f"{title}\n\n{text}")
        print(f"\nwritten to {bench.BENCHMARKS}")


if __name__ == "__main__":
    main()
