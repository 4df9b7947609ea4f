"""A short simulated history of one monitor, driven through a feedback service's HTTP API and its
engine on a fake clock: what the browser tests look at.

Six hours of a binary churn model in steps of five minutes, ending at the clock's end (a page
drawn from it reads "now" as the browser does). The monitor has a reference with scores and
actuals (drift, and estimated metrics), a segment (`plan`), a review queue, two alerts and a
fallback. The story: calm traffic from model v1; v2 joins as a 30% canary at 2h; at 3h the inputs
shift (tenure up, plan mostly pro) and the labels stop following the score, so the drift alert and
the accuracy alert fire and the fallback engages (its answers captured beside the model's shadow
answers); at 4h20 the traffic is calm again, the alerts clear and the fallback disengages once the
recovery has held for `recoverAfter`. Labels arrive ten minutes late for 70% of the records; a
reviewer labels a few queued items each step and leaves the rest in the queue; the sidecar posts
its minute counters (requests by who answered, latency, a few model timeouts while the inputs are
shifted). The history ends once the service has made its report on each alert that fired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.support.feedback import FakeClock, Service, as_csv, monitor_body, record
from tests.support.waiting import eventually
from truthloop.core import sidecar_stats

NAMESPACE, NAME = "ml", "churn"
KEY = f"{NAMESPACE}/{NAME}"
STEP = 300.0
STEPS = 72
"""Six hours of five-minute steps."""
PER_STEP = 40
CANARY_STEP = 24
"""v2 serves 30% of the records from 2h on."""
SHIFT = range(36, 52)
"""Steps with shifted inputs and labels that ignore the score: 3h to 4h20."""
LABEL_DELAY = 2
"""Steps between a record and its label."""
LABELED = 0.7
REVIEWS_PER_STEP = 3
REVIEWER = "sim@example.com"
REQUESTS_PER_MINUTE = 40
"""Requests a minute the sidecar answers (the records captured are a sample of them)."""
LATENCY = {0.005: 0.05, 0.01: 0.3, 0.025: 0.8, 0.05: 0.95, 0.1: 0.99}
"""Share of the requests answered within each of these bounds (seconds); all within 0.25 s."""
ALERTS = [
    {"name": "accuracy-low", "metric": "accuracy", "below": 0.7, "for": "0s"},
    {"name": "tenure-drift", "metric": "feature_drift", "feature": "tenure", "above": 0.3},
]
RECOVER_AFTER = "10m"


def monitor() -> dict[str, Any]:
    """The ModelMonitor of the history."""
    return monitor_body(
        name=NAME,
        namespace=NAMESPACE,
        capture={
            "prediction": {"pointer": "/prediction"},
            "score": {"pointer": "/score"},
            "features": {"pointer": "/features"},
        },
        metrics={"window": "30m", "minSamples": 20},
        alerts=ALERTS,
        fallback={"recoverAfter": RECOVER_AFTER, "rules": [{"prediction": "0"}]},
        segments=[{"name": "plan", "pointer": "/plan"}],
        review={"budget": 1000, "lease": "10m"},
    )


@dataclass
class History:
    """What was simulated, for tests to hold the pages to."""

    key: str
    start: float
    end: float
    versions: dict[str, float] = field(default_factory=dict)
    """Each model version and the time of its first record."""
    shift: tuple[float, float] = (0.0, 0.0)
    """When the inputs were shifted (start, end)."""
    records: int = 0
    labels: int = 0
    reviewed: list[str] = field(default_factory=list)
    """Prediction ids a reviewer labeled."""
    fired: set[str] = field(default_factory=set)
    """Alerts that fired."""
    fallback: list[tuple[float, float | None]] = field(default_factory=list)
    """Periods the fallback was active, as the state said after each tick."""

    def fallback_open(self) -> bool:
        """Whether the fallback was active after the last tick."""
        return bool(self.fallback) and self.fallback[-1][1] is None


def inputs(rng: np.random.Generator, n: int, shifted: bool) -> list[dict[str, Any]]:
    """Features, score and prediction of `n` requests, and the actual outcome: in calm traffic
    the outcome follows the score (a calibrated model); shifted, it is a coin."""
    tenure = rng.normal(20.0 if shifted else 12.0, 3.0, n)
    plan = rng.choice(
        ["basic", "pro", "team"], n, p=[0.1, 0.8, 0.1] if shifted else [0.7, 0.2, 0.1]
    )
    score = 1.0 / (1.0 + np.exp(1.5 * (tenure - 12.0)))
    actual = rng.random(n) < (0.5 if shifted else score)
    return [
        {
            "features": {"tenure": round(float(t), 3), "plan": str(p)},
            "score": round(float(s), 6),
            "prediction": int(s >= 0.5),
            "actual": int(a),
        }
        for t, p, s, a in zip(tenure, plan, score, actual, strict=True)
    ]


def reference(rng: np.random.Generator, n: int = 2000) -> bytes:
    """The calm traffic with its outcomes, as a CSV data set (drift and calibration)."""
    return as_csv(
        [
            {**row["features"], **{k: row[k] for k in ("prediction", "score", "actual")}}
            for row in inputs(rng, n, shifted=False)
        ]
    )


async def simulate(service: Service, clock: FakeClock, *, seed: int = 22) -> History:
    """Run the history on `service` from `clock`'s now (a minute boundary); the clock ends at
    its end."""
    rng = np.random.default_rng(seed)
    history = History(KEY, clock.now, clock.now + STEPS * STEP)
    history.shift = (clock.now + SHIFT.start * STEP, clock.now + SHIFT.stop * STEP)
    await service.put_monitor(monitor())
    base = f"/v1/monitors/{KEY}"
    await service.ok(
        "POST", base + "/reference", data=reference(rng), headers={"Content-Type": "text/csv"}
    )
    outcomes: dict[str, int] = {}
    pending: list[list[tuple[str, int]]] = []
    for step in range(STEPS):
        start = clock.now
        rows = inputs(rng, PER_STEP, shifted=step in SHIFT)
        fallback = history.fallback_open()
        made = []
        for i, row in enumerate(rows):
            pid = f"s{step}-{i}"
            version = "v2" if step >= CANARY_STEP and i % 10 < 3 else "v1"
            history.versions.setdefault(version, start + i * STEP / PER_STEP)
            common = {
                "ts": start + i * STEP / PER_STEP,
                "monitor": KEY,
                "model_version": version,
                "features": row["features"],
                "segments": {"plan": row["features"]["plan"]},
            }
            made.append(record(pid, row["prediction"], score=row["score"], **common))
            if fallback:
                made.append(record(pid, 0, served_by="fallback", **common))
        await service.predictions(made)
        history.records += len(made)
        pending.append(
            [(f"s{step}-{i}", r["actual"]) for i, r in enumerate(rows) if rng.random() < LABELED]
        )
        outcomes.update((f"s{step}-{i}", r["actual"]) for i, r in enumerate(rows))
        await review(service, outcomes, history)
        clock.advance(STEP)
        await sidecar(service, start, fallback, shifted=step in SHIFT)
        if len(pending) > LABEL_DELAY:
            due = pending.pop(0)
            await service.feedback(
                *({"monitor": KEY, "prediction_id": pid, "actual": a} for pid, a in due)
            )
            history.labels += len(due)
        await service.tick()
        await observe(service, clock, history)
    await reported(service)
    return history


async def sidecar(service: Service, start: float, fallback: bool, shifted: bool) -> None:
    """The sidecar's counters of the step's minutes: every request answered by the model, or
    by the fallback while it is engaged (the model still called, in the shadow), 20 ms on
    average; a few model timeouts while the inputs are shifted."""
    n = REQUESTS_PER_MINUTE
    within = {
        b: LATENCY.get(b, 0.0 if b < min(LATENCY) else 1.0) for b in sidecar_stats.LATENCY_BOUNDS
    }
    counts: dict[str, float] = {f"requests:{'fallback' if fallback else 'model'}": n}
    for histogram in (sidecar_stats.LATENCY, sidecar_stats.MODEL_LATENCY):  # shadow calls too
        for bound, share in [*within.items(), (math.inf, 1.0)]:
            counts[sidecar_stats.bucket_key(histogram, bound)] = round(n * share)
        counts[f"{histogram}_sum"] = n * 0.02
    if shifted:
        counts["errors:model_timeout"] = 2.0
    minutes = [{"start": start + 60.0 * m, "counts": counts} for m in range(int(STEP // 60))]
    body = {"monitor": KEY, "pod": f"{NAME}-model-0", "minutes": minutes}
    await service.ok("POST", "/v1/sidecar-stats", json=body)


async def reported(service: Service) -> None:
    """Wait for the report the leader makes in the background on each alert that fired."""
    told = await service.ok("GET", f"/v1/monitors/{KEY}/history?window=7h")
    fired = sum(t["kind"] == "alert_firing" for t in told["transitions"])

    async def made() -> bool:
        listed = await service.ok("GET", f"/v1/monitors/{KEY}/reports")
        return len(listed["reports"]) == fired

    await eventually(made, f"a report on each of the {fired} alerts that fired")


async def review(service: Service, outcome: dict[str, int], history: History) -> None:
    """A reviewer leases a few of the queued items and labels them with the true outcome."""
    base = f"/v1/monitors/{KEY}/review"
    leased = await service.ok("GET", f"{base}?reviewer={REVIEWER}&limit={REVIEWS_PER_STEP}")
    labels = [
        {
            "monitor": KEY,
            "prediction_id": item["prediction_id"],
            "source": "review",
            "reviewer": REVIEWER,
            "actual": outcome[item["prediction_id"]],
        }
        for item in leased["items"]
    ]
    if labels:
        await service.feedback(*labels)
        history.reviewed += [label["prediction_id"] for label in labels]


async def observe(service: Service, clock: FakeClock, history: History) -> None:
    """Note the alerts firing and the fallback's periods from the state after a tick."""
    state = await service.state(KEY)
    history.fired |= {a["name"] for a in state["alerts"] if a["state"] == "firing"}
    active = bool(state["fallback"]["active"])
    if active and not history.fallback_open():
        history.fallback.append((clock.now, None))
    elif not active and history.fallback_open():
        history.fallback[-1] = (history.fallback[-1][0], clock.now)


def minute_floor(t: float) -> float:
    return math.floor(t / 60.0) * 60.0
