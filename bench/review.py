# ruff: noqa: E501 (the table's rows and heading are Markdown text, one line each)
"""Cost of human review: ingest with a review queue, and how fast reviewers get through it.

Run: `python bench/review.py [--records 100000] [--rounds 3] [--store postgresql://…] [--write]`

In one run, on one machine, with the command users run (`truthloop feedback` as a subprocess, on
a fresh SQLite store per round, or a fresh schema of `--store`'s PostgreSQL database), spoken to
over HTTP:
1. ingest: the same scored capture records, each with 10 features (1% of them outliers: one value
   far outside the reference), POSTed to `/v1/predictions` in NDJSON batches of 1,000 (as the
   sidecar ships them) from 4 connections, to three monitors of one service with the same
   calibrated reference (10,000 rows with actuals): one with `spec.review` (`--budget` items a
   day, 30% at random and 70% borderline, outliers queued with probability 0.5), which
   reads each record's calibrated f, draws it, queues the selected ones with their pi and adds
   the review counters; the same with a budget larger than the traffic (every record queued,
   the worst case); one without (the baseline). Records/s, the service's CPU per record and
   the share of records queued. Each round sends its records in `SLICES` slices, each slice to
   the monitors in turn (the order reversed every slice), so a disturbance hits all alike;
2. the queue: `--reviewers` reviewers at once, each leasing `limit` items
   (`GET .../review?reviewer=&limit=`) and labeling them (`POST /v1/feedback`, `source: review`,
   one request per lease) until the queue is empty: items reviewed a second, for two limits.

Each figure is the best of `--rounds`; each ratio the median of the rounds' ratios, both figures
of a ratio measured in one round. With `--write` the tables replace the `<!-- bench:review -->`
section of BENCHMARKS.md (`<!-- bench:review-postgres -->` with `--store postgresql://…`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import drift as drift_bench
import estimate as estimate_bench
import numpy as np
import sections
from feedback_ingest import (
    BATCH,
    SLICES,
    best_of_rounds,
    cpu_name,
    fresh_store,
    server_facts,
    service_arguments,
    sliced,
    start_service,
)

REVIEWED, EVERY, PLAIN = "reviewed", "every", "plain"
EVERY_BUDGET = 10_000_000
"""The largest budget: more than the records sent, so every record is queued (the worst case of
the queue's inserts)."""
OUTLIER_EVERY = 100
"""One record in this many has a feature far outside the reference."""
LIMITS = (10, 100)
"""Items a reviewer leases at once, in the queue table."""


def review_spec(budget: int) -> dict[str, Any]:
    return {"budget": budget, "per": "day", "random": 0.3, "borderline": 0.7, "outliers": 0.5}


async def put(session: aiohttp.ClientSession, base: str, name: str, budget: int) -> None:
    body = drift_bench.monitor(name)
    body["spec"]["capture"]["score"] = {"pointer": "/score"}
    if name != PLAIN:
        body["spec"]["review"] = review_spec(budget if name == REVIEWED else EVERY_BUDGET)
    async with session.put(f"{base}/v1/monitors/bench/{name}", json=body) as r:
        if r.status not in (200, 201):
            raise SystemExit(f"PUT {name}: {r.status} {await r.text()}")


def features(n: int) -> list[dict[str, Any]]:
    """`n` rows of 10 features; every `OUTLIER_EVERY`th with f00 far outside the reference."""
    rows = drift_bench.rows(drift_bench.columns(np.random.default_rng(2), n, 10))
    for row in rows[::OUTLIER_EVERY]:
        row["f00"] = 1e6
    return rows


QUEUED = (
    "SELECT count(*) FROM review_items WHERE monitor_id = (SELECT id FROM monitors WHERE key = {})"
)


async def queued(store: str, name: str) -> int:
    """The items monitor `bench/<name>`'s review queue holds (every state)."""
    key = f"bench/{name}"
    if store.startswith("sqlite://"):
        with sqlite3.connect(store.removeprefix("sqlite://")) as db:
            return int(db.execute(QUEUED.format("?"), (key,)).fetchone()[0])
    conn = await asyncpg.connect(store)
    try:
        return int(await conn.fetchval(QUEUED.format("$1"), key))
    finally:
        await conn.close()


# -- 1. ingest, with and without review ---------------------------------------------------------


async def ingest_round(
    args: argparse.Namespace, workdir: Path, reference: Path, flip: bool
) -> dict[str, float]:
    rows = features(args.records)
    now = time.time()
    bodies = drift_bench.batches(rows, (REVIEWED, EVERY, PLAIN), now)
    results: dict[str, float] = {}
    async with fresh_store(None if args.store == "sqlite" else args.store, workdir) as store:
        proc, base = await start_service(store, workdir)
        try:
            connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
            async with aiohttp.ClientSession(connector=connector) as session:
                for name in bodies:
                    await put(session, base, name, args.budget)
                    await drift_bench.upload(session, base, name, reference)
                orders = ([PLAIN, REVIEWED, EVERY], [EVERY, REVIEWED, PLAIN])
                results = await sliced(session, base, proc.pid, bodies, orders, flip, args)
                results["queued_share"] = await queued(store, REVIEWED) / args.records
                every = await queued(store, EVERY)
                if not results["queued_share"] or every != args.records:
                    raise SystemExit(f"queued {results['queued_share']:.1%} and {every}")
                results.update(await review_queue(session, base, args))
        finally:
            proc.kill()
            await proc.wait()
    return results


# -- 2. leasing and labeling --------------------------------------------------------------------


async def reviewer(
    session: aiohttp.ClientSession, base: str, name: str, limit: int, budget: int
) -> int:
    """Lease and label until the queue has nothing for `name`, or `budget` items are done;
    the items labeled."""
    queue = f"{base}/v1/monitors/bench/{REVIEWED}/review"
    done = 0
    while done < budget:
        async with session.get(queue, params={"reviewer": name, "limit": str(limit)}) as r:
            if r.status != 200:
                raise SystemExit(f"lease: {r.status} {await r.text()}")
            items = (await r.json())["items"]
        if not items:
            break
        labels = [
            {
                "monitor": f"bench/{REVIEWED}",
                "prediction_id": item["prediction_id"],
                "actual": int(item["prediction"]) if done % 5 else 1 - int(item["prediction"]),
                "source": "review",
                "reviewer": name,
            }
            for item in items
        ]
        async with session.post(f"{base}/v1/feedback", json={"items": labels}) as r:
            if r.status != 200:
                raise SystemExit(f"label: {r.status} {await r.text()}")
            await r.read()
        done += len(items)
    return done


async def review_queue(
    session: aiohttp.ClientSession, base: str, args: argparse.Namespace
) -> dict[str, float]:
    """Items reviewed a second by `--reviewers` reviewers at each lease limit, each limit on
    its own part of the queue (`--reviews` items)."""
    out: dict[str, float] = {}
    for limit in LIMITS:
        share = args.reviews // args.reviewers
        started = time.perf_counter()
        done = await asyncio.gather(
            *(reviewer(session, base, f"r{limit}-{k}", limit, share) for k in range(args.reviewers))
        )
        seconds = time.perf_counter() - started
        if sum(done) < args.reviews // 2:
            raise SystemExit(f"only {sum(done)} items to review at limit {limit}")
        out[f"limit{limit}_per_s"] = sum(done) / seconds
    return out


# -- the tables ---------------------------------------------------------------------------------


RATIOS = {
    "ratio": (f"{REVIEWED}_per_s", f"{PLAIN}_per_s"),
    "every_ratio": (f"{EVERY}_per_s", f"{PLAIN}_per_s"),
}
"""Ingest with review against the same records without."""
DIFFERENCES = {
    "added_cpu_us": (f"{REVIEWED}_cpu_us", f"{PLAIN}_cpu_us"),
    "every_added_cpu_us": (f"{EVERY}_cpu_us", f"{PLAIN}_cpu_us"),
}
"""The service's CPU per record that review adds."""
GOAL = 0.85


def markdown(r: dict[str, float], args: argparse.Namespace, load: tuple[float, float]) -> str:
    postgres = args.store != "sqlite"
    store = "PostgreSQL" if postgres else "SQLite"
    met = "met" if r["ratio"] >= GOAL else "NOT met"
    ingest = [
        ("scored capture records, 10 features, calibrated reference, no `spec.review`: the baseline", f"{r[f'{PLAIN}_per_s']:,.0f}/s", ""),
        (f"the same records with `spec.review` (budget {args.budget:,}/day, 30% random, 70% borderline, outliers 0.5): {r['queued_share']:.1%} of them queued", f"{r[f'{REVIEWED}_per_s']:,.0f}/s", ""),
        ("with review ÷ baseline, records/s (median of the rounds)", f"{r['ratio']:.2f} (rounds {r['ratio_low']:.2f}–{r['ratio_high']:.2f})", f"≥ {GOAL}: {met}"),
        ("service CPU per record: baseline / with review (all threads; the difference, median of the rounds)", f"{r[f'{PLAIN}_cpu_us']:.1f} / {r[f'{REVIEWED}_cpu_us']:.1f} µs ({r['added_cpu_us']:+.1f})", ""),
        (f"worst case: a budget of {EVERY_BUDGET:,}/day, more than the traffic, so every record is queued", f"{r[f'{EVERY}_per_s']:,.0f}/s", ""),
        ("every record queued ÷ baseline, records/s; CPU per record added", f"{r['every_ratio']:.2f} (rounds {r['every_ratio_low']:.2f}–{r['every_ratio_high']:.2f}); {r['every_added_cpu_us']:+.1f} µs", ""),
    ]  # fmt: skip
    queue = [
        (
            f"{args.reviewers} reviewers at once, each leasing {limit} items and labeling them in one `POST /v1/feedback`",
            f"{r[f'limit{limit}_per_s']:,.0f} items/s",
        )
        for limit in LIMITS
    ]
    ingest_table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in ingest)
    queue_table = "\n".join(f"| {a} | {b} |" for a, b in queue)
    versions = f"SQLite {sqlite3.sqlite_version}" if not postgres else args.server
    title = "Human review" + (" on PostgreSQL" if postgres else "")
    command = "`bench/review.py" + (" --store postgresql://…`" if postgres else "`")
    return f"""## {title}: ingest with a review queue, leasing and labeling ({command})

Run {time.strftime("%Y-%m-%d")} on {os.cpu_count()} × {cpu_name()}, Python {platform.python_version()}, {versions}; best of {args.rounds} rounds (a ratio: the median of the rounds', both figures from one round; CPU per record: the median); load average {load[0]:.2f} before, {load[1]:.2f} after.
`truthloop feedback` runs as a subprocess on a fresh {store} store per round, spoken to over
HTTP: {args.records:,} scored capture records with 10 features (1 in {OUTLIER_EVERY} an outlier) per
monitor and round, `POST /v1/predictions` in NDJSON batches of 1,000 (as the sidecar ships them)
from {args.concurrency} connections, in {SLICES} slices sent to the three monitors in turn. All
have the same 10,000-row reference with actuals (a calibration: f is each record's
calibrated probability of being right).

| measure | result | goal |
|---|---|---|
{ingest_table}

Then, on the reviewed monitor's queue, {args.reviews:,} items per limit:

| reviewers | items reviewed |
|---|---|
{queue_table}

A review monitor's ingest reads each model record's calibrated f and its outlier score, draws it
from its prediction id (one blake2b per record), selects it with its pi (numpy, per batch), stores
the selected records' marks, inserts their queue items and adds the review counters to the
batch's aggregate deltas. Profiled in process, `core.review.select` takes about 1.5 µs a record
(a third of it the draws: blake2b of the prefix is hashed once and copied per id, a third faster
than hashing prefix and id anew; the rest the batch's numpy and one pass grouping it by monitor
and version); the queue's inserts are the rest of the worst case's cost. A reviewer's lease is
one statement (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so reviewers never share an item) and reads
its own monitor's queue figures: reading every monitor's, as it first did, made a lease of 10
take 42 ms instead of 6 once another monitor had 100,000 items queued. A label both joins the
record and closes its item. The ratios are measured side by side, but the machine is shared:
rounds disturbed by other work spread them (the rounds' range is shown).
"""


async def run_all(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="truthloop-bench-review-") as directory:
        workdir = Path(directory)
        reference = workdir / "reference.csv"
        estimate_bench.reference_csv(reference, 10_000, 10, actual=True)
        return await best_of_rounds(
            args, lambda flip: ingest_round(args, workdir, reference, flip), RATIOS, DIFFERENCES
        )


def main() -> None:
    parser = service_arguments(__doc__)
    parser.add_argument(
        "--budget", type=int, default=5_000, help="review items a day (default %(default)s)"
    )
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--reviews", type=int, default=2_000, help="items reviewed per limit")
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (default), or a postgresql://user@host:5432/db to measure that store in",
    )
    args = parser.parse_args()
    if args.store != "sqlite" and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store: sqlite or a postgresql:// URL")
    args.records -= args.records % BATCH
    args.server = asyncio.run(server_facts(args.store)) if args.store != "sqlite" else ""
    before = os.getloadavg()[0]
    results = asyncio.run(run_all(args))
    text = markdown(results, args, (before, os.getloadavg()[0]))
    print(text)
    if args.write:
        section = "review" if args.store == "sqlite" else "review-postgres"
        sections.write(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", section, text)


if __name__ == "__main__":
    main()
