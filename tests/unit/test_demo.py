"""The demo's pure pieces: the time-lapse clock, the scenario, the summary, the view."""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
from typing import Any

import msgspec
import numpy as np
import pytest
from truthloop.examples import churn_model

from tests.support import readme
from truthloop.core import spec, wire
from truthloop.core.backtest import Backtest, BacktestResult, Episode, Period
from truthloop.core.compare import Difference
from truthloop.core.metrics import Estimate as MetricEstimate
from truthloop.core.rulehistory import RulesVsModel, Skipped
from truthloop.demo import cli, summary, view
from truthloop.demo.cli import demo_monitor, phase_text
from truthloop.demo.reviewer import Reviews
from truthloop.demo.scenario import BROKEN_CHARGES, Scenario
from truthloop.demo.timelapse import TimeLapse
from truthloop.demo.traffic import Counts
from truthloop.demo.watch import (
    DriftChange,
    DriftReading,
    Estimate,
    PhaseChange,
    Reading,
    describe,
    drift_changes,
    drift_reading,
    estimate,
)

T0 = 1_767_225_600.0


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


# -- time-lapse ---------------------------------------------------------------------------------


def test_service_time_runs_speed_times_faster_then_settles_without_going_back() -> None:
    wall = Wall()
    clock = TimeLapse(20, wall=wall)
    assert clock() == T0
    wall.now += 3
    assert (clock.now(), clock.elapsed(), clock.wall_elapsed()) == (T0 + 60, 60, 3)
    clock.settle()
    assert clock.now() == T0 + 60
    wall.now += 3
    assert (clock.now(), clock.elapsed(), clock.speed) == (T0 + 63, 63, 1.0)


def test_a_wall_instant_maps_to_the_service_time_it_was() -> None:
    """A request that arrived at wall time w is stamped at(w) however late it is captured: a
    fallback answer and its shadow answer, captured apart, land in the same minute."""
    wall = Wall()
    clock = TimeLapse(60, wall=wall)
    arrival = wall.now + 1.0
    wall.now += 1.5  # captured half a wall second (half a service minute) later
    assert clock.at(arrival) == T0 + 60
    assert clock.now() == T0 + 90


def test_a_clock_slower_than_the_wall_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        TimeLapse(0.5)


# -- scenario -----------------------------------------------------------------------------------


def test_the_world_drifts_between_the_two_shifts_placed_in_their_minutes() -> None:
    """From an origin 10 s into a minute, 30 s at 20×: the drift, due at 90 s, waits for the next
    25th second of a minute (at 135 s); churn turns to the price, due at 216 s, at the next 25th
    (at 255 s); the way back, due at 330 s, for the next 55th (at 345 s)."""
    scenario = Scenario(duration=30, speed=20, origin=T0 + 10)
    drift, back = scenario.shifts
    assert (drift.at, drift.drifted, back.at, back.drifted) == (6.75, True, 17.25, False)
    assert scenario.turn.at == 12.75
    assert [scenario.drifted(t) for t in (0, 6.7, 6.75, 17.2, 17.25, 29)] == [
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    assert [scenario.world(t) for t in (6.7, 6.75, 12.7, 12.75, 17.25)] == [
        "usual",
        "newcomers",
        "newcomers",
        "price",
        "usual",
    ]
    assert scenario.label_wait == 2.25


def test_a_shift_due_on_its_second_is_not_moved() -> None:
    scenario = Scenario(duration=40, drift_from=0.25, drift_offset=20, origin=T0)
    assert scenario.shifts[0].at == 10  # 200 s of service time: the 20th second of a minute


@pytest.mark.parametrize("duration", [29.9, 90.1, 0])
def test_a_duration_the_story_does_not_fit_is_refused(duration: float) -> None:
    with pytest.raises(ValueError, match=r"^duration: between 30 and 90 seconds"):
        Scenario(duration=duration).check()


@pytest.mark.parametrize("duration", [30, 40])
@pytest.mark.parametrize("second", range(60))
def test_the_story_fits_the_demo_monitor_wherever_the_minutes_fall(
    duration: float, second: int
) -> None:
    """For the shortest duration allowed and the default, in service time, whatever second of a
    minute the traffic starts at: labels arrive and the monitor is Healthy for `for` before the
    drift; the next bucket edge after the drift carries the newcomers into the window before
    their labels come (the estimate falls first), the edge after their labels come carries them
    into the realized accuracy, the alert holds for `for` and then the fallback answers a whole
    minute in which churn follows the price; after the way back, its labels and the next edge
    carry it, and the alert stays clear for `recoverAfter`, with a minute to spare. (In the
    shortest run the whole minute may not fit: the summary then compares the busiest one and
    says it was not wholly drifted.)"""
    monitor = spec.parse_monitor(demo_monitor()).spec
    scenario = Scenario(duration=duration, origin=T0 + second)
    scenario.check()
    drift, back = (scenario.origin + shift.at * scenario.speed for shift in scenario.shifts)
    turn = scenario.origin + scenario.turn.at * scenario.speed
    end = scenario.origin + scenario.duration * scenario.speed
    delay, minute, hold = scenario.label_delay, 60, monitor.alerts[0].for_

    def next_edge(t: float) -> float:
        return t - t % minute + minute

    per_second = scenario.rate / scenario.speed
    assert drift - scenario.origin >= delay + monitor.metrics.min_samples / per_second + hold
    assert next_edge(drift) < drift + delay, "the estimate moves before the newcomers' labels"
    assert drift < turn < back
    engaged = next_edge(drift + delay) + hold
    assert engaged + minute <= back
    if duration >= 40:
        assert next_edge(max(engaged, turn)) + minute <= back, "a whole minute of fallback answers"
    assert next_edge(back + delay) + monitor.fallback.recover_after + minute <= end


@pytest.mark.parametrize("duration", [30, 40, 90])
def test_the_meter_breaks_in_the_usual_world(duration: float) -> None:
    scenario = Scenario(duration=duration, origin=T0 + 59)
    drift, _ = scenario.shifts
    assert 0 < scenario.burst < drift.at
    assert not scenario.drifted(scenario.burst)
    assert "the next 12 customers arrive with monthly_charges 0.0 (outliers" in scenario.burst_text


def test_the_drifted_world_moves_the_inputs_within_the_references_ranges() -> None:
    """The drift is a shift of the population, not outliers: every drifted customer's values lie
    within what the training set (the demo's reference) holds, while the broken meter's do not."""
    customers, _ = churn_model.training_set()
    rng = np.random.default_rng(1)
    drifted = [churn_model.sample_customer(rng, drifted=True) for _ in range(5000)]
    for name in churn_model.NUMERIC:
        usual = [float(c[name]) for c in customers]  # type: ignore[arg-type]
        values = [float(c[name]) for c in drifted]  # type: ignore[arg-type]
        assert min(usual) <= min(values), name
        assert max(values) <= max(usual), name
        assert abs(np.mean(values) - np.mean(usual)) > 0.25 * np.std(usual), name
    assert {c["contract"] for c in drifted} <= set(churn_model.CONTRACTS)
    assert min(float(c["monthly_charges"]) for c in customers) > BROKEN_CHARGES  # type: ignore[arg-type]


@pytest.mark.parametrize("world", ["newcomers", "price"])
def test_the_newcomers_are_a_shift_the_scores_foretell_the_price_one_they_do_not(
    world: str,
) -> None:
    """CBPE's premise and its limit, on the demo's worlds: the newcomers' inputs move (within the
    training set's ranges) into the model's unsure region while churn follows the usual world, so
    the accuracy the model's scores expect is the accuracy it gets, below the demo's bound of
    0.8; when churn follows the price the model stays sure of itself and is mostly wrong."""
    model = churn_model.fit()
    customers, _ = churn_model.training_set()
    rng = np.random.default_rng(3)
    newcomers = world == "newcomers"
    drawn = [
        churn_model.sample_newcomer(rng)
        if newcomers
        else churn_model.sample_customer(rng, drifted=True)
        for _ in range(5000)
    ]
    scores = np.array([model.score(c) for c in drawn])
    predicted = scores >= 0.5
    churned = np.array([churn_model.label(c, rng, drifted=not newcomers) for c in drawn])
    expected = float(np.mean(np.where(predicted, scores, 1 - scores)))
    realized = float(np.mean(predicted == churned))
    if newcomers:
        assert expected < 0.7
        assert abs(expected - realized) < 0.03
        for name in churn_model.NUMERIC:
            usual = [float(c[name]) for c in customers]  # type: ignore[arg-type]
            values = [float(c[name]) for c in drawn]  # type: ignore[arg-type]
            assert min(usual) <= min(values) <= max(values) <= max(usual), name
    else:
        assert expected > 0.9
        assert realized < 0.5


def test_the_reference_is_the_training_set_with_the_models_answers() -> None:
    model = churn_model.fit()
    body, rows = cli.reference_csv(model)
    table = list(csv.DictReader(io.StringIO(body.decode())))
    customers, labels = churn_model.training_set()
    assert rows == len(table) == len(customers) == churn_model.TRAINING_SIZE
    header = ["tenure", "monthly_charges", "contract", "support_calls"]
    assert list(table[0]) == [*header, "prediction", "score", "actual"]
    for row, customer, churned in zip(table[:50], customers, labels, strict=False):
        prediction, score = model.predict(customer)
        assert row["contract"] == customer["contract"]
        assert float(row["monthly_charges"]) == customer["monthly_charges"]
        assert (int(row["prediction"]), int(row["actual"])) == (prediction, churned)
        assert float(row["score"]) == pytest.approx(score, abs=1e-6)


def test_drift_changes_read_as_events() -> None:
    flagged = DriftChange("drift", drift(140, ("tenure", "contract")))
    assert cli.drift_text(flagged, "2m") == (
        "drift: 2 of 4 features in the last 2m left the reference, seen in the inputs as they are"
        " captured, before any label"
    )
    assert cli.drift_text(DriftChange("drift_cleared", drift(360, ("tenure",))), "2m") == (
        "drift cleared: 1 of 4 features in the last 2m drifted"
    )
    assert cli.drift_text(DriftChange("outliers", drift(65, outliers=12)), "2m") == (
        "outliers: 4.0% of the last 2m's records (12 records) lie outside the reference;"
        " 0 of 4 features in the last 2m drifted"
    )
    one = DriftChange("outliers", drift(500, outliers=1, samples=200))
    assert cli.drift_text(one, "2m").startswith(
        "outliers: 0.5% of the last 2m's records (1 record) lie"
    )
    assert cli.drift_text(DriftChange("outliers_gone", drift(130)), "2m") == (
        "outliers: none left in the last 2m"
    )


def test_the_demo_monitor_is_the_example_in_the_default_namespace() -> None:
    body = demo_monitor()
    assert body["metadata"] == {"name": "churn", "namespace": "default"}
    assert spec.parse_monitor(body).key == "default/churn"
    assert body["spec"]["review"] == cli.REVIEW
    assert spec.parse_monitor(body).spec.review is not None


# -- watching -----------------------------------------------------------------------------------

SPEC = spec.parse_monitor(demo_monitor()).spec


def state(
    phase: wire.Phase,
    alert: wire.AlertStatus = "ok",
    value: float | None = 0.9,
    causes: tuple[wire.Cause, ...] = (),
) -> wire.MonitorState:
    return wire.MonitorState(
        monitor="default/churn",
        generation=1,
        version=3,
        phase=phase,
        alerts=(wire.AlertState("accuracy-low", alert, T0, value, 40),),
        fallback=wire.FallbackState(active=phase == "FallbackActive", mode="auto", causes=causes),
    )


@pytest.mark.parametrize(
    ("current", "previous", "text"),
    [
        (
            state("Collecting", "insufficient", None),
            None,
            "waiting for 20 labeled predictions in the window (2m)",
        ),
        (state("Healthy", value=0.93), "Collecting", "accuracy-low ok: accuracy 0.930"),
        (
            state("Degraded", "pending", 0.7968),
            "Healthy",
            "accuracy-low pending: accuracy 0.797 < 0.8, fires after 20s",
        ),
        (
            state("FallbackActive", "firing", 0.6, (wire.Cause("alert", "accuracy-low"),)),
            "Degraded",
            "accuracy-low: the fallback rules answer (X-Served-By: fallback);"
            " the model still answers, unseen, and is measured",
        ),
        (
            state("Healthy", value=0.91),
            "FallbackActive",
            "accuracy-low ok: accuracy 0.910; clear for 30s (recoverAfter),"
            " the model answers again",
        ),
    ],
)
def test_each_phase_says_why(current: wire.MonitorState, previous: str | None, text: str) -> None:
    assert describe(current, SPEC, previous) == text


def test_durations_are_told_as_a_spec_writes_them() -> None:
    longer = dataclasses.replace(
        SPEC,
        metrics=dataclasses.replace(SPEC.metrics, window=5400.0),
        alerts=(dataclasses.replace(SPEC.alerts[0], for_=90.0),),
    )
    assert describe(state("Collecting", "insufficient", None), longer) == (
        "waiting for 20 labeled predictions in the window (1h30m)"
    )
    assert describe(state("Degraded", "pending", 0.7), longer).endswith("fires after 1m30s")


def test_a_phase_change_reads_as_an_event() -> None:
    assert phase_text(PhaseChange(0, None, "Collecting", "waiting")) == "phase Collecting: waiting"
    assert phase_text(PhaseChange(9, "Healthy", "Degraded", "why")) == (
        "phase Healthy → Degraded: why"
    )


def test_an_undefined_metric_has_no_estimate() -> None:
    assert estimate({"accuracy": {"value": None, "lower": None, "upper": None}}) is None
    assert estimate({}) is None
    assert estimate({"accuracy": {"value": 0.5, "lower": 0.4, "upper": 0.6}}) == Estimate(
        0.5, 0.4, 0.6
    )


# -- summary ------------------------------------------------------------------------------------


def part(samples: int, labeled: int, accuracy: float | None) -> dict[str, Any]:
    metrics = (
        {} if accuracy is None else {"accuracy": {"value": accuracy, "lower": 0.1, "upper": 0.9}}
    )
    return {"samples": samples, "labeled": labeled, "metrics": metrics}


def point(start: float, samples: int, labeled: int, accuracy: float | None) -> dict[str, Any]:
    return {"start": start, **part(samples, labeled, accuracy)}


CHANGES = (
    PhaseChange(0, None, "Collecting", ""),
    PhaseChange(30, "Collecting", "Healthy", ""),
    PhaseChange(170, "Healthy", "Degraded", ""),
    PhaseChange(190, "Degraded", "FallbackActive", ""),
    PhaseChange(430, "FallbackActive", "Healthy", ""),
)


def test_fallback_periods_come_from_the_phase_changes() -> None:
    assert summary.fallback_periods(CHANGES) == (summary.Period(190, 430),)
    assert summary.fallback_periods(CHANGES[:4]) == (summary.Period(190, None),)
    assert summary.fallback_periods(CHANGES[:2]) == ()


def test_the_minute_compared_is_a_wholly_drifted_one_the_fallback_answered_alone() -> None:
    model = [point(T0 + 60 * i, 150, 150, 0.9 - i / 100) for i in range(7)]
    fallback = [
        point(T0 + 120, 60, 60, 0.97),  # straddles the drift's start: not wholly drifted
        point(T0 + 180, 140, 140, 0.95),  # the model answered 10 requests itself
        point(T0 + 240, 150, 140, 0.96),
        point(T0 + 300, 150, 140, 0.94),  # as good as the one before, later
        point(T0 + 360, 170, 170, 0.7),  # busier, but after the world shifted back
    ]
    minute = summary.pick_minute(model, fallback, (T0 + 150, T0 + 360))
    assert minute == summary.Minute(
        T0 + 240,
        summary.Figures(150, 150, Estimate(0.86, 0.1, 0.9)),
        summary.Figures(150, 140, Estimate(0.96, 0.1, 0.9)),
        drifted=True,
    )


def test_without_a_wholly_drifted_minute_the_busiest_one_is_compared_and_said_so() -> None:
    model = [point(T0, 10, 10, 0.5), point(T0 + 60, 10, 10, 0.6)]
    fallback = [point(T0, 3, 3, 1.0), point(T0 + 60, 5, 4, 0.75), point(T0 + 120, 0, 0, None)]
    minute = summary.pick_minute(model, fallback, (T0 + 30, T0 + 90))
    assert minute is not None
    assert (minute.start, minute.drifted, minute.fallback.labeled) == (T0 + 60, False, 4)


def test_no_minute_when_the_fallback_never_answered() -> None:
    model = [point(T0, 10, 10, 0.5)]
    assert summary.pick_minute(model, [point(T0, 0, 0, None)], (T0, T0 + 60)) is None


FEATURES = ("tenure", "monthly_charges", "contract", "support_calls")


def drift(
    at: float, drifted: tuple[str, ...] = (), outliers: int = 0, samples: int = 300
) -> DriftReading:
    """A drift reading of the four features; dataset drift from two of them (share 0.5)."""
    ratio = outliers / samples
    return DriftReading(at, samples, 4, drifted, len(drifted) >= 2, outliers, ratio)


READINGS = (
    drift(50),
    drift(65, outliers=12),  # the meter breaks
    drift(70, ("tenure",), outliers=12),  # one feature's test trips on its own: no dataset drift
    drift(75, outliers=11),
    drift(130, ("tenure",)),  # the world drifted at 120
    drift(140, ("tenure", "contract", "support_calls")),
    drift(300, FEATURES, outliers=15),  # a few odd records in the drifted world: not the burst
    drift(360),
)
DRIFT_CHANGES = tuple(
    change
    for previous, current in zip((None, *READINGS), READINGS, strict=False)
    for change in drift_changes(previous, current)
)


def metrics(
    at: float, labeled: int, realized: float, estimated: float, reviewed: float | None = None
) -> Reading:
    return Reading(
        at,
        300,
        labeled,
        Estimate(realized, None, None),
        None,
        Estimate(estimated, None, None),
        None if reviewed is None else Estimate(reviewed, None, None),
        0 if reviewed is None else 40,
    )


METRICS_READINGS = (
    metrics(50, 100, 0.9, 0.78),  # a dip of the estimate in the usual world: not the story
    metrics(100, 250, 0.93, 0.93),
    metrics(150, 60, 0.92, 0.81),  # the newcomers came at 120
    metrics(155, 62, 0.91, 0.74),  # the estimate falls below 0.8
    metrics(160, 64, 0.9, 0.73),
    metrics(250, 200, 0.55, 0.78),  # churn follows the price from 240
    metrics(320, 210, 0.41, 0.93, 0.44),  # the model confidently wrong: the scores cannot see
    # it, the reviews do
    metrics(340, 200, 0.45, 0.94),  # the world is back at 330
)
DRIFTED_LABELS = ((0.0, 0), (150.0, 5), (154.0, 12), (156.0, 30))


def test_the_estimate_told_is_the_first_below_the_bound_in_the_drift() -> None:
    story = summary.estimate_story(
        METRICS_READINGS,
        threshold=0.8,
        min_samples=20,
        drift=(120, 240, 330),
        drifted_labels=DRIFTED_LABELS,
    )
    assert story == summary.EstimateStory(0.8, 20, METRICS_READINGS[3], 12, METRICS_READINGS[6])
    never = summary.estimate_story(
        METRICS_READINGS[:3],
        threshold=0.8,
        min_samples=20,
        drift=(120, 240, 330),
        drifted_labels=DRIFTED_LABELS,
    )
    assert never == summary.EstimateStory(0.8, 20, None, 0, None)
    assert summary.estimate_lines(never, None) == [
        "  estimate  never below 0.8 while the world was drifted"
    ]


REVIEWS = Reviews(
    leased=310,
    labeled=300,
    reasons=collections.Counter(abstain=80, explore=30, random=60, borderline=130),
)


def reviewed_part(samples: int, labeled: int, accuracy: float) -> dict[str, Any]:
    """A whole run's model part: its accuracy, estimated from the scores and from 300
    reviews."""
    return {
        **part(samples, labeled, accuracy),
        "estimated": {"accuracy": {"value": 0.86, "lower": 0.84, "upper": 0.88}},
        "reviewed": {"accuracy": {"value": 0.79, "lower": 0.76, "upper": 0.83, "n": 300}},
    }


def made_summary() -> summary.Summary:
    overall = {
        "served_by": {"model": reviewed_part(1500, 1490, 0.81), "fallback": part(600, 590, 0.8)}
    }
    return summary.summarize(
        Counts(
            requests=1500, answered=1500, by_fallback=600, actuals=1500, broken=12, abstained=70
        ),
        "1h",
        overall,
        [point(T0 + 240, 150, 150, 0.57)],
        [point(T0 + 240, 150, 148, 0.98)],
        changes=CHANGES,
        start=T0,
        drifted=(T0 + 240, T0 + 330),
        drift_changes=DRIFT_CHANGES,
        drift_readings=READINGS,
        estimated=summary.estimate_story(
            METRICS_READINGS,
            threshold=0.8,
            min_samples=20,
            drift=(120, 240, 330),
            drifted_labels=DRIFTED_LABELS,
        ),
        calm_until=T0 + 120,
        reviews=REVIEWS,
        abstain=summary.Abstain(0.45, 0.55, 0.02),
    )


def test_drift_changes_are_the_flag_and_the_outliers_coming_and_going() -> None:
    assert [(c.what, c.at) for c in DRIFT_CHANGES] == [
        ("outliers", 65),
        ("outliers_gone", 130),
        ("drift", 140),
        ("outliers", 300),
        ("drift_cleared", 360),
        ("outliers_gone", 360),
    ]


def test_a_drift_answer_reads_as_the_features_drifted_and_the_outliers() -> None:
    answer = {
        "monitor": "default/churn",
        "window": {"seconds": 120},
        "drift": {
            "status": "ok",
            "samples": 250,
            "dataset": {
                "tested": 4,
                "count": 2,
                "share": 0.5,
                "threshold": 0.5,
                "drifted": True,
                "names": ["tenure", "contract"],
            },
            "outliers": {"count": 5, "ratio": 0.02},
        },
    }
    assert drift_reading(answer, 12) == DriftReading(
        12, 250, 4, ("tenure", "contract"), True, 5, 0.02
    )
    assert drift_reading({"drift": {"status": "no_reference"}}, 12) is None
    assert drift_reading({"drift": {"status": "no_data"}}, 12) is None


def test_the_drift_told_is_the_one_flagged_before_accuracy_fell() -> None:
    story = summary.drift_story(DRIFT_CHANGES, CHANGES)
    assert story == summary.DriftStory(
        summary.DriftPeriod(140, 360, ("tenure", "contract", "support_calls"), 4), alert=170
    )
    assert story.lead == 30
    blip = (
        DriftChange("drift", drift(20, ("tenure", "contract"))),
        DriftChange("drift_cleared", drift(25)),
    )
    assert summary.drift_story(blip + DRIFT_CHANGES, CHANGES) == story
    early_alert = (CHANGES[0], PhaseChange(100, "Healthy", "Degraded", ""))
    late = summary.drift_story(DRIFT_CHANGES, early_alert)
    assert (late.period.start if late.period else None, late.lead) == (140, -40)
    assert summary.drift_story((), CHANGES) == summary.DriftStory(None, 170)


def test_the_burst_is_the_reading_with_most_outliers_before_the_world_drifted() -> None:
    assert summary.outlier_burst(READINGS, 120) == READINGS[1]
    assert summary.outlier_burst(READINGS, 60) is None


def test_the_summary_tells_the_numbers_of_the_metrics_api() -> None:
    lines = summary.lines(made_summary(), "http://x/metrics?window=1h", 20)
    assert lines == [
        "summary (GET http://x/metrics?window=1h, by served_by; times are service time)",
        "  requests  1500 sent, 1500 answered: 900 by the model, 600 by the fallback"
        " (X-Served-By: fallback)",
        "  captured  1500 model records (its answers, and its shadow answers while the fallback"
        " served), 600 fallback records",
        "  labeled   1490 model, 590 fallback, by 1500 actuals sent by entity ID 20s after each"
        " prediction",
        "  phases    00:00 Collecting → 00:30 Healthy → 02:50 Degraded → 03:10 FallbackActive"
        " → 07:10 Healthy",
        "  fallback  engaged 03:10, released 07:10 (04:00 later)",
        "  drift     flagged 02:20, 00:30 before accuracy fell (02:50 Degraded): from the inputs,"
        " no label needed",
        "            3 of 4 features drifted (tenure, contract, support_calls); cleared 06:00",
        "  outliers  01:05 12 records outside the reference (4.0% of the window; the meter broke"
        " for 12)",
        "            without dataset drift (0 of 4 features drifted): odd records, not a shift",
        "  estimate  accuracy≈0.74 at 02:35, below 0.8 from the scores with 12 labels of the"
        " drifted world (minSamples 20)",
        "            (the window's labeled accuracy then 0.91; accuracy fell 02:50): the newcomers"
        " were a covariate shift, which the estimate sees",
        "            churn following the price is a concept shift, which it cannot see: at 05:20"
        " accuracy≈0.93, labeled 0.41; the reviews, which see the truth, 0.44 from 40",
        "  accuracy  model 0.81 [0.10–0.90] on 1490 labeled over the whole run",
        "  reviewed  accuracy 0.79 [0.76–0.83] from 300 reviews, which holds the labeled 0.81;"
        " ≈0.86 from the scores",
        "  reviews   300 labeled by the reviewer from the queue (GET .../review), each weighed by"
        " its chance of being queued",
        "            queued as 80 in the band, 30 explored, 60 at random, 130 borderline",
        '  abstained 70 answers "I don\'t know" (X-Truthloop-Abstain: true): scores in [0.45,'
        " 0.55], and 2% of the others at random, each queued for review",
        "  minute    04:00–05:00, world drifted, fallback answering:",
        "            fallback 0.98 [0.10–0.90] on 148 labeled",
        "            model    0.57 [0.10–0.90] on 150 labeled (shadow answers included)",
    ]


def test_the_result_line_holds_the_same_numbers() -> None:
    assert made_summary().to_dict() == {
        "requests": 1500,
        "answered": 1500,
        "served_by_fallback": 600,
        "actuals": 1500,
        "window": "1h",
        "model": {
            "samples": 1500,
            "labeled": 1490,
            "accuracy": [0.81, 0.1, 0.9],
            "estimated": [0.86, 0.84, 0.88],
            "reviewed": [0.79, 0.76, 0.83],
            "reviews": 300,
        },
        "fallback": {"samples": 600, "labeled": 590, "accuracy": [0.8, 0.1, 0.9]},
        "minute": {
            "start": T0 + 240,
            "drifted": True,
            "model": {"samples": 150, "labeled": 150, "accuracy": [0.57, 0.1, 0.9]},
            "fallback": {"samples": 150, "labeled": 148, "accuracy": [0.98, 0.1, 0.9]},
        },
        "phases": ["Collecting", "Healthy", "Degraded", "FallbackActive", "Healthy"],
        "drift": {
            "flagged": 140,
            "cleared": 360,
            "features": ["tenure", "contract", "support_calls"],
            "tested": 4,
            "accuracy_fell": 170,
        },
        "outliers": {
            "at": 65,
            "count": 12,
            "ratio": 0.04,
            "broken": 12,
            "drifted": [],
            "tested": 4,
            "dataset_drift": False,
        },
        "estimate": {
            "threshold": 0.8,
            "min_samples": 20,
            "fell": {
                "at": 155,
                "estimated": 0.74,
                "realized": 0.91,
                "labeled": 62,
                "reviewed": None,
                "reviews": 0,
            },
            "drifted_labels": 12,
            "turned": {
                "at": 320,
                "estimated": 0.93,
                "realized": 0.41,
                "labeled": 210,
                "reviewed": 0.44,
                "reviews": 40,
            },
        },
        "abstained": 70,
        "reviews": {
            "leased": 310,
            "labeled": 300,
            "reasons": {"abstain": 80, "borderline": 130, "explore": 30, "random": 60},
        },
        "segment": None,
        "canary": 0,
        "versions": [],
        "compare": None,
        "backtest": None,
    }


def backtest_answer() -> dict[str, Any]:
    """A backtest's answer: one episode from 03:20 to 07:30 of the run, the rules against the
    model on 400 labeled records, 150 of the live fallback's left out."""
    rules = RulesVsModel(
        metric="accuracy",
        records=550,
        compared=400,
        no_rule=0,
        by_rule=(250, 150),
        skipped=(Skipped("live_fallback", 150, "the fallback answered the request live"),),
        sample=1.0,
        sampled_out=0,
        model={"accuracy": MetricEstimate(0.6, 0.55, 0.65)},
        rules={"accuracy": MetricEstimate(0.7, 0.65, 0.74)},
        differences={"accuracy": Difference(0.6, 0.7, 0.1, 0.03, 0.17, "better")},
    )
    period = Period(T0 + 200, T0 + 450)
    result = BacktestResult(
        monitor="default/churn",
        period=Period(T0, T0 + 600),
        window=120.0,
        minutes=10,
        predictions=1000,
        transitions=(),
        alerts=(),
        episodes=(Episode(period, "accuracy-low", 420),),
        fallback_share=0.42,
        engagements_per_day=144.0,
    )
    answer: dict[str, Any] = msgspec.to_builtins(Backtest(result, rules=rules))
    return answer


def test_the_summary_ends_with_the_backtest_of_the_run() -> None:
    told = dataclasses.replace(made_summary(), replay=summary.replay_of(backtest_answer(), T0))
    assert summary.lines(told, "http://x/metrics?window=1h", 20)[-4:] == [
        "  backtest  the run's history replayed minute by minute with its monitor (POST"
        " .../backtest, as `truthloop backtest` asks; docs/backtest.md):",
        "            episode  engaged 03:20, released 07:30 (04:10 later): 420 of the model's"
        " 1000 predictions",
        "            rules    accuracy 0.70 [0.65–0.74], the model's 0.60 [0.55–0.65] on the same"
        " 400 labeled records: rules − model +0.100 [+0.030 to +0.170], better",
        "            left out 150 records: the fallback answered the request live",
    ]
    found = told.to_dict()["backtest"]
    assert found["episodes"] == [[200, 450, 420]]
    assert found["rules"]["compared"] == 400
    none = dataclasses.replace(made_summary(), replay=summary.Replay((), 1000, None))
    assert summary.lines(none, "u", 20)[-1] == "            the fallback would not have engaged"


SEGMENT = {
    "segment": {
        "name": "tenure",
        "by": "accuracy",
        "values": [
            {"value": "<12", **part(400, 400, 0.6)},
            {"value": ">=24", **part(1000, 1000, 0.9)},
            {"value": "[12,24)", **part(5, 5, 0.2)},
        ],
    }
}
VERSIONS = {
    "versions": [
        {"version": "v1", "share": 0.7, **part(1000, 1000, 0.78)},
        {"version": "v2", "share": 0.3, **part(405, 405, 0.74)},
    ]
}


def compared(lower: float, upper: float, verdict: str, more: int | None) -> dict[str, Any]:
    accuracy = {
        "a": 0.78,
        "b": 0.74,
        "difference": -0.04,
        "lower": lower,
        "upper": upper,
        "verdict": verdict,
        "more_labels": more,
    }
    return {
        "a": {"version": "v1"},
        "b": {"version": "v2"},
        "metrics": {
            "accuracy": accuracy,
            "f1": {**accuracy, "verdict": "cant_tell"},
            "log_loss": {**accuracy, "verdict": "better"},
        },
    }


def test_the_segment_is_told_worst_first_and_the_versions_compared() -> None:
    told = summary.summarize(
        Counts(canary=405),
        "1h",
        {"served_by": {"model": reviewed_part(1405, 1405, 0.77), "fallback": part(0, 0, None)}},
        (),
        (),
        changes=(),
        start=0.0,
        drifted=(0.0, 0.0),
        segment=SEGMENT,
        versions={"versions": VERSIONS["versions"][::-1]},
        compare=compared(-0.08, -0.01, "worse", None),
        min_samples=20,
    )
    lines = summary.lines(told, "http://x/metrics?window=1h", 20)
    start = lines.index(
        "  segment   accuracy by tenure, worst first (GET .../metrics?segment=tenure; values with"
        " 20 labeled or more):"
    )
    assert lines[start + 1 :] == [
        "            <12   0.60 [0.10–0.90] on 400 labeled",
        "            >=24  0.90 [0.10–0.90] on 1000 labeled",
        "  versions  v1 70% of the model's records, accuracy 0.78 [0.10–0.90] on 1000 labeled",
        "            v2 30% of the model's records, accuracy 0.74 [0.10–0.90] on 405 labeled",
        "  compare   v2 − v1 accuracy -0.040 [-0.080 to -0.010] (95%): worse"
        " (GET .../compare?a=v1&b=v2)",
        "            of 3 metrics: 1 better, 1 can't tell yet, 1 worse",
    ]
    result = told.to_dict()
    assert [v["name"] for v in result["segment"]["values"]] == ["<12", ">=24", "[12,24)"]
    assert result["versions"][1] == {
        "name": "v2",
        "samples": 405,
        "labeled": 405,
        "accuracy": [0.74, 0.1, 0.9],
        "share": 0.3,
    }
    assert result["canary"] == 405
    assert result["compare"]["verdicts"] == {
        "accuracy": "worse",
        "f1": "cant_tell",
        "log_loss": "better",
    }
    unsure = summary.version_lines(
        told.versions, summary.Comparison.of(compared(-0.09, 0.01, "cant_tell", 350))
    )
    assert unsure[2] == (
        "  compare   v2 − v1 accuracy -0.040 [-0.090 to +0.010] (95%): can't tell yet: about 350"
        " more labels a version would tell (GET .../compare?a=v1&b=v2)"
    )


def test_reviews_that_miss_the_labeled_accuracy_or_have_none_say_so() -> None:
    missed = summary.Figures(1500, 1490, Estimate(0.7, 0.6, 0.8), None, Estimate(0.9, 0.85, 0.95))
    assert summary.reviewed_lines(missed, REVIEWS)[0] == (
        "  reviewed  accuracy 0.90 [0.85–0.95] from 0 reviews, which misses the labeled 0.70"
    )
    none = summary.Figures(10, 0, None)
    assert summary.reviewed_lines(none, Reviews())[0] == "  reviewed  - from 0 reviews"
    assert summary.reviewed_lines(none, Reviews())[2] == "            queued as nothing"
    assert summary.reviewed_lines(none, None) == []
    assert summary.abstained_lines(3, None) == []


def test_an_unfinished_story_is_told_as_it_stands() -> None:
    unfinished = summary.Summary(
        Counts(requests=10, answered=9, failed=1),
        "1h",
        summary.Figures(9, 0, None),
        summary.Figures(0, 0, None),
        None,
        CHANGES[:4],
        T0,
    )
    lines = summary.lines(unfinished, "u", 20)
    assert "  fallback  engaged 03:10, still engaged at the end" in lines
    assert "  accuracy  model - on 0 labeled over the whole run" in lines
    assert "  drift     never flagged" in lines
    assert not any(line.startswith(("  minute", "  outliers")) for line in lines)
    assert unfinished.to_dict()["minute"] is None
    assert unfinished.to_dict()["drift"]["flagged"] is None
    assert unfinished.to_dict()["outliers"] is None


@pytest.mark.parametrize(("seconds", "text"), [(0, "00:00"), (59.6, "01:00"), (605, "10:05")])
def test_clock(seconds: float, text: str) -> None:
    assert summary.clock(seconds) == text


# -- view ---------------------------------------------------------------------------------------


def test_sparkline_levels_bounds_and_gaps() -> None:
    assert view.sparkline([0.5, 0.6, 0.75, 0.9, 1.0]) == "▁▂▅▇█"
    assert view.sparkline([0.1, None, 1.7]) == "▁ █"
    assert view.sparkline([]) == ""


def test_the_trend_keeps_at_most_its_points_evenly() -> None:
    history = [Reading(i, 0, 0, Estimate(0.5 + i / 200, None, None)) for i in range(100)]
    line = view.trend(history, points=10)
    assert len(line) == 10
    assert line == "".join(sorted(line))
    assert view.trend([Reading(0, 0, 0, None)]) == " "
    assert view.trend([]) == ""


def status(**fields: Any) -> view.Status:
    base: dict[str, Any] = {
        "at": 200,
        "phase": "FallbackActive",
        "reading": Reading(
            200,
            300,
            212,
            Estimate(0.6234, 0.55, 0.69),
            Estimate(0.978, 0.9, 1),
            Estimate(0.6512, 0.6, 0.7),
            Estimate(0.6049, 0.52, 0.685),
            64,
        ),
        "by_fallback": 143,
        "drifted": True,
        "trend": "▇▅▂",
        "drift": DriftReading(200, 300, 4, ("tenure", "contract", "support_calls"), True, 3, 0.01),
    }
    return view.Status(**{**base, **fields})


def test_a_status_shows_the_columns_of_kubectl_get_mm() -> None:
    """While the fallback answers, the model's (shadow) accuracy, its estimate from the scores
    (marked as one), the estimate from the reviews with their count and the fallback's accuracy,
    which is what clients are served, stand side by side, each under its name; what the service
    measured of drift beside what the story did to the world."""
    cells = status(abstained=21).cells()
    assert dict(zip(view.COLUMNS, cells, strict=True)) == {
        "PHASE": "FallbackActive",
        "MODEL ACC [LOW–UP]": "0.62 [0.55–0.69]",
        "ESTIMATE": "≈0.65",
        "REVIEWED [LOW–UP]": "0.60 [0.52–0.69]",
        "REVIEWS": "64",
        "FALLBACK": "0.98",
        "LABELED": "212",
        "BY-FALLBACK": "143",
        "ABSTAINED": "21",
        "DRIFTED": "3/4",
        "OUTLIERS": "1.0%",
        "WORLD": "drifted",
    }
    assert status(phase=None, reading=None, drifted=False, drift=None).cells() == (
        "-",
        "-",
        "-",
        "-",
        "0",
        "-",
        "0",
        "143",
        "0",
        "-",
        "-",
        "usual",
    )
    healthy = Reading(200, 300, 212, Estimate(0.93, None, None))
    assert status(reading=healthy).cells()[1:6] == ("0.93", "-", "-", "0", "-")


def test_the_legend_says_the_accuracies_and_labeled_count_the_window() -> None:
    text = " ".join(" ".join(line.split()) for line in view.legend("2m"))
    assert "MODEL ACC: the model's accuracy over the last 2m (the metrics window)" in text
    assert "shadow answers included while the fallback serves" in text
    assert "ESTIMATE: that accuracy estimated from the model's scores of all the 2m's" in text
    assert "REVIEWED: that accuracy estimated from the reviewer's labels" in text
    assert "REVIEWS, the reviewed predictions in those 2m" in text
    assert 'ABSTAINED: the answers "I don\'t know" since the start' in text
    assert "(≈: an estimate, no label needed)" in text
    assert "FALLBACK: the accuracy of the fallback's answers over the same 2m" in text
    assert "LABELED: the model's labeled predictions in those 2m" in text
    assert "DRIFTED: features whose values in those 2m left the reference's distribution" in text
    assert "OUTLIERS: the share of those records with a value outside the reference" in text
    assert all(
        f"{column.split(' [')[0]}:" in text or f"{column}," in text for column in view.COLUMNS[1:]
    )


def test_the_plain_view_prints_events_at_once_and_rows_every_few_seconds() -> None:
    out, wall = io.StringIO(), Wall()
    plain = view.PlainView(out, wall)
    plain.lines(["header"])
    plain.event(0, "phase Collecting: waiting")
    plain.status(status())
    wall.now += view.ROW_EVERY / 2
    plain.status(status(at=210))
    wall.now += view.ROW_EVERY / 2
    plain.status(status(at=240, phase="Healthy"))
    plain.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "header"
    assert lines[1].split() == ["TIME", *" ".join(view.COLUMNS).split()]
    assert lines[2] == "00:00  event  phase Collecting: waiting"
    assert [line[:5] for line in lines[3:]] == ["03:20", "04:00"]
    assert lines[4].split()[:2] == ["04:00", "Healthy"]
    assert all(len(line) <= 150 for line in lines)


# -- README's sample ----------------------------------------------------------------------------
# Its shape against a real default run: tests/e2e/test_demo.py.


def test_readmes_sample_has_the_views_columns_and_legend() -> None:
    sample = readme.demo_sample()
    window = spec.format_duration(SPEC.metrics.window)
    legend = view.legend(window)
    start = sample.index(legend[0])
    assert sample[start : start + len(legend)] == legend
    assert "TIME   " + view.row(view.COLUMNS) in sample


def test_readmes_sample_sends_what_the_default_run_sends() -> None:
    default = Scenario(duration=cli.DEFAULT_DURATION, speed=cli.SPEED)
    assert default == Scenario()
    assert default.requests == 2001
    [requests] = [line for line in readme.demo_sample() if line.startswith("  requests  ")]
    assert requests.startswith(f"  requests  {default.requests} sent, {default.requests} answered")
