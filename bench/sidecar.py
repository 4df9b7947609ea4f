"""What the sidecar costs a prediction, side by side with no proxy and with nginx, in one run.

    python bench/sidecar.py [--case single|v2-batch|all] [--duration 3] [--rounds 3] [--write]

Two cases, each a run of its own with its own baseline (`all`, the default, runs both):
  single        one JSON row per request (`REQUEST_BODY` → `MODEL_BODY`), captured by pointers
  v2-batch      an Open Inference Protocol v2 batch of 100 rows per request: one FP32 input
                [100, 8] and the rows' entity IDs in `parameters` → `predict` [100, 1] and
                `predict_proba` [100, 2], captured by `capture.protocol: open-inference-v2`,
                100 records per request

Targets, each in front of the same minimal model (uvloop + httptools, the case's fixed answer):
  direct        the model itself
  sidecar       the `truthloop sidecar` command as the operator injects it (configured by
                `TRUTHLOOP_*` variables, the ModelMonitor snapshot in `TRUTHLOOP_SPEC`, a spool
                directory, its admin port), shipping every record to a live `truthloop feedback`
                (SQLite in a temporary directory, the monitor registered with a PUT), which runs
                on CPU 1 as if on another node; for v2-batch, to a stand-in service that counts
                the records and stores none (`serve_sink`: one feedback service stores fewer
                records a second than the batches make)
  proxy only    truthloop's proxy with the command's own tap (capture deferred off the response,
                latency histograms) on the case's monitor, whose records go into the shipper's
                queue and are dropped a batch at a time as it is cut, never sent (what capture
                costs, minus shipping); the CPU of its capture callback is timed apart
  fallback      the same with the monitor's fallback engaged: the rules answer and the model is
                called off the request path (shadow), as the command does (single case only)
  nginx         Debian's nginx-light as a keep-alive reverse proxy, one worker
                (installed with apt-get when missing; the column is skipped if that fails)

Load comes from wrk (Debian's, installed when missing) or, failing that, from a small uvloop
client in this file; the output says which. Per target: latency p50/p99/p99.9 at concurrency 1 with
everything on CPU 0 (what the proxy's work adds to the direct path); requests/s at concurrency
16 and 64 with the proxy process (sidecar, or the nginx worker) alone on CPU 0 and the model and
load generator on CPU 1; CPU seconds per request of the proxy process (utime+stime of all its
threads from /proc/<pid>/stat over the c=16 run); its peak RSS (VmHWM). The targets are measured
in interleaved rounds and each figure is the best round's, so a noisy moment on a shared machine
costs no target more than another.

After the rounds the command's records are counted where they arrived: every row of every
request it answered must be captured, and every record stored by the feedback service or counted
as dropped at the command's full queue (fail-open: at full load it drops what it cannot ship;
the output says how many under each load), none skipped, failed or lost otherwise, or the run
fails. `--write` puts each case's table in BENCHMARKS.md between its markers
(`<!-- bench:sidecar -->`, `<!-- bench:sidecar-v2-batch -->`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mmap
import os
import platform
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import sections

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"

REQUEST_BODY = b'{"user_id": "u-1234", "features": {"tenure": 14, "plan": "pro", "usage": 31.5}}'
MODEL_BODY = b'{"prediction": 1, "score": 0.73, "model": "churn"}'
GOALS = {"added_p50_ms": 0.25, "added_p99_ms": 1.0, "cpu_vs_nginx": 3.0, "rps": 10_000, "rss": 50}
COMMAND, STAND_IN, FALLBACK = "sidecar", "proxy only", "fallback"
MONITOR = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"namespace": "bench", "name": "churn"},
    "spec": {
        "selector": {"matchLabels": {"app": "churn"}},
        "model": {"name": "churn"},
        "task": "binary",
        "capture": {
            "entityId": {"pointer": "/user_id"},
            "prediction": {"pointer": "/prediction"},
            "score": {"pointer": "/score"},
            "features": {"pointer": "/features"},
        },
        "fallback": {
            "rules": [
                {"when": "request.features.tenure < 6", "prediction": "1"},
                {"prediction": "0"},
            ]
        },
    },
}
"""The monitor of the command's target: its pointers read REQUEST_BODY and MODEL_BODY, as the
stand-in tap does; its rules are the stand-in fallback's."""
MONITOR_KEY = "bench/churn"
"""MONITOR's namespace/name."""

ROWS = 100
FEATURES = 8


def _v2_bodies() -> tuple[bytes, bytes]:
    """A v2 request of ROWS rows (one FP32 input [ROWS, FEATURES], row-major and flat as clients
    send it, the entity IDs in `parameters`) and the model's answer (`predict` [ROWS, 1],
    `predict_proba` [ROWS, 2]), as MLServer's scikit-learn runtime names them."""
    draw = random.Random(24)
    data = [round(draw.gauss(0, 1), 6) for _ in range(ROWS * FEATURES)]
    proba = [draw.random() for _ in range(ROWS)]
    request = {
        "inputs": [
            {"name": "predict", "shape": [ROWS, FEATURES], "datatype": "FP32", "data": data}
        ],
        "parameters": {"entity_ids": [f"u-{i:04d}" for i in range(ROWS)]},
    }
    response = {
        "model_name": "churn",
        "id": "bench",
        "parameters": {},
        "outputs": [
            {
                "name": "predict",
                "shape": [ROWS, 1],
                "datatype": "INT64",
                "data": [int(p > 0.5) for p in proba],
            },
            {
                "name": "predict_proba",
                "shape": [ROWS, 2],
                "datatype": "FP64",
                "data": [x for p in proba for x in (1 - p, p)],
            },
        ],
    }
    return json.dumps(request).encode(), json.dumps(response).encode()


@dataclass(frozen=True)
class Case:
    """What every request of a run is, what the model answers, and how the monitor captures it."""

    name: str
    path: str
    request: bytes
    response: bytes
    monitor: dict[str, object]
    rows: int
    """Records captured per request."""
    fallback: bool
    """Whether the `fallback` target is measured: its rules read this case's rows."""
    sink: bool
    """Whether the command ships to `serve_sink` instead of a live `truthloop feedback`: one
    feedback service stores fewer records a second than 100-row batches make at full load, and
    would spool and drop them, and take CPU 1 from the model and the load generator."""

    @property
    def section(self) -> str:
        """The BENCHMARKS.md markers' name."""
        return "sidecar" if self.name == "single" else f"sidecar-{self.name}"


def _v2_case() -> Case:
    request, response = _v2_bodies()
    monitor = json.loads(json.dumps(MONITOR))
    del monitor["spec"]["fallback"]
    monitor["spec"]["capture"] = {
        "protocol": "open-inference-v2",
        "entityId": {"pointer": "/parameters/entity_ids", "perRow": True},
        "score": {"pointer": "/predict_proba/1"},
    }
    return Case("v2-batch", "/v2/models/churn/infer", request, response, monitor, ROWS, False, True)


CASES = {
    "single": Case("single", "/predict", REQUEST_BODY, MODEL_BODY, MONITOR, 1, True, False),
    "v2-batch": _v2_case(),
}


# Roles run in child processes.


def serve_model(port: int, case: Case) -> None:
    """The model: answers every request with the case's response, keep-alive, as fast as it
    can."""
    import httptools
    import uvloop

    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(case.response), case.response)
    )

    class Model(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(response)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Model, "127.0.0.1", port, backlog=1024)
        await _until_terminated()
        server.close()

    uvloop.run(main())


class Unsent:
    """The command's queue with the network left out: each record goes into a RecordBuffer as the
    shipper's `submit` puts it there, and every batch cut is taken and dropped as if sent."""

    def __init__(self) -> None:
        from truthloop.sidecar.buffer import RecordBuffer
        from truthloop.sidecar.shipper import ShipperSettings

        settings = ShipperSettings(feedback_url="", spool_dir=Path())
        self.batch_bytes = settings.batch_bytes
        self.buffer = RecordBuffer(
            settings.queue_bytes,
            batch_bytes=settings.batch_bytes,
            batch_records=settings.batch_records,
        )

    def submit(self, record: bytes) -> None:
        self.buffer.put(record)
        if self.buffer.bytes >= self.batch_bytes:
            self.buffer.take()


class TimedCapture:
    """The command's `Capture`, the CPU time of its `observe` summed into the 8 bytes of `spent`
    (a double, in seconds) for the bench to read from its own process."""

    def __init__(self, capture: Any, spent: mmap.mmap) -> None:
        self.stats = capture.stats
        self._observe = capture.observe
        self._spent = spent
        self._seconds = 0.0

    def observe(self, exchange: object) -> None:
        start = time.thread_time()
        self._observe(exchange)
        self._seconds += time.thread_time() - start
        struct.pack_into("d", self._spent, 0, self._seconds)


def serve_sidecar(port: int, model_port: int, fallback: bool, case: Case, spent: str) -> None:
    """The stand-in: the proxy with the command's own tap (capture deferred off the response,
    latency histograms, fallback) on the case's monitor, its capture shipping into `Unsent`;
    with `fallback`, the fallback engaged."""
    import uvloop
    from prometheus_client import CollectorRegistry

    from truthloop.sidecar.abstain import Abstain
    from truthloop.sidecar.capture import Capture
    from truthloop.sidecar.fallback import Fallback
    from truthloop.sidecar.live import Live, initial
    from truthloop.sidecar.metrics import Latency
    from truthloop.sidecar.proxy import ProxySettings, start_proxy
    from truthloop.sidecar.tap import SidecarTap

    async def main(shared: mmap.mmap) -> None:
        settings = ProxySettings(listen_host="127.0.0.1", listen_port=port, model_port=model_port)
        live = Live(initial(case.monitor))
        live.set_active(fallback)
        capture = Capture(
            live,
            Unsent(),  # type: ignore[arg-type]
            monitor=MONITOR_KEY,
            model_version="",
            max_body=settings.capture_max_bytes,
        )
        latency = Latency(CollectorRegistry())
        timed = TimedCapture(capture, shared)
        tap = SidecarTap(live, Fallback(live), Abstain(live), timed, latency)  # type: ignore[arg-type]
        proxy = await start_proxy(settings, tap)
        await _until_terminated()
        await proxy.close(grace=1.0)

    with open(spent, "r+b") as file, mmap.mmap(file.fileno(), 8) as shared:
        uvloop.run(main(shared))


def serve_sink(port: int) -> None:
    """A feedback service that stores nothing: counts the records (lines) of each POST to
    /v1/predictions and answers 200, says the count as `truthloop_predictions_total` on GET
    /metrics, and answers anything else 404 (the command's state polls back off and keep the
    spec it started with)."""
    import httptools
    import uvloop

    stored = 0

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.records = 0

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.url, self.records = b"", 0

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_body(self, body: bytes) -> None:
            self.records += body.count(b"\n")

        def on_message_complete(self) -> None:
            nonlocal stored
            method = self.parser.get_method()
            if method == b"POST" and self.url.startswith(b"/v1/predictions"):
                stored += self.records
                self.answer(200, b"{}")
            elif method == b"GET" and self.url == b"/metrics":
                self.answer(200, b"truthloop_predictions_total %d\n" % stored)
            else:
                self.answer(404, b'{"error": "not_found"}')

        def answer(self, status: int, body: bytes) -> None:
            head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            self.transport.write(head % (status, len(body)) + body)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Sink, "127.0.0.1", port)
        await _until_terminated()
        server.close()

    uvloop.run(main())


async def _until_terminated() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


# The load generators.


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    """The slowest 0.1%: a pause the proxy takes once in a few thousand requests (a shipped
    batch) shows here, not in the p99."""
    connections: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, connections: int, seconds: float, script: Path, cpu: int) -> Load:
    out = subprocess.run(
        [
            *pin(cpu),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    p999 = re.search(r"^p99\.9 ([\d.]+)$", out, re.M)
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if not (p50 and p99 and p999 and done) or errors:
        raise RuntimeError(f"wrk against {url} failed:\n{out}")
    elapsed = float(done[2]) / (1000 if done[3] == "ms" else 1)
    p50_ms, p99_ms, p999_ms = _wrk_ms(p50[1]), _wrk_ms(p99[1]), float(p999[1]) / 1000
    return Load(int(done[1]), elapsed, p50_ms, p99_ms, p999_ms, connections)


def run_own_client(
    url: str, connections: int, seconds: float, script: Path, cpu: int, *, case: Case
) -> Load:
    """The fallback load generator: a uvloop client, one protocol per keep-alive connection."""
    out = subprocess.run(
        [
            *pin(cpu),
            sys.executable,
            __file__,
            "--role",
            "client",
            url,
            str(connections),
            str(seconds),
            case.name,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    requests, elapsed, p50, p99, p999 = int(out[0]), *map(float, out[1:5])
    return Load(requests, elapsed, p50, p99, p999, connections)


def own_client(url: str, connections: int, seconds: float, case: Case) -> None:
    import httptools
    import uvloop

    host, port = url.removeprefix("http://").split("/")[0].split(":")
    request = (
        b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (case.path.encode(), len(case.request), case.request)
    )
    latencies: list[float] = []

    class Client(asyncio.Protocol):
        def __init__(self, deadline: float, done: asyncio.Future[None]) -> None:
            self.deadline = deadline
            self.done = done
            self.parser = httptools.HttpResponseParser(self)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.send()

        def send(self) -> None:
            self.t0 = time.perf_counter()
            self.transport.write(request)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            now = time.perf_counter()
            latencies.append(now - self.t0)
            if now < self.deadline:
                self.send()
            else:
                self.transport.close()
                self.done.set_result(None)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        done = [loop.create_future() for _ in range(connections)]
        for fut in done:
            await loop.create_connection(lambda f=fut: Client(start + seconds, f), host, int(port))
        await asyncio.gather(*done)
        return time.perf_counter() - start

    elapsed = uvloop.run(main())
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    p999 = latencies[int(len(latencies) * 0.999)] * 1000
    print(len(latencies), elapsed, p50, p99, p999)


# Processes.


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if _two_cpus() and shutil.which("taskset") else []


def _two_cpus() -> bool:
    return len(os.sched_getaffinity(0)) > 1


def _move(pid: int, cpu: int) -> None:
    if _two_cpus():
        os.sched_setaffinity(pid, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port}")


TRUTHLOOP = [sys.executable, "-m", "truthloop"]


class Processes:
    """The benchmark's child processes, their stderr kept in `directory`; all stopped at exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)

    def start(
        self, cmd: list[str], port: int, what: str, cpu: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`cmd` on CPU `cpu`, once it listens on `port`; RuntimeError with its log if not."""
        log_path = self.directory / f"{what}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*pin(cpu), *cmd],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(proc)
        try:
            wait_listening(port, proc, what)
        except RuntimeError as e:
            raise RuntimeError(f"{e}:\n{log_path.read_text()}") from None
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM, then SIGKILL after 15 s; the exit status."""
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def model(self, case: Case) -> tuple[int, int]:
        """The model on CPU 1: its port and pid."""
        port = free_port()
        cmd = [sys.executable, __file__, "--role", "model", str(port), case.name]
        proc = self.start(cmd, port, "model", 1)
        return port, proc.pid

    def sink(self) -> str:
        """`serve_sink` on CPU 1: its URL."""
        port = free_port()
        self.start([sys.executable, __file__, "--role", "sink", str(port)], port, "sink", 1)
        return f"http://127.0.0.1:{port}"

    def feedback(self, monitor: dict[str, object]) -> str:
        """`truthloop feedback` on CPU 1, SQLite in `directory`, `monitor` registered: its URL."""
        port = free_port()
        store = f"sqlite:///{self.directory}/feedback.db"
        cmd = [*TRUTHLOOP, "feedback", "--listen", f"127.0.0.1:{port}", "--store", store]
        self.start(cmd, port, "feedback", 1)
        url = f"http://127.0.0.1:{port}"
        put_json(f"{url}/v1/monitors/{MONITOR_KEY}", monitor)
        return url


def command_env(
    port: int,
    model_port: int,
    admin_port: int,
    feedback: str,
    spool: Path,
    monitor: dict[str, object],
) -> dict[str, str]:
    """`truthloop sidecar` configured as the operator injects it, in front of the model."""
    return {
        "TRUTHLOOP_LISTEN": f"127.0.0.1:{port}",
        "TRUTHLOOP_MODEL_URL": f"http://127.0.0.1:{model_port}",
        "TRUTHLOOP_ADMIN": f"127.0.0.1:{admin_port}",
        "TRUTHLOOP_FEEDBACK_URL": feedback,
        "TRUTHLOOP_MONITOR": MONITOR_KEY,
        "TRUTHLOOP_SPOOL_DIR": str(spool),
        "TRUTHLOOP_SPEC": json.dumps(monitor),
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


@dataclass(frozen=True)
class Result:
    name: str
    latency: Load
    throughput: Load
    saturated: Load
    """The same at concurrency 64, for how far c=16 is from what the core can do."""
    cpu_us: float | None
    """CPU microseconds per request of the proxy process at c=16 (None for the model alone)."""
    cpu64_us: float | None
    """The same at c=64, where the proxy is busier and wakes up less often per request."""
    cpu1_us: float | None
    """The same at c=1, with everyone on CPU 0."""
    capture_us: float | None
    """Of `cpu_us`, the CPU microseconds per request in the stand-in's capture callback (None for
    the targets that do not time it)."""
    rss_mib: float | None
    queue: tuple[Queue, Queue, Queue] | None
    """The command's records captured and dropped at its queue while the c=1 (warm-up included),
    c=16 (warm-up included) and c=64 loads ran; None for the other targets."""
    requests: int
    """Every request the target answered to the load generator, warm-ups included."""
    in_flight: int
    """How many more it may have answered unseen: a request in flight per connection per run."""


Generator = Callable[[str, int, float, Path, int], Load]


@dataclass(frozen=True)
class Queue:
    captured: float
    dropped: float
    """Of those, dropped at the full queue (`records_dropped{reason="queue_full"}`): the
    command is fail-open, its records wait for no one."""

    def __sub__(self, other: Queue) -> Queue:
        return Queue(self.captured - other.captured, self.dropped - other.dropped)

    def __add__(self, other: Queue) -> Queue:
        return Queue(self.captured + other.captured, self.dropped + other.dropped)


def _queue(admin: str) -> Queue:
    side = counters(admin + "/metrics")
    return Queue(
        side["truthloop_sidecar_records_captured_total"],
        side.get("truthloop_sidecar_records_dropped_total{queue_full}", 0.0),
    )


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pid: int | None
    """The proxy process whose CPU is measured; None for the model alone."""
    spent: Callable[[], float] | None = None
    """The CPU seconds the target's capture callback has taken so far, if it times them."""
    admin: str | None = None
    """The command's admin URL, whose counters say what its queue took and dropped."""


def _measure(target: Target, model: int, gen: Generator, script: Path, seconds: float) -> Result:
    """One round for one target. Latency with everyone on CPU 0 (one core: what the proxy's work
    adds, free of this machine's cross-CPU wake-up latency); throughput and CPU with the proxy
    alone on CPU 0."""
    name, pid, spent, admin = target.name, target.pid, target.spent, target.admin
    url = f"http://127.0.0.1:{target.port}/"
    marks = [_queue(admin)] if admin else []
    _move(model, 0)
    warm = gen(url, 1, 1, script, 0)  # warm-up: connections, caches
    before = _cpu_seconds(pid) if pid else 0.0
    latency = gen(url, 1, seconds, script, 0)
    cpu1 = (_cpu_seconds(pid) - before) / latency.requests * 1e6 if pid else None
    _move(model, 1)
    marks += [_queue(admin)] if admin else []
    warm16 = gen(url, 16, 1, script, 1)
    before = _cpu_seconds(pid) if pid else 0.0
    captured = spent() if spent else 0.0
    throughput = gen(url, 16, seconds, script, 1)
    cpu = (_cpu_seconds(pid) - before) / throughput.requests * 1e6 if pid else None
    capture = (spent() - captured) / throughput.requests * 1e6 if spent else None
    marks += [_queue(admin)] if admin else []
    before = _cpu_seconds(pid) if pid else 0.0
    saturated = gen(url, 64, seconds, script, 1)
    cpu64 = (_cpu_seconds(pid) - before) / saturated.requests * 1e6 if pid else None
    rss = _peak_rss_mib(pid) if pid else None
    queue = None
    if admin:
        marks.append(_queue(admin))
        queue = (marks[1] - marks[0], marks[2] - marks[1], marks[3] - marks[2])
    runs = (warm, latency, warm16, throughput, saturated)
    requests, in_flight = sum(r.requests for r in runs), sum(r.connections for r in runs)
    return Result(
        name,
        latency,
        throughput,
        saturated,
        cpu,
        cpu64,
        cpu1,
        capture,
        rss,
        queue,
        requests,
        in_flight,
    )


def _best_load(loads: list[Load]) -> Load:
    fastest = max(loads, key=lambda x: x.rps)
    return Load(
        fastest.requests,
        fastest.seconds,
        min(x.p50_ms for x in loads),
        min(x.p99_ms for x in loads),
        min(x.p999_ms for x in loads),
        fastest.connections,
    )


def _combine(rounds: list[Result]) -> Result:
    """Per figure, the best round: the lowest latency and CPU, the highest throughput (other
    work on the machine only ever makes them worse); peak RSS: the largest; requests and the
    queue's records: all."""
    cpus = [r.cpu_us for r in rounds if r.cpu_us is not None]
    cpus64 = [r.cpu64_us for r in rounds if r.cpu64_us is not None]
    cpus1 = [r.cpu1_us for r in rounds if r.cpu1_us is not None]
    captures = [r.capture_us for r in rounds if r.capture_us is not None]
    rss = [r.rss_mib for r in rounds if r.rss_mib is not None]
    return Result(
        rounds[0].name,
        _best_load([r.latency for r in rounds]),
        _best_load([r.throughput for r in rounds]),
        _best_load([r.saturated for r in rounds]),
        min(cpus) if cpus else None,
        min(cpus64) if cpus64 else None,
        min(cpus1) if cpus1 else None,
        min(captures) if captures else None,
        max(rss) if rss else None,
        _total_queue([r.queue for r in rounds]),
        sum(r.requests for r in rounds),
        sum(r.in_flight for r in rounds),
    )


def _total_queue(
    rounds: list[tuple[Queue, Queue, Queue] | None],
) -> tuple[Queue, Queue, Queue] | None:
    """The queue's figures summed over the rounds: a loss is not a figure to take the best of."""
    measured = [q for q in rounds if q is not None]
    if not measured:
        return None
    return (
        sum((q[0] for q in measured), Queue(0, 0)),
        sum((q[1] for q in measured), Queue(0, 0)),
        sum((q[2] for q in measured), Queue(0, 0)),
    )


def _ensure_debian(binary: str, package: str) -> str | None:
    """`binary`'s path, installing `package` with apt-get if needed; None with a note if not."""
    if found := shutil.which(binary) or shutil.which(binary, path="/usr/sbin"):
        return found
    print(f"installing {package} with apt-get ...", file=sys.stderr)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            print(f"  apt-get could not install {package}", file=sys.stderr)
            return None
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin")


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream model {{ server 127.0.0.1:{model}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _nginx_worker(master: int) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise RuntimeError("nginx started no worker")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def put_json(url: str, body: object) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def counters(url: str) -> dict[str, float]:
    """A Prometheus endpoint's samples summed by name over their labels, and by name and
    reason as `name{reason}` for those with a `reason` label."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(_get(url).decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if "reason" in sample.labels:
                key = f"{sample.name}{{{sample.labels['reason']}}}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def check_capture(
    admin: str, feedback: str, answered: int, in_flight: int, rows: int, stored_by: str
) -> str:
    """Every row of every request the command answered became a record, and every record was
    stored by the feedback service or counted as dropped at the full queue (the command is
    fail-open: at full load it drops what it cannot ship, counted, and the tables say where):
    the line that says so, once the sidecar has shipped everything; RuntimeError with the counts
    when capture or shipping lost any otherwise (skipped, failed, dropped for another reason,
    rejected, not stored).

    `answered` is what the load generator counted; up to `in_flight` more may have been answered
    as it stopped (a run ends with a request in flight on each connection)."""
    name = "truthloop_sidecar_"
    deadline = time.monotonic() + 120
    while True:
        side = counters(admin + "/metrics")
        stored = counters(feedback + "/metrics").get("truthloop_predictions_total", 0.0)
        captured = side[name + "records_captured_total"]
        shipped = side[name + "records_shipped_total"]
        full = side.get(name + "records_dropped_total{queue_full}", 0.0)
        if shipped == stored == captured - full or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    requests = side[name + "requests_total"]
    problems = [
        f"{metric} {value:,.0f}"
        for metric in (
            "capture_skipped_total",
            "capture_errors_total",
            "records_dropped_total",
            "records_rejected_total",
            "queue_records",
            "spool_records",
        )
        if (value := side.get(name + metric, 0.0) - (full if "dropped" in metric else 0.0))
    ]
    if not answered <= requests <= answered + in_flight:
        problems.append(f"wrk saw {answered:,} answers, the sidecar counts {requests:,.0f}")
    if not (captured == requests * rows and shipped == stored == captured - full):
        problems.append(
            f"{requests:,.0f} requests of {rows} rows, {captured:,.0f} captured, "
            f"{full:,.0f} dropped at the full queue, {shipped:,.0f} shipped, {stored:,.0f} stored"
        )
    if problems:
        raise RuntimeError("capture lost records: " + "; ".join(problems))
    of = f" of {rows} rows" if rows > 1 else ""
    dropped = (
        f"; the other {full:,.0f} were dropped at the command's full queue, counted (see below)"
        if full
        else ", none dropped"
    )
    return (
        f"capture checked: the command answered {requests:,.0f} requests{of} (wrk counted "
        f"{answered:,}), captured every row ({captured:,.0f} records), and {stored_by} "
        f"{stored:,.0f} of them{dropped}"
    )


def bench(case: Case, seconds: float, rounds: int) -> tuple[list[Result], list[str]]:
    notes: list[str] = []
    wrk = _ensure_debian("wrk", "wrk")
    gen = run_wrk if wrk else partial(run_own_client, case=case)
    notes.append(
        "load: wrk (Debian), 1 thread"
        if wrk
        else "load: the script's own uvloop client (wrk could not be installed)"
    )
    nginx = _ensure_debian("nginx", "nginx-light")
    with tempfile.TemporaryDirectory() as tmp, Processes(Path(tmp)) as procs:
        script = Path(tmp) / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.path = "{case.path}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{case.request.decode()}'\n"
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("p99.9 %.1f\\n", latency:percentile(99.9)))\n'
            "end\n"
        )
        model_port, model = procs.model(case)
        targets = [Target("direct", model_port, None)]
        feedback = procs.sink() if case.sink else procs.feedback(case.monitor)
        port, admin_port = free_port(), free_port()
        spool = Path(tmp) / "spool"
        env = command_env(port, model_port, admin_port, feedback, spool, case.monitor)
        command = procs.start([*TRUTHLOOP, "sidecar"], port, "sidecar", 0, env)
        admin = f"http://127.0.0.1:{admin_port}"
        targets.append(Target(COMMAND, port, command.pid, admin=admin))

        role = [sys.executable, __file__, "--role", "sidecar"]
        stand_ins = [(STAND_IN, "capture"), (FALLBACK, "fallback")][: 2 if case.fallback else 1]
        for name, mode in stand_ins:
            port, spent = free_port(), Path(tmp) / f"{mode}.spent"
            spent.write_bytes(bytes(8))
            cmd = [*role, str(port), str(model_port), mode, case.name, str(spent)]
            proc = procs.start(cmd, port, name, 0)
            targets.append(Target(name, port, proc.pid, partial(_read_spent, spent)))
        if nginx:
            port = free_port()
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=tmp, model=model_port, port=port))
            proc = procs.start([nginx, "-p", tmp, "-c", str(conf)], port, "nginx", 0)
            targets.append(Target("nginx", port, _nginx_worker(proc.pid)))
        else:
            notes.append("nginx: skipped, apt-get could not install nginx-light")
        by_target: dict[str, list[Result]] = {t.name: [] for t in targets}
        for _ in range(rounds):  # interleaved, so a noisy moment hits every target alike
            for target in targets:
                by_target[target.name].append(_measure(target, model, gen, script, seconds))
        results = [_combine(r) for r in by_target.values()]
        side = next(r for r in results if r.name == COMMAND)
        stored_by = (
            "the stand-in feedback service received" if case.sink else "the feedback service stored"
        )
        notes.append(
            check_capture(admin, feedback, side.requests, side.in_flight, case.rows, stored_by)
        )
    return results, notes


def _read_spent(path: Path) -> float:
    """The seconds a stand-in's capture callback has taken so far: what its `BenchTap` wrote
    into the file's shared page."""
    return float(struct.unpack("d", path.read_bytes())[0])


# Reporting.


def _describe(case: Case) -> str:
    if case.rows == 1:
        return ""
    return (
        f"Every request is an Open Inference Protocol v2 batch of {case.rows} rows to "
        f"`{case.path}`: one FP32 input `predict` [{case.rows}, {FEATURES}] (flat row-major "
        "`data`) and the rows' entity IDs in `parameters.entity_ids`, "
        f"{len(case.request):,} bytes; the model answers `predict` [{case.rows}, 1] INT64 and "
        f"`predict_proba` [{case.rows}, 2] FP64, {len(case.response):,} bytes. The monitor "
        "captures with `capture.protocol: open-inference-v2`, the entity per row "
        "(`{pointer: /parameters/entity_ids, perRow: true}`) and the score at "
        f"`/predict_proba/1`: {case.rows} records per request, each with its row's "
        f"{FEATURES} features. "
    )


def table(
    case: Case, results: list[Result], notes: list[str], seconds: float, rounds: int, load: str
) -> str:
    by = {r.name: r for r in results}
    direct, nginx = by["direct"], by.get("nginx")
    batch = case.rows > 1
    lines = [
        f"Run {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {rounds} interleaved rounds of {seconds:g} s per "
        f"measurement, each figure the best round's; load average {load} (other work "
        "on this shared machine moves these figures, up to 2× between runs); "
        + "; ".join(notes)
        + ". "
        + _describe(case)
        + "Latency (c=1): load generator, proxy and model all on CPU 0, so the figures are the "
        "proxy's own work, not this VM's cross-CPU wake-ups (0.1–0.3 ms a hop here, charged to "
        "nginx alike). Throughput and CPU (c=16, c=64): the proxy alone on CPU 0, the model and "
        "the load generator on CPU 1; CPU is the proxy process's utime+stime per request over "
        "the run, and `1-core capacity` is one second divided by the c=64 figure. "
        + (
            "Capturing a request's rows takes about a millisecond, so `sidecar` and `proxy only` "
            "are CPU-bound at c=16 already; nginx is bound by the round trip across CPUs. "
            if batch
            else "At c=16 a proxy here is not CPU-bound but bound by the round trip across CPUs "
            "(each idle wake-up also costs CPU); c=64 shows more of the core. "
        )
        + "`sidecar` is the command users run, "
        + (
            "shipping to a stand-in feedback service that counts the records it is sent and "
            "stores none (on CPU 1 throughout: one `truthloop feedback` stores 40,000–60,000 "
            "records a second on a core of this machine, `bench/feedback_ingest.py`, fewer than "
            "these batches make at full load); `proxy only`"
            if case.sink
            else "shipping to a live feedback service (on CPU 1 throughout); `proxy only`"
        )
        + (" and `fallback` are" if case.fallback else " is")
        + " the proxy with the command's own tap, whose records are never shipped"
        + (
            " (`fallback`: engaged, the rules answer, the model is called off the request path)"
            if case.fallback
            else ""
        )
        + "; `capture CPU` is the part of its CPU per request spent in the capture callback "
        "(extraction, records encoded and queued), timed in the process.",
        "",
        "| target | p50 ms (c=1) | p99 ms (c=1) | p99.9 ms (c=1) | added p50 ms | added p99 ms "
        "| req/s (c=16) | req/s (c=64) "
        + ("| records/s (c=16) | records/s (c=64) " if batch else "")
        + "| CPU µs/req | capture CPU µs/req | CPU vs nginx | CPU µs/req (c=64) "
        "| CPU vs nginx (c=64) | 1-core capacity req/s | peak RSS MiB |",
        "|---" * (15 + 2 * batch) + "|",
    ]
    for r in results:
        added = r is not direct
        records = []
        if batch:
            captures = r.name in (COMMAND, STAND_IN)
            records = [
                f"{r.throughput.rps * case.rows:,.0f}" if captures else "–",
                f"{r.saturated.rps * case.rows:,.0f}" if captures else "–",
            ]
        cells = [
            r.name,
            f"{r.latency.p50_ms:.3f}",
            f"{r.latency.p99_ms:.3f}",
            f"{r.latency.p999_ms:.3f}",
            f"{r.latency.p50_ms - direct.latency.p50_ms:+.3f}" if added else "–",
            f"{r.latency.p99_ms - direct.latency.p99_ms:+.3f}" if added else "–",
            f"{r.throughput.rps:,.0f}",
            f"{r.saturated.rps:,.0f}",
            *records,
            f"{r.cpu_us:.1f}" if r.cpu_us else "–",
            f"{r.capture_us:.1f}" if r.capture_us else "–",
            f"{r.cpu_us / nginx.cpu_us:.2f}×" if nginx and nginx.cpu_us and r.cpu_us else "–",
            f"{r.cpu64_us:.1f}" if r.cpu64_us else "–",
            f"{r.cpu64_us / nginx.cpu64_us:.2f}×"
            if nginx and nginx.cpu64_us and r.cpu64_us
            else "–",
            f"{1e6 / r.cpu64_us:,.0f}" if r.cpu64_us else "–",
            f"{r.rss_mib:.1f}" if r.rss_mib else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _batch_summary(case, by) if batch else _goals(by)]
    if (queue := by[COMMAND].queue) is not None:
        lines += ["", _dropped(queue)]
    return "\n".join(lines)


def _dropped(queue: tuple[Queue, Queue, Queue]) -> str:
    """What the command's queue dropped under each load, over all rounds."""
    loads = []
    for load, q in zip(("c=1", "c=16", "c=64"), queue, strict=True):
        share = f" ({q.dropped / q.captured:.1%})" if q.dropped else ""
        loads.append(f"{load} {q.dropped:,.0f} of {q.captured:,.0f}{share}")
    return (
        'Records `sidecar` dropped at its full queue (`records_dropped{reason="queue_full"}`: '
        "fail-open, capture never holds a response back), of those it captured, over all "
        "rounds: " + "; ".join(loads) + "."
    )


def _goals(by: dict[str, Result]) -> str:
    """The single-row goals, met or missed by `sidecar`."""
    direct, side, nginx = by["direct"], by[COMMAND], by.get("nginx")
    checks = [
        ("added p50 ≤ 0.25 ms", side.latency.p50_ms - direct.latency.p50_ms, GOALS["added_p50_ms"]),
        ("added p99 ≤ 1 ms", side.latency.p99_ms - direct.latency.p99_ms, GOALS["added_p99_ms"]),
        ("RSS ≤ 50 MiB", side.rss_mib or 0.0, GOALS["rss"]),
    ]
    goals = [
        f"{'met' if value <= bound else 'MISSED'}: {text} ({value:.3f})"
        for text, value, bound in checks
    ]
    met_rps = side.throughput.rps >= GOALS["rps"]
    capacity = f", 1-core capacity {1e6 / side.cpu64_us:,.0f}" if side.cpu64_us else ""
    goals.append(
        f"{'met' if met_rps else 'MISSED'}: ≥ 10k req/s on one core "
        f"(c=16 {side.throughput.rps:,.0f}; c=64 {side.saturated.rps:,.0f}{capacity})"
    )
    if nginx and nginx.cpu_us and side.cpu_us and nginx.cpu64_us and side.cpu64_us:
        ratio = side.cpu_us / nginx.cpu_us
        goals.append(
            f"{'met' if ratio <= GOALS['cpu_vs_nginx'] else 'MISSED'}: CPU per request "
            f"≤ 3× nginx's (c=16 {ratio:.2f}×; c=64 {side.cpu64_us / nginx.cpu64_us:.2f}×)"
        )
    return "Goals for `sidecar` (the command, capturing and shipping): " + "; ".join(goals) + "."


def _batch_summary(case: Case, by: dict[str, Result]) -> str:
    """What a batch request costs through `sidecar` against nginx, and capture's share."""
    direct, side, stand_in, nginx = by["direct"], by[COMMAND], by[STAND_IN], by.get("nginx")
    rows = case.rows
    parts = [
        f"added latency per request over direct: p50 "
        f"{side.latency.p50_ms - direct.latency.p50_ms:+.3f} ms, p99 "
        f"{side.latency.p99_ms - direct.latency.p99_ms:+.3f} ms"
    ]
    if nginx:
        parts.append(
            f"over nginx: p50 {side.latency.p50_ms - nginx.latency.p50_ms:+.3f} ms, p99 "
            f"{side.latency.p99_ms - nginx.latency.p99_ms:+.3f} ms"
        )
    if side.cpu_us and side.cpu64_us and side.cpu1_us:
        loads = []
        for load, mine, theirs in (
            ("c=1", side.cpu1_us, nginx and nginx.cpu1_us),
            ("c=16", side.cpu_us, nginx and nginx.cpu_us),
            ("c=64", side.cpu64_us, nginx and nginx.cpu64_us),
        ):
            ratio = f" ({mine / theirs:.0f}× nginx's {theirs:.1f})" if theirs else ""
            loads.append(f"{mine:,.0f} µs at {load}{ratio}")
        dropped = side.queue is not None and any(q.dropped for q in side.queue)
        short = (
            " (a record dropped at the full queue is not shipped: where the command drops, it "
            "pays less than shipping every record costs)"
        )
        parts.append(
            f"CPU per request {', '.join(loads)}; {side.cpu1_us / rows:.1f} µs per row at c=1"
            + (short if dropped else "")
        )
        parts.append(
            f"records captured per second: {side.throughput.rps * rows:,.0f} at c=16, "
            f"{side.saturated.rps * rows:,.0f} at c=64"
        )
    if stand_in.capture_us and stand_in.cpu_us:
        parts.append(
            f"the capture callback takes {stand_in.capture_us:,.0f} µs per request "
            f"({stand_in.capture_us / rows:.1f} µs per row), "
            f"{stand_in.capture_us / stand_in.cpu_us:.0%} of `proxy only`'s "
            f"{stand_in.cpu_us:,.0f} µs; the proxying itself the other "
            f"{stand_in.cpu_us - stand_in.capture_us:,.0f} µs"
        )
    return f"`sidecar` on a {rows}-row batch: " + "; ".join(parts) + "."


def arguments(doc: str, **options: tuple[type, object, str]) -> argparse.Namespace:
    """A bench script's arguments: `options` (--name: type, default, help), `--write`, and the
    role a child process of the script runs (hidden)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for name, (kind, default, text) in options.items():
        parser.add_argument(f"--{name}", type=kind, default=default, help=text)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("role_args", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args()


TITLES = {
    "single": "## Sidecar (`bench/sidecar.py`)",
    "v2-batch": "## Sidecar on a 100-row Open Inference Protocol v2 batch "
    "(`bench/sidecar.py --case v2-batch`)",
}


def main() -> None:
    args = arguments(
        __doc__,
        case=(str, "all", "single, v2-batch or all"),
        duration=(float, 3.0, "seconds per measurement"),
        rounds=(int, 3, "rounds over all targets"),
    )
    if args.role == "model":
        port, case = args.role_args
        serve_model(int(port), CASES[case])
    elif args.role == "sidecar":
        port, model_port, mode, case, spent = args.role_args
        serve_sidecar(int(port), int(model_port), mode == "fallback", CASES[case], spent)
    elif args.role == "sink":
        serve_sink(int(args.role_args[0]))
    elif args.role == "client":
        url, connections, seconds, case = args.role_args
        own_client(url, int(connections), float(seconds), CASES[case])
    else:
        if args.case not in (*CASES, "all"):
            raise SystemExit(f"--case: {args.case!r} is not one of {', '.join(CASES)}, all")
        for case in CASES.values() if args.case == "all" else (CASES[args.case],):
            before = os.getloadavg()[0]
            results, notes = bench(case, args.duration, args.rounds)
            load = f"{before:.2f} before, {os.getloadavg()[0]:.2f} after"
            text = table(case, results, notes, args.duration, args.rounds, load)
            print(text)
            if args.write:
                sections.write(BENCHMARKS, case.section, f"{TITLES[case.name]}\n\n{text}")
                print(f"\nwritten to {BENCHMARKS}")


if __name__ == "__main__":
    main()
