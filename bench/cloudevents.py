"""KServe's payload logger as a source: CloudEvents paired per second, end to end over HTTP.

Run: `python bench/cloudevents.py [--inferences 5000] [--store postgresql://...] [--markdown
BENCHMARKS.md]`

Starts `truthloop feedback` as a process (1 replica on a fresh SQLite file; with `--store` 1 and
2 replicas on a fresh schema of that PostgreSQL database, the client spreading the events over
them as a Service would, each inference's two halves to different replicas) and sends each
inference as KServe's logger does: two binary-mode events sharing an id, the request half then
the response half, from `--concurrency` connections (an inference's halves on two of them, so
pairs complete while others wait). Measured: events/s and inferences paired/s for single-row
KServe v1 requests (one record each), and for 100-row Open Inference Protocol batches (records/s).
Each figure is the best of `--rounds` rounds (a fresh store each). With `--markdown FILE` it writes
its section between `<!-- bench:cloudevents -->` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import sections
from feedback_ingest import cpu_seconds, fresh_store, postgres_cpu_seconds, start_service

ROWS = 100
PATH = "/v1/cloudevents"


def monitor(name: str, capture: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "truthloop.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"namespace": "bench", "name": name},
        "spec": {
            "selector": {"matchLabels": {"truthloop.dev/source": "kserve-logger"}},
            "model": {"name": name},
            "task": "binary",
            "capture": capture,
            "feedback": {"attributionWindow": "24h"},
            "metrics": {"window": "1h", "minSamples": 50},
        },
    }


MONITORS = {
    "v1": monitor("churn", {"protocol": "kserve-v1", "entityId": {"pointer": "/0"}}),
    "v2": monitor(
        "churn-v2", {"protocol": "open-inference-v2", "prediction": {"pointer": "/output-0"}}
    ),
}


def payloads(kind: str, n: int) -> tuple[bytes, bytes]:
    """One inference's request and response bodies: a KServe v1 row, or a v2 batch of ROWS."""
    rng = random.Random(n)
    if kind == "v1":
        row = [f"user-{n}", rng.randrange(72), round(rng.uniform(20, 120), 2)]
        return (
            json.dumps({"instances": [row]}).encode(),
            json.dumps({"predictions": [rng.randrange(2)]}).encode(),
        )
    data = [round(rng.uniform(-2, 2), 3) for _ in range(ROWS * 4)]
    request = {
        "inputs": [{"name": "input-0", "shape": [ROWS, 4], "datatype": "FP64", "data": data}]
    }
    response = {
        "model_name": "churn-v2",
        "outputs": [
            {"name": "output-0", "shape": [ROWS], "datatype": "INT64",
             "data": [rng.randrange(2) for _ in range(ROWS)]},
        ],
    }  # fmt: skip
    return json.dumps(request).encode(), json.dumps(response).encode()


def headers(kind: str, half: str, event_id: str, name: str) -> dict[str, str]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".123456789Z"
    return {
        "Ce-Id": event_id,
        "Ce-Specversion": "1.0",
        "Ce-Source": "churn-predictor-00001-deployment-5d8f9c7b4-x2x9q",
        "Ce-Type": f"org.kubeflow.serving.inference.{half}",
        "Ce-Time": stamp,
        "Ce-Recordedtime": stamp,
        "Ce-Inferenceservicename": name,
        "Ce-Namespace": "bench",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Ce-Metadata": "{}",
        "Content-Type": "application/json",
    }


async def round_(
    bases: list[str], kind: str, inferences: int, concurrency: int
) -> tuple[float, int, int]:
    """(seconds, events sent, records stored) of `inferences` sent as their logger would."""
    name = MONITORS[kind]["metadata"]["name"]
    work: list[tuple[int, str, bytes]] = []
    for n in range(inferences):
        request, response = payloads(kind, n)
        work += [(n, "request", request), (n, "response", response)]
    queue = list(reversed(work))
    stored = 0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await put_monitor(session, bases, MONITORS[kind])

        async def worker() -> None:
            nonlocal stored
            while queue:
                n, half, body = queue.pop()
                base = bases[(n + (half == "response")) % len(bases)]
                event_id = f"{kind}-{n:08d}-0009174a"
                sent = headers(kind, half, event_id, name)
                async with session.post(base + PATH, data=body, headers=sent) as r:
                    answer = await r.json()
                    if r.status != 200:
                        raise SystemExit(f"{r.status} {answer}")
                    stored += answer.get("accepted", 0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return seconds, len(work), stored


async def put_monitor(
    session: aiohttp.ClientSession, bases: list[str], body: dict[str, Any]
) -> None:
    path = f"/v1/monitors/bench/{body['metadata']['name']}"
    async with session.put(bases[0] + path, json=body) as r:
        assert r.status in (200, 201), await r.text()
    for base in bases[1:]:  # the others hear of the monitor through NOTIFY
        while True:
            async with session.get(base + path) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    counts = (1, 2) if args.store else (1,)
    with tempfile.TemporaryDirectory() as tmp:
        for replicas in counts:
            for kind, inferences in (("v1", args.inferences), ("v2", args.inferences // 10)):
                best: dict[str, float] = {}
                for _ in range(args.rounds):
                    async with fresh_store(args.store, Path(tmp)) as url:
                        procs = [await start_service(url, Path(tmp)) for _ in range(replicas)]
                        try:
                            bases = [base for _, base in procs]
                            pids = [proc.pid for proc, _ in procs]
                            cpu = sum(map(cpu_seconds, pids)), postgres_cpu_seconds()
                            seconds, events, stored = await round_(
                                bases, kind, inferences, args.concurrency
                            )
                            service_cpu = sum(map(cpu_seconds, pids)) - cpu[0]
                            database_cpu = postgres_cpu_seconds() - cpu[1]
                        finally:
                            for proc, _ in procs:
                                proc.terminate()
                                await proc.wait()
                    if stored != inferences * (ROWS if kind == "v2" else 1):
                        raise SystemExit(f"{kind}: stored {stored} records of {inferences}")
                    found = {
                        "events_per_s": events / seconds,
                        "pairs_per_s": inferences / seconds,
                        "records_per_s": stored / seconds,
                        "service_cpu_ms": 1000 * service_cpu / inferences,
                        "database_cpu_ms": 1000 * database_cpu / inferences,
                    }
                    if found["pairs_per_s"] > best.get("pairs_per_s", 0.0):
                        best = found
                results[f"{kind}/{replicas}"] = best
                print(f"{kind} x{replicas}: {best}", file=sys.stderr)
    return results


def markdown(
    results: dict[str, dict[str, float]], args: argparse.Namespace, load: tuple[float, float]
) -> str:
    store = "PostgreSQL (a fresh schema)" if args.store else "SQLite (`synchronous=FULL`)"
    spread = " (with two replicas, to two replicas)" if args.store else ""
    lines = [
        "## KServe's payload logger: CloudEvents paired",
        "",
        f"`python bench/cloudevents.py{' --store ...' if args.store else ''}`: `truthloop "
        f"feedback` on {store}, {platform.machine()} with {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; each inference's request and response events sent as "
        f"KServe's logger sends them (binary mode) from {args.concurrency} connections, an "
        f"inference's halves on two of them{spread}. Best of {args.rounds} rounds; the client"
        f" runs on the same cores (load average {load[0]:.1f} before, {load[1]:.1f} after: the"
        " machine is shared).",
        "",
        "| inferences | replicas | events/s | inferences paired/s | records/s |"
        " service CPU / inference |" + (" PostgreSQL CPU / inference |" if args.store else ""),
        "| --- | --- | --- | --- | --- | --- |" + (" --- |" if args.store else ""),
    ]
    for key, found in results.items():
        kind, replicas = key.split("/")
        what = "KServe v1, 1 row" if kind == "v1" else f"Open Inference Protocol, {ROWS} rows"
        lines.append(
            f"| {what} | {replicas} | {found['events_per_s']:,.0f} | {found['pairs_per_s']:,.0f}"
            f" | {found['records_per_s']:,.0f} | {found['service_cpu_ms']:.2f} ms |"
            + (f" {found['database_cpu_ms']:.2f} ms |" if args.store else "")
        )
    lines += [
        "",
        "Each inference is two requests, and its records one ingest transaction (the path of"
        " `POST /v1/predictions`, which a sidecar fills with batches of a thousand records)."
        " SQLite writes the halves that arrive together in one transaction (one fsync for the"
        " group); PostgreSQL takes each half in a transaction of its own on the pool's"
        " connections.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inferences", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", help="postgresql://... (default: SQLite)")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    before = os.getloadavg()[0]
    results = asyncio.run(measure(args))
    text = markdown(results, args, (before, os.getloadavg()[0]))
    print(text)
    if args.markdown:
        name = "cloudevents-postgres" if args.store else "cloudevents"
        sections.write(args.markdown, name, text)


if __name__ == "__main__":
    main()
