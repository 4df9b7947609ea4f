"""Reference data sets, drift and outliers through the feedback service's HTTP API, on each
store: an upload is profiled, captured features are measured against it, a shifted window is
flagged and an unshifted one is not; bad data sets are refused with their line and nothing is
stored; the leader builds a history reference from captured records."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from scipy import special

from tests.support.feedback import (
    T0,
    FakeClock,
    Service,
    ServiceFactory,
    as_csv,
    make_settings,
    monitor_body,
    record,
)
from tests.support.postgres import fresh_schema
from tests.support.waiting import eventually
from truthloop.core import scopes
from truthloop.feedback import api
from truthloop.feedback.settings import EngineSettings

pytest_plugins = ["tests.support.feedback_fixtures"]

CSV = {"Content-Type": "text/csv"}
NDJSON = {"Content-Type": "application/x-ndjson"}
PARQUET = {"Content-Type": "application/vnd.apache.parquet"}
REFERENCE = "/v1/monitors/ml/churn/reference"
DRIFT = "/v1/monitors/ml/churn/drift"


def rows(n: int, *, seed: int, shift: bool = False) -> list[dict[str, Any]]:
    """Churn inputs: tenure (months) around 12, or 30 when shifted; plan mostly basic, mostly
    pro when shifted; the prediction follows tenure. Stratified samples (one value per
    quantile slice, shuffled), so two samples of one distribution never drift by chance."""
    rng = np.random.default_rng(seed)
    slices = rng.permutation((np.arange(n) + rng.random(n)) / n)
    tenure = (30.0 if shift else 12.0) + 3.0 * special.ndtri(slices)
    shares = [0.1, 0.8, 0.1] if shift else [0.7, 0.2, 0.1]
    plans = np.array(["basic", "pro", "team"])[np.searchsorted(np.cumsum(shares), slices)]
    plans = rng.permutation(plans)
    return [
        {
            "tenure": round(float(t), 3),
            "plan": str(p),
            "prediction": int(t < 12),
            "score": round(float(1 / (1 + np.exp(t - 12))), 6),
        }
        for t, p in zip(tenure, plans, strict=True)
    ]


def captured(
    table: list[dict[str, Any]], ts: float, prefix: str, version: str = "v1"
) -> list[dict[str, Any]]:
    """Capture records of the rows: the features as the sidecar captures them."""
    return [
        record(
            f"{prefix}{i}",
            row["prediction"],
            ts=ts,
            score=row["score"],
            model_version=version,
            entity_id=f"{prefix}{i}",
            features={"tenure": row["tenure"], "plan": row["plan"]},
        )
        for i, row in enumerate(table)
    ]


async def capture(service: Service, records: list[dict[str, Any]]) -> None:
    for i in range(0, len(records), 1000):
        await service.predictions(records[i : i + 1000])


def column(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["features"] if c["name"] == name]
    return found


async def test_an_uploaded_reference_flags_a_shifted_window_and_not_an_unshifted_one(
    service: Service, clock: FakeClock
) -> None:
    stored = await service.ok("POST", REFERENCE, data=as_csv(rows(3000, seed=1)), headers=CSV)
    assert stored["monitor"] == "ml/churn"
    assert (stored["version"], stored["source"], stored["rows"]) == ("", "upload", 3000)
    kinds = {c["name"]: c["type"] for c in stored["columns"]}
    assert kinds["tenure"] == "numeric"
    assert kinds["plan"] == "categorical"
    assert "prediction" in kinds
    profile = await service.ok("GET", REFERENCE)
    assert profile["id"] == stored["id"]
    assert profile["profile"]["rows"] == 3000
    (tenure,) = [c for c in profile["profile"]["columns"] if c["name"] == "tenure"]
    assert 11 < tenure["mean"] < 13
    assert abs(sum(tenure["proportions"]) - 1) < 1e-9

    await capture(service, captured(rows(1500, seed=2), clock.now, "a"))
    calm = await service.ok("GET", DRIFT + "?window=1h")
    assert calm["drift"]["status"] == "ok"
    assert calm["drift"]["reference"]["id"] == stored["id"]
    assert not column(calm["drift"], "tenure")["drifted"]
    assert not column(calm["drift"], "plan")["drifted"]
    assert not calm["drift"]["dataset"]["drifted"]

    clock.advance(7200)
    await capture(service, captured(rows(1500, seed=3, shift=True), clock.now, "b"))
    shifted = await service.ok("GET", DRIFT + "?window=1h")
    tenure_drift = column(shifted["drift"], "tenure")
    assert tenure_drift["drifted"]
    assert tenure_drift["method"] == "wasserstein"
    assert tenure_drift["statistic"] >= tenure_drift["threshold"]
    assert column(shifted["drift"], "plan")["drifted"]
    assert shifted["drift"]["dataset"]["drifted"]
    assert shifted["drift"]["samples"] == 1500
    histogram = tenure_drift["histogram"]
    assert len(histogram["reference"]) == len(histogram["current"]) == len(histogram["edges"]) + 1

    both = await service.ok("GET", DRIFT + "?window=3h&series=1h")
    assert both["window"]["seconds"] == 3 * 3600
    points = both["series"]
    assert [p["samples"] for p in points if p["samples"]] == [1500, 1500]
    assert [p["share"] > 0 for p in points if p["samples"]] == [False, True]
    assert all("histogram" not in str(p) for p in points)


async def test_without_a_reference_drift_says_no_reference_and_is_no_error(
    service: Service, clock: FakeClock
) -> None:
    await capture(service, captured(rows(10, seed=1), clock.now, "a"))
    answer = await service.ok("GET", DRIFT)
    assert answer["drift"]["status"] == "no_reference"
    assert answer["window"]["seconds"] == 3600
    assert "series" not in answer
    status, body = await service.call("GET", REFERENCE)
    assert status == 404
    assert body["status"] == "no_reference"
    assert body["details"][0]["reason"] == "no_reference"
    series = await service.ok("GET", DRIFT + "?series=10m")
    assert {p["status"] for p in series["series"]} == {"no_reference"}


async def test_a_bad_data_set_is_refused_naming_its_line_and_column_and_nothing_is_stored(
    service: Service,
) -> None:
    good = as_csv(rows(20, seed=1)).decode().splitlines()
    bad = "\n".join([*good[:5], "12.5,basic", *good[5:]]) + "\n"
    status, body = await service.call("POST", REFERENCE, data=bad.encode(), headers=CSV)
    assert status == 400, body
    assert "nothing was stored" in body["error"]
    assert "line 6" in body["details"][0]["message"]
    assert (await service.call("GET", REFERENCE))[0] == 404

    lines = [b'{"tenure": 3, "plan": "basic", "prediction": 0}', b"[1, 2]", b'{"tenure": "x"']
    status, body = await service.call("POST", REFERENCE, data=b"\n".join(lines), headers=NDJSON)
    assert status == 400, body
    messages = [d["message"] for d in body["details"]]
    assert any("line 2" in m for m in messages)
    assert any("line 3" in m for m in messages)
    assert (await service.call("GET", REFERENCE))[0] == 404

    status, body = await service.call("POST", REFERENCE, data=b"tenure,plan\n", headers=CSV)
    assert status == 400, body
    status, body = await service.call("POST", REFERENCE, data=b"", headers=CSV)
    assert (status, body["details"][0]["reason"]) == (400, "missing")
    assert (await service.call("GET", REFERENCE))[0] == 404


async def test_a_gzipped_data_set_is_taken_and_bounded_once_decoded(
    start_service: ServiceFactory,
) -> None:
    from truthloop.feedback.settings import HttpSettings

    service = await start_service(http=HttpSettings(max_reference_bytes=64 * 1024))
    await service.put_monitor(monitor_body())
    small, big = as_csv(rows(500, seed=1)), as_csv(rows(4000, seed=1))
    assert len(small) < 64 * 1024 < len(big)
    assert len(gzip.compress(big)) < 64 * 1024
    headers = {**CSV, "Content-Encoding": "gzip"}
    stored = await service.ok("POST", REFERENCE, data=gzip.compress(small), headers=headers)
    assert stored["rows"] == 500
    status, body = await service.call("POST", REFERENCE, data=gzip.compress(big), headers=headers)
    assert (status, body["details"][0]["reason"]) == (413, "too_large")
    status, body = await service.call("POST", REFERENCE, data=b"not gzip", headers=headers)
    assert (status, body["details"][0]["field"]) == (400, "Content-Encoding")
    assert (await service.ok("GET", REFERENCE))["id"] == stored["id"]


async def test_a_constant_feature_is_stored_with_a_warning(service: Service) -> None:
    table = [{**row, "discount": 5} for row in rows(200, seed=1)]
    stored = await service.ok("POST", REFERENCE, data=as_csv(table), headers=CSV)
    assert any("discount" in w for w in stored["warnings"]), stored["warnings"]


async def test_ndjson_and_parquet_give_the_profile_csv_gives(service: Service) -> None:
    table = rows(300, seed=1)
    pa = pytest.importorskip("pyarrow", reason="pip install -e '.[test]' installs pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(table), parquet)
    bodies = [
        (as_csv(table), CSV),
        (b"\n".join(json.dumps(row).encode() for row in table), NDJSON),
        (parquet.getvalue(), PARQUET),
    ]
    profiles = []
    for body, headers in bodies:
        stored = await service.ok("POST", REFERENCE, data=body, headers=headers)
        assert stored["rows"] == 300
        got = await service.ok("GET", REFERENCE)
        assert got["id"] == stored["id"]
        profiles.append(got["profile"])
    assert profiles[0] == profiles[1] == profiles[2]


async def test_parquet_without_pyarrow_and_other_types_are_refused_with_a_reason(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "HAS_PYARROW", False)
    status, refused = await service.call("POST", REFERENCE, data=b"PAR1", headers=PARQUET)
    assert (status, refused["details"][0]["reason"]) == (415, "unsupported")
    assert "pyarrow" in refused["details"][0]["message"]
    status, refused = await service.call(
        "POST", REFERENCE, data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert (status, refused["details"][0]["reason"]) == (415, "unsupported")
    assert (await service.call("GET", REFERENCE))[0] == 404


async def test_a_version_s_own_reference_is_used_for_it_and_the_default_for_the_others(
    service: Service, clock: FakeClock
) -> None:
    default = await service.ok("POST", REFERENCE, data=as_csv(rows(2000, seed=1)), headers=CSV)
    shifted = as_csv(rows(2000, seed=2, shift=True))
    own = await service.ok("POST", REFERENCE + "?version=v2", data=shifted, headers=CSV)
    assert own["version"] == "v2"
    assert (await service.ok("GET", REFERENCE + "?version=v2"))["id"] == own["id"]
    assert (await service.ok("GET", REFERENCE + "?version=v1"))["id"] == default["id"]
    assert (await service.ok("GET", REFERENCE))["id"] == default["id"]

    await capture(service, captured(rows(1200, seed=3, shift=True), clock.now, "v2-", "v2"))
    await capture(service, captured(rows(1200, seed=4, shift=True), clock.now, "v1-", "v1"))
    v2 = await service.ok("GET", DRIFT + "?version=v2")
    assert v2["drift"]["reference"]["id"] == own["id"]
    assert not v2["drift"]["dataset"]["drifted"]
    assert v2["drift"]["samples"] == 1200
    v1 = await service.ok("GET", DRIFT + "?version=v1")
    assert v1["drift"]["reference"]["id"] == default["id"]
    assert v1["drift"]["dataset"]["drifted"]
    assert v1["drift"]["samples"] == 1200


async def test_a_reread_that_crossed_an_upload_keeps_the_upload(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Monitors are reread when another replica changes one; a reread that read the monitors
    before this replica stored a reference and ends after it does not take the reference back."""
    store = service.engine.store
    before = await store.load_monitors()
    stored = await service.ok("POST", REFERENCE, data=as_csv(rows(100, seed=1)), headers=CSV)

    async def stale() -> Any:
        return before

    monkeypatch.setattr(store, "load_monitors", stale)
    await service.engine._sync()
    assert (await service.ok("GET", REFERENCE))["id"] == stored["id"]


async def test_drift_parameters_are_validated_by_name(service: Service) -> None:
    for query, field in [
        ("window=soon", "window"),
        ("window=400d", "window"),
        ("series=90s", "series"),
        ("series=1m&window=30d", "series"),
        ("version=%01", "version"),
    ]:
        status, body = await service.call("GET", f"{DRIFT}?{query}")
        assert status == 400, (query, body)
        assert body["details"][0]["field"] == field, query
    assert (await service.call("GET", "/v1/monitors/ml/nope/drift"))[0] == 404
    assert (await service.call("POST", "/v1/monitors/ml/nope/reference", data=b"a\n1\n",
                               headers=CSV))[0] == 404  # fmt: skip


async def test_a_reference_larger_than_the_limit_is_refused_and_nothing_is_stored(
    start_service: ServiceFactory,
) -> None:
    from truthloop.feedback.settings import HttpSettings

    service = await start_service(http=HttpSettings(max_reference_bytes=4096))
    await service.put_monitor(monitor_body())
    big = as_csv(rows(400, seed=1))
    assert len(big) > 4096
    status, body = await service.call("POST", REFERENCE, data=big, headers=CSV)
    assert (status, body["details"][0]["reason"]) == (413, "too_large")

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: caught while it streams
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    status, body = await service.call("POST", REFERENCE, data=streamed(), headers=CSV)
    assert (status, body["details"][0]["reason"]) == (413, "too_large")
    assert (await service.call("GET", REFERENCE))[0] == 404


async def test_the_service_answers_other_requests_while_a_reference_is_arriving(
    service: Service,
) -> None:
    data = as_csv(rows(500, seed=1))
    half = asyncio.Event()
    go_on = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        half.set()
        await go_on.wait()
        yield data[len(data) // 2 :]

    upload = asyncio.create_task(service.call("POST", REFERENCE, data=slowly(), headers=CSV))
    await half.wait()
    assert (await service.ok("GET", "/v1/monitors/ml/churn"))["metadata"]["name"] == "churn"
    assert (await service.ok("GET", DRIFT))["drift"]["status"] == "no_reference"
    go_on.set()
    status, stored = await upload
    assert (status, stored["rows"]) == (201, 500)


async def test_a_namespace_token_uploads_for_its_own_namespace_only(
    start_service: ServiceFactory,
) -> None:
    service = await start_service(token="admin")
    await service.put_monitor(monitor_body())
    await service.put_monitor(monitor_body(namespace="other"))
    await service.ok("PUT", "/v1/tokens/ml", json={"sha256": scopes.digest("ml-token")})
    own = {**CSV, "Authorization": "Bearer ml-token"}
    data = as_csv(rows(50, seed=1))
    status, _ = await service.call("POST", REFERENCE, data=data, headers=own)
    assert status == 201
    status, body = await service.call(
        "POST", "/v1/monitors/other/churn/reference", data=data, headers=own
    )
    assert (status, body["details"][0]["reason"]) == (403, "wrong_namespace")
    status, body = await service.call(
        "POST", REFERENCE, data=data, headers={**CSV, "Authorization": ""}
    )
    assert status == 401
    assert (await service.call("GET", "/v1/monitors/other/churn/reference"))[0] == 404


async def test_outliers_are_scored_on_the_record_and_can_be_filtered(
    service: Service, clock: FakeClock
) -> None:
    await service.ok("POST", REFERENCE, data=as_csv(rows(2000, seed=1)), headers=CSV)
    normal = captured(rows(30, seed=2), clock.now, "n")
    odd = record(
        "odd", 1, ts=clock.now, score=0.9, entity_id="n0",
        features={"tenure": 5000.0, "plan": "platinum"},
    )  # fmt: skip
    await capture(service, [*normal, odd])
    await service.feedback(*({"monitor": "ml/churn", "prediction_id": r["prediction_id"],
                              "actual": 1} for r in [*normal, odd]))  # fmt: skip

    timeline = "/v1/monitors/ml/churn/predictions?entity_id=n0"
    every = (await service.ok("GET", timeline))["predictions"]
    assert {p["prediction_id"] for p in every} == {"n0", "odd"}
    outliers = (await service.ok("GET", timeline + "&outlier=true"))["predictions"]
    assert [p["prediction_id"] for p in outliers] == ["odd"]
    assert outliers[0]["outlier"] > 0
    inliers = (await service.ok("GET", timeline + "&outlier=false"))["predictions"]
    assert [p["prediction_id"] for p in inliers] == ["n0"]

    dataset = "/v1/monitors/ml/churn/dataset?window=1h"
    flagged = await service.call("GET", dataset + "&outlier=true")
    assert [r["prediction_id"] for r in ndjson(flagged[1])] == ["odd"]
    kept = await service.call("GET", dataset + "&outlier=false")
    assert len(ndjson(kept[1])) == 30
    status, body = await service.call("GET", dataset + "&outlier=maybe")
    assert (status, body["details"][0]["field"]) == (400, "outlier")
    csv_rows = (await service.call("GET", dataset + "&outlier=true&format=csv"))[1].decode()
    [row] = csv.DictReader(io.StringIO(csv_rows))
    assert (row["prediction_id"], float(row["outlier"]) > 0) == ("odd", True)


def ndjson(body: bytes) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in body.splitlines() if line]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def test_the_leader_builds_the_history_reference_once_its_period_has_ended(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    """From a uniform sample of the period's records (here at most 1,000 of 1,500)."""
    sampled = EngineSettings(tick_interval=3600.0, history_sample=1000)
    service = await start_service(engine=sampled)
    period = {"from": rfc3339(T0), "to": rfc3339(T0 + 3600)}
    await service.put_monitor(monitor_body(drift={"reference": period}))
    await capture(service, captured(rows(1500, seed=1), T0 + 60, "h"))
    await service.tick()
    status, body = await service.call("GET", REFERENCE)
    assert status == 404, "the period has not ended"
    assert "once its period ends (2026-01-01T01:00:00Z)" in body["details"][0]["message"]
    reason = (await service.state())["drift"]["reason"]
    assert "once its period ends (2026-01-01T01:00:00Z)" in reason, "the state says so too"

    clock.advance(3600)
    await service.tick()
    built = await eventually(lambda: reference_of(service), "the history reference")
    assert (built["source"], built["version"], built["profile"]["rows"]) == ("history", "", 1000)
    await service.tick()
    assert (await service.ok("GET", REFERENCE))["id"] == built["id"], "built once"

    clock.advance(600)
    await capture(service, captured(rows(1200, seed=2, shift=True), clock.now, "s"))
    report = (await service.ok("GET", DRIFT + "?window=5m"))["drift"]
    assert report["reference"]["id"] == built["id"]
    assert report["dataset"]["drifted"]

    restarted = await start_service(engine=sampled)
    await restarted.tick()
    assert (await restarted.ok("GET", REFERENCE))["id"] == built["id"], "not built again"


async def test_a_history_period_without_records_is_said_and_a_new_period_builds_again(
    start_service: ServiceFactory, clock: FakeClock
) -> None:
    service = await start_service()
    clock.advance(7200)
    empty = {"from": rfc3339(T0), "to": rfc3339(T0 + 3600)}
    await service.put_monitor(monitor_body(drift={"reference": empty}))
    await capture(service, captured(rows(1200, seed=1), clock.now - 60, "h"))
    await service.tick()

    async def said() -> Any:
        status, body = await service.call("GET", REFERENCE)
        return status == 404 and "gave none" in body["details"][0]["message"] and body

    body = await eventually(said, "the empty period named")
    assert body["details"][0]["field"] == "spec.drift.reference"
    assert "no rows" in body["details"][0]["message"]
    await service.tick()
    assert "gave none (no rows" in (await service.state())["drift"]["reason"]

    clock.advance(60)
    full = {"from": rfc3339(clock.now - 3600), "to": rfc3339(clock.now)}
    await service.put_monitor(monitor_body(drift={"reference": full}))
    await service.tick()
    built = await eventually(lambda: reference_of(service), "the new period's reference")
    assert built["profile"]["rows"] == 1200


async def reference_of(service: Service) -> Any:
    status, body = await service.call("GET", REFERENCE)
    return status == 200 and body


async def test_a_reference_uploaded_to_one_replica_serves_the_other(
    clock: FakeClock,
) -> None:
    """Two replicas on one PostgreSQL: the other hears of an upload (the store's watch), sketches
    the records it takes against it, and both answer the same drift."""
    async with fresh_schema() as url:
        a = Service(make_settings(url, clock))
        b = Service(make_settings(url, clock))
        await a.start()
        await b.start()
        try:
            await a.put_monitor(monitor_body())
            stored = await a.ok("POST", REFERENCE, data=as_csv(rows(2000, seed=1)), headers=CSV)

            async def heard() -> bool:
                status, body = await b.call("GET", REFERENCE)
                return status == 200 and body["id"] == stored["id"]

            await eventually(heard, "the other replica has the reference")
            await capture(b, captured(rows(1200, seed=2, shift=True), clock.now, "b"))
            for service in (a, b):
                report = (await service.ok("GET", DRIFT))["drift"]
                assert report["reference"]["id"] == stored["id"]
                assert report["samples"] == 1200
                assert report["dataset"]["drifted"]
        finally:
            await b.stop()
            await a.stop()
