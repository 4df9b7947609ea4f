"""Segment counters in the store, backend by backend: every counter a record makes (its
prediction, estimation, review and label counters) kept again under its segment values, equal to
what a monitor fed only that value's records counts; labels, relabels and the missing-actual
sweep move them, duplicates do not; ordinary reads never see them; the raw values' counts; the
number of values bounded under a flood; and the feature sketches kept per value for a segment
with drift only, each value's as a monitor fed only its records counts."""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

import msgspec
import numpy as np
import pytest

from tests.support.feedback import T0, monitor_body
from truthloop.core import calibration, estimate, review, segments, windows
from truthloop.core.profile import Profile, build_from_records
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import SegmentSpec, Source, parse_monitor
from truthloop.feedback.store.interface import EVERY, Only, Registered, Store

pytest_plugins = ["tests.support.feedback_fixtures"]

SEGMENTS = (
    SegmentSpec("country", Source(pointer="/country"), max_values=2),
    SegmentSpec("device", Source(header="X-Device")),
    SegmentSpec("tenure", Source(pointer="/tenure"), buckets=(6.0, 12.0)),
)
SETS: segments.ValueSets = {"country": ("DE", "FR"), "device": ("ios", "android")}
DESIGN = review.Design(uniform=1.0)
"""Every model record queued (pi = 1): the selection is the same on every monitor."""
SPAN = windows.window(T0, 7200)


async def monitor(
    store: Store, name: str, *, with_segments: bool = True, **spec: Any
) -> Registered:
    """A scored binary monitor with a calibrated reference and review (and `SEGMENTS`)."""
    body = monitor_body(name, **spec)
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 2000)
    actual = (rng.uniform(0, 1, 2000) < scores).astype(np.intp)
    fitted = calibration.fit_binary(scores, (scores >= 0.5).astype(np.intp), actual)
    reference = await store.put_reference(
        registered.id, "", "upload", Profile(2000, (), calibration=fitted), T0
    )
    found = dataclasses.replace(
        registered.monitor.spec,
        segments=SEGMENTS if with_segments else (),
        review=review.ReviewSpec(budget=100.0),
    )
    return dataclasses.replace(
        registered,
        monitor=dataclasses.replace(registered.monitor, spec=found),
        references={"": reference},
    )


def batch(n: int, seed: int, key: str = "ml/seg") -> list[PredictionRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        score = round(rng.random(), 4)
        raw: dict[str, Any] = {}
        if (country := rng.choice(["DE", "FR", "US", "JP", None])) is not None:
            raw["country"] = country
        raw["device"] = rng.choice(["ios", "android", "web"])
        if (tenure := rng.choice([1, 7.5, 13, "n/a", None])) is not None:
            raw["tenure"] = tenure
        out.append(
            PredictionRecord(
                key,
                f"p{i}",
                "model",
                "v1",
                T0 - 30 - rng.uniform(0, 150),
                int(score >= 0.5),
                score=score,
                segments=raw or None,
            )
        )
    return out


def country(record: PredictionRecord) -> str:
    raw = (record.segments or {}).get("country")
    return segments.assign(SEGMENTS[0], SETS["country"], raw)


def actuals(records: list[PredictionRecord], key: str) -> list[list[Actual]]:
    """Rounds of actuals, each record's by its number alone: labels of most, relabels of some,
    a reviewer's labels of a few."""
    numbered = [(int(r.prediction_id[1:]), r.prediction_id) for r in records]
    first = [
        Actual(key, T0, prediction_id=pid, value=i * 7 % 3 % 2) for i, pid in numbered if i % 10 < 7
    ]
    again = [
        Actual(key, T0, prediction_id=pid, value=1 - i * 7 % 3 % 2)
        for i, pid in numbered
        if i % 10 < 7 and i % 4 == 0
    ]
    reviewed = [
        Actual(key, T0, prediction_id=pid, value=1, reviewer="ann")
        for i, pid in numbered
        if i % 9 == 0
    ]
    return [first, again, reviewed]


def normal(counters: dict[str, float], sketches: bool = False) -> dict[str, Any]:
    """Counters with the reference id taken out of their keys; without the feature sketch
    ones (kept per value only for a segment with drift) unless `sketches`."""
    out = {}
    for key, value in counters.items():
        if not value:
            continue
        if key.startswith("~") and not sketches and ":@cbpe:" not in key and ":@dle:" not in key:
            continue
        out[re.sub(r"^~\d+:", "~R:", key)] = pytest.approx(value)
    return out


async def read(store: Store, registered: Registered, only: Only = EVERY) -> dict[str, float]:
    return (await store.window(registered.id, SPAN, only)).get(("v1", "model"), {})


async def feed(
    store: Store, registered: Registered, records: list[PredictionRecord], sets: Any
) -> None:
    key = registered.monitor.key
    mine = [msgspec.structs.replace(r, monitor=key) for r in records]
    known = {key: registered}
    await store.insert_predictions(mine, known, T0, {registered.id: DESIGN}, sets)
    for round_ in actuals(mine, key):
        await store.apply_actuals(round_, known, T0)


async def test_segment_counters_are_what_each_values_records_count_alone(store: Store) -> None:
    seg = await monitor(store, "seg")
    plain = await monitor(store, "plain", with_segments=False)
    records = batch(600, seed=1)
    await feed(store, seg, records, {seg.id: SETS})
    await feed(store, plain, records, None)
    # a retried batch: every record a duplicate, nothing counted twice
    await store.insert_predictions(records, {"ml/seg": seg}, T0, {seg.id: DESIGN}, {seg.id: SETS})

    ordinary = await read(store, seg)
    assert not [k for k in ordinary if segments.is_counter(k)]
    assert normal(ordinary, sketches=True) == normal(await read(store, plain), sketches=True)
    series = await store.series(seg.id, windows.steps(SPAN, 10))
    assert not [k for p in series.values() for g in p.values() for k in g if k[:1] == "^"]

    by_value = segments.split(await read(store, seg, Only(segment="country")), "country")
    assert set(by_value) == {"DE", "FR", "other", "missing"}
    for i, value in enumerate(sorted(by_value)):
        alone = await monitor(store, f"alone{i}", with_segments=False)
        await feed(store, alone, [r for r in records if country(r) == value], None)
        single = await read(store, alone)
        assert histogramless(by_value[value]) == histogramless(single), value
        assert_estimates_equal(seg, by_value[value], alone, single)
        assert_compact(seg, by_value[value], single)
    assert sum(v["@predictions"] for v in by_value.values()) == len(records)
    estimated = [k for v in by_value.values() for k in v if ":@cbpe:" in k]
    reviewed = [k for v in by_value.values() for k in v if review.is_counter(k)]
    assert estimated
    assert reviewed

    whole = await read(store, plain)
    for name in ("device", "tenure"):
        values = segments.split(await read(store, seg, Only(segment=name)), name)
        total: dict[str, float] = {}
        for counters in values.values():
            for key, value in counters.items():
                total[key] = total.get(key, 0.0) + value
        assert histogramless(total) == histogramless(whole), name
        assert_estimates_equal(seg, total, plain, whole)
    assert set(values) == {"<6", "[6,12)", ">=12", "other", "missing"}

    metrics_only = await read(store, seg, Only(segment="country", sketches=False))
    assert metrics_only
    assert all(":~" not in k for k in metrics_only)
    both = await read(store, seg, Only(segment="country", sketches=False, estimates=True))
    assert {k for k in both if ":~" in k} == {k for k in by_value_keys(seg, by_value)}


def histogramless(counters: dict[str, float]) -> dict[str, Any]:
    """`normal` without the binary score histogram (a segment keeps it per calibration step)."""
    return {k: v for k, v in normal(counters).items() if ":@cbpe:" not in k}


def assert_estimates_equal(
    seg: Registered, mine: dict[str, float], alone: Registered, theirs: dict[str, float]
) -> None:
    """A segment value's estimated metrics (every binary one, ROC AUC too, and their bands)
    are those of a monitor fed only its records."""
    spec = seg.monitor.spec
    found = estimate.evaluate(seg.references[""], mine, spec)
    expected = estimate.evaluate(alone.references[""], theirs, alone.monitor.spec)
    assert set(found) == set(estimate.BINARY_METRICS) == set(expected)
    assert found["roc_auc"].value is not None
    for name, value in expected.items():
        got = found[name]
        assert (got.value, got.lower, got.upper) == pytest.approx(
            (value.value, value.lower, value.upper), rel=1e-9
        ), name
    assert estimate.records(seg.references[""], mine) == estimate.records(
        alone.references[""], theirs
    )


def assert_compact(seg: Registered, mine: dict[str, float], theirs: dict[str, float]) -> None:
    """A segment value's histogram counts each record at its calibration step's first bin."""
    calibrated = seg.references[""].profile.calibration
    assert isinstance(calibrated, calibration.BinaryCalibration)
    starts = set(calibrated.curve.starts)
    histogram = [k for k in mine if ":@cbpe:" in k]
    assert histogram
    assert {int(k.rsplit(":", 1)[1]) for k in histogram} <= starts
    assert len(histogram) < len([k for k in theirs if ":@cbpe:" in k])


def by_value_keys(seg: Registered, by_value: dict[str, dict[str, float]]) -> set[str]:
    return {
        segments.key("country", value, key)
        for value, counters in by_value.items()
        for key in counters
        if key[:1] == "~"
    }


async def test_the_missing_actual_sweep_moves_the_segment_counters(store: Store) -> None:
    seg = await monitor(
        store,
        "seg",
        feedback={"attributionWindow": "1h", "missingActual": {"policy": "assume", "value": 0}},
    )
    records = batch(50, seed=2)
    known = {"ml/seg": seg}
    await store.insert_predictions(records, known, T0, None, {seg.id: SETS})
    assert await store.assume_missing(seg, T0 + 1, T0 + 3600, 1000) == len(records)
    by_value = segments.split(await read(store, seg, Only(segment="country")), "country")
    for value, counters in by_value.items():
        mine = [r for r in records if country(r) == value]
        assert counters["@predictions"] == len(mine)
        assert counters.get("tp", 0) + counters.get("fp", 0) + counters.get("tn", 0) + counters.get(
            "fn", 0
        ) == len(mine), value


async def test_segment_values_counts_the_newest_records_raw_values(store: Store) -> None:
    seg = await monitor(store, "seg")
    records = batch(300, seed=4)
    await store.insert_predictions(records, {"ml/seg": seg}, T0)
    found = await store.segment_values(seg.id, T0 - 3600, 1000)
    for name in ("country", "device", "tenure"):
        expected: dict[str, int] = {}
        for r in records:
            raw = (r.segments or {}).get(name)
            if raw is not None:
                expected[segments.text(raw)] = expected.get(segments.text(raw), 0) + 1
        assert found[name] == expected, name
    assert set(found["tenure"]) == {"1", "7.5", "13", "n/a"}
    newest = sorted(records, key=lambda r: r.ts)[-100:]
    few = await store.segment_values(seg.id, T0 - 3600, 100)
    assert sum(few["device"].values()) == sum(1 for r in newest if r.segments)
    assert await store.segment_values(seg.id, T0, 1000) == {}


async def test_a_flood_of_distinct_values_keeps_the_values_bounded(store: Store) -> None:
    seg = await monitor(store, "seg")
    records = [
        PredictionRecord(
            "ml/seg", f"f{i}", "model", "v1", T0 - 60, 1, score=0.9,
            segments={"country": f"c{i}", "device": f"d{i}", "tenure": i},
        )
        for i in range(10_000)
    ]  # fmt: skip
    sets = {seg.id: {"country": ("c1", "c2"), "device": ("d1",)}}
    await store.insert_predictions(records, {"ml/seg": seg}, T0, None, sets)
    for spec in SEGMENTS:
        values = segments.split(await read(store, seg, Only(segment=spec.name)), spec.name)
        bound = len(spec.buckets) + 1 if spec.buckets else spec.max_values + 2
        assert 0 < len(values) <= bound, spec.name
        assert sum(v["@predictions"] for v in values.values()) == len(records)
    counted = await store.segment_values(seg.id, T0 - 3600, 10_000)
    assert len(counted["country"]) == 10_000


async def drifting(store: Store, name: str, profile: Profile, drift: bool) -> Registered:
    """A monitor whose reference is `profile`, with `SEGMENTS` (country with `drift`) when
    `drift`, else none."""
    body = monitor_body(name)
    registered, _ = await store.put_monitor(parse_monitor(body), body, T0)
    reference = await store.put_reference(registered.id, "", "upload", profile, T0)
    kept = (dataclasses.replace(SEGMENTS[0], drift=True), *SEGMENTS[1:]) if drift else ()
    found = dataclasses.replace(registered.monitor.spec, segments=kept)
    return dataclasses.replace(
        registered,
        monitor=dataclasses.replace(registered.monitor, spec=found),
        references={"": reference},
    )


def featured(records: list[PredictionRecord], seed: int) -> list[PredictionRecord]:
    """`records` with a numeric and a categorical feature (some missing, some of a wrong type)."""
    rng = random.Random(seed)
    return [
        msgspec.structs.replace(
            r,
            features={
                "tenure": rng.choice([rng.gauss(12, 4), None, "x"]),
                "plan": rng.choice(["basic", "pro", "team", "enterprise", None]),
            },
        )
        for r in records
    ]


async def test_a_drift_segment_keeps_each_values_feature_sketches_as_it_alone_counts(
    store: Store,
) -> None:
    records = featured(batch(600, seed=4), seed=5)
    spec = parse_monitor(monitor_body("x")).spec
    profile, _ = build_from_records(
        [(r.prediction, r.score, r.features) for r in featured(batch(500, seed=6), seed=7)], spec
    )
    seg = await drifting(store, "seg", profile, True)
    mine = [msgspec.structs.replace(r, monitor="ml/seg") for r in records]
    await store.insert_predictions(mine, {"ml/seg": seg}, T0, None, {seg.id: SETS})

    sketched = await read(store, seg, Only(segment="country", sketches=True))
    by_value = segments.split(sketched, "country")
    assert set(by_value) == {"DE", "FR", "other", "missing"}
    for i, value in enumerate(sorted(by_value)):
        alone = await drifting(store, f"alone{i}", profile, False)
        theirs = [
            msgspec.structs.replace(r, monitor=f"ml/alone{i}")
            for r in records
            if country(r) == value
        ]
        await store.insert_predictions(theirs, {f"ml/alone{i}": alone}, T0, None, None)
        sketched = await read(store, alone, Only(sketches=True))
        assert [k for k in sketched if ":tenure:" in k and sketched[k]]
        assert normal(by_value[value], sketches=True) == normal(sketched, sketches=True), value
    for name in ("device", "tenure"):
        assert await read(store, seg, Only(segment=name, sketches=True)) == {}, name
