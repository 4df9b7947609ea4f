"""Human review through the feedback service on each store: records are queued with a known
chance, reviewers label some, and the metrics API, alerts, the state and /metrics answer from
those labels; the design the leader fits to the traffic is the one every replica selects with;
and a plan says how many reviews a day a precision or a detection needs.

Records are binary with calibrated scores: a record is right with the chance its score gives
(`truth`), so the window's true accuracy is known and the reviewed estimate is held to it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import numpy as np
import pytest

from tests.support.feedback import FakeClock, Service, adopted, monitor_body, record, sample
from truthloop.core import review
from truthloop.core.spec import parse_monitor
from truthloop.feedback.engine import _design as in_force

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/churn"
MONITOR = {"namespace": "ml", "monitor": "churn", "model": "churn"}


def reviewed_body(review_spec: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec.setdefault("metrics", {"window": "1h", "minSamples": 50})
    spec.setdefault("alerts", [])
    return monitor_body(review=review_spec, **spec)


def scored(n: int, seed: int, start: float, spread: float = 0.0, prefix: str = "r") -> tuple[
    list[dict[str, Any]], dict[str, int]
]:  # fmt: skip
    """`n` capture records with calibrated scores (ts from `start` over `spread` seconds) and
    each one's actual: 1 with the chance its score gives."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(2.0, 2.0, n)
    actual = (rng.random(n) < scores).astype(int)
    records, truth = [], {}
    for i in range(n):
        pid = f"{prefix}{i}"
        score = round(float(scores[i]), 6)
        ts = start + spread * i / n
        records.append(record(pid, int(score >= 0.5), ts=ts, score=score))
        truth[pid] = int(actual[i])
    return records, truth


def accuracy(records: list[dict[str, Any]], truth: dict[str, int]) -> float:
    return float(np.mean([r["prediction"] == truth[r["prediction_id"]] for r in records]))


async def capture(service: Service, records: list[dict[str, Any]]) -> None:
    for i in range(0, len(records), 500):
        await service.predictions(records[i : i + 500])


async def queued(service: Service, reviewer: str = "alice", limit: int = 100_000) -> list[str]:
    """The ids of every item of the queue, leased to `reviewer`."""
    engine = service.engine
    monitor_id = engine.registered(KEY).id
    items = await engine.store.lease_review(
        monitor_id, reviewer, limit, engine.settings.clock(), 600
    )
    return [item.prediction_id for item in items]


async def label(service: Service, ids: list[str], truth: dict[str, int], reviewer: str) -> None:
    for i in range(0, len(ids), 500):
        await service.feedback(
            *(
                {"monitor": KEY, "prediction_id": pid, "actual": truth[pid],
                 "source": "review", "reviewer": reviewer}
                for pid in ids[i : i + 500]
            )
        )  # fmt: skip


async def steady(service: Service, clock: FakeClock, prefix: str) -> None:
    """An hour of steady traffic (600 records, none at its edges) up to now, and a tick: the
    leader fits the design to it."""
    records, _ = scored(600, seed=1, start=clock.now - 3570, spread=3540, prefix=prefix)
    await capture(service, records)
    await service.tick()


async def fitted(service: Service, clock: FakeClock, body: dict[str, Any]) -> None:
    """The monitor registered an hour ago, its design fitted to that hour's steady traffic."""
    await service.put_monitor(body)
    clock.advance(3600)
    await steady(service, clock, "warm")


async def test_reviewed_labels_estimate_the_window_with_their_n_and_an_alert_reads_them(
    service: Service, clock: FakeClock
) -> None:
    alert = {"name": "reviewed-low", "metric": "accuracy", "below": 0.95, "source": "reviewed"}
    review_spec = {"budget": 300, "per": "window", "random": 0.3, "borderline": 0.7}
    await fitted(service, clock, reviewed_body(review_spec, alerts=[alert]))
    design = (await service.state())["review"]  # fitted to 600 records an hour: 300 a window
    assert design["enabled"] is True
    assert design["budget_per_day"] == pytest.approx(300 * 24)
    assert design["expected_per_day"] == pytest.approx(300 * 24, rel=0.05)
    clock.advance(3600)  # the warm-up's records leave the window (their items expire)

    records, truth = scored(2000, seed=2, start=clock.now - 1800, spread=1800)
    await capture(service, records)
    ids = await queued(service)
    assert set(ids) <= set(truth)
    assert 0.3 * len(records) < len(ids) < 0.7 * len(records), "about half is queued"
    reviewed = ids[:200]
    await label(service, reviewed[:120], truth, "alice")
    await label(service, reviewed[120:], truth, "bob")
    await service.tick()

    got = await service.metrics()
    found = got["reviewed"]["accuracy"]
    true = accuracy(records, truth)
    assert found["n"] == 200
    assert found["lower"] <= true <= found["upper"], (found, true)
    assert found["upper"] - found["lower"] < 0.2
    assert got["labeled"] == 200, "a review label is a label too"
    assert set(got["reviewed"]) == set(review.REVIEWED_NAMES["binary"])
    assert got["served_by"]["model"]["versions"]["v1"]["reviewed"]["accuracy"]["n"] == 200
    series = (await service.metrics(query="?series=30m"))["series"]
    assert sum(p["reviewed"].get("accuracy", {}).get("n", 0) for p in series) == 200

    state = await service.state()
    assert state["alerts"][0]["samples"] == 200
    assert state["alerts"][0]["value"] == pytest.approx(found["value"])
    assert state["alerts"][0]["state"] == ("firing" if found["value"] < 0.95 else "ok")
    assert state["alerts"][0]["state"] == "firing", "calibrated beta(2,2) scores: ~0.7 right"

    text = await service.scrape()
    value = sample(text, "truthloop_model_metric", **MONITOR, version="*", served_by="model",
                   metric="accuracy", bound="value", source="reviewed")  # fmt: skip
    assert value == pytest.approx(found["value"])
    assert sample(text, "truthloop_reviews_total", **MONITOR, reviewer="alice") == 120
    assert sample(text, "truthloop_reviews_total", **MONITOR, reviewer="bob") == 80
    depth = sample(text, "truthloop_review_queue_depth", **MONITOR)
    assert depth == len(ids) - 200
    assert sample(text, "truthloop_review_oldest_age_seconds", **MONITOR) is not None
    expected = sample(text, "truthloop_review_expected_per_day", **MONITOR)
    assert expected == pytest.approx(state["review"]["expected_per_day"])
    assert state["review"]["depth"] == depth


async def test_the_design_adapts_to_the_traffic_and_says_when_the_budget_exceeds_it(
    service: Service, clock: FakeClock
) -> None:
    body = reviewed_body({"budget": 2400, "random": 1})  # 2,400 a day: 100 an hour
    await fitted(service, clock, body)
    state = await service.state()
    summary = state["review"]
    assert summary["status"] == "ok", summary
    assert summary["budget_per_day"] == 2400
    assert summary["expected_per_day"] == pytest.approx(2400, rel=0.05)

    version = state["version"]
    await service.put_monitor(reviewed_body({"budget": 100_000, "random": 1}))
    summary = (await service.state())["review"]
    assert summary["status"] == "under_traffic", summary
    assert summary["message"]
    assert summary["expected_per_day"] < summary["budget_per_day"] == 100_000
    assert (await service.state())["version"] > version, "a new status moves the version"
    view = await service.ok("GET", f"/v1/monitors/{KEY}")
    assert view["status"]["review"]["status"] == "under_traffic"

    # the next minute's traffic is the same: the design is refitted, the version stays
    version = (await service.state())["version"]
    clock.advance(60)
    await service.tick()
    assert (await service.state())["version"] == version


async def test_items_that_expire_unreviewed_put_the_queue_behind(
    service: Service, clock: FakeClock
) -> None:
    await fitted(service, clock, reviewed_body({"budget": 2400, "random": 1}))
    first = (await service.state())["review"]
    assert first["status"] == "ok"
    assert first["depth"] > 0
    clock.advance(2 * 3600)  # past the attribution window (1h): the items expire unreviewed
    await steady(service, clock, "later")
    await service.tick()
    summary = (await service.state())["review"]
    assert summary["status"] == "behind", summary
    assert "expired unreviewed" in summary["message"]
    assert 0 < summary["depth"] < first["depth"] + 600


async def test_two_replicas_select_the_same_records_with_the_leader_s_design(
    replicas: tuple[Service, Service], clock: FakeClock
) -> None:
    a, b = replicas
    body = reviewed_body({"budget": 2400, "random": 0.4, "borderline": 0.6, "seed": 7})
    await fitted(a, clock, body)  # a leads: it fits the design and stores it
    design = in_force(a.engine._runtimes[KEY])
    assert design.computed > 0

    def same_design(known: Any) -> bool:
        return in_force(known) == design

    await adopted(b, KEY, same_design, "replica b selecting with the leader's design")

    records, _ = scored(1200, seed=4, start=clock.now)
    await capture(a, records[::2])
    await capture(b, records[1::2])
    got = {pid for pid in await queued(a) if not pid.startswith("warm")}
    spec = parse_monitor(body).spec
    assert spec.review is not None

    def chosen(d: review.Design) -> set[str]:
        picked = set()
        for r in records:
            part = review.correctness(
                "binary", r["prediction"], r["score"], None, spec.threshold, None
            )
            assert part is not None
            pi, _ = review.inclusion(d, part[1], in_band=False, outlier=False)
            if review.draw(KEY, spec.review.seed, r["prediction_id"]) < pi:
                picked.add(r["prediction_id"])
        return picked

    assert got == chosen(design)
    assert chosen(design) != chosen(review.initial(spec.review, spec.metrics.window))


async def test_a_plan_answers_from_the_traffic_and_the_accuracy(
    service: Service, clock: FakeClock
) -> None:
    await fitted(service, clock, reviewed_body({"budget": 2400, "random": 1}))
    plan = f"/v1/monitors/{KEY}/review/plan"
    got = await service.ok("GET", plan + "?halfWidth=0.02&detect=0.05&within=24h")
    assert got["monitor"] == KEY
    assert got["traffic"]["per_day"] == pytest.approx(600 * 24, rel=0.05)
    assert got["accuracy"]["source"] == "assumed"  # no label yet, no reference
    answer = got["plan"]
    assert answer["for_half_width"] > 0
    assert answer["for_detection"] > 0
    assert answer["needed"] == max(answer["for_half_width"], answer["for_detection"])
    tighter = await service.ok("GET", plan + "?halfWidth=0.01")
    assert tighter["plan"]["for_half_width"] > answer["for_half_width"]
    bought = await service.ok("GET", plan + "?budget=500&within=24h")
    assert bought["plan"]["half_width"] > 0
    assert bought["plan"]["detectable"] > 0

    for query, field in [
        ("?halfWidth=0", "halfWidth"),
        ("?halfWidth=abc", "halfWidth"),
        ("?detect=0.05", "within"),
        ("?within=24h", "detect"),
        ("?budget=-3", "budget"),
        ("?detect=2&within=1h", "detect"),
        ("?within=forever&budget=5", "within"),
        ("", "halfWidth"),
    ]:
        status, body = await service.call("GET", plan + query)
        assert status == 400, (query, body)
        assert body["details"][0]["field"] == field, (query, body)
    status, body = await service.call("GET", "/v1/monitors/ml/nobody/review/plan?budget=5")
    assert status == 404


async def plan_review(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `truthloop plan-review ARGS...`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "truthloop", "plan-review", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_plan_review_prints_the_answer_and_says_a_refusal_in_one_line(
    service: Service, clock: FakeClock
) -> None:
    await fitted(service, clock, reviewed_body({"budget": 2400, "random": 1}))
    status, out, err = await plan_review(
        "--monitor", KEY, "--half-width", "0.02", "--detect", "0.05", "--within", "24h",
        "--feedback-url", service.base,
    )  # fmt: skip
    assert (status, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0].startswith("ml/churn: 14,")
    assert "records a day (the last day's), accuracy 0.5 (assumed)" in lines[0]
    assert lines[1].startswith("  ±0.02 over the 1h window: ")
    assert lines[2].startswith("  a drop of 0.05 detected within 24h: ")
    assert lines[3].startswith("  needed: ")

    status, out, err = await plan_review(
        "--monitor", KEY, "--half-width", "0.9", "--feedback-url", service.base
    )
    assert status == 1
    assert out == ""
    assert err.startswith("truthloop plan-review: ml/churn: --half-width: expected a half-width")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    status, _, err = await plan_review("--monitor", "ml/nobody", "--budget", "5",
                                       "--feedback-url", service.base)  # fmt: skip
    assert status == 1
    assert "ml/nobody" in err
    assert len(err.splitlines()) == 1
    status, _, err = await plan_review("--monitor", KEY, "--budget", "5",
                                       "--feedback-url", "http://127.0.0.1:9")  # fmt: skip
    assert status == 1
    assert "cannot reach the feedback service" in err
