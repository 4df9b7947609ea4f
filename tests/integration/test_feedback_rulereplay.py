"""The rules on a backtest's episodes read from a real store: only the episodes' labeled records,
across chunk boundaries, recounted row by row; and through the backtest endpoint."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from tests.integration import test_feedback_backtest
from tests.support.feedback import T0, FakeClock, monitor_body
from truthloop.core import intervals
from truthloop.core.backtest import Backtest, Episode, Period
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.rulereplay import rules_on_history
from truthloop.feedback.store.interface import Store

pytest_plugins = ["tests.support.feedback_fixtures"]

RULES = [
    {"when": "request.features.charges > 75.0", "prediction": "1"},
    {"prediction": "0"},
]


async def test_the_episodes_labeled_records_recounted(store: Store) -> None:
    body = monitor_body(
        capture={"prediction": {"pointer": "/prediction"}, "features": {"pointer": "/features"}},
        fallback={"recoverAfter": "2m", "rules": RULES},
    )
    monitor = parse_monitor(body)
    registered, _ = await store.put_monitor(monitor, body, T0)
    rng = random.Random(5)
    now = T0 + 7200
    rows = []
    for i in range(1200):
        charges = round(rng.uniform(20, 120), 1)
        actual = int(rng.random() < (0.8 if charges > 75 else 0.2))
        predicted = actual if rng.random() < 0.7 else 1 - actual
        record = PredictionRecord(
            "ml/churn", f"p{i}", "model", "v1", T0 + 6 * i, predicted,
            features={"charges": charges},
        )  # fmt: skip
        rows.append((record, actual))
    monitors = {"ml/churn": registered}
    await store.insert_predictions([r for r, _ in rows], monitors, now)
    labeled = [(r, a) for r, a in rows if int(r.prediction_id[1:]) % 10]  # 1 in 10 unlabeled
    await store.apply_actuals(
        [Actual("ml/churn", now, prediction_id=r.prediction_id, value=a) for r, a in labeled],
        monitors,
        now,
    )
    periods = [Period(T0 + 600, T0 + 1800), Period(T0 + 3000, T0 + 3600, open=True)]
    episodes = [Episode(p, "accuracy-low", 200) for p in periods]

    found = await rules_on_history(store, registered.id, monitor.spec, episodes, chunk=97)

    assert found is not None
    inside = [(r, a) for r, a in labeled if any(p.start <= r.ts < p.end for p in periods)]
    n = len(inside)
    model_right = sum(r.prediction == a for r, a in inside)
    rules_right = sum((1 if r.features["charges"] > 75 else 0) == a for r, a in inside)
    z = intervals.z_score(0.95)
    assert (found.records, found.compared, found.skipped, found.sample) == (n, n, (), 1.0)
    model, rules = found.model["accuracy"], found.rules["accuracy"]
    assert model.value == pytest.approx(model_right / n)
    assert rules.value == pytest.approx(rules_right / n)
    assert (rules.lower, rules.upper) == pytest.approx(intervals.wilson(rules_right, n, z))


async def test_a_spec_without_rules_has_no_comparison(store: Store) -> None:
    body = monitor_body(fallback={"recoverAfter": "2m"})
    monitor = parse_monitor(body)
    registered, _ = await store.put_monitor(monitor, body, T0)
    episodes = [Episode(Period(T0, T0 + 60), "accuracy-low", 5)]
    assert await rules_on_history(store, registered.id, monitor.spec, episodes) is None


async def test_the_endpoint_compares_the_rules_in_the_episodes(
    start_service: Any, clock: FakeClock
) -> None:
    """Through POST .../backtest: the rules (always 0) against the model (always 1) on the
    records of the one episode, recounted from the traffic's planted labels."""
    service = await start_service()
    await service.put_monitor(monitor_body(**test_feedback_backtest.SPEC))
    await test_feedback_backtest.live(service, clock)
    status, answer = await test_feedback_backtest.backtest(
        service, **{"from": T0, "to": T0 + 60 * test_feedback_backtest.MINUTES}
    )
    assert status == 200, answer
    found = msgspec.convert(answer, Backtest)
    (episode,) = found.result.episodes
    inside = [
        m
        for m in range(test_feedback_backtest.MINUTES)
        if episode.period.start <= T0 + 60 * m + 10 < episode.period.end
    ]
    wrong = [
        3 if m in test_feedback_backtest.BAD else 4 if m in test_feedback_backtest.FLICKER else 1
        for m in inside
    ]
    assert found.rules is not None
    assert (found.rules.records, found.rules.compared) == (4 * len(inside), 4 * len(inside))
    assert found.rules.by_rule == (4 * len(inside),)
    assert found.rules.model["accuracy"].value == pytest.approx(
        sum(4 - w for w in wrong) / (4 * len(inside))
    )
    assert found.rules.rules["accuracy"].value == pytest.approx(sum(wrong) / (4 * len(inside)))
    assert found.lines[0].key == "accuracy"
