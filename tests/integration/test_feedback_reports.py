"""The report on an alert that fired, over real HTTP, on both stores: the leader builds it in the
background when the alert fires, lists it, serves its HTML page and its JSON document, and links
the newest in the monitor's state (and status)."""

from __future__ import annotations

from typing import Any

from tests.support.feedback import (
    FakeClock,
    Service,
    ServiceFactory,
    monitor_body,
    record,
    sample,
)
from tests.support.waiting import eventually
from truthloop.core import report, windows
from truthloop.feedback import engine as engine_module

pytest_plugins = ["tests.support.feedback_fixtures"]

KEY = "ml/churn"
BASE = f"/v1/monitors/{KEY}"


async def fire(
    service: Service, clock: FakeClock, prefix: str = "p", n: int = 12, right: int = 4
) -> None:
    """Predictions labeled right one in `right` (enough wrong ones to fire `accuracy-low`;
    `right=1`: every one right), then a tick."""
    ts = clock.now - 5
    await service.predictions(
        [
            record(f"{prefix}{i}", 1, ts=ts, entity_id=f"u{i}", features={"age": 30 + i})
            for i in range(n)
        ]
    )
    await service.feedback(
        *(
            {"monitor": KEY, "prediction_id": f"{prefix}{i}", "actual": i % right == 0}
            for i in range(n)
        )
    )
    await service.tick()


async def listed(service: Service, count: int) -> list[dict[str, Any]]:
    async def found() -> bool:
        body = await service.ok("GET", BASE + "/reports")
        return len(body["reports"]) >= count

    await eventually(found, f"{count} report(s) listed")
    return list((await service.ok("GET", BASE + "/reports"))["reports"])


async def test_an_alert_that_fires_leaves_a_report_listed_served_and_linked(
    service: Service, clock: FakeClock
) -> None:
    assert (await service.ok("GET", BASE + "/reports")) == {"monitor": KEY, "reports": []}
    await fire(service, clock)
    [entry] = await listed(service, 1)
    assert entry["alert"] == "accuracy-low"
    assert entry["at"] == clock.now
    assert entry["summary"].startswith("accuracy-low fired: ")
    assert 0 < entry["size"] <= 1_000_000
    assert entry["url"] == f"{BASE}/reports/{entry['id']}"

    async with service.http.get(service.base + entry["url"]) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        page = await response.text()
    assert len(page.encode()) == entry["size"]
    assert page.startswith("<!DOCTYPE html>")
    assert "accuracy-low fired" in page
    assert "Wrong predictions" in page
    assert "http://" not in page
    assert "https://" not in page
    assert " src=" not in page

    document = await service.ok("GET", entry["url"] + ".json")
    assert document["monitor"] == KEY
    assert document["alert"] == "accuracy-low"
    assert document["labeled"] == 12
    assert len(document["wrong"]) == 9
    assert document["confusion"] == {"labels": ["1", "0"], "cells": [[3.0, 0.0], [9.0, 0.0]]}
    assert document["sidecar"] is None

    link = {"id": entry["id"], "at": clock.now, "alert": "accuracy-low", "url": entry["url"]}

    async def linked() -> bool:
        return (await service.state()).get("report") == link

    await eventually(linked, "the state links the report")
    status = (await service.ok("GET", BASE))["status"]
    assert status["report"] == link


async def test_unknown_reports_are_404s_naming_the_id(service: Service) -> None:
    for asked in ("7", "7.json", "abc", "abc.json", "99999999999999999999"):
        status, body = await service.call("GET", f"{BASE}/reports/{asked}")
        assert status == 404, asked
        assert body["details"][0]["field"] == "id"
        assert body["details"][0]["reason"] == "unknown_report"
    status, body = await service.call("GET", "/v1/monitors/ml/nope/reports")
    assert status == 404
    status, body = await service.call("GET", f"{BASE}/reports?limit=0")
    assert status == 400
    assert body["details"][0]["field"] == "limit"


async def test_a_monitor_keeps_its_newest_reports(
    start_service: ServiceFactory, clock: FakeClock, monkeypatch: Any
) -> None:
    monkeypatch.setattr(engine_module, "REPORTS_KEPT", 2)
    body = monitor_body(alerts=[{"name": "accuracy-low", "metric": "accuracy", "below": 0.7}])
    service = await start_service()
    await service.put_monitor(body)
    for round_ in range(3):
        await fire(service, clock, prefix=f"r{round_}-")
        await listed(service, min(round_ + 1, 2))
        clock.advance(3600)  # the labels leave the window; right ones resolve the alert
        await fire(service, clock, prefix=f"ok{round_}-", right=1)
        clock.advance(3600)
    reports = await listed(service, 2)
    assert len(reports) == 2
    assert reports[0]["at"] > reports[1]["at"]
    state = await service.state()
    assert state["report"]["id"] == reports[0]["id"]


async def test_a_report_that_cannot_be_made_is_counted_and_the_alerts_go_on(
    service: Service, clock: FakeClock, monkeypatch: Any
) -> None:
    def broken(inputs: report.Inputs) -> report.Report:
        raise RuntimeError("no report today")

    monkeypatch.setattr(report, "build", broken)
    await fire(service, clock)
    labels = {"namespace": "ml", "monitor": "churn", "model": "churn"}

    async def counted() -> bool:
        return sample(await service.scrape(), "truthloop_report_failures_total", **labels) == 1

    await eventually(counted, "the failed report counted")
    state = await service.state()
    assert state["report"] is None
    assert state["alerts"][0]["state"] == "firing"
    assert (await service.ok("GET", BASE + "/reports"))["reports"] == []
    clock.advance(60)
    await service.tick()  # the next tick runs as ever
    assert (await service.state())["phase"] == "FallbackActive"


async def test_the_sidecars_minutes_of_the_last_two_hours_are_in_the_report(
    service: Service, clock: FakeClock
) -> None:
    now = windows.bucket_of(clock.now)
    quiet = {"requests:model": 100.0, "latency_le:0.05": 90.0, "latency_le:+Inf": 100.0}
    failing = {**quiet, "errors:timeout": 30.0, "requests:fallback": 20.0}
    minutes = {now - 119 + m: quiet for m in range(60)}
    minutes.update({now - 59 + m: failing for m in range(60)})
    minutes[now - 200] = failing  # before the two hours: not counted
    registered = service.engine.registered(KEY)
    await service.engine.store.add_sidecar_minutes(registered.id, minutes)
    await fire(service, clock)
    [entry] = await listed(service, 1)
    document = await service.ok("GET", entry["url"] + ".json")
    sidecar = document["sidecar"]
    assert sidecar["now"]["requests"] == 60 * 120
    assert sidecar["now"]["errors"] == 60 * 30
    assert sidecar["now"]["reasons"] == {"timeout": 60 * 30}
    assert sidecar["now"]["fallback_share"] == 20 / 120
    assert sidecar["before"]["requests"] == 60 * 100
    assert sidecar["before"]["error_rate"] == 0
    assert sidecar["now"]["p50"] is not None
    sidecar_cause = next(c for c in document["why"] if c["kind"] == "sidecar")
    assert sidecar_cause["likely"]
    assert sidecar_cause["evidence"]["error_rate"] == 30 / 120


async def test_the_worst_segment_values_and_the_why_name_the_bad_one(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    segments = [
        {"name": "country", "pointer": "/country", "export": True},  # the tick reads it
        {"name": "plan", "pointer": "/plan"},  # the report reads it
    ]
    service = await start_service()
    await service.put_monitor(monitor_body(segments=segments))
    countries, plans = ("DE", "FR", "IT"), ("basic", "plus")

    async def send(prefix: str, per_country: int, wrong_in: str | None) -> None:
        ts = clock.now - 5
        pids = [(f"{prefix}{c}{i}", c) for c in countries for i in range(per_country)]
        await service.predictions(
            [
                record(pid, 1, ts=ts, segments={"country": c, "plan": plans[i % 2]})
                for i, (pid, c) in enumerate(pids)
            ]
        )
        await service.feedback(
            *({"monitor": KEY, "prediction_id": pid, "actual": c != wrong_in} for pid, c in pids)
        )
        await service.tick()

    await send("warm", 2, None)  # the leader chooses the value sets from these
    await send("p", 20, "DE")
    [entry] = await listed(service, 1)
    document = await service.ok("GET", entry["url"] + ".json")
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for row in document["segments"]:
        by_segment.setdefault(row["segment"], []).append(row)
    worst = by_segment["country"][0]
    assert worst["value"] == "DE"
    assert worst["score"] < 0.2
    assert {r["value"] for r in by_segment["plan"]} >= {"basic", "plus"}
    cause = next(c for c in document["why"] if c["kind"] == "segment")
    assert (cause["evidence"]["segment"], cause["evidence"]["value"]) == ("country", "DE")
    assert cause["likely"]
