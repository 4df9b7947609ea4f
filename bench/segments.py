# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""Cost of segments: ingest with 3 segments of 20 values, and the 30-day segment read.

Run: `python bench/segments.py [--records 100000] [--rounds 3] [--postgres postgresql://…] [--write]`

In one run, on one machine, with the command users run (`truthloop feedback` as a subprocess, on
a fresh SQLite store per round and a fresh schema of `--postgres`'s database per round), spoken to
over HTTP:
1. ingest: the same scored capture records, each with 10 features, POSTed to `/v1/predictions`
   in NDJSON batches of 1,000 (as the sidecar ships them) from 4 connections, to two monitors of
   one service with the same calibrated reference (10,000 rows with actuals, so every record also
   adds its CBPE histogram cell): one with 3 segments (`SEGMENTS`) whose records each carry a
   value of each, 20 values a segment, all in the value sets (chosen by the leader from a warm-up
   batch before the clock starts), so every ingest counter is also added under 3 segment values;
   one without segments (the baseline). Records/s and the service's CPU per record, in `SLICES`
   slices sent to the two monitors in turn (the order swapped every slice);
2. the 30-day read: the segmented monitor's 30 days of 1-minute buckets filled through the API
   (`--per-minute` scored records a minute, every value of each segment in turn, all labeled),
   once the tick has folded them: `GET .../metrics?window=30d&segment=s0` (20 values, each with
   its realized and estimated metrics and intervals) against `GET .../metrics?window=30d` (the
   same window's plain read), p50 / p95 of 30 reads each.

Each figure is the best of `--rounds`; each ratio the median of the rounds' ratios, both figures
of a ratio measured in one round. With `--write` the table replaces the `<!-- bench:segments -->`
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import drift as drift_bench
import estimate as estimate_bench
import msgspec
import numpy as np
import sections
from feedback_ingest import (
    BATCH,
    SLICES,
    best_of_rounds,
    cpu_name,
    folded,
    folded_sqlite,
    fresh_store,
    month_records,
    ndjson,
    pct,
    post_all,
    post_records,
    server_facts,
    service_arguments,
    sliced,
    start_service,
    timed_gets,
)

SEGMENTED, PLAIN = "segmented", "plain"
SEGMENTS = ("s0", "s1", "s2")
VALUES = 20
STORES = ("sqlite", "postgres")
READS = 30
GOAL_RATIO = 0.7
GOAL_READ_MS = 100.0


def value(segment: int, i: int) -> str:
    """Record `i`'s value of segment `segment`: each segment cycles through its 20 values at its
    own pace, so the three are not one another's copies."""
    return f"v{(i // (1 + segment * 3)) % VALUES:02d}"


def segment_values(i: int) -> dict[str, str]:
    return {name: value(k, i) for k, name in enumerate(SEGMENTS)}


async def put(session: aiohttp.ClientSession, base: str, name: str) -> None:
    body = drift_bench.monitor(name)
    body["spec"]["capture"]["score"] = {"pointer": "/score"}
    if name == SEGMENTED:
        body["spec"]["segments"] = [{"name": s, "pointer": f"/{s}"} for s in SEGMENTS]
    async with session.put(f"{base}/v1/monitors/bench/{name}", json=body) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"PUT {name}: {r.status} {await r.text()}")


async def value_sets_chosen(session: aiohttp.ClientSession, base: str, within: float = 60) -> None:
    """Send a warm-up batch with every value, and wait until the leader has put each segment's
    values in its value set (a value outside it answers 404)."""
    items = [
        {
            "prediction_id": f"warm-{i}",
            "monitor": f"bench/{SEGMENTED}",
            "model_version": "v3",
            "ts": time.time() - 60,
            "prediction": i % 2,
            "score": 0.25 + 0.5 * (i % 2),
            "segments": segment_values(i),
        }
        for i in range(BATCH)
    ]
    await post_all(session, base + "/v1/predictions", [ndjson(items)], "application/x-ndjson", 1)
    url = f"{base}/v1/monitors/bench/{SEGMENTED}/metrics"
    deadline = time.monotonic() + within
    for segment in SEGMENTS:
        while True:
            query = {"segment": segment, "value": f"v{VALUES - 1:02d}"}
            async with session.get(url, params=query) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"no value set for {segment} within {within:g}s")
            await asyncio.sleep(0.1)


# -- 1. ingest, with and without segments -------------------------------------------------------


def bodies_of(records: int, now: float) -> dict[str, list[bytes]]:
    rows = drift_bench.rows(drift_bench.columns(np.random.default_rng(2), records, 10))
    out = {}
    for name in (SEGMENTED, PLAIN):
        batch = drift_bench.records(rows, f"bench/{name}", now, name)
        if name == SEGMENTED:
            for i, record in enumerate(batch):
                record["segments"] = segment_values(i)
        out[name] = [ndjson(batch[i : i + BATCH]) for i in range(0, len(batch), BATCH)]
    return out


async def ingest_round(
    kind: str, args: argparse.Namespace, workdir: Path, reference: Path, flip: bool
) -> dict[str, float]:
    bodies = bodies_of(args.records, time.time())
    async with fresh_store(None if kind == "sqlite" else args.postgres, workdir) as store:
        proc, base = await start_service(store, workdir)
        try:
            connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
            async with aiohttp.ClientSession(connector=connector) as session:
                for name in bodies:
                    await put(session, base, name)
                    await drift_bench.upload(session, base, name, reference)
                await value_sets_chosen(session, base)
                orders = ([PLAIN, SEGMENTED], [SEGMENTED, PLAIN])
                results = await sliced(session, base, proc.pid, bodies, orders, flip, args)
                url = f"{base}/v1/monitors/bench/{SEGMENTED}/metrics"
                async with session.get(url, params={"segment": "s2"}) as r:
                    answer = await r.json()
                kept = [v for v in answer["segment"]["values"] if v["value"].startswith("v")]
                if len(kept) != VALUES or answer["segment"]["values"][0]["estimated"] is None:
                    raise SystemExit(f"segment s2 not counted: {str(answer)[:500]}")
        finally:
            proc.kill()
            await proc.wait()
    return {f"{kind}_{key}": v for key, v in results.items()}


# -- 2. the 30-day segment read -----------------------------------------------------------------


async def fill(session: aiohttp.ClientSession, base: str, per_minute: int) -> int:
    """30 days of labeled, scored, segmented records a minute through the API; how many."""
    items = month_records(
        f"bench/{SEGMENTED}",
        per_minute,
        time.time(),
        lambda m, k: {"segments": segment_values(m * per_minute + k)},
    )
    await post_records(session, base, items)
    labels = [
        msgspec.json.encode(
            {
                "items": [
                    {
                        "monitor": f"bench/{SEGMENTED}",
                        "prediction_id": r["prediction_id"],
                        "actual": int(float(r["score"]) >= 0.3),  # type: ignore[arg-type]
                    }
                    for r in items[i : i + BATCH]
                ]
            }
        )
        for i in range(0, len(items), BATCH)
    ]
    await post_all(session, base + "/v1/feedback", labels, "application/json", 4)
    return len(items)


async def history_round(
    kind: str, args: argparse.Namespace, workdir: Path, reference: Path
) -> dict[str, float]:
    results: dict[str, float] = {}
    async with fresh_store(None if kind == "sqlite" else args.postgres, workdir) as store:
        proc, base = await start_service(store, workdir)
        try:
            async with aiohttp.ClientSession() as session:
                await put(session, base, SEGMENTED)
                await drift_bench.upload(session, base, SEGMENTED, reference)
                await value_sets_chosen(session, base)
                results[f"{kind}_history_records"] = await fill(session, base, args.per_minute)
                if kind == "sqlite":
                    await folded_sqlite(Path(store.removeprefix("sqlite://")), within=300)
                else:
                    await folded(store)
                url = f"{base}/v1/monitors/bench/{SEGMENTED}/metrics?window=30d"
                async with session.get(url + "&segment=s0") as r:
                    answer = await r.json()
                values = answer["segment"]["values"]
                if len(values) < VALUES or values[0]["metrics"]["accuracy"]["value"] is None:
                    raise SystemExit(f"the segment read is empty: {str(answer)[:500]}")
                for read, query in (("segment", "&segment=s0"), ("plain", "")):
                    times = await timed_gets(session, url + query, READS)
                    results[f"{kind}_{read}_30d_p50_ms"] = statistics.median(times) * 1000
                    results[f"{kind}_{read}_30d_p95_ms"] = pct(times, 0.95) * 1000
        finally:
            proc.kill()
            await proc.wait()
    return results


# -- the table ----------------------------------------------------------------------------------


def ratios() -> dict[str, tuple[str, str]]:
    return {
        f"{kind}_ratio": (f"{kind}_{SEGMENTED}_per_s", f"{kind}_{PLAIN}_per_s") for kind in STORES
    }


def differences() -> dict[str, tuple[str, str]]:
    return {
        f"{kind}_added_cpu_us": (f"{kind}_{SEGMENTED}_cpu_us", f"{kind}_{PLAIN}_cpu_us")
        for kind in STORES
    }


def markdown(r: dict[str, float], args: argparse.Namespace, load: tuple[float, float]) -> str:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    rows = []
    for kind in STORES:
        store = names[kind]
        ratio = r[f"{kind}_ratio"]
        met = "met" if ratio >= GOAL_RATIO else "NOT met"
        rows += [
            (
                f"{store}: scored records, 10 features, calibrated reference, no segments: the baseline",
                f"{r[f'{kind}_{PLAIN}_per_s']:,.0f}/s",
                "",
            ),
            (
                f"{store}: the same records with 3 segments of 20 values each",
                f"{r[f'{kind}_{SEGMENTED}_per_s']:,.0f}/s",
                "",
            ),
            (
                f"{store}: with segments ÷ baseline, records/s (median of the rounds)",
                f"{ratio:.2f} (rounds {r[f'{kind}_ratio_low']:.2f}–{r[f'{kind}_ratio_high']:.2f})",
                f"≥ {GOAL_RATIO}: {met}",
            ),
            (
                f"{store}: service CPU per record, baseline / with segments (all threads; the difference, median of the rounds)",
                f"{r[f'{kind}_{PLAIN}_cpu_us']:.1f} / {r[f'{kind}_{SEGMENTED}_cpu_us']:.1f} µs ({r[f'{kind}_added_cpu_us']:+.1f})",
                "",
            ),
        ]
    for kind in STORES:
        store = names[kind]
        segment = r[f"{kind}_segment_30d_p50_ms"]
        met = "met" if r[f"{kind}_segment_30d_p95_ms"] < GOAL_READ_MS else "NOT met"
        rows += [
            (
                f"{store}: `GET .../metrics?window=30d&segment=s0` (20 values), p50 / p95",
                f"{segment:.1f} / {r[f'{kind}_segment_30d_p95_ms']:.1f} ms",
                f"< {GOAL_READ_MS:g} ms: {met}",
            ),
            (
                f"{store}: `GET .../metrics?window=30d`, the same window without the segment, p50 / p95",
                f"{r[f'{kind}_plain_30d_p50_ms']:.1f} / {r[f'{kind}_plain_30d_p95_ms']:.1f} ms",
                "",
            ),
        ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    records = int(r["sqlite_history_records"])
    return f"""## Segments: ingest with 3 segments of 20 values, the 30-day segment read (`bench/segments.py`)

Run {time.strftime("%Y-%m-%d")} on {os.cpu_count()} × {cpu_name()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {args.server}; best of {args.rounds} rounds (a ratio: the median of the rounds', both figures from one round; CPU per record: the median; a read: the least p50 and the least p95 of the rounds, each of {READS} reads); load average {load[0]:.2f} before, {load[1]:.2f} after.
`truthloop feedback` runs as a subprocess on a fresh store per round (a SQLite file, a schema of
the PostgreSQL database), spoken to over HTTP: {args.records:,} scored capture records with 10
features per monitor and round, `POST /v1/predictions` in NDJSON batches of 1,000 (as the sidecar
ships them) from {args.concurrency} connections, in {SLICES} slices sent to the two monitors in
turn. Both have the same 10,000-row reference with actuals, so every record also counts in the
CBPE score histogram (and, with segments, in each of its values' copy of it, one bin per
calibration step). The segmented monitor's records each carry a value of each of its 3
segments, 20 values a segment, all in the value sets (chosen from a warm-up batch before the
clock starts). The 30-day read: {records:,} labeled records ({args.per_minute} a minute, each
segment's 20 values in turn) filled through the API and folded.

| measure | result | goal |
|---|---|---|
{table}

Each record with segments adds every ingest counter (predictions, the estimation histogram, the
label counters later) again under each of its 3 values, so the counters it writes grow about
fourfold; the store keeps the segment counters in tables of their own (docs/segments.md: what a
segment costs). On PostgreSQL the baseline is faster and the segment counters (a row per segment,
bucket, version and served_by) are a larger share of a batch's writes; the CPU figures count the
service only, not the database server. The 30-day segment read evaluates each of the 20 values'
realized metrics and estimates (each value keeps its copy of the estimation histogram) from the
day, hour and minute rollups: about 2.5 times the plain read of the same window on PostgreSQL and
3.5 times on SQLite. The ratios are measured side by side, but the machine is shared: rounds
disturbed by other work spread them (the rounds' range is shown).
"""


async def one_round(
    args: argparse.Namespace, workdir: Path, reference: Path, flip: bool
) -> dict[str, float]:
    results: dict[str, float] = {}
    for kind in STORES:
        results.update(await ingest_round(kind, args, workdir, reference, flip))
        results.update(await history_round(kind, args, workdir, reference))
    return results


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="truthloop-bench-segments-") as directory:
        workdir = Path(directory)
        reference = workdir / "reference.csv"
        estimate_bench.reference_csv(reference, 10_000, 10, actual=True)
        return await best_of_rounds(
            args, lambda flip: one_round(args, workdir, reference, flip), ratios(), differences()
        )


def main() -> None:
    parser = service_arguments(__doc__)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TRUTHLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="the PostgreSQL database to measure in (default %(default)s)",
    )
    args = parser.parse_args()
    args.records -= args.records % BATCH
    args.server = asyncio.run(server_facts(args.postgres))
    before = os.getloadavg()[0]
    results = asyncio.run(run_all(args))
    text = markdown(results, args, (before, os.getloadavg()[0]))
    print(text)
    if args.write:
        sections.write(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", "segments", text)


if __name__ == "__main__":
    main()
